import { useMemo, useState } from 'preact/hooks';
import { api } from '../api';
import { Badge, LoadError, Loading, TableWrap } from '../components/ui';
import { MetricChart, SERIES_STYLE, type ChartPoint } from '../components/MetricChart';
import {
  CHART_METRICS,
  datasetLabel,
  endpointStatusLabel,
  formatDateTime,
  formatPercent,
  statusLabel,
  type MetricKey,
} from '../format';
import { useResource } from '../hooks';
import { deploymentInProgress, newestStaged, servingModel, versions } from '../state';
import type { Endpoint, Model } from '../types';

interface DashboardData {
  models: Model[];
  endpoint: Endpoint;
}

async function load(signal: AbortSignal): Promise<DashboardData> {
  const [models, endpoint] = await Promise.all([api.models({ signal }), api.endpoint({ signal })]);
  return { models, endpoint };
}

/** Refresh often while something moves (training, deploying), slowly otherwise. */
function every(d: DashboardData | undefined): number {
  if (!d) return 10_000;
  const moving = d.models.some((m) => m.status === 'training') || deploymentInProgress(d.models, d.endpoint);
  return moving ? 3_000 : 15_000;
}

export function Dashboard() {
  const { data, error } = useResource(load, every);
  const [shown, setShown] = useState<MetricKey[]>(CHART_METRICS.map((m) => m.key));

  const list = useMemo(() => (data ? versions(data.models) : []), [data]);
  const points: ChartPoint[] = useMemo(
    () =>
      list
        .filter(({ model }) => model.metrics)
        .map(({ model, version }) => ({
          label: `v${version}`,
          title: `v${version} · ${model.id} · ${formatDateTime(model.created_at)}`,
          values: {
            accuracy: model.metrics!.accuracy,
            precision: model.metrics!.precision,
            recall: model.metrics!.recall,
            f1: model.metrics!.f1,
            auc_roc: model.metrics!.auc_roc,
          },
        })),
    [list],
  );
  const serving = data ? servingModel(data.models, data.endpoint) : undefined;
  const staged = data ? newestStaged(data.models) : undefined;
  const vmap = useMemo(() => new Map(list.map(({ model, version }) => [model.id, version])), [list]);

  const toggle = (key: MetricKey, on: boolean) =>
    setShown((s) => (on ? CHART_METRICS.map((m) => m.key).filter((k) => k === key || s.includes(k)) : s.filter((k) => k !== key)));

  const shownLabels = CHART_METRICS.filter((m) => shown.includes(m.key)).map((m) => m.label);
  const description =
    points.length === 0
      ? 'Metric chart: no model has metrics yet.'
      : `Line chart of ${shownLabels.join(', ') || 'no metrics'} for ${points.length} model version${points.length === 1 ? '' : 's'}, oldest to newest. The table below lists the same values.`;

  return (
    <>
      <LoadError error={error} />
      <section aria-labelledby="serving-h" class="card">
        <h2 id="serving-h">Serving now</h2>
        {!data ? (
          <Loading what="the endpoint" />
        ) : (
          <p data-testid="serving-summary">
            {serving ? (
              <>
                Model <code>{serving.id}</code> serves on endpoint <code>{data.endpoint.name}</code>
              </>
            ) : (
              <>No model serves yet</>
            )}{' '}
            — endpoint status:{' '}
            <Badge status={data.endpoint.status} label={endpointStatusLabel(data.endpoint.status)} />
            {data.endpoint.failure_reason && <> ({data.endpoint.failure_reason})</>}
          </p>
        )}
        {staged && (
          <p data-testid="staged-summary">
            Model v{vmap.get(staged.id)} (<code>{staged.id}</code>) is staged and waits for a decision:{' '}
            <a href="#/review">review it</a>.
          </p>
        )}
      </section>

      <section aria-labelledby="chart-h" class="card">
        <h2 id="chart-h">Metrics over model versions</h2>
        <fieldset class="toggles">
          <legend>Show metrics</legend>
          {CHART_METRICS.map((m) => (
            <label key={m.key} class="toggle">
              <input
                type="checkbox"
                checked={shown.includes(m.key)}
                data-testid={`toggle-${m.key}`}
                onChange={(e) => toggle(m.key, (e.target as HTMLInputElement).checked)}
              />
              <span class="swatch" style={{ borderColor: SERIES_STYLE[m.key].color, borderStyle: SERIES_STYLE[m.key].dash.length ? 'dashed' : 'solid' }} aria-hidden="true" />
              {m.label}
            </label>
          ))}
        </fieldset>
        {data && points.length === 0 && (
          <p class="muted">No model has metrics yet: start a training run on the Training page.</p>
        )}
        <MetricChart points={points} shown={shown} description={description} />
      </section>

      <section aria-labelledby="versions-h" class="card">
        <h2 id="versions-h">Model versions</h2>
        {!data ? (
          <Loading what="the models" />
        ) : list.length === 0 ? (
          <p class="muted" data-testid="models-table">
            No model has been trained yet.
          </p>
        ) : (
          <TableWrap label="Model versions table">
            <table data-testid="models-table">
              <caption class="sr-only">Every model version, newest first, with its status and metrics</caption>
              <thead>
                <tr>
                  <th scope="col">Version</th>
                  <th scope="col">Status</th>
                  <th scope="col">Serving</th>
                  <th scope="col">Data set</th>
                  <th scope="col">Trained</th>
                  {CHART_METRICS.map((m) => (
                    <th key={m.key} scope="col" class="num">
                      {m.label}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {[...list].reverse().map(({ model, version }) => {
                  const isServing = serving?.id === model.id;
                  return (
                    <tr key={model.id} data-model-id={model.id} class={isServing ? 'serving' : undefined}>
                      <th scope="row">
                        v{version}
                        <span class="id">{model.id}</span>
                      </th>
                      <td>
                        <Badge status={model.status} label={statusLabel(model.status)} />
                        {model.failure_reason && <span class="reason">{model.failure_reason}</span>}
                      </td>
                      <td data-testid={isServing ? 'serving-marker' : undefined}>
                        {isServing ? <strong>● Serving</strong> : <span class="sr-only">not serving</span>}
                      </td>
                      <td title={model.dataset}>{datasetLabel(model.dataset)}</td>
                      <td class="nowrap">{formatDateTime(model.created_at)}</td>
                      {CHART_METRICS.map((m) => (
                        <td key={m.key} class="num">
                          {formatPercent(model.metrics?.[m.key])}
                        </td>
                      ))}
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>
    </>
  );
}
