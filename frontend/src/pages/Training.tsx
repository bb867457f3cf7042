import { useRef, useState } from 'preact/hooks';
import { api, errorText } from '../api';
import { Badge, LiveMessage, LoadError, Loading, ReadOnlyNote, TableWrap, type Message } from '../components/ui';
import {
  datasetLabel,
  elapsedMs,
  formatDateTime,
  formatDuration,
  runStatusLabel,
  statusLabel,
} from '../format';
import { useNow, useResource, useUser } from '../hooks';
import { sortRuns, trainingInProgress } from '../state';
import type { TrainingRun } from '../types';

/** Poll every 2 s while a run is in progress (or one was just started), every 15 s otherwise. */
export const FAST_POLL_MS = 2_000;
export const SLOW_POLL_MS = 15_000;

/**
 * How long a run took (or has taken so far). The API's `updated_at` is the model record's: it
 * marks the end of training only while the model is still staged or failed (a later decision
 * moves it), so for other runs the duration is unknown.
 */
export function runDuration(run: TrainingRun, now: number): string | null {
  if (run.status === 'in_progress') return formatDuration(elapsedMs(run.started_at, now));
  if (run.model_status === 'staged' || run.model_status === 'failed') {
    return formatDuration(elapsedMs(run.started_at, run.updated_at));
  }
  return null;
}

/** The newest run in one sentence, for the status line. */
export function runSummary(run: TrainingRun, now: number): string {
  const took = runDuration(run, now);
  switch (run.status) {
    case 'in_progress':
      return `Training in progress on data set ${datasetLabel(run.dataset)}.`;
    case 'completed':
      return `Training completed${took ? ` in ${took}` : ''}: model ${run.model_id} is ${statusLabel(run.model_status).toLowerCase()}.`;
    case 'failed':
      return `Training failed${took ? ` after ${took}` : ''}: ${run.failure_reason ?? 'no reason was recorded'}.`;
    default:
      return `Training ${runStatusLabel(run.status).toLowerCase()}.`;
  }
}

/** Whether to poll fast: a run is in progress, or the one just started has not shown up finished. */
export function pollDelay(runs: TrainingRun[] | undefined, startedJob: string | null): number {
  if (runs && trainingInProgress(runs)) return FAST_POLL_MS;
  if (startedJob && !runs?.some((r) => r.job === startedJob && r.status !== 'in_progress')) return FAST_POLL_MS;
  return SLOW_POLL_MS;
}

export function Training() {
  const startedJob = useRef<string | null>(null);
  const runs = useResource(
    (signal) => api.trainingRuns({ signal }).then(sortRuns),
    (r) => pollDelay(r, startedJob.current),
  );
  const user = useUser();
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<Message | null>(null);
  const list = runs.data ?? [];
  const running = trainingInProgress(list);
  const now = useNow(1000, running);

  const start = async () => {
    setBusy(true);
    setMessage({ tone: 'info', text: 'Starting a training run…' });
    try {
      const s = await api.startTraining();
      setMessage({
        tone: 'success',
        text: `Training started: job ${s.job} on data set ${datasetLabel(s.dataset)}.`,
      });
      startedJob.current = s.job;
      await runs.reload();
    } catch (e) {
      setMessage({ tone: 'error', text: errorText(e) });
    } finally {
      setBusy(false);
    }
  };

  const newest = list[0];
  return (
    <>
      <LoadError error={runs.error} />
      {!user?.approver ? (
        <ReadOnlyNote action="starting a training run" />
      ) : (
        <section aria-labelledby="start-h" class="card">
          <h2 id="start-h">Start a run</h2>
          <p>Trains a new model on the newest complete data set. One run at a time.</p>
          <button
            type="button"
            class="primary"
            data-testid="start-training"
            disabled={busy || running}
            aria-describedby={running ? 'start-why' : undefined}
            onClick={start}
          >
            {busy ? 'Starting…' : 'Start training'}
          </button>
          {running && (
            <p id="start-why" class="muted">
              A run is in progress; a new one can start when it finishes.
            </p>
          )}
          <LiveMessage message={message} testid="start-result" />
        </section>
      )}

      <section aria-labelledby="status-h" class="card">
        <h2 id="status-h">Status</h2>
        {!runs.data ? (
          <Loading what="the training runs" />
        ) : (
          <div
            data-testid="training-status"
            data-status={newest?.status ?? 'none'}
            data-job={newest?.job}
            data-model-id={newest?.model_id}
          >
            {/* Announced when the run changes state; the ticking time below is not a live region. */}
            <p role="status" aria-live="polite" aria-atomic="true" class="status-line">
              {newest ? (
                <>
                  <Badge status={newest.status} label={runStatusLabel(newest.status)} />{' '}
                  {runSummary(newest, now)}
                </>
              ) : (
                'No training run yet.'
              )}
            </p>
            {newest?.status === 'in_progress' && (
              <p>
                Elapsed: <span data-testid="training-elapsed">{runDuration(newest, now)}</span> (started{' '}
                {formatDateTime(newest.started_at)}; refreshed every {FAST_POLL_MS / 1000} s)
              </p>
            )}
          </div>
        )}
      </section>

      <section aria-labelledby="runs-h" class="card">
        <h2 id="runs-h">Runs</h2>
        {!runs.data ? (
          <Loading what="the training runs" />
        ) : list.length === 0 ? (
          <p class="muted">No training run yet.</p>
        ) : (
          <TableWrap label="Training runs table">
            <table data-testid="training-runs">
              <caption class="sr-only">Training runs, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Job</th>
                  <th scope="col">Status</th>
                  <th scope="col">Model</th>
                  <th scope="col">Data set</th>
                  <th scope="col">Started</th>
                  <th scope="col">Duration</th>
                  <th scope="col">Failure reason</th>
                </tr>
              </thead>
              <tbody>
                {list.map((r) => (
                  <tr key={r.job} data-job={r.job} data-status={r.status}>
                    <th scope="row" class="id-cell">
                      {r.job}
                    </th>
                    <td>
                      <Badge status={r.status} label={runStatusLabel(r.status)} />
                    </td>
                    <td>
                      <Badge status={r.model_status} label={statusLabel(r.model_status)} />
                    </td>
                    <td title={r.dataset}>{datasetLabel(r.dataset)}</td>
                    <td class="nowrap">{formatDateTime(r.started_at)}</td>
                    <td class="nowrap">
                      {runDuration(r, now) ?? (
                        <span title="The API gives no end time once the model has moved on" class="muted">
                          —
                        </span>
                      )}
                    </td>
                    <td class="reason-cell">{r.failure_reason ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>
    </>
  );
}
