import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { act } from 'preact/test-utils';
import { Notifications } from '../src/pages/Notifications';
import { Predict } from '../src/pages/Predict';
import { Review } from '../src/pages/Review';
import { Training, pollDelay, runDuration, runSummary, FAST_POLL_MS, SLOW_POLL_MS } from '../src/pages/Training';
import { History } from '../src/pages/History';
import { Dashboard } from '../src/pages/Dashboard';
import { apiError, byTestId, click, flush, forgetAuth, json, mount, signedIn, stubApi, type, waitFor, type Mounted } from './helpers';
import type { Auth } from '../src/auth';
import { model, run } from './fixtures';

let mounted: Mounted | undefined;
let auth: Auth | undefined;
beforeEach(async () => {
  // The pages' actions are for approvers; test/app.test.tsx covers read-only users.
  auth = (await signedIn(['approvers'])).auth;
  localStorage.clear();
  URL.createObjectURL = vi.fn(() => 'blob:preview');
  URL.revokeObjectURL = vi.fn();
});
afterEach(() => {
  mounted?.unmount();
  mounted = undefined;
  forgetAuth(auth);
  auth = undefined;
  vi.unstubAllGlobals();
});

const inService = { name: 'ep', status: 'InService', serving_model_id: 'm1' };

describe('Notifications', () => {
  it('validates the address before sending anything', async () => {
    const calls = stubApi({});
    mounted = mount(<Notifications />);
    const input = byTestId<HTMLInputElement>(mounted.root, 'email-input');
    await type(input, 'not-an-email');
    await click(byTestId(mounted.root, 'subscribe'));
    expect(calls).toHaveLength(0);
    expect(input.getAttribute('aria-invalid')).toBe('true');
    expect(byTestId(mounted.root, 'email-error').textContent).toContain('is not an email address');
  });

  it('subscribes and says a confirmation email was sent', async () => {
    const calls = stubApi({ 'POST /api/subscriptions': () => json(202, { subscription: 'pending confirmation' }) });
    mounted = mount(<Notifications />);
    await type(byTestId(mounted.root, 'email-input'), 'ana@example.com');
    await click(byTestId(mounted.root, 'subscribe'));
    const result = await waitFor(() => {
      const el = byTestId(mounted!.root, 'subscribe-result');
      expect(el.textContent).toContain('confirmation email was sent to ana@example.com');
      return el;
    });
    expect(result.closest('[aria-live]')).not.toBeNull();
    expect(JSON.parse(calls[0].init.body as string)).toEqual({ email: 'ana@example.com' });
  });

  it('shows an API refusal in words', async () => {
    stubApi({
      'POST /api/subscriptions': () => apiError(400, 'bad_request', '"x@y.z" is not an email address', 'send { "email": "you@example.com" }'),
    });
    mounted = mount(<Notifications />);
    await type(byTestId(mounted.root, 'email-input'), 'x@y.zz');
    await click(byTestId(mounted.root, 'subscribe'));
    await waitFor(() =>
      expect(byTestId(mounted!.root, 'subscribe-result').textContent).toBe(
        'Error: "x@y.z" is not an email address — send { "email": "you@example.com" }',
      ),
    );
  });
});

describe('Predict', () => {
  const jpeg = () => new File([new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4])], 'bottle.jpg', { type: 'image/jpeg' });

  async function choose(root: HTMLElement, file: File) {
    const input = byTestId<HTMLInputElement>(root, 'file-input');
    Object.defineProperty(input, 'files', { value: [file], configurable: true });
    await act(async () => {
      input.dispatchEvent(new Event('change', { bubbles: true }));
    });
  }

  it('refuses a file over 4 MB before any upload', async () => {
    const calls = stubApi({});
    mounted = mount(<Predict />);
    const big = new File([new Uint8Array(8)], 'huge.png', { type: 'image/png' });
    Object.defineProperty(big, 'size', { value: 5 * 1024 * 1024 });
    await choose(mounted.root, big);
    await waitFor(() => expect(byTestId(mounted!.root, 'predict-error').textContent).toMatch(/limit is 4 MB/));
    expect(calls).toHaveLength(0);
  });

  it('refuses a GIF before any upload', async () => {
    const calls = stubApi({});
    mounted = mount(<Predict />);
    await choose(mounted.root, new File([new Uint8Array([0x47, 0x49, 0x46])], 'cat.gif', { type: 'image/gif' }));
    await waitFor(() => expect(byTestId(mounted!.root, 'predict-error').textContent).toMatch(/JPEG or PNG/));
    expect(calls).toHaveLength(0);
  });

  it('uploads the bytes and shows label, confidence and model', async () => {
    const calls = stubApi({
      'POST /api/predict': () =>
        json(200, { label: 'Recyclable', confidence: 0.8734, probabilities: { Organic: 0.1266, Recyclable: 0.8734 }, model_id: 'm1' }),
    });
    mounted = mount(<Predict />);
    const f = jpeg();
    await choose(mounted.root, f);
    await waitFor(() => expect(byTestId(mounted!.root, 'predict-label').textContent).toBe('Recyclable'));
    expect(byTestId(mounted.root, 'predict-confidence').textContent).toBe('87.3%');
    expect(byTestId(mounted.root, 'predict-model-id').textContent).toBe('m1');
    expect(byTestId<HTMLImageElement>(mounted.root, 'preview').getAttribute('src')).toBe('blob:preview');
    expect(calls[0].init.body).toBe(f);
    expect((calls[0].init.headers as Record<string, string>)['content-type']).toBe('image/jpeg');
  });

  it('explains a 503 as no model serving', async () => {
    stubApi({
      'POST /api/predict': () =>
        apiError(503, 'not_serving', 'no model has been deployed', 'accept a staged model with POST /api/models/{id}/accept'),
    });
    mounted = mount(<Predict />);
    await choose(mounted.root, jpeg());
    await waitFor(() => {
      const text = byTestId(mounted!.root, 'predict-error').textContent ?? '';
      expect(text).toContain('No model is serving yet');
      expect(text).toContain('no model has been deployed');
      expect(text).not.toContain('{"error"');
    });
  });
});

describe('Review', () => {
  const staged = () => model('m2', 'staged', '2024-05-02T00:00:00Z');
  const deployed = () => model('m1', 'deployed', '2024-05-01T00:00:00Z');

  it('compares the staged model with the serving one, marking better and worse in words', async () => {
    const s = staged();
    s.metrics = { ...s.metrics!, f1: 0.9, loss: 0.4 };
    stubApi({ 'GET /api/models': () => json(200, { models: [s, deployed()] }), 'GET /api/endpoint': () => json(200, inService) });
    mounted = mount(<Review />);
    await waitFor(() => byTestId(mounted!.root, 'metric-deltas'));
    const f1 = mounted.root.querySelector('[data-metric="f1"] .delta')!;
    expect(f1.textContent).toBe('+3.0 pp ▲ better');
    const loss = mounted.root.querySelector('[data-metric="loss"] .delta')!;
    expect(loss.textContent).toBe('+0.1000 ▼ worse');
    expect(mounted.root.querySelectorAll('.matrix')).toHaveLength(2);
  });

  it('requires a reason, then accepts as the signed-in user', async () => {
    const calls = stubApi({
      'GET /api/models': () => json(200, { models: [staged(), deployed()] }),
      'GET /api/endpoint': () => json(200, inService),
      'POST /api/models/m2/accept': () => json(202, { deployment_id: 'cfg-1', model_id: 'm2' }),
    });
    mounted = mount(<Review />);
    const accept = await waitFor(() => byTestId<HTMLButtonElement>(mounted!.root, 'accept'));
    expect(accept.disabled).toBe(false);
    await click(accept);
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(0);
    expect(byTestId(mounted.root, 'decision-reason').getAttribute('aria-invalid')).toBe('true');
    expect(byTestId(mounted.root, 'review-result').textContent).toContain('Enter a reason');
    // No name to type: the decision is recorded as the signed-in user.
    expect(mounted.root.querySelector('[data-testid="decision-name"]')).toBeNull();
    expect(byTestId(mounted.root, 'decision-actor').textContent).toBe('ana@example.com');

    await type(byTestId(mounted.root, 'decision-reason'), 'better F1');
    await click(accept);
    await waitFor(() => expect(byTestId(mounted!.root, 'review-result').textContent).toContain('deployment cfg-1 started'));
    const post = calls.find((c) => c.method === 'POST')!;
    expect(JSON.parse(post.init.body as string)).toEqual({ reason: 'better F1' });
  });

  it('disables the decision while a deployment runs', async () => {
    stubApi({
      'GET /api/models': () => json(200, { models: [staged(), deployed()] }),
      'GET /api/endpoint': () => json(200, { ...inService, status: 'Updating' }),
    });
    mounted = mount(<Review />);
    const accept = await waitFor(() => byTestId<HTMLButtonElement>(mounted!.root, 'accept'));
    expect(accept.disabled).toBe(true);
    expect(byTestId<HTMLButtonElement>(mounted.root, 'reject').disabled).toBe(true);
    expect(byTestId(mounted.root, 'deployment-in-progress').textContent).toContain('Updating');
  });

  it('shows a conflict in words', async () => {
    stubApi({
      'GET /api/models': () => json(200, { models: [staged(), deployed()] }),
      'GET /api/endpoint': () => json(200, inService),
      'POST /api/models/m2/reject': () =>
        apiError(409, 'conflict', 'model m2 is rejected, not staged', 'GET /api/models/{id} shows the model\'s state and which actions it allows'),
    });
    mounted = mount(<Review />);
    await waitFor(() => byTestId(mounted!.root, 'reject'));
    await type(byTestId(mounted.root, 'decision-reason'), 'worse recall');
    await click(byTestId(mounted.root, 'reject'));
    await waitFor(() =>
      expect(byTestId(mounted!.root, 'review-result').textContent).toBe(
        "Error: Model m2 is rejected, not staged — GET /api/models/{id} shows the model's state and which actions it allows",
      ),
    );
  });

  it('says when nothing waits for review', async () => {
    stubApi({ 'GET /api/models': () => json(200, { models: [deployed()] }), 'GET /api/endpoint': () => json(200, inService) });
    mounted = mount(<Review />);
    await waitFor(() => byTestId(mounted!.root, 'no-staged'));
    expect(mounted.root.querySelector('[data-testid="accept"]')).toBeNull();
  });
});

describe('Training', () => {
  it('polls fast while a run is in progress or just started', () => {
    expect(pollDelay([run('a', 'in_progress', '2024-05-01T00:00:00Z')], null)).toBe(FAST_POLL_MS);
    expect(pollDelay([run('a', 'completed', '2024-05-01T00:00:00Z')], null)).toBe(SLOW_POLL_MS);
    expect(pollDelay([run('a', 'completed', '2024-05-01T00:00:00Z')], 'b')).toBe(FAST_POLL_MS);
    expect(pollDelay([run('b', 'failed', '2024-05-01T00:00:00Z')], 'b')).toBe(SLOW_POLL_MS);
    expect(pollDelay(undefined, null)).toBe(SLOW_POLL_MS);
  });

  it('times a run only while its end is known', () => {
    const start = '2024-05-01T10:00:00Z';
    const now = Date.parse('2024-05-01T10:03:00Z');
    expect(runDuration(run('a', 'in_progress', start), now)).toBe('3 min 00 s');
    expect(runDuration(run('a', 'completed', start, { updated_at: '2024-05-01T10:01:30Z' }), now)).toBe('1 min 30 s');
    // A deployed model's updated_at is its deployment, not the end of training.
    const moved = run('a', 'completed', start, { model_status: 'deployed', updated_at: '2024-05-03T00:00:00Z' });
    expect(runDuration(moved, now)).toBeNull();
    expect(runSummary(moved, now)).toBe('Training completed: model a is deployed.');
    expect(runSummary(run('b', 'failed', start, { updated_at: '2024-05-01T10:00:20Z', failure_reason: 'out of memory' }), now)).toBe(
      'Training failed after 20 s: out of memory.',
    );
  });

  it('shows a 409 in words', async () => {
    stubApi({
      'GET /api/training': () => json(200, { runs: [] }),
      'POST /api/training': () => apiError(409, 'no_dataset', 'there is no complete data set to train on', 'push one with `deployer dataset push DIR`'),
    });
    mounted = mount(<Training />);
    const start = await waitFor(() => byTestId<HTMLButtonElement>(mounted!.root, 'start-training'));
    await click(start);
    await waitFor(() =>
      expect(byTestId(mounted!.root, 'start-result').textContent).toBe(
        'Error: There is no complete data set to train on — push one with `deployer dataset push DIR`',
      ),
    );
  });

  it('shows the newest run with its elapsed time and a failure with its reason', async () => {
    const now = Date.now();
    stubApi({
      'GET /api/training': () =>
        json(200, {
          runs: [
            run('old', 'failed', new Date(now - 3_600_000).toISOString(), {
              updated_at: new Date(now - 3_540_000).toISOString(),
              failure_reason: 'AlgorithmError: out of memory',
            }),
            run('new', 'in_progress', new Date(now - 65_000).toISOString()),
          ],
        }),
    });
    mounted = mount(<Training />);
    const status = await waitFor(() => byTestId(mounted!.root, 'training-status'));
    expect(status.dataset.status).toBe('in_progress');
    expect(status.textContent).toContain('In progress');
    expect(byTestId(mounted.root, 'training-elapsed').textContent).toMatch(/^1 min 0[5-9] s$/);
    expect(byTestId<HTMLButtonElement>(mounted.root, 'start-training').disabled).toBe(true);
    const failed = mounted.root.querySelector('tr[data-job="old"]')!;
    expect(failed.textContent).toContain('AlgorithmError: out of memory');
    expect(failed.textContent).toContain('1 min 00 s');
  });
});

describe('History', () => {
  it('rolls back to a superseded model after confirmation', async () => {
    const events = [
      { at: '2024-05-02T00:00:00Z', action: 'accept', by: 'Bo', reason: 'better', model_id: 'm2', outcome: 'deployed' },
      { at: '2024-05-01T00:00:00Z', action: 'accept', by: 'Ana', reason: 'first', model_id: 'm1', outcome: 'superseded' },
    ];
    const calls = stubApi({
      'GET /api/deployments': () => json(200, { deployments: events }),
      'GET /api/models': () =>
        json(200, { models: [model('m2', 'deployed', '2024-05-02T00:00:00Z'), model('m1', 'superseded', '2024-05-01T00:00:00Z')] }),
      'GET /api/endpoint': () => json(200, { ...inService, serving_model_id: 'm2' }),
      'POST /api/models/m1/rollback': () => json(202, { deployment_id: 'cfg-9', model_id: 'm1' }),
    });
    mounted = mount(<History />);
    const timeline = await waitFor(() => byTestId(mounted!.root, 'timeline'));
    expect(timeline.textContent).toContain('Ana accepted model m1');
    expect(timeline.textContent).toContain('first');
    expect(mounted.root.querySelector('[data-testid="rollback-m2"]')).toBeNull();
    await click(byTestId(mounted.root, 'rollback-m1'));
    const dialog = mounted.root.querySelector('[role="dialog"]')!;
    expect(dialog.getAttribute('aria-modal')).toBe('true');
    expect(document.activeElement).toBe(byTestId(mounted.root, 'rollback-reason'));
    expect(byTestId(dialog as HTMLElement, 'rollback-actor').textContent).toBe('ana@example.com');
    // Confirming without a reason sends nothing.
    await click(byTestId(mounted.root, 'confirm-rollback'));
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(0);
    await type(byTestId(mounted.root, 'rollback-reason'), 'm2 misreads glass');
    await click(byTestId(mounted.root, 'confirm-rollback'));
    await waitFor(() => expect(byTestId(mounted!.root, 'rollback-result').textContent).toContain('deployment cfg-9 started'));
    expect(JSON.parse(calls.find((c) => c.method === 'POST')!.init.body as string)).toEqual({ reason: 'm2 misreads glass' });
    expect(mounted.root.querySelector('[role="dialog"]')).toBeNull();
  });
});

describe('Dashboard', () => {
  it('lists every version with its status, data set and the serving marker', async () => {
    // jsdom draws no canvas: the chart stays blank here; the browser tests look at it.
    vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockReturnValue(null);
    stubApi({
      'GET /api/models': () =>
        json(200, {
          models: [
            model('m3', 'training', '2024-05-03T00:00:00Z'),
            model('m2', 'deployed', '2024-05-02T00:00:00Z', { dataset: 'datasets/20240502T000000Z/' }),
            model('m1', 'superseded', '2024-05-01T00:00:00Z'),
          ],
        }),
      'GET /api/endpoint': () => json(200, { ...inService, serving_model_id: 'm2' }),
    });
    mounted = mount(<Dashboard />);
    const table = await waitFor(() => byTestId(mounted!.root, 'models-table'));
    const rows = [...table.querySelectorAll('tbody tr')].map((r) => r.getAttribute('data-model-id'));
    expect(rows).toEqual(['m3', 'm2', 'm1']);
    const served = table.querySelector('tr[data-model-id="m2"]')!;
    expect(served.textContent).toContain('Serving');
    expect(served.textContent).toContain('20240502T000000Z');
    expect(served.textContent).toContain('Deployed');
    expect(table.querySelector('tr[data-model-id="m3"]')!.textContent).toContain('Training');
    expect(byTestId(mounted.root, 'metric-chart').getAttribute('aria-label')).toContain('2 model versions');
    // Toggling a metric changes what the chart is said to show.
    await click(byTestId(mounted.root, 'toggle-precision'));
    expect(byTestId(mounted.root, 'metric-chart').getAttribute('aria-label')).not.toContain('Precision');
    await flush();
  });
});
