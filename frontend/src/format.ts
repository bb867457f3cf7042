// Formatting and small pure helpers the pages share.

import type { DecisionAction, EndpointStatus, ModelStatus, RunStatus } from './types';

export const DASH = '—';

/** A fraction (0..1) as a percentage: 0.9734 → "97.3%". */
export function formatPercent(fraction: number | null | undefined, digits = 1): string {
  if (typeof fraction !== 'number' || !Number.isFinite(fraction)) return DASH;
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** A plain number with a fixed number of decimals, "—" when missing. */
export function formatNumber(n: number | null | undefined, digits = 3): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH;
  return n.toFixed(digits);
}

export type MetricKey = 'accuracy' | 'precision' | 'recall' | 'f1' | 'auc_roc' | 'loss';

export interface MetricDef {
  key: MetricKey;
  label: string;
  /** Whether a higher value is better (loss: lower is better). */
  higherIsBetter: boolean;
  /** Fractions are shown as percentages, deltas in percentage points. */
  fraction: boolean;
}

export const METRICS: readonly MetricDef[] = [
  { key: 'accuracy', label: 'Accuracy', higherIsBetter: true, fraction: true },
  { key: 'precision', label: 'Precision', higherIsBetter: true, fraction: true },
  { key: 'recall', label: 'Recall', higherIsBetter: true, fraction: true },
  { key: 'f1', label: 'F1', higherIsBetter: true, fraction: true },
  { key: 'auc_roc', label: 'AUC', higherIsBetter: true, fraction: true },
  { key: 'loss', label: 'Loss', higherIsBetter: false, fraction: false },
];

/** The metrics drawn on the dashboard chart (the fractions). */
export const CHART_METRICS: readonly MetricDef[] = METRICS.filter((m) => m.fraction);

export function metricDef(key: MetricKey): MetricDef {
  const d = METRICS.find((m) => m.key === key);
  if (!d) throw new Error(`unknown metric ${key}`);
  return d;
}

/** A metric's value in its display form. */
export function formatMetric(key: MetricKey, value: number | null | undefined): string {
  return metricDef(key).fraction ? formatPercent(value) : formatNumber(value, 4);
}

export type Verdict = 'better' | 'worse' | 'same';

export interface Delta {
  /** candidate − baseline, in the metric's own unit. */
  delta: number;
  verdict: Verdict;
  /** The signed difference: "+2.1 pp" for fractions, "−0.0123" for loss. */
  text: string;
  /** A text marker, so the verdict is not told by colour alone. */
  marker: string;
}

const SAME_EPSILON = 1e-9;

function signed(n: number, digits: number): string {
  const abs = Math.abs(n).toFixed(digits);
  if (Number(abs) === 0) return `±${abs}`;
  return n > 0 ? `+${abs}` : `−${abs}`;
}

/**
 * How a candidate's metric compares with the baseline's, by the metric's direction
 * (higher is better, except loss). Null when either value is missing.
 */
export function metricDelta(
  key: MetricKey,
  candidate: number | null | undefined,
  baseline: number | null | undefined,
): Delta | null {
  if (typeof candidate !== 'number' || typeof baseline !== 'number') return null;
  if (!Number.isFinite(candidate) || !Number.isFinite(baseline)) return null;
  const def = metricDef(key);
  const delta = candidate - baseline;
  let verdict: Verdict;
  if (Math.abs(delta) < SAME_EPSILON) verdict = 'same';
  else if (delta > 0 === def.higherIsBetter) verdict = 'better';
  else verdict = 'worse';
  const text = def.fraction ? `${signed(delta * 100, 1)} pp` : signed(delta, 4);
  const marker = verdict === 'better' ? '▲ better' : verdict === 'worse' ? '▼ worse' : '= same';
  return { delta, verdict, text, marker };
}

/** A duration in words: "45 s", "3 min 05 s", "2 h 04 min". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, '0')} s`;
  return `${s} s`;
}

/** Milliseconds between two ISO times (the end defaults to now); 0 when unreadable. */
export function elapsedMs(startIso: string, end: string | number | Date = Date.now()): number {
  const start = Date.parse(startIso);
  const stop = typeof end === 'string' ? Date.parse(end) : end instanceof Date ? end.getTime() : end;
  if (!Number.isFinite(start) || !Number.isFinite(stop)) return 0;
  return Math.max(0, stop - start);
}

/** An ISO time as "2024-05-01 14:03" in the given time zone (the browser's by default). */
export function formatDateTime(iso: string | undefined, timeZone?: string): string {
  if (!iso) return DASH;
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return DASH;
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(new Date(t));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}`;
}

/** "5 s ago", "3 min ago", "2 h ago", "4 days ago". */
export function formatAgo(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return DASH;
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  const d = Math.floor(s / 86400);
  return `${d} day${d === 1 ? '' : 's'} ago`;
}

const MODEL_STATUS_LABELS: Record<ModelStatus, string> = {
  training: 'Training',
  staged: 'Staged',
  failed: 'Failed',
  deploying: 'Deploying',
  rejected: 'Rejected',
  deployed: 'Deployed',
  deploy_failed: 'Deploy failed',
  superseded: 'Superseded',
  retired: 'Retired',
};

/** A model status for people: "deploy_failed" → "Deploy failed". Unknown ones are tidied. */
export function statusLabel(status: string): string {
  return (MODEL_STATUS_LABELS as Record<string, string>)[status] ?? tidy(status);
}

/** The tone a status badge is drawn in (the label says it too). */
export function statusTone(status: string): 'ok' | 'bad' | 'busy' | 'wait' | 'muted' {
  switch (status) {
    case 'deployed':
    case 'completed':
    case 'InService':
      return 'ok';
    case 'failed':
    case 'deploy_failed':
    case 'rejected':
    case 'Failed':
    case 'UpdateRollbackFailed':
      return 'bad';
    case 'training':
    case 'deploying':
    case 'in_progress':
    case 'Creating':
    case 'Updating':
    case 'SystemUpdating':
    case 'RollingBack':
    case 'Deleting':
      return 'busy';
    case 'staged':
      return 'wait';
    default:
      return 'muted';
  }
}

const RUN_STATUS_LABELS: Record<RunStatus, string> = {
  in_progress: 'In progress',
  completed: 'Completed',
  failed: 'Failed',
};

export function runStatusLabel(status: string): string {
  return (RUN_STATUS_LABELS as Record<string, string>)[status] ?? tidy(status);
}

const ENDPOINT_STATUS_LABELS: Record<EndpointStatus, string> = {
  none: 'No endpoint',
  OutOfService: 'Out of service',
  Creating: 'Creating',
  Updating: 'Updating',
  SystemUpdating: 'System updating',
  RollingBack: 'Rolling back',
  InService: 'In service',
  Deleting: 'Deleting',
  Failed: 'Failed',
  UpdateRollbackFailed: 'Update rollback failed',
};

export function endpointStatusLabel(status: string): string {
  return (ENDPOINT_STATUS_LABELS as Record<string, string>)[status] ?? tidy(status);
}

const ACTION_VERBS: Record<DecisionAction, string> = {
  accept: 'accepted',
  reject: 'rejected',
  rollback: 'rolled back to',
};

/** "ana accepted", "ana rolled back to". */
export function actionVerb(action: string): string {
  return (ACTION_VERBS as Record<string, string>)[action] ?? tidy(action).toLowerCase();
}

function tidy(s: string): string {
  const words = s.replace(/[_-]+/g, ' ').trim();
  return words ? words[0].toUpperCase() + words.slice(1) : DASH;
}

/** A data set's S3 prefix by its name: "datasets/20240501T120000Z/" → "20240501T120000Z". */
export function datasetLabel(prefix: string | undefined): string {
  if (!prefix) return DASH;
  const parts = prefix.replace(/^s3:\/\/[^/]+\//, '').split('/').filter(Boolean);
  return parts.length ? parts[parts.length - 1] : prefix;
}
