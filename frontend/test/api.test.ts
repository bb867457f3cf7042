import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, apiUrl, errorFromResponse, errorText, isPublic, joinMessage, request, type Session } from '../src/api';
import { Auth, installAuth, SESSION_ENDED } from '../src/auth';
import { AUTH_CONFIG, fakeCognito, forgetAuth, tokens } from './helpers';

const BASE = 'http://127.0.0.1:4566/v1/';

function jsonResponse(status: number, body: unknown): Response {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

/** A fetch that records its calls and answers `res`. */
function fakeFetch(res: Response | (() => Response | Promise<Response>)) {
  const calls: { url: string; init: RequestInit }[] = [];
  const f = vi.fn(async (url: RequestInfo | URL, init?: RequestInit) => {
    calls.push({ url: String(url), init: init ?? {} });
    return typeof res === 'function' ? res() : res;
  });
  return { fetchImpl: f as unknown as typeof fetch, calls };
}

/** A sign-in that hands out `token` and counts the 401s it is told about. */
function fakeSession(token: string | null = 'header.payload.sig') {
  const s = { ended: 0, idToken: async () => token ?? undefined, sessionEnded: () => void (s.ended += 1) };
  return s satisfies Session;
}

const session = fakeSession();

describe('apiUrl', () => {
  it('resolves API paths under the stage, whatever the page', () => {
    expect(apiUrl('api/models', 'http://127.0.0.1:4566/v1/')).toBe('http://127.0.0.1:4566/v1/api/models');
    expect(apiUrl('api/models', 'http://127.0.0.1:4566/v1/#/review')).toBe('http://127.0.0.1:4566/v1/api/models');
    expect(apiUrl('api/endpoint', 'https://abc.execute-api.eu-west-1.amazonaws.com/prod/index.html')).toBe(
      'https://abc.execute-api.eu-west-1.amazonaws.com/prod/api/endpoint',
    );
  });

  it('never escapes to the host root with a leading slash', () => {
    expect(apiUrl('/api/models', BASE)).toBe('http://127.0.0.1:4566/v1/api/models');
  });

  it('uses the document base by default', () => {
    expect(apiUrl('api/health')).toBe(new URL('api/health', document.baseURI).toString());
  });
});

describe('request', () => {
  it('GETs JSON and parses it', async () => {
    const { fetchImpl, calls } = fakeFetch(jsonResponse(200, { models: [] }));
    const models = await api.models({ base: BASE, fetchImpl, session });
    expect(models).toEqual([]);
    expect(calls[0].url).toBe(`${BASE}api/models`);
    expect(calls[0].init.method).toBe('GET');
  });

  it('sends decisions as JSON to the model path, its id encoded', async () => {
    const { fetchImpl, calls } = fakeFetch(jsonResponse(202, { deployment_id: 'd1', model_id: 'm 1' }));
    const d = await api.accept('m 1', { reason: 'better f1' }, { base: BASE, fetchImpl, session });
    expect(d.deployment_id).toBe('d1');
    expect(calls[0].url).toBe(`${BASE}api/models/m%201/accept`);
    expect(calls[0].init.method).toBe('POST');
    expect((calls[0].init.headers as Record<string, string>)['content-type']).toBe('application/json');
    expect(JSON.parse(calls[0].init.body as string)).toEqual({ reason: 'better f1' });
  });

  it('POSTs to start training with no body', async () => {
    const { fetchImpl, calls } = fakeFetch(jsonResponse(202, { job: 'j', model_id: 'j', dataset: 'datasets/x/' }));
    await api.startTraining({ base: BASE, fetchImpl, session });
    expect(calls[0].init.method).toBe('POST');
    expect(calls[0].init.body).toBeUndefined();
  });

  it('sends a prediction as the raw bytes with the image content type', async () => {
    const { fetchImpl, calls } = fakeFetch(
      jsonResponse(200, { label: 'Organic', confidence: 0.9, probabilities: { Organic: 0.9, Recyclable: 0.1 }, model_id: 'm1' }),
    );
    const blob = new Blob([new Uint8Array([0xff, 0xd8, 0xff, 0xe0])], { type: 'image/jpeg' });
    const p = await api.predict(blob, 'image/jpeg', { base: BASE, fetchImpl, session });
    expect(p.label).toBe('Organic');
    expect(calls[0].url).toBe(`${BASE}api/predict`);
    expect(calls[0].init.body).toBe(blob);
    expect((calls[0].init.headers as Record<string, string>)['content-type']).toBe('image/jpeg');
  });

  it('turns the API error body into "message — fix"', async () => {
    const { fetchImpl } = fakeFetch(
      jsonResponse(409, {
        error: {
          code: 'training_in_progress',
          message: 'training job wastesort-local-1 is still running on datasets/20240101T000000Z/',
          fix: 'wait until GET /api/training shows it finished, then start another',
        },
      }),
    );
    const err = await api.startTraining({ base: BASE, fetchImpl, session }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect(e.status).toBe(409);
    expect(e.code).toBe('training_in_progress');
    expect(e.text).toBe(
      'Training job wastesort-local-1 is still running on datasets/20240101T000000Z/ — wait until GET /api/training shows it finished, then start another',
    );
    expect(errorText(e)).not.toContain('{');
  });

  it('words a network failure, without raw details', async () => {
    const fetchImpl = vi.fn(async () => {
      throw new TypeError('Failed to fetch');
    }) as unknown as typeof fetch;
    const e = (await api.models({ base: BASE, fetchImpl, session }).catch((x: unknown) => x)) as ApiError;
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(0);
    expect(e.code).toBe('network');
    expect(e.text).toMatch(/^Could not reach the API — check your network connection/);
  });

  it('gives up after the timeout, in words', async () => {
    const fetchImpl = ((_: RequestInfo | URL, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      })) as typeof fetch;
    const e = (await request('api/models', { base: BASE, fetchImpl, session, timeoutMs: 20 }).catch((x: unknown) => x)) as ApiError;
    expect(e.code).toBe('timeout');
    expect(e.text).toMatch(/did not answer within/);
  });

  it('passes a caller abort through rather than calling it a network failure', async () => {
    const fetchImpl = ((_: RequestInfo | URL, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      })) as typeof fetch;
    const ctrl = new AbortController();
    const p = request('api/models', { base: BASE, fetchImpl, session, signal: ctrl.signal });
    ctrl.abort();
    const e = await p.catch((x: unknown) => x);
    expect(e).not.toBeInstanceOf(ApiError);
    expect((e as DOMException).name).toBe('AbortError');
  });

  it('refuses a 2xx that is not JSON', async () => {
    const { fetchImpl } = fakeFetch(new Response('<html>hello</html>', { status: 200 }));
    const e = (await api.models({ base: BASE, fetchImpl, session }).catch((x: unknown) => x)) as ApiError;
    expect(e.code).toBe('bad_response');
    expect(e.text).not.toContain('<html>');
  });
});

describe('errorFromResponse', () => {
  it('reads API Gateway’s own {message} answers', () => {
    const e = errorFromResponse(502, '{"message": "Internal server error"}');
    expect(e.text).toBe("Internal server error (HTTP 502) — try again in a moment; if it keeps failing, the api function's log has the cause");
  });

  it('never shows an HTML or unknown body', () => {
    const e = errorFromResponse(504, '<html><body>Gateway Timeout</body></html>');
    expect(e.text).toMatch(/^The server took too long to answer \(HTTP 504\) — /);
    expect(e.text).not.toContain('<');
    const odd = errorFromResponse(418, '{"weird": true}');
    expect(odd.text).toMatch(/^The server answered with HTTP status 418 — /);
    expect(odd.text).not.toContain('weird');
  });

  it('keeps the API code and tolerates a missing fix', () => {
    const e = errorFromResponse(404, JSON.stringify({ error: { code: 'not_found', message: 'model m9 does not exist' } }));
    expect(e.code).toBe('not_found');
    expect(e.text).toBe('Model m9 does not exist');
  });
});

describe('joinMessage and errorText', () => {
  it('capitalises and drops a doubled full stop', () => {
    expect(joinMessage('the body is empty.', 'send JSON')).toBe('The body is empty — send JSON');
  });
  it('words any other error', () => {
    expect(errorText(new Error('boom'))).toBe('Boom');
    expect(errorText('??')).toBe('Something went wrong — try again');
  });
});

describe('the ID token on API calls', () => {
  let auth: Auth | undefined;
  afterEach(() => {
    forgetAuth(auth);
    auth = undefined;
  });

  const header = (init: RequestInit, name: string) => new Headers(init.headers).get(name);

  it('sends the raw token (no "Bearer ") in Authorization on every call but health', async () => {
    const s = fakeSession('eyJ.raw.token');
    const { fetchImpl, calls } = fakeFetch(() => jsonResponse(200, { models: [], status: 'ok' }));
    await api.models({ base: BASE, fetchImpl, session: s });
    await api.endpoint({ base: BASE, fetchImpl, session: s }).catch(() => undefined);
    await api.startTraining({ base: BASE, fetchImpl, session: s }).catch(() => undefined);
    await api.predict(new Blob([new Uint8Array([1])]), 'image/png', { base: BASE, fetchImpl, session: s }).catch(() => undefined);
    await api.health({ base: BASE, fetchImpl, session: s });
    expect(calls.map((c) => c.url)).toEqual([
      `${BASE}api/models`,
      `${BASE}api/endpoint`,
      `${BASE}api/training`,
      `${BASE}api/predict`,
      `${BASE}api/health`,
    ]);
    for (const c of calls.slice(0, 4)) expect(header(c.init, 'authorization')).toBe('eyJ.raw.token');
    expect(header(calls[4].init, 'authorization')).toBeNull();
    expect(isPublic('api/health')).toBe(true);
    expect(isPublic('api/healthz')).toBe(false);
  });

  it('takes the token from the installed sign-in', async () => {
    const cognito = fakeCognito({ InitiateAuth: () => tokens('ana@example.com', ['approvers']) });
    auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
    await auth.signIn('ana@example.com', 'pw');
    installAuth(auth);
    const { fetchImpl, calls } = fakeFetch(jsonResponse(200, { models: [] }));
    await api.models({ base: BASE, fetchImpl });
    expect(header(calls[0].init, 'authorization')).toBe(await auth.idToken());
    expect(header(calls[0].init, 'authorization')).not.toMatch(/^Bearer /);
  });

  it('sends nothing while signed out', async () => {
    const { fetchImpl, calls } = fakeFetch(jsonResponse(200, { models: [] }));
    const e = (await api.models({ base: BASE, fetchImpl, session: fakeSession(null) }).catch((x: unknown) => x)) as ApiError;
    expect(calls).toHaveLength(0);
    expect(e.status).toBe(401);
    expect(e.text).toBe('Your session ended; sign in again');
  });

  it('ends the session on the API’s 401 and on API Gateway’s own', async () => {
    for (const body of [
      { error: { code: 'unauthorized', message: 'the ID token has expired', fix: 'sign in again' } },
      { message: 'Unauthorized' },
    ]) {
      const s = fakeSession();
      const { fetchImpl } = fakeFetch(jsonResponse(401, body));
      const e = (await api.models({ base: BASE, fetchImpl, session: s }).catch((x: unknown) => x)) as ApiError;
      expect(e).toBeInstanceOf(ApiError);
      expect(e.status).toBe(401);
      expect(e.code).toBe('unauthorized');
      expect(e.message).toBe(SESSION_ENDED);
      expect(s.ended).toBe(1);
    }
  });

  it('signs the installed user out on a 401, saying why', async () => {
    const cognito = fakeCognito({ InitiateAuth: () => tokens('ana@example.com', []) });
    auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
    await auth.signIn('ana@example.com', 'pw');
    installAuth(auth);
    const { fetchImpl } = fakeFetch(jsonResponse(401, { message: 'Unauthorized' }));
    await api.models({ base: BASE, fetchImpl }).catch(() => undefined);
    expect(auth.state).toEqual({ status: 'signed_out', notice: 'Your session ended; sign in again.' });
    expect(await auth.idToken()).toBeUndefined();
  });

  it('shows the API’s 403 message and keeps the session', async () => {
    const s = fakeSession();
    const { fetchImpl } = fakeFetch(
      jsonResponse(403, {
        error: {
          code: 'forbidden',
          message: 'starting training needs a user in the approvers group',
          fix: 'ask an administrator to run `deployer users add EMAIL --approver`',
        },
      }),
    );
    const e = (await api.startTraining({ base: BASE, fetchImpl, session: s }).catch((x: unknown) => x)) as ApiError;
    expect(e.status).toBe(403);
    expect(e.code).toBe('forbidden');
    expect(e.text).toBe(
      'Starting training needs a user in the approvers group — ask an administrator to run `deployer users add EMAIL --approver`',
    );
    expect(s.ended).toBe(0);
  });

  it('refreshes a token that is about to expire before using it', async () => {
    let n = 0;
    const cognito = fakeCognito({
      InitiateAuth: (b) => {
        n += 1;
        // The first token is already at its end (a timer a sleeping laptop held back).
        return b.AuthFlow === 'USER_PASSWORD_AUTH' ? tokens('ana@example.com', [], 30) : tokens('ana@example.com', [], 3600, null);
      },
    });
    auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
    await auth.signIn('ana@example.com', 'pw');
    const first = auth['tokens']?.id;
    const t = await auth.idToken();
    expect(n).toBe(2);
    expect(cognito.calls[1].body).toMatchObject({ AuthFlow: 'REFRESH_TOKEN_AUTH', AuthParameters: { REFRESH_TOKEN: 'refresh-1' } });
    expect(t).toBeDefined();
    expect(t).not.toBe(first);
  });
});
