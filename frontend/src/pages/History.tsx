import { useRef, useState } from 'preact/hooks';
import { api, errorText } from '../api';
import { checkDecision, DecisionFields, type DecisionErrors } from '../components/DecisionFields';
import { Dialog } from '../components/Dialog';
import { Badge, LiveMessage, LoadError, Loading, type Message } from '../components/ui';
import { actionVerb, datasetLabel, formatAgo, formatDateTime, statusLabel } from '../format';
import { useResource, useUser } from '../hooks';
import { deploymentInProgress, rollbackTargets, servingModel, versionMap } from '../state';
import type { DeploymentEvent, Endpoint, Model } from '../types';

interface HistoryData {
  events: DeploymentEvent[];
  models: Model[];
  endpoint: Endpoint;
}

async function load(signal: AbortSignal): Promise<HistoryData> {
  const [events, models, endpoint] = await Promise.all([
    api.deployments({ signal }),
    api.models({ signal }),
    api.endpoint({ signal }),
  ]);
  return { events, models, endpoint };
}

export function History() {
  const { data, error, reload } = useResource(load, (d) =>
    !d || deploymentInProgress(d.models, d.endpoint) ? 3_000 : 15_000,
  );
  const [target, setTarget] = useState<Model | null>(null);
  const user = useUser();
  const [reason, setReason] = useState('');
  const [errors, setErrors] = useState<DecisionErrors>({});
  const [pending, setPending] = useState(false);
  const [result, setResult] = useState<Message | null>(null);
  const reasonRef = useRef<HTMLTextAreaElement>(null);

  const events = data?.events ?? [];
  const models = data?.models ?? [];
  const targets = rollbackTargets(events);
  const busy = data ? deploymentInProgress(models, data.endpoint) : true;
  const serving = servingModel(models, data?.endpoint);
  const vmap = versionMap(models);
  const byId = new Map(models.map((m) => [m.id, m]));

  const open = (modelId: string) => {
    const m = byId.get(modelId);
    if (!m) return;
    setErrors({});
    setReason('');
    setTarget(m);
  };

  const confirm = async () => {
    if (!target || !user?.approver) return;
    const errs = checkDecision(reason);
    setErrors(errs);
    if (errs.reason) {
      reasonRef.current?.focus();
      return;
    }
    setPending(true);
    const id = target.id;
    try {
      // The API records the signed-in user as the actor.
      const d = await api.rollback(id, { reason: reason.trim() });
      setResult({
        tone: 'success',
        text: `Rolling back to model ${d.model_id}: deployment ${d.deployment_id} started. The endpoint is updating.`,
      });
      setTarget(null);
    } catch (e) {
      setResult({ tone: 'error', text: errorText(e) });
      setTarget(null);
    } finally {
      setPending(false);
      void reload();
    }
  };

  return (
    <>
      <LoadError error={error} />
      <LiveMessage message={result} testid="rollback-result" />
      {data && busy && (
        <p class="note note-info">
          <span class="note-kind">Deployment in progress: </span>
          rollback waits until it finishes.
        </p>
      )}
      <section class="card" aria-labelledby="timeline-h">
        <h2 id="timeline-h">Decisions, newest first</h2>
        {serving && (
          <p>
            Serving now: <code>{serving.id}</code> (v{vmap.get(serving.id) ?? '?'})
          </p>
        )}
        {!data ? (
          <Loading what="the history" />
        ) : events.length === 0 ? (
          <p class="muted" data-testid="timeline">
            No decision yet: accepted, rejected and rolled-back models appear here.
          </p>
        ) : (
          <ol class="timeline" data-testid="timeline">
            {events.map((e, i) => {
              const m = byId.get(e.model_id);
              // Only approvers may roll back: for others the button is not there at all.
              const canRollback = user?.approver === true && targets.get(e.model_id) === e;
              return (
                <li key={`${e.at}-${e.model_id}-${i}`} class={`event action-${e.action}`} data-model-id={e.model_id} data-action={e.action}>
                  <p class="event-head">
                    <time dateTime={e.at} title={e.at}>
                      {formatDateTime(e.at)}
                    </time>{' '}
                    <span class="muted">({formatAgo(e.at)})</span>
                  </p>
                  <p class="event-what">
                    <strong>{e.by}</strong> {actionVerb(e.action)} model <code>{e.model_id}</code>
                    {vmap.has(e.model_id) && <> (v{vmap.get(e.model_id)})</>}
                    {m && <span class="muted"> — data set {datasetLabel(m.dataset)}</span>}
                  </p>
                  <p class="event-why">
                    <span class="label">Why:</span> {e.reason}
                  </p>
                  <p class="event-outcome">
                    <span class="label">Model now:</span> <Badge status={e.outcome} label={statusLabel(e.outcome)} />
                    {e.model_id === serving?.id && <strong> ● Serving</strong>}
                  </p>
                  {canRollback && (
                    <button
                      type="button"
                      data-testid={`rollback-${e.model_id}`}
                      disabled={busy || pending}
                      onClick={() => open(e.model_id)}
                    >
                      Roll back to this model
                    </button>
                  )}
                </li>
              );
            })}
          </ol>
        )}
      </section>

      {target && user?.approver && (
        <Dialog titleId="rollback-title" title={`Roll back to model v${vmap.get(target.id) ?? '?'}?`} onClose={() => setTarget(null)}>
          <form
            noValidate
            onSubmit={(ev) => {
              ev.preventDefault();
              void confirm();
            }}
          >
            <p>
              Model <code>{target.id}</code> will be deployed again and serve in place of{' '}
              {serving ? <code>{serving.id}</code> : 'the current model'}. The endpoint updates in a few minutes.
            </p>
            <DecisionFields
              idPrefix="rollback"
              user={user}
              reason={reason}
              errors={errors}
              onChange={setReason}
              disabled={pending}
              reasonRef={reasonRef}
            />
            <div class="actions">
              <button type="submit" class="danger" data-testid="confirm-rollback" disabled={pending}>
                {pending ? 'Rolling back…' : 'Roll back'}
              </button>
              <button type="button" onClick={() => setTarget(null)} disabled={pending}>
                Cancel
              </button>
            </div>
          </form>
        </Dialog>
      )}
    </>
  );
}
