// The API client. Every call goes to `<document base>/api/...`: the app is served by the same
// stage as the API (`/<stage>/`), so no prefix is hard-coded. Every call but `GET api/health`
// carries the signed-in user's Cognito ID token, raw, in `Authorization` (see auth.ts); a 401
// ends the session. Failures become an ApiError whose text is written for people: the API's
// `message — fix`, or words for a network failure; a raw body is never shown.

import { currentAuth, SESSION_ENDED } from './auth';
import type {
  DecisionRequest,
  DeploymentList,
  DeploymentStarted,
  Endpoint,
  Model,
  ModelList,
  Prediction,
  SubscriptionPending,
  TrainingRun,
  TrainingRunList,
  TrainingStarted,
} from './types';

/** How long a call may take before it is given up (API Gateway itself stops at 29 s). */
export const DEFAULT_TIMEOUT_MS = 35_000;

export class ApiError extends Error {
  /** The HTTP status, or 0 when no answer came (network failure, timeout). */
  readonly status: number;
  /** The API's error code (`conflict`, `no_dataset`, ...), or one of ours: `network`, `timeout`, `bad_response`, `http_<status>`. */
  readonly code: string;
  /** What to do about it. */
  readonly fix: string;

  constructor(status: number, code: string, message: string, fix: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.fix = fix;
  }

  /** "Message — fix", the one line the pages show. */
  get text(): string {
    return joinMessage(this.message, this.fix);
  }
}

function capitalize(s: string): string {
  return s.length === 0 ? s : s[0].toUpperCase() + s.slice(1);
}

/** "Message — fix", with the message capitalised and without a doubled full stop. */
export function joinMessage(message: string, fix: string): string {
  const m = capitalize(message.trim()).replace(/[.]+$/, '');
  const f = fix.trim();
  return f ? `${m} — ${f}` : m;
}

/** Any thrown value as one readable line. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.text;
  if (e instanceof Error && e.message) return capitalize(e.message);
  return 'Something went wrong — try again';
}

/**
 * The absolute URL of an API path (`api/models`), relative to the document, so that
 * `http://host/v1/#/review` calls `http://host/v1/api/models`.
 */
export function apiUrl(path: string, base: string = document.baseURI): string {
  const rel = path.replace(/^\/+/, '');
  return new URL(rel, base).toString();
}

/** A path segment made safe for a URL (model ids and job names are plain, but be sure). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

const STATUS_WORDS: Record<number, string> = {
  400: 'The request was refused',
  401: 'The request is not authorised',
  403: 'The API refused the request',
  404: 'Not found',
  405: 'The API does not allow this',
  409: 'The request conflicts with the current state',
  413: 'The upload is too large',
  415: 'The upload is not a supported type',
  429: 'Too many requests',
  500: 'The server failed',
  502: 'The server answered badly',
  503: 'The service is not available',
  504: 'The server took too long to answer',
};

/** The error for a non-2xx answer, from the API's error body when it has one. */
export function errorFromResponse(status: number, bodyText: string): ApiError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bodyText);
  } catch {
    parsed = undefined;
  }
  if (parsed && typeof parsed === 'object') {
    const err = (parsed as { error?: unknown }).error;
    if (err && typeof err === 'object') {
      const { code, message, fix } = err as Record<string, unknown>;
      if (typeof message === 'string' && message.trim()) {
        return new ApiError(
          status,
          typeof code === 'string' && code ? code : `http_${status}`,
          message,
          typeof fix === 'string' ? fix : '',
        );
      }
    }
    // API Gateway's own answers (a crashed or timed-out function): `{ "message": "..." }`.
    const gw = (parsed as { message?: unknown }).message;
    if (typeof gw === 'string' && gw.trim()) {
      return new ApiError(status, `http_${status}`, `${gw.trim()} (HTTP ${status})`, fixForStatus(status));
    }
  }
  const words = STATUS_WORDS[status] ?? `The server answered with HTTP status ${status}`;
  return new ApiError(
    status,
    `http_${status}`,
    STATUS_WORDS[status] ? `${words} (HTTP ${status})` : words,
    fixForStatus(status),
  );
}

function fixForStatus(status: number): string {
  if (status >= 500) return 'try again in a moment; if it keeps failing, the api function\'s log has the cause';
  if (status === 404 || status === 403) return 'reload the page; the app and the API may be out of step';
  return 'check the input and try again';
}

/** What the client needs from the sign-in: the ID token, and to be told that it was refused. */
export interface Session {
  idToken(): Promise<string | undefined>;
  sessionEnded(): void;
}

/** The only route that takes no token. */
export function isPublic(path: string): boolean {
  return path.replace(/^\/+/, '').split(/[?#]/)[0] === 'api/health';
}

/** A 401: the session is over (expired, revoked, or never there). */
function sessionEndedError(): ApiError {
  return new ApiError(401, 'unauthorized', SESSION_ENDED, '');
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  /** A JSON body (sent as application/json). */
  json?: unknown;
  /** A raw body with its content type. */
  body?: Blob | ArrayBuffer;
  contentType?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** For tests: the document base to resolve against. */
  base?: string;
  /** For tests: the fetch to use. */
  fetchImpl?: typeof fetch;
  /** For tests: the sign-in to take the token from (default: the installed one, see auth.ts). */
  session?: Session | null;
}

/** One API call: the parsed JSON of a 2xx answer, or an ApiError. */
export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const url = apiUrl(path, opts.base);
  const headers: Record<string, string> = { accept: 'application/json' };
  const needsToken = !isPublic(path);
  const session = needsToken ? (opts.session !== undefined ? opts.session : currentAuth()) : null;
  if (needsToken) {
    // The raw ID token, no "Bearer " prefix (API Gateway's Cognito authorizer takes it as is).
    const token = await session?.idToken();
    if (!token) throw sessionEndedError();
    headers.authorization = token;
  }
  let body: BodyInit | undefined;
  if (opts.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    if (opts.contentType) headers['content-type'] = opts.contentType;
    body = opts.body;
  }
  // The caller may have given up while the token was fetched (a refresh).
  if (opts.signal?.aborted) throw new DOMException('The call was aborted', 'AbortError');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ctrl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctrl.abort();
  }, timeoutMs);
  const onAbort = () => ctrl.abort();
  opts.signal?.addEventListener('abort', onAbort);
  const doFetch = opts.fetchImpl ?? fetch;
  let res: Response;
  try {
    res = await doFetch(url, {
      method: opts.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      signal: ctrl.signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (timedOut) {
      throw new ApiError(
        0,
        'timeout',
        `The API did not answer within ${Math.round(timeoutMs / 1000)} seconds`,
        'try again; if it keeps happening, check that the stack is up',
      );
    }
    if (opts.signal?.aborted) throw e;
    throw new ApiError(
      0,
      'network',
      'Could not reach the API',
      'check your network connection and that the stack is up, then try again',
    );
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  let text: string;
  try {
    text = await res.text();
  } catch {
    throw new ApiError(
      res.status,
      'network',
      'The connection broke while the answer was read',
      'try again',
    );
  }
  if (res.status === 401 && needsToken) {
    // The API's `unauthorized` or API Gateway's own `{"message":"Unauthorized"}`: sign out.
    session?.sessionEnded();
    throw sessionEndedError();
  }
  if (!res.ok) throw errorFromResponse(res.status, text);
  if (text.trim() === '') return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(
      res.status,
      'bad_response',
      'The API answered something that is not JSON',
      'reload the page; if it keeps happening, the app and the API may be out of step',
    );
  }
}

export type Opts = Pick<RequestOptions, 'signal' | 'base' | 'fetchImpl' | 'session'>;

export const api = {
  health: (o?: Opts) => request<{ status: string }>('api/health', o),
  models: (o?: Opts) => request<ModelList>('api/models', o).then((r) => r.models),
  model: (id: string, o?: Opts) => request<Model>(`api/models/${seg(id)}`, o),
  accept: (id: string, d: DecisionRequest, o?: Opts) =>
    request<DeploymentStarted>(`api/models/${seg(id)}/accept`, { ...o, method: 'POST', json: d }),
  reject: (id: string, d: DecisionRequest, o?: Opts) =>
    request<Model>(`api/models/${seg(id)}/reject`, { ...o, method: 'POST', json: d }),
  rollback: (id: string, d: DecisionRequest, o?: Opts) =>
    request<DeploymentStarted>(`api/models/${seg(id)}/rollback`, { ...o, method: 'POST', json: d }),
  trainingRuns: (o?: Opts) => request<TrainingRunList>('api/training', o).then((r) => r.runs),
  trainingRun: (job: string, o?: Opts) => request<TrainingRun>(`api/training/${seg(job)}`, o),
  startTraining: (o?: Opts) => request<TrainingStarted>('api/training', { ...o, method: 'POST' }),
  deployments: (o?: Opts) =>
    request<DeploymentList>('api/deployments', o).then((r) => r.deployments),
  endpoint: (o?: Opts) => request<Endpoint>('api/endpoint', o),
  /** The image's raw bytes with its own content type (image/jpeg or image/png). */
  predict: (image: Blob, contentType: string, o?: Opts) =>
    request<Prediction>('api/predict', { ...o, method: 'POST', body: image, contentType }),
  subscribe: (email: string, o?: Opts) =>
    request<SubscriptionPending>('api/subscriptions', { ...o, method: 'POST', json: { email } }),
};
