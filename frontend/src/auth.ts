// Sign-in (issue 8). This module owns everything about who the user is: the deployment's auth
// settings (`config.json`), the calls to the Cognito user pool (InitiateAuth with a password or
// the refresh token, RespondToAuthChallenge for NEW_PASSWORD_REQUIRED, GlobalSignOut), the
// tokens, the refresh timer, reading the ID token's claims, and Cognito's errors in words.
//
// Tokens live in this object's memory only: never in localStorage, sessionStorage or cookies, so
// a reload signs the user out. The ID token is decoded, not verified: the API verifies it; the app
// reads it only to show who is signed in and which actions to offer.
//
// Framework-free: the UI subscribes to state changes (`subscribe`), and the API client asks for
// the ID token (`idToken`) and reports a 401 (`sessionEnded`) through `currentAuth()`.

/** The deployment's user pool, from `config.json`'s `auth`. */
export interface AuthConfig {
  region: string;
  user_pool_id: string;
  client_id: string;
  /** Cognito's API, e.g. `https://cognito-idp.us-east-1.amazonaws.com/` (locally the local cloud's URL). */
  endpoint: string;
}

/** What `config.json` says: a user pool, or none (`auth` null or missing). */
export type LoadedConfig = { auth: AuthConfig } | { auth: null };

/** The signed-in user, from the ID token's claims. */
export interface User {
  email: string;
  username: string;
  groups: string[];
  /** In the `approvers` group: may start training, accept, reject, roll back and subscribe. */
  approver: boolean;
}

export type AuthState =
  | { status: 'signed_out'; notice?: string }
  | { status: 'new_password'; email: string }
  | { status: 'signed_in'; user: User };

/** The Cognito group whose members may change things. */
export const APPROVERS_GROUP = 'approvers';

export const SESSION_ENDED = 'Your session ended; sign in again.';
export const SESSION_NOT_RENEWED = 'Your session could not be renewed; sign in again.';

/** How long before the ID token expires it is refreshed (at most; see `refreshDelayMs`). */
export const REFRESH_LEAD_MS = 5 * 60_000;
/** A call to Cognito is given up after this long. */
export const COGNITO_TIMEOUT_MS = 20_000;
/** GlobalSignOut is best effort: the sign-out does not wait longer than this for it. */
export const SIGN_OUT_WAIT_MS = 5_000;

// ------------------------------------------------------------------ config.json

/** Why the app cannot start: config.json failed to load or is malformed. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function nonEmpty(v: unknown): v is string {
  return typeof v === 'string' && v.trim() !== '';
}

/** Checks `config.json`'s `auth`; null when the deployment has no user pool. */
export function parseConfig(raw: unknown): LoadedConfig {
  if (!raw || typeof raw !== 'object') throw new ConfigError('config.json is not a JSON object');
  const a = (raw as { auth?: unknown }).auth;
  if (a === null || a === undefined) return { auth: null };
  if (typeof a !== 'object') throw new ConfigError('config.json: "auth" is not an object');
  const { region, user_pool_id, client_id, endpoint } = a as Record<string, unknown>;
  if (!nonEmpty(client_id)) throw new ConfigError('config.json: "auth.client_id" is missing');
  if (!nonEmpty(endpoint) || !/^https?:\/\/[^/]/.test(endpoint)) {
    throw new ConfigError('config.json: "auth.endpoint" is not an http(s) URL');
  }
  return {
    auth: {
      region: nonEmpty(region) ? region : '',
      user_pool_id: nonEmpty(user_pool_id) ? user_pool_id : '',
      client_id,
      endpoint,
    },
  };
}

/**
 * Fetches `config.json` next to the app (relative to the document, like the API: the app is
 * served under `/<stage>/`).
 */
export async function loadConfig(
  base: string = document.baseURI,
  fetchImpl: typeof fetch = (...a) => fetch(...a),
): Promise<LoadedConfig> {
  const url = new URL('config.json', base).toString();
  let res: Response;
  try {
    res = await fetchImpl(url, { headers: { accept: 'application/json' }, cache: 'no-store' });
  } catch {
    throw new ConfigError('config.json could not be fetched (network failure)');
  }
  if (!res.ok) throw new ConfigError(`config.json answered HTTP ${res.status}`);
  let raw: unknown;
  try {
    raw = JSON.parse(await res.text());
  } catch {
    throw new ConfigError('config.json is not JSON');
  }
  return parseConfig(raw);
}

// ------------------------------------------------------------------ tokens

/** The payload of a JWT, decoded (not verified). Throws on a malformed token. */
export function decodeJwt(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  if (!part) throw new Error('not a JWT');
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  const payload: unknown = JSON.parse(new TextDecoder().decode(bytes));
  if (!payload || typeof payload !== 'object') throw new Error('JWT payload is not an object');
  return payload as Record<string, unknown>;
}

/** Who the ID token names: email, username and groups. */
export function userFromIdToken(idToken: string): User {
  const c = decodeJwt(idToken);
  const username = typeof c['cognito:username'] === 'string' ? c['cognito:username'] : '';
  const email = typeof c.email === 'string' ? c.email : username;
  const raw = c['cognito:groups'];
  const groups = Array.isArray(raw) ? raw.filter((g): g is string => typeof g === 'string') : [];
  return { email, username, groups, approver: groups.includes(APPROVERS_GROUP) };
}

/** The ID token's life in ms: `exp - iat` from its claims, else Cognito's `ExpiresIn`. */
export function tokenLifeMs(idToken: string, expiresInS: number | undefined): number {
  try {
    const c = decodeJwt(idToken);
    if (typeof c.exp === 'number' && typeof c.iat === 'number' && c.exp > c.iat) return (c.exp - c.iat) * 1000;
  } catch {
    // fall through
  }
  return typeof expiresInS === 'number' && expiresInS > 0 ? expiresInS * 1000 : 3600_000;
}

/**
 * When to refresh, after the token was received: 5 minutes before it expires, or at 80 % of
 * its life when that is earlier than 5 minutes before the end would be for a short-lived token
 * (a life under 25 minutes), so a short token is not refreshed almost at once.
 */
export function refreshDelayMs(lifeMs: number): number {
  return lifeMs - Math.min(REFRESH_LEAD_MS, lifeMs * 0.2);
}

// ------------------------------------------------------------------ Cognito

/** A failed sign-in step: Cognito's error type and the words to show. */
export class AuthError extends Error {
  /** Cognito's `__type` (`NotAuthorizedException`, ...), or `network`, `timeout`, `bad_response`, `challenge`. */
  readonly type: string;
  /** Cognito's own message, for the log and for tests; never shown raw except password rules. */
  readonly detail: string;
  constructor(type: string, text: string, detail = '') {
    super(text);
    this.name = 'AuthError';
    this.type = type;
    this.detail = detail;
  }
}

/** Cognito's error type, without a namespace (`...#NotAuthorizedException`) or a URL suffix. */
function errorType(body: Record<string, unknown>, res: Response): string {
  const t = typeof body.__type === 'string' ? body.__type : (res.headers.get('x-amzn-errortype') ?? '');
  return t.split('#').pop()!.split(':')[0].trim();
}

/** Words for Cognito's errors, for the step that failed. */
export function cognitoErrorText(type: string, message: string, during: 'sign-in' | 'new-password' | 'refresh'): string {
  const m = message.toLowerCase();
  switch (type) {
    case 'NotAuthorizedException':
      if (m.includes('attempts exceeded')) return 'Too many failed sign-ins. Wait a few minutes, then try again.';
      if (m.includes('disabled')) return 'This account is disabled. Ask an administrator to enable it.';
      if (during === 'new-password') return 'The sign-in took too long. Sign in again with your temporary password.';
      if (during === 'refresh') return SESSION_NOT_RENEWED;
      return 'Wrong email or password.';
    case 'UserNotFoundException':
      return 'Wrong email or password.';
    case 'PasswordResetRequiredException':
      return 'Your password has to be reset. Ask an administrator for a new temporary password.';
    case 'UserNotConfirmedException':
      return 'This account is not confirmed yet. Ask an administrator to confirm it.';
    case 'InvalidPasswordException': {
      const rule = message.replace(/^password does not conform to policy:\s*/i, '').trim();
      return `That password is not allowed${rule ? `: ${rule.replace(/[.]+$/, '')}` : ''}. Choose another one.`;
    }
    case 'TooManyRequestsException':
    case 'LimitExceededException':
      return 'Too many attempts. Wait a minute, then try again.';
    case 'CodeMismatchException':
    case 'ExpiredCodeException':
      return 'The sign-in took too long. Sign in again.';
    case 'InvalidParameterException':
      return during === 'new-password' ? 'Enter a new password.' : 'Enter your email and password.';
    case 'ResourceNotFoundException':
      return "The sign-in service does not know this app (its user pool client is missing). Run `deployer up` again.";
    case 'network':
      return 'Could not reach the sign-in service. Check your network connection, then try again.';
    case 'timeout':
      return 'The sign-in service did not answer. Try again in a moment.';
    default:
      return `Signing in failed (${type || 'unknown error'}). Try again; if it keeps failing, ask an administrator.`;
  }
}

interface AuthenticationResult {
  IdToken?: string;
  AccessToken?: string;
  RefreshToken?: string;
  ExpiresIn?: number;
}

interface InitiateAuthResponse {
  AuthenticationResult?: AuthenticationResult;
  ChallengeName?: string;
  Session?: string;
  ChallengeParameters?: Record<string, string>;
}

interface Tokens {
  id: string;
  access: string;
  refresh: string;
  /** When the ID token expires, by this browser's clock. */
  expiresAt: number;
}

export interface AuthOptions {
  /** For tests: the fetch to use (default: the global one, looked up at each call). */
  fetchImpl?: typeof fetch;
  /** For tests: the clock. */
  now?: () => number;
}

type Listener = (state: AuthState) => void;

/** One browser tab's sign-in: state, tokens and the refresh timer. */
export class Auth {
  readonly config: AuthConfig;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  private current: AuthState = { status: 'signed_out' };
  private tokens: Tokens | null = null;
  private challenge: { session: string; username: string; email: string } | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private refreshing: Promise<boolean> | null = null;
  /** Bumped on every sign-in and sign-out, so a late answer cannot bring old tokens back. */
  private generation = 0;
  private readonly listeners = new Set<Listener>();

  constructor(config: AuthConfig, opts: AuthOptions = {}) {
    this.config = config;
    this.fetchImpl = opts.fetchImpl ?? ((...a) => fetch(...a));
    this.now = opts.now ?? (() => Date.now());
  }

  get state(): AuthState {
    return this.current;
  }

  /** The signed-in user, or null. */
  get user(): User | null {
    return this.current.status === 'signed_in' ? this.current.user : null;
  }

  /** Calls `fn` on every state change; returns the unsubscribe. */
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private set(state: AuthState): void {
    this.current = state;
    for (const fn of [...this.listeners]) fn(state);
  }

  /** One Cognito call: POST {endpoint} with X-Amz-Target; the JSON answer, or an AuthError. */
  private async call<T>(op: string, body: unknown, during: 'sign-in' | 'new-password' | 'refresh' | 'sign-out'): Promise<T> {
    const ctrl = new AbortController();
    const limit = during === 'sign-out' ? SIGN_OUT_WAIT_MS : COGNITO_TIMEOUT_MS;
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      ctrl.abort();
    }, limit);
    const words = (type: string, message = '') =>
      cognitoErrorText(type, message, during === 'sign-out' ? 'sign-in' : during);
    let res: Response;
    let text: string;
    try {
      res = await this.fetchImpl(this.config.endpoint, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/x-amz-json-1.1',
          'X-Amz-Target': `AWSCognitoIdentityProviderService.${op}`,
        },
        body: JSON.stringify(body),
        signal: ctrl.signal,
        cache: 'no-store',
        credentials: 'omit',
      });
      text = await res.text();
    } catch {
      const type = timedOut ? 'timeout' : 'network';
      throw new AuthError(type, words(type));
    } finally {
      clearTimeout(t);
    }
    let parsed: Record<string, unknown> = {};
    try {
      const p: unknown = text.trim() ? JSON.parse(text) : {};
      if (p && typeof p === 'object') parsed = p as Record<string, unknown>;
    } catch {
      if (res.ok) throw new AuthError('bad_response', 'The sign-in service answered something unexpected. Try again.');
    }
    if (!res.ok) {
      const type = errorType(parsed, res) || `http_${res.status}`;
      const message = String(parsed.message ?? parsed.Message ?? '');
      throw new AuthError(type, words(type, message), message);
    }
    return parsed as T;
  }

  /** Signs in with email and password: signed in, or asked for a new password. Throws an AuthError in words. */
  async signIn(email: string, password: string): Promise<void> {
    const username = email.trim();
    const gen = ++this.generation;
    const r = await this.call<InitiateAuthResponse>(
      'InitiateAuth',
      {
        AuthFlow: 'USER_PASSWORD_AUTH',
        ClientId: this.config.client_id,
        AuthParameters: { USERNAME: username, PASSWORD: password },
      },
      'sign-in',
    );
    if (gen !== this.generation) return;
    if (r.ChallengeName === 'NEW_PASSWORD_REQUIRED' && r.Session) {
      this.challenge = {
        session: r.Session,
        // With email as an alias the challenge must name the real user name.
        username: r.ChallengeParameters?.USER_ID_FOR_SRP || username,
        email: username,
      };
      this.set({ status: 'new_password', email: username });
      return;
    }
    if (r.ChallengeName) {
      throw new AuthError(
        'challenge',
        `This account needs a sign-in step the app does not support (${r.ChallengeName}). Ask an administrator.`,
      );
    }
    this.accept(r.AuthenticationResult, null, gen);
  }

  /** Answers NEW_PASSWORD_REQUIRED with the chosen password; signs in. Throws an AuthError in words. */
  async completeNewPassword(newPassword: string): Promise<void> {
    const ch = this.challenge;
    if (!ch) throw new AuthError('challenge', 'The sign-in took too long. Sign in again with your temporary password.');
    const gen = this.generation;
    let r: InitiateAuthResponse;
    try {
      r = await this.call<InitiateAuthResponse>(
        'RespondToAuthChallenge',
        {
          ChallengeName: 'NEW_PASSWORD_REQUIRED',
          ClientId: this.config.client_id,
          Session: ch.session,
          ChallengeResponses: { USERNAME: ch.username, NEW_PASSWORD: newPassword },
        },
        'new-password',
      );
    } catch (e) {
      // An expired session cannot be answered again: back to the sign-in form, saying why.
      if (e instanceof AuthError && (e.type === 'NotAuthorizedException' || e.type === 'CodeMismatchException' || e.type === 'ExpiredCodeException')) {
        this.challenge = null;
        this.set({ status: 'signed_out', notice: e.message });
      }
      throw e;
    }
    if (gen !== this.generation) return;
    if (r.ChallengeName) {
      throw new AuthError(
        'challenge',
        `This account needs a sign-in step the app does not support (${r.ChallengeName}). Ask an administrator.`,
      );
    }
    this.accept(r.AuthenticationResult, null, gen);
  }

  /** Leaves the new-password form for the sign-in form. */
  cancelNewPassword(): void {
    this.generation++;
    this.challenge = null;
    this.set({ status: 'signed_out' });
  }

  /** Takes Cognito's tokens (keeping the refresh token on a refresh) and schedules the next refresh. */
  private accept(result: AuthenticationResult | undefined, keepRefresh: string | null, gen: number): void {
    const id = result?.IdToken;
    const access = result?.AccessToken;
    const refresh = result?.RefreshToken ?? keepRefresh;
    let user: User;
    try {
      if (!id || !access || !refresh) throw new Error('tokens missing');
      user = userFromIdToken(id);
    } catch {
      throw new AuthError('bad_response', 'The sign-in service answered without usable tokens. Try again.');
    }
    if (gen !== this.generation) return;
    const life = tokenLifeMs(id, result?.ExpiresIn);
    const received = this.now();
    this.tokens = { id, access, refresh, expiresAt: received + life };
    this.challenge = null;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), refreshDelayMs(life));
    this.set({ status: 'signed_in', user });
  }

  /**
   * Refreshes the tokens with the refresh token (InitiateAuth REFRESH_TOKEN_AUTH). A failure
   * signs out with a notice. Resolves true when signed in with fresh tokens.
   */
  refresh(): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    const tokens = this.tokens;
    if (!tokens) return Promise.resolve(false);
    const gen = this.generation;
    const p = (async () => {
      try {
        const r = await this.call<InitiateAuthResponse>(
          'InitiateAuth',
          {
            AuthFlow: 'REFRESH_TOKEN_AUTH',
            ClientId: this.config.client_id,
            AuthParameters: { REFRESH_TOKEN: tokens.refresh },
          },
          'refresh',
        );
        if (gen !== this.generation) return false;
        this.accept(r.AuthenticationResult, tokens.refresh, gen);
        return true;
      } catch (e) {
        if (gen !== this.generation) return false;
        const why = e instanceof AuthError && (e.type === 'network' || e.type === 'timeout') ? ' (the sign-in service could not be reached)' : '';
        this.clear(why ? SESSION_NOT_RENEWED.replace(';', `${why};`) : SESSION_NOT_RENEWED);
        return false;
      } finally {
        this.refreshing = null;
      }
    })();
    this.refreshing = p;
    return p;
  }

  /**
   * The ID token for an API call (raw, for the Authorization header), or undefined when signed
   * out. A token within a minute of its end (a timer a sleeping laptop delayed) is refreshed first.
   */
  async idToken(): Promise<string | undefined> {
    const t = this.tokens;
    if (!t) return undefined;
    if (this.now() >= t.expiresAt - 60_000) {
      const ok = await this.refresh();
      return ok ? this.tokens?.id : undefined;
    }
    return t.id;
  }

  /** The API answered 401: the tokens are no good any more. Signs out with a notice. */
  sessionEnded(): void {
    if (this.current.status === 'signed_out' && !this.tokens) return;
    this.clear(SESSION_ENDED);
  }

  /** Signs out: GlobalSignOut (best effort, briefly waited for), then the tokens are forgotten. */
  async signOut(notice?: string): Promise<void> {
    const access = this.tokens?.access;
    const gen = ++this.generation;
    clearTimeout(this.timer);
    if (access) {
      try {
        await this.call('GlobalSignOut', { AccessToken: access }, 'sign-out');
      } catch {
        // Best effort: the tokens are dropped here anyway, and expire on their own.
      }
    }
    if (gen === this.generation) this.clear(notice);
  }

  /** Forgets the tokens and the timer: signed out. */
  private clear(notice?: string): void {
    this.generation++;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.tokens = null;
    this.challenge = null;
    this.refreshing = null;
    this.set(notice ? { status: 'signed_out', notice } : { status: 'signed_out' });
  }

  /** Stops the timer and listeners (tests, or a page being torn down). */
  dispose(): void {
    this.generation++;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.tokens = null;
    this.listeners.clear();
  }
}

// ------------------------------------------------------------------ the tab's one sign-in

let installed: Auth | null = null;

/** Makes `auth` the one the API client uses (null: none). */
export function installAuth(auth: Auth | null): void {
  installed = auth;
}

/** The installed sign-in, if any. */
export function currentAuth(): Auth | null {
  return installed;
}
