import { useEffect, useRef } from 'preact/hooks';
import {
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartDataset,
  type PointStyle,
} from 'chart.js';
import { CHART_METRICS, formatPercent, type MetricKey } from '../format';

// Only what the line chart uses is registered, so the rest of Chart.js is left out of the bundle.
Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

/** One colour (≥ 3:1 on white), one point shape and one dash per metric: never colour alone. */
export const SERIES_STYLE: Record<MetricKey, { color: string; point: PointStyle; dash: number[] }> = {
  accuracy: { color: '#0b5fa5', point: 'circle', dash: [] },
  precision: { color: '#b34700', point: 'rect', dash: [6, 3] },
  recall: { color: '#00795a', point: 'triangle', dash: [2, 2] },
  f1: { color: '#a3347a', point: 'rectRot', dash: [10, 3, 2, 3] },
  auc_roc: { color: '#5c5200', point: 'star', dash: [12, 4] },
  loss: { color: '#444444', point: 'cross', dash: [] },
};

export interface ChartPoint {
  label: string;
  title: string;
  values: Partial<Record<MetricKey, number>>;
}

export interface MetricChartProps {
  points: ChartPoint[];
  shown: MetricKey[];
  description: string;
}

function datasets(points: ChartPoint[], shown: MetricKey[]): ChartDataset<'line', (number | null)[]>[] {
  return CHART_METRICS.filter((m) => shown.includes(m.key)).map((m) => {
    const s = SERIES_STYLE[m.key];
    return {
      label: m.label,
      data: points.map((p) => p.values[m.key] ?? null),
      borderColor: s.color,
      backgroundColor: s.color,
      borderDash: s.dash,
      borderWidth: 2,
      pointStyle: s.point,
      pointRadius: 4,
      pointHoverRadius: 6,
      spanGaps: true,
      tension: 0,
    };
  });
}

/** The y axis floor: a little under the lowest value, in steps of 10 %, so small changes show. */
export function yFloor(points: ChartPoint[], shown: MetricKey[]): number {
  let min = Infinity;
  for (const p of points) for (const k of shown) {
    const v = p.values[k];
    if (typeof v === 'number' && v < min) min = v;
  }
  if (!Number.isFinite(min)) return 0;
  return Math.max(0, Math.floor((min - 0.05) * 10) / 10);
}

export function MetricChart({ points, shown, description }: MetricChartProps) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<'line', (number | null)[], string> | null>(null);

  useEffect(() => {
    const el = canvas.current;
    if (!el || typeof el.getContext !== 'function' || !el.getContext('2d')) return undefined;
    chart.current = new Chart(el, {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { title: { display: true, text: 'Model version (oldest → newest)', color: '#333' }, ticks: { color: '#333' } },
          y: {
            min: 0,
            max: 1,
            title: { display: true, text: 'Score', color: '#333' },
            ticks: { color: '#333', callback: (v) => formatPercent(Number(v), 0) },
          },
        },
        plugins: {
          legend: {
            position: 'bottom',
            // The checkboxes above the chart are the (keyboard-usable) toggles.
            onClick: () => undefined,
            labels: { usePointStyle: true, color: '#222' },
          },
          tooltip: {
            callbacks: {
              // `title` is set with the data (below): it names the version's model id and date.
              label: (item) => `${item.dataset.label}: ${formatPercent(item.parsed.y as number)}`,
            },
          },
        },
      },
    });
    return () => {
      chart.current?.destroy();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = points.map((p) => p.label);
    c.data.datasets = datasets(points, shown);
    const y = c.options.scales?.y;
    if (y) y.min = yFloor(points, shown);
    c.options.plugins!.tooltip!.callbacks!.title = (items) => {
      const i = items[0]?.dataIndex;
      return i === undefined ? '' : points[i]?.title ?? '';
    };
    c.update('none');
  }, [points, shown]);

  return (
    <div class="chart-box">
      <canvas
        ref={canvas}
        data-testid="metric-chart"
        data-points={points.length}
        data-series={shown.length}
        role="img"
        aria-label={description}
      >
        {description}
      </canvas>
    </div>
  );
}
