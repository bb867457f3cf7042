import { useEffect, useRef, useState } from 'preact/hooks';
import { api, errorText } from '../api';
import { checkDecision, DecisionFields, type DecisionErrors } from '../components/DecisionFields';
import { Badge, LiveMessage, LoadError, Loading, ReadOnlyNote, TableWrap, type Message } from '../components/ui';
import {
  datasetLabel,
  endpointStatusLabel,
  formatDateTime,
  formatMetric,
  METRICS,
  metricDelta,
  statusLabel,
} from '../format';
import { useResource, useUser } from '../hooks';
import { deployingModel, deploymentInProgress, newestStaged, servingModel, versionMap } from '../state';
import type { Endpoint, Metrics, Model } from '../types';

interface ReviewData {
  models: Model[];
  endpoint: Endpoint;
}

async function load(signal: AbortSignal): Promise<ReviewData> {
  const [models, endpoint] = await Promise.all([api.models({ signal }), api.endpoint({ signal })]);
  return { models, endpoint };
}

function ConfusionMatrix({ caption, metrics }: { caption: string; metrics: Metrics | undefined }) {
  if (!metrics) {
    return (
      <figure class="matrix">
        <figcaption>{caption}</figcaption>
        <p class="muted">No metrics.</p>
      </figure>
    );
  }
  const cm = metrics.confusion_matrix;
  const pos = metrics.positive_class ?? 'positive';
  return (
    <figure class="matrix">
      <table>
        <caption>{caption}</caption>
        <thead>
          <tr>
            <td />
            <th scope="col">Predicted {pos}</th>
            <th scope="col">Predicted other</th>
          </tr>
        </thead>
        <tbody>
          <tr>
            <th scope="row">Actual {pos}</th>
            <td>
              <span class="cell-num">{cm.tp}</span> <span class="cell-kind">true positive</span>
            </td>
            <td>
              <span class="cell-num">{cm.fn}</span> <span class="cell-kind">false negative</span>
            </td>
          </tr>
          <tr>
            <th scope="row">Actual other</th>
            <td>
              <span class="cell-num">{cm.fp}</span> <span class="cell-kind">false positive</span>
            </td>
            <td>
              <span class="cell-num">{cm.tn}</span> <span class="cell-kind">true negative</span>
            </td>
          </tr>
        </tbody>
      </table>
      <figcaption class="muted">{metrics.support} validation images</figcaption>
    </figure>
  );
}

export function Review() {
  const { data, error, reload } = useResource(load, (d) =>
    !d || deploymentInProgress(d.models, d.endpoint) ? 3_000 : 15_000,
  );
  const user = useUser();
  const [reason, setReason] = useState('');
  const [errors, setErrors] = useState<DecisionErrors>({});
  const [pending, setPending] = useState<null | 'accept' | 'reject'>(null);
  const [result, setResult] = useState<Message | null>(null);
  /** The model an accept from this page is deploying, followed until it settles. */
  const [following, setFollowing] = useState<string | null>(null);
  const reasonRef = useRef<HTMLTextAreaElement>(null);

  const models = data?.models ?? [];
  const staged = newestStaged(models);
  const serving = servingModel(models, data?.endpoint);
  const deploying = deployingModel(models);
  const busyDeploying = data ? deploymentInProgress(models, data.endpoint) : false;
  const vmap = versionMap(models);
  const v = (m: Model | undefined) => (m ? `v${vmap.get(m.id) ?? '?'}` : '');

  // Say how the deployment this page started ended.
  useEffect(() => {
    if (!following || !data) return;
    const m = data.models.find((x) => x.id === following);
    if (!m) return;
    if (m.status === 'deployed') {
      setResult({ tone: 'success', text: `Model ${m.id} is deployed and serving.` });
      setFollowing(null);
    } else if (m.status === 'deploy_failed') {
      setResult({
        tone: 'error',
        text: `Deploying model ${m.id} failed${m.failure_reason ? `: ${m.failure_reason}` : ''} — the previous model keeps serving; it can be accepted again.`,
      });
      setFollowing(null);
    }
  }, [data, following]);

  const decide = async (action: 'accept' | 'reject') => {
    if (!staged || !user?.approver) return;
    const errs = checkDecision(reason);
    setErrors(errs);
    if (errs.reason) {
      reasonRef.current?.focus();
      setResult({ tone: 'error', text: 'Enter a reason before you decide.' });
      return;
    }
    setPending(action);
    setResult({ tone: 'info', text: action === 'accept' ? `Accepting model ${staged.id}…` : `Rejecting model ${staged.id}…` });
    try {
      // The API records the signed-in user as the actor.
      const body = { reason: reason.trim() };
      if (action === 'accept') {
        const d = await api.accept(staged.id, body);
        setResult({
          tone: 'success',
          text: `Model ${d.model_id} accepted: deployment ${d.deployment_id} started. The endpoint is updating; this page follows it.`,
        });
        setFollowing(d.model_id);
      } else {
        const m = await api.reject(staged.id, body);
        setResult({ tone: 'success', text: `Model ${m.id} rejected. It stays in the history.` });
      }
      setReason('');
      setErrors({});
    } catch (e) {
      setResult({ tone: 'error', text: errorText(e) });
    } finally {
      setPending(null);
      void reload();
    }
  };

  const disabled = pending !== null || busyDeploying;

  return (
    <>
      <LoadError error={error} />
      {data && busyDeploying && (
        <p class="note note-info" data-testid="deployment-in-progress">
          <span class="note-kind">Deployment in progress: </span>
          {deploying ? `model ${deploying.id} is being deployed` : 'the endpoint is changing'} (endpoint{' '}
          {endpointStatusLabel(data.endpoint.status)}). Decisions wait until it finishes.
        </p>
      )}

      {!data ? (
        <Loading what="the models" />
      ) : !staged ? (
        <section class="card" aria-labelledby="none-h">
          <h2 id="none-h">Nothing to review</h2>
          <p data-testid="no-staged">
            No model is waiting for review. A finished training run stages its model here.
          </p>
        </section>
      ) : (
        <>
          <section class="card" aria-labelledby="compare-h" data-testid="comparison" data-model-id={staged.id}>
            <h2 id="compare-h">
              Staged {v(staged)} against {serving ? `serving ${v(serving)}` : 'nothing deployed'}
            </h2>
            <dl class="pair">
              <div>
                <dt>Staged</dt>
                <dd>
                  <code data-testid="staged-id">{staged.id}</code> <Badge status={staged.status} label={statusLabel(staged.status)} />
                  <br />
                  data set {datasetLabel(staged.dataset)}, trained {formatDateTime(staged.created_at)}
                </dd>
              </div>
              <div>
                <dt>Serving</dt>
                <dd>
                  {serving ? (
                    <>
                      <code data-testid="serving-id">{serving.id}</code>{' '}
                      <Badge status={serving.status} label={statusLabel(serving.status)} />
                      <br />
                      data set {datasetLabel(serving.dataset)}, trained {formatDateTime(serving.created_at)}
                    </>
                  ) : (
                    'No model is deployed yet: accepting deploys the first one.'
                  )}
                </dd>
              </div>
            </dl>
            <TableWrap label="Metric comparison table">
              <table data-testid="metric-deltas">
                <caption class="sr-only">Each metric for the staged and the serving model, and the change</caption>
                <thead>
                  <tr>
                    <th scope="col">Metric</th>
                    <th scope="col" class="num">Staged</th>
                    <th scope="col" class="num">Serving</th>
                    <th scope="col" class="num">Change</th>
                  </tr>
                </thead>
                <tbody>
                  {METRICS.map((m) => {
                    const a = staged.metrics?.[m.key];
                    const b = serving?.metrics?.[m.key];
                    const d = metricDelta(m.key, a, b);
                    return (
                      <tr key={m.key} data-metric={m.key}>
                        <th scope="row">
                          {m.label}
                          {!m.higherIsBetter && <span class="muted"> (lower is better)</span>}
                        </th>
                        <td class="num">{formatMetric(m.key, a)}</td>
                        <td class="num">{formatMetric(m.key, b)}</td>
                        <td class="num">
                          {d ? (
                            <span class={`delta delta-${d.verdict}`} data-verdict={d.verdict}>
                              {d.text} <span class="marker">{d.marker}</span>
                            </span>
                          ) : (
                            <span class="muted">no comparison</span>
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </TableWrap>
          </section>

          <section class="card" aria-labelledby="cm-h">
            <h2 id="cm-h">Confusion matrices</h2>
            <div class="matrices">
              <ConfusionMatrix caption={`Staged ${v(staged)}`} metrics={staged.metrics} />
              {serving && <ConfusionMatrix caption={`Serving ${v(serving)}`} metrics={serving.metrics} />}
            </div>
          </section>
        </>
      )}

      {user?.approver ? (
        <section class="card" aria-labelledby="decide-h" hidden={!data || !staged}>
          <h2 id="decide-h">Decide</h2>
          {staged && (
            <form
              noValidate
              onSubmit={(e) => {
                e.preventDefault();
                void decide('accept');
              }}
            >
              <DecisionFields
                idPrefix="decision"
                user={user}
                reason={reason}
                errors={errors}
                onChange={setReason}
                disabled={pending !== null}
                reasonRef={reasonRef}
              />
              <div class="actions">
                <button type="submit" class="primary" data-testid="accept" disabled={disabled}>
                  {pending === 'accept' ? 'Accepting…' : 'Accept and deploy'}
                </button>
                <button type="button" class="danger" data-testid="reject" disabled={disabled} onClick={() => void decide('reject')}>
                  {pending === 'reject' ? 'Rejecting…' : 'Reject'}
                </button>
              </div>
              {busyDeploying && <p class="muted">The buttons are off while a deployment runs.</p>}
            </form>
          )}
        </section>
      ) : (
        data &&
        staged && (
          <ReadOnlyNote action="accepting or rejecting a model" />
        )
      )}
      <LiveMessage message={result} testid="review-result" />
    </>
  );
}
