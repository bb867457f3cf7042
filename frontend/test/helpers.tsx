import { render, type ComponentChild } from 'preact';
import { act } from 'preact/test-utils';
import { vi } from 'vitest';
import { Auth, installAuth, type AuthConfig } from '../src/auth';

export type Route = (init: RequestInit, url: URL) => Response | Promise<Response>;

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

export function apiError(status: number, code: string, message: string, fix: string): Response {
  return json(status, { error: { code, message, fix } });
}

/**
 * Replaces fetch with a table of `METHOD /api/path` → answer. Unknown routes fail the test
 * loudly. Returns the calls made.
 */
export function stubApi(routes: Record<string, Route>) {
  const calls: { method: string; path: string; init: RequestInit }[] = [];
  const f = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input));
    const method = init.method ?? 'GET';
    const path = url.pathname.replace(/^.*?\/api\//, '/api/');
    calls.push({ method, path, init });
    const route = routes[`${method} ${path}`];
    if (!route) throw new Error(`unexpected ${method} ${path}`);
    return route(init, url);
  });
  vi.stubGlobal('fetch', f);
  return calls;
}

export interface Mounted {
  root: HTMLElement;
  unmount: () => void;
}

export function mount(node: ComponentChild): Mounted {
  const root = document.createElement('div');
  document.body.appendChild(root);
  act(() => {
    render(node, root);
  });
  return {
    root,
    unmount: () => {
      act(() => render(null, root));
      root.remove();
    },
  };
}

/** Lets pending promises and effects run. */
export async function flush(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) {
    await act(async () => {
      await new Promise((r) => setTimeout(r, 0));
    });
  }
}

/** Waits until `fn` stops throwing (or fails with its last error). */
export async function waitFor<T>(fn: () => T, timeoutMs = 2000): Promise<T> {
  const start = Date.now();
  let last: unknown;
  while (Date.now() - start < timeoutMs) {
    try {
      return fn();
    } catch (e) {
      last = e;
    }
    await flush(1);
  }
  throw last;
}

export function byTestId<T extends HTMLElement = HTMLElement>(root: ParentNode, id: string): T {
  const el = root.querySelector<T>(`[data-testid="${id}"]`);
  if (!el) throw new Error(`no element with data-testid=${id}`);
  return el;
}

export async function type(el: HTMLInputElement | HTMLTextAreaElement, value: string): Promise<void> {
  await act(async () => {
    el.value = value;
    el.dispatchEvent(new Event('input', { bubbles: true }));
  });
}

export async function click(el: HTMLElement): Promise<void> {
  await act(async () => {
    el.click();
  });
}

// ------------------------------------------------------------------ sign-in

export const AUTH_CONFIG: AuthConfig = {
  region: 'us-east-1',
  user_pool_id: 'us-east-1_abc',
  client_id: 'client-xyz',
  endpoint: 'https://cognito-idp.us-east-1.amazonaws.com/',
};

function b64url(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** An unsigned JWT with these claims (the app decodes, never verifies). */
export function jwt(claims: Record<string, unknown>): string {
  return `${b64url(JSON.stringify({ alg: 'RS256', kid: 'test' }))}.${b64url(JSON.stringify(claims))}.c2ln`;
}

/** An ID token for `email` in `groups`, issued now (by Date.now()) and living `lifeS` seconds. */
export function idToken(email: string, groups: string[], lifeS = 3600, extra: Record<string, unknown> = {}): string {
  const iat = Math.floor(Date.now() / 1000);
  return jwt({
    sub: 'sub-1',
    email,
    'cognito:username': 'user-1',
    ...(groups.length ? { 'cognito:groups': groups } : {}),
    iat,
    exp: iat + lifeS,
    token_use: 'id',
    ...extra,
  });
}

export interface CognitoCall {
  op: string;
  body: Record<string, unknown>;
  headers: Record<string, string>;
  url: string;
}

export type CognitoHandler = (body: Record<string, unknown>) => Response | Promise<Response>;

/** Cognito's 400 error answer. */
export function cognitoError(type: string, message: string): Response {
  return new Response(JSON.stringify({ __type: type, message }), {
    status: 400,
    headers: { 'content-type': 'application/x-amz-json-1.1' },
  });
}

export function cognitoOk(body: unknown): Response {
  return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/x-amz-json-1.1' } });
}

/** A fetch standing in for Cognito: `op` (the X-Amz-Target's operation) → answer. Records the calls. */
export function fakeCognito(handlers: Record<string, CognitoHandler>) {
  const calls: CognitoCall[] = [];
  const fetchImpl = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const headers = init.headers as Record<string, string>;
    const op = (headers['X-Amz-Target'] ?? '').replace('AWSCognitoIdentityProviderService.', '');
    const body = JSON.parse(String(init.body)) as Record<string, unknown>;
    calls.push({ op, body, headers, url: String(input) });
    const h = handlers[op];
    if (!h) throw new Error(`unexpected Cognito call ${op}`);
    return h(body);
  }) as unknown as typeof fetch;
  return { fetchImpl, calls };
}

/** Cognito's answer to a successful sign-in or refresh. */
export function tokens(email: string, groups: string[], lifeS = 3600, refresh: string | null = 'refresh-1') {
  return cognitoOk({
    AuthenticationResult: {
      IdToken: idToken(email, groups, lifeS),
      AccessToken: `access-${email}`,
      ...(refresh ? { RefreshToken: refresh } : {}),
      ExpiresIn: lifeS,
      TokenType: 'Bearer',
    },
    ChallengeParameters: {},
  });
}

/**
 * Signs `email` in (through a fake Cognito) in `groups` and installs the sign-in for the API
 * client and the pages. Call `auth.dispose()` and `installAuth(null)` afterwards (`forgetAuth`).
 */
export async function signedIn(groups: string[], email = 'ana@example.com') {
  const cognito = fakeCognito({
    InitiateAuth: () => tokens(email, groups),
    GlobalSignOut: () => cognitoOk({}),
  });
  const auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
  await auth.signIn(email, 'pw');
  installAuth(auth);
  return { auth, cognito };
}

export function forgetAuth(auth: Auth | undefined): void {
  auth?.dispose();
  installAuth(null);
}
