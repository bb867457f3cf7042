import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  Auth,
  AuthError,
  cognitoErrorText,
  ConfigError,
  decodeJwt,
  loadConfig,
  parseConfig,
  refreshDelayMs,
  SESSION_NOT_RENEWED,
  tokenLifeMs,
  userFromIdToken,
  type AuthState,
} from '../src/auth';
import { AUTH_CONFIG, cognitoError, cognitoOk, fakeCognito, jwt, tokens } from './helpers';

let auth: Auth | undefined;
afterEach(() => {
  auth?.dispose();
  auth = undefined;
  vi.useRealTimers();
});

function make(handlers: Parameters<typeof fakeCognito>[0]) {
  const cognito = fakeCognito(handlers);
  auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
  const seen: AuthState[] = [];
  auth.subscribe((s) => seen.push(s));
  return { auth, calls: cognito.calls, seen };
}

/** Lets the promise chains of a timer's callback (the refresh's fetch) settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe('config.json', () => {
  it('reads the user pool, fetched next to the app', async () => {
    const body = {
      auth: { region: 'us-east-1', user_pool_id: 'us-east-1_abc', client_id: 'xyz', endpoint: 'https://cognito-idp.us-east-1.amazonaws.com/' },
    };
    const fetchImpl = vi.fn(async () => new Response(JSON.stringify(body), { status: 200 })) as unknown as typeof fetch;
    const cfg = await loadConfig('http://127.0.0.1:4566/v1/#/review', fetchImpl);
    expect(cfg).toEqual(body);
    expect(vi.mocked(fetchImpl).mock.calls[0][0]).toBe('http://127.0.0.1:4566/v1/config.json');
  });

  it('says when the deployment has no user pool', () => {
    expect(parseConfig({ auth: null })).toEqual({ auth: null });
    expect(parseConfig({})).toEqual({ auth: null });
  });

  it('refuses a broken config in words', async () => {
    expect(() => parseConfig({ auth: { client_id: 'x', endpoint: 'ftp://nope' } })).toThrow(/endpoint/);
    expect(() => parseConfig({ auth: { endpoint: 'https://x/' } })).toThrow(/client_id/);
    const e = await loadConfig('http://h/v1/', (async () => new Response('nope', { status: 404 })) as typeof fetch).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toBe('config.json answered HTTP 404');
  });
});

describe('the ID token', () => {
  it('is decoded (base64url, UTF-8) for email, user name and groups', () => {
    const t = jwt({ email: 'zoë@example.com', 'cognito:username': 'u-1', 'cognito:groups': ['approvers', 'x'] });
    expect(decodeJwt(t).email).toBe('zoë@example.com');
    expect(userFromIdToken(t)).toEqual({ email: 'zoë@example.com', username: 'u-1', groups: ['approvers', 'x'], approver: true });
    expect(userFromIdToken(jwt({ 'cognito:username': 'bo' }))).toEqual({ email: 'bo', username: 'bo', groups: [], approver: false });
    expect(() => decodeJwt('garbage')).toThrow();
  });

  it('is refreshed 5 minutes before it expires, or at 80 % of a short life', () => {
    expect(refreshDelayMs(3600_000)).toBe(55 * 60_000);
    expect(refreshDelayMs(600_000)).toBe(480_000);
    expect(refreshDelayMs(300_000)).toBe(240_000);
    expect(tokenLifeMs(jwt({ iat: 100, exp: 1900 }), 3600)).toBe(1800_000);
    expect(tokenLifeMs('not.a-token', 900)).toBe(900_000);
  });
});

describe('sign-in', () => {
  it('signs in with USER_PASSWORD_AUTH and keeps the tokens in memory only', async () => {
    const { auth, calls, seen } = make({ InitiateAuth: () => tokens('ana@example.com', ['approvers']) });
    await auth.signIn('  ana@example.com ', 'secret pw');
    expect(calls).toHaveLength(1);
    expect(calls[0].url).toBe(AUTH_CONFIG.endpoint);
    expect(calls[0].headers).toEqual({
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': 'AWSCognitoIdentityProviderService.InitiateAuth',
    });
    expect(calls[0].body).toEqual({
      AuthFlow: 'USER_PASSWORD_AUTH',
      ClientId: 'client-xyz',
      AuthParameters: { USERNAME: 'ana@example.com', PASSWORD: 'secret pw' },
    });
    expect(auth.state).toEqual({
      status: 'signed_in',
      user: { email: 'ana@example.com', username: 'user-1', groups: ['approvers'], approver: true },
    });
    expect(seen.map((s) => s.status)).toEqual(['signed_in']);
    expect(await auth.idToken()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // Nothing is stored in the browser.
    expect(localStorage.length).toBe(0);
    expect(sessionStorage.length).toBe(0);
    expect(document.cookie).toBe('');
  });

  it('says "Wrong email or password." for a wrong password or an unknown user', async () => {
    for (const [type, message] of [
      ['NotAuthorizedException', 'Incorrect username or password.'],
      ['UserNotFoundException', 'User does not exist.'],
    ]) {
      const { auth } = make({ InitiateAuth: () => cognitoError(type, message) });
      const e = await auth.signIn('ana@example.com', 'wrong').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(AuthError);
      expect((e as AuthError).message).toBe('Wrong email or password.');
      expect((e as AuthError).type).toBe(type);
      expect(auth.state.status).toBe('signed_out');
      expect(await auth.idToken()).toBeUndefined();
    }
  });

  it('words the other refusals for people', async () => {
    expect(cognitoErrorText('PasswordResetRequiredException', 'Password reset required for the user', 'sign-in')).toMatch(/reset/);
    expect(cognitoErrorText('UserNotConfirmedException', 'User is not confirmed.', 'sign-in')).toMatch(/not confirmed/);
    expect(cognitoErrorText('TooManyRequestsException', 'Too many requests', 'sign-in')).toMatch(/Wait a minute/);
    expect(cognitoErrorText('NotAuthorizedException', 'Password attempts exceeded', 'sign-in')).toMatch(/Too many failed sign-ins/);
    expect(cognitoErrorText('NotAuthorizedException', 'User is disabled.', 'sign-in')).toMatch(/disabled/);
    // A namespaced __type is understood too.
    const { auth } = make({
      InitiateAuth: () =>
        new Response(JSON.stringify({ __type: 'com.amazonaws.cognito#UserNotConfirmedException', message: 'x' }), { status: 400 }),
    });
    const e = (await auth.signIn('a@b.co', 'pw').catch((x: unknown) => x)) as AuthError;
    expect(e.type).toBe('UserNotConfirmedException');
  });

  it('says when the sign-in service cannot be reached', async () => {
    const fetchImpl = vi.fn(async () => {
      throw new TypeError('Failed to fetch');
    }) as unknown as typeof fetch;
    auth = new Auth(AUTH_CONFIG, { fetchImpl });
    const e = (await auth.signIn('a@b.co', 'pw').catch((x: unknown) => x)) as AuthError;
    expect(e.type).toBe('network');
    expect(e.message).toBe('Could not reach the sign-in service. Check your network connection, then try again.');
  });
});

describe('NEW_PASSWORD_REQUIRED', () => {
  const challenge = () =>
    cognitoOk({
      ChallengeName: 'NEW_PASSWORD_REQUIRED',
      Session: 'session-1',
      ChallengeParameters: { USER_ID_FOR_SRP: 'user-1', requiredAttributes: '[]', userAttributes: '{"email":"cy@example.com"}' },
    });

  it('asks for a new password, then answers the challenge and signs in', async () => {
    const { auth, calls, seen } = make({
      InitiateAuth: challenge,
      RespondToAuthChallenge: () => tokens('cy@example.com', []),
    });
    await auth.signIn('cy@example.com', 'Temp-123!');
    expect(auth.state).toEqual({ status: 'new_password', email: 'cy@example.com' });
    expect(await auth.idToken()).toBeUndefined();
    await auth.completeNewPassword('My-own-pass-1');
    expect(calls[1].headers['X-Amz-Target']).toBe('AWSCognitoIdentityProviderService.RespondToAuthChallenge');
    expect(calls[1].body).toEqual({
      ChallengeName: 'NEW_PASSWORD_REQUIRED',
      ClientId: 'client-xyz',
      Session: 'session-1',
      ChallengeResponses: { USERNAME: 'user-1', NEW_PASSWORD: 'My-own-pass-1' },
    });
    expect(auth.user).toMatchObject({ email: 'cy@example.com', approver: false });
    expect(seen.map((s) => s.status)).toEqual(['new_password', 'signed_in']);
  });

  it('shows the password rules on a refused password and stays on the form', async () => {
    const { auth } = make({
      InitiateAuth: challenge,
      RespondToAuthChallenge: () => cognitoError('InvalidPasswordException', 'Password does not conform to policy: Password not long enough'),
    });
    await auth.signIn('cy@example.com', 'Temp-123!');
    const e = (await auth.completeNewPassword('short').catch((x: unknown) => x)) as AuthError;
    expect(e.message).toBe('That password is not allowed: Password not long enough. Choose another one.');
    expect(auth.state.status).toBe('new_password');
  });

  it('goes back to the sign-in form when the challenge has expired', async () => {
    const { auth } = make({
      InitiateAuth: challenge,
      RespondToAuthChallenge: () => cognitoError('NotAuthorizedException', 'Invalid session for the user, session is expired.'),
    });
    await auth.signIn('cy@example.com', 'Temp-123!');
    await auth.completeNewPassword('Long-enough-1').catch(() => undefined);
    expect(auth.state).toEqual({
      status: 'signed_out',
      notice: 'The sign-in took too long. Sign in again with your temporary password.',
    });
  });
});

describe('refresh', () => {
  it('refreshes 5 minutes before the ID token expires, keeping the refresh token', async () => {
    vi.useFakeTimers();
    let issued = 0;
    const { auth, calls } = make({
      InitiateAuth: (b) => {
        issued += 1;
        // Cognito's refresh answer has no new refresh token.
        return b.AuthFlow === 'REFRESH_TOKEN_AUTH' ? tokens('ana@example.com', ['approvers'], 3600, null) : tokens('ana@example.com', ['approvers']);
      },
    });
    await auth.signIn('ana@example.com', 'pw');
    const first = await auth.idToken();
    await vi.advanceTimersByTimeAsync(55 * 60_000 - 1_000);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    await settle();
    expect(calls).toHaveLength(2);
    expect(calls[1].body).toEqual({
      AuthFlow: 'REFRESH_TOKEN_AUTH',
      ClientId: 'client-xyz',
      AuthParameters: { REFRESH_TOKEN: 'refresh-1' },
    });
    const second = await auth.idToken();
    expect(second).not.toBe(first);
    expect(auth.state.status).toBe('signed_in');
    // The next refresh, 55 minutes later, still uses the first refresh token.
    await vi.advanceTimersByTimeAsync(55 * 60_000);
    await settle();
    expect(calls).toHaveLength(3);
    expect(calls[2].body).toMatchObject({ AuthParameters: { REFRESH_TOKEN: 'refresh-1' } });
    expect(issued).toBe(3);
  });

  it('refreshes a short-lived token at 80 % of its life', async () => {
    vi.useFakeTimers();
    const { auth, calls } = make({ InitiateAuth: () => tokens('ana@example.com', [], 600) });
    await auth.signIn('ana@example.com', 'pw');
    await vi.advanceTimersByTimeAsync(479_000);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    await settle();
    expect(calls).toHaveLength(2);
    expect(calls[1].body.AuthFlow).toBe('REFRESH_TOKEN_AUTH');
  });

  it('signs out with a message when the refresh fails', async () => {
    vi.useFakeTimers();
    const { auth, calls, seen } = make({
      InitiateAuth: (b) =>
        b.AuthFlow === 'REFRESH_TOKEN_AUTH'
          ? cognitoError('NotAuthorizedException', 'Refresh Token has been revoked')
          : tokens('ana@example.com', ['approvers']),
    });
    await auth.signIn('ana@example.com', 'pw');
    await vi.advanceTimersByTimeAsync(55 * 60_000);
    await settle();
    expect(calls.map((c) => c.body.AuthFlow)).toEqual(['USER_PASSWORD_AUTH', 'REFRESH_TOKEN_AUTH']);
    expect(auth.state).toEqual({ status: 'signed_out', notice: SESSION_NOT_RENEWED });
    expect(seen.at(-1)).toEqual({ status: 'signed_out', notice: 'Your session could not be renewed; sign in again.' });
    expect(await auth.idToken()).toBeUndefined();
    // No timer is left to refresh again.
    expect(vi.getTimerCount()).toBe(0);
  });

  it('says so when the refresh could not reach Cognito', async () => {
    vi.useFakeTimers();
    let n = 0;
    const fetchImpl = vi.fn(async () => {
      n += 1;
      if (n === 1) return tokens('ana@example.com', []);
      throw new TypeError('Failed to fetch');
    }) as unknown as typeof fetch;
    auth = new Auth(AUTH_CONFIG, { fetchImpl });
    await auth.signIn('ana@example.com', 'pw');
    await vi.advanceTimersByTimeAsync(55 * 60_000);
    await settle();
    expect(auth.state).toEqual({
      status: 'signed_out',
      notice: 'Your session could not be renewed (the sign-in service could not be reached); sign in again.',
    });
  });
});

describe('sign-out', () => {
  it('calls GlobalSignOut with the access token, then forgets the tokens', async () => {
    vi.useFakeTimers();
    const { auth, calls, seen } = make({
      InitiateAuth: () => tokens('ana@example.com', ['approvers']),
      GlobalSignOut: () => cognitoOk({}),
    });
    await auth.signIn('ana@example.com', 'pw');
    expect(vi.getTimerCount()).toBe(1);
    await auth.signOut();
    expect(calls[1].headers['X-Amz-Target']).toBe('AWSCognitoIdentityProviderService.GlobalSignOut');
    expect(calls[1].body).toEqual({ AccessToken: 'access-ana@example.com' });
    expect(auth.state).toEqual({ status: 'signed_out' });
    expect(seen.map((s) => s.status)).toEqual(['signed_in', 'signed_out']);
    expect(await auth.idToken()).toBeUndefined();
    // No refresh is left scheduled.
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(2 * 3600_000);
    expect(calls).toHaveLength(2);
  });

  it('signs out even when GlobalSignOut fails', async () => {
    const { auth } = make({
      InitiateAuth: () => tokens('ana@example.com', []),
      GlobalSignOut: () => cognitoError('NotAuthorizedException', 'Access Token has been revoked'),
    });
    await auth.signIn('ana@example.com', 'pw');
    await auth.signOut();
    expect(auth.state.status).toBe('signed_out');
    expect(await auth.idToken()).toBeUndefined();
  });

  it('ends the session with a notice when the API refuses the token', async () => {
    const { auth, calls } = make({ InitiateAuth: () => tokens('ana@example.com', []) });
    await auth.signIn('ana@example.com', 'pw');
    auth.sessionEnded();
    expect(auth.state).toEqual({ status: 'signed_out', notice: 'Your session ended; sign in again.' });
    expect(await auth.idToken()).toBeUndefined();
    expect(calls).toHaveLength(1);
  });
});
