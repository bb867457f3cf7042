// The app with sign-in: the sign-in form while signed out (whatever the page), the header's user,
// sign-out, a 401 ending the session, and approver versus read-only pages.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { App, Root } from '../src/App';
import { Auth, installAuth } from '../src/auth';
import {
  AUTH_CONFIG,
  byTestId,
  click,
  cognitoError,
  cognitoOk,
  fakeCognito,
  flush,
  forgetAuth,
  json,
  mount,
  signedIn,
  stubApi,
  tokens,
  type,
  waitFor,
  type Mounted,
} from './helpers';
import { model } from './fixtures';

let mounted: Mounted | undefined;
let auth: Auth | undefined;

beforeEach(() => {
  vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockReturnValue(null);
  URL.createObjectURL = vi.fn(() => 'blob:preview');
  URL.revokeObjectURL = vi.fn();
});
afterEach(() => {
  mounted?.unmount();
  mounted = undefined;
  forgetAuth(auth);
  auth = undefined;
  vi.unstubAllGlobals();
  history.replaceState(null, '', '#/dashboard');
});

const inService = { name: 'ep', status: 'InService', serving_model_id: 'm1' };
const staged = () => model('m2', 'staged', '2024-05-02T00:00:00Z');
const deployed = () => model('m1', 'deployed', '2024-05-01T00:00:00Z');
const superseded = () => model('m0', 'superseded', '2024-04-30T00:00:00Z');
const events = [
  { at: '2024-05-01T00:00:00Z', action: 'accept', by: 'bo@example.com', reason: 'better', model_id: 'm1', outcome: 'deployed' },
  { at: '2024-04-30T00:00:00Z', action: 'accept', by: 'ana@example.com', reason: 'first', model_id: 'm0', outcome: 'superseded' },
];

/** Every read-only route the pages call. */
function readRoutes() {
  return {
    'GET /api/models': () => json(200, { models: [staged(), deployed(), superseded()] }),
    'GET /api/endpoint': () => json(200, inService),
    'GET /api/training': () => json(200, { runs: [] }),
    'GET /api/deployments': () => json(200, { deployments: events }),
  };
}

async function go(page: string): Promise<void> {
  location.hash = `#/${page}`;
  window.dispatchEvent(new HashChangeEvent('hashchange'));
  await flush(2);
}

function has(testid: string): boolean {
  return mounted!.root.querySelector(`[data-testid="${testid}"]`) !== null;
}

describe('signed out', () => {
  it('shows the sign-in form on every page and nothing else', async () => {
    const calls = stubApi(readRoutes());
    auth = new Auth(AUTH_CONFIG, { fetchImpl: fakeCognito({}).fetchImpl });
    history.replaceState(null, '', '#/review');
    mounted = mount(<App auth={auth} />);
    for (const page of ['review', 'training', 'history', 'notifications', 'dashboard']) {
      await go(page);
      expect(byTestId(mounted.root, 'signin-form')).toBeTruthy();
      expect(mounted.root.querySelector('h1')!.textContent).toBe('Sign in');
      for (const hidden of ['nav-dashboard', 'accept', 'reject', 'start-training', 'subscribe', 'models-table', 'timeline', 'sign-out'])
        expect(has(hidden), hidden).toBe(false);
    }
    expect(calls).toHaveLength(0);
    expect(document.title).toBe('Sign in · wastesort');
  });

  it('signs in and shows the email, the role and a sign-out button', async () => {
    stubApi(readRoutes());
    const cognito = fakeCognito({ InitiateAuth: () => tokens('ana@example.com', ['approvers']) });
    auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
    history.replaceState(null, '', '#/review');
    mounted = mount(<App auth={auth} />);
    await type(byTestId(mounted.root, 'signin-email'), 'ana@example.com');
    await type(byTestId(mounted.root, 'signin-password'), 'correct horse');
    await click(byTestId(mounted.root, 'signin-submit'));
    await waitFor(() => byTestId(mounted!.root, 'user'));
    expect(byTestId(mounted.root, 'user-email').textContent).toBe('ana@example.com');
    expect(byTestId(mounted.root, 'user-role').textContent).toBe('approver');
    expect(byTestId(mounted.root, 'sign-out').textContent).toBe('Sign out');
    // The page of the address is shown, with its actions.
    expect(mounted.root.querySelector('main')!.dataset.page).toBe('review');
    await waitFor(() => byTestId(mounted!.root, 'accept'));
    expect(cognito.calls[0].body).toMatchObject({ AuthParameters: { USERNAME: 'ana@example.com', PASSWORD: 'correct horse' } });
  });

  it('says "Wrong email or password." in words', async () => {
    const cognito = fakeCognito({ InitiateAuth: () => cognitoError('NotAuthorizedException', 'Incorrect username or password.') });
    auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
    mounted = mount(<App auth={auth} />);
    await type(byTestId(mounted.root, 'signin-email'), 'ana@example.com');
    await type(byTestId(mounted.root, 'signin-password'), 'nope');
    await click(byTestId(mounted.root, 'signin-submit'));
    const err = await waitFor(() => byTestId(mounted!.root, 'signin-error'));
    expect(err.textContent).toBe('Error: Wrong email or password.');
    expect(err.closest('[role="alert"]')).not.toBeNull();
    expect(has('user')).toBe(false);
    expect(document.activeElement).toBe(byTestId(mounted.root, 'signin-password'));
  });

  it('asks for the missing field before calling Cognito', async () => {
    const cognito = fakeCognito({});
    auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
    mounted = mount(<App auth={auth} />);
    await click(byTestId(mounted.root, 'signin-submit'));
    expect(byTestId(mounted.root, 'signin-error').textContent).toBe('Error: Enter your email address.');
    expect(cognito.calls).toHaveLength(0);
  });

  it('takes a user with a temporary password through choosing a new one', async () => {
    stubApi(readRoutes());
    const cognito = fakeCognito({
      InitiateAuth: () =>
        cognitoOk({ ChallengeName: 'NEW_PASSWORD_REQUIRED', Session: 's-1', ChallengeParameters: { USER_ID_FOR_SRP: 'u-9' } }),
      RespondToAuthChallenge: () => tokens('cy@example.com', []),
    });
    auth = new Auth(AUTH_CONFIG, { fetchImpl: cognito.fetchImpl });
    mounted = mount(<App auth={auth} />);
    await type(byTestId(mounted.root, 'signin-email'), 'cy@example.com');
    await type(byTestId(mounted.root, 'signin-password'), 'Temp-1234');
    await click(byTestId(mounted.root, 'signin-submit'));
    await waitFor(() => byTestId(mounted!.root, 'new-password-form'));
    expect(mounted.root.querySelector('h1')!.textContent).toBe('Choose a new password');
    expect(byTestId(mounted.root, 'new-password-email').textContent).toBe('cy@example.com');
    // Two different passwords are caught here.
    await type(byTestId(mounted.root, 'new-password'), 'My-new-pass-1');
    await type(byTestId(mounted.root, 'new-password-confirm'), 'My-new-pass-2');
    await click(byTestId(mounted.root, 'new-password-submit'));
    expect(byTestId(mounted.root, 'new-password-error').textContent).toContain('The two passwords differ');
    expect(cognito.calls).toHaveLength(1);
    await type(byTestId(mounted.root, 'new-password-confirm'), 'My-new-pass-1');
    await click(byTestId(mounted.root, 'new-password-submit'));
    await waitFor(() => byTestId(mounted!.root, 'user'));
    expect(cognito.calls[1].body).toMatchObject({
      ChallengeName: 'NEW_PASSWORD_REQUIRED',
      Session: 's-1',
      ChallengeResponses: { USERNAME: 'u-9', NEW_PASSWORD: 'My-new-pass-1' },
    });
    expect(byTestId(mounted.root, 'user-role').textContent).toBe('read-only');
  });
});

describe('signed in', () => {
  it('signs out: GlobalSignOut, then the sign-in form and no data', async () => {
    stubApi(readRoutes());
    const s = await signedIn(['approvers']);
    auth = s.auth;
    history.replaceState(null, '', '#/dashboard');
    mounted = mount(<App auth={auth} />);
    await waitFor(() => byTestId(mounted!.root, 'models-table'));
    await click(byTestId(mounted.root, 'sign-out'));
    await waitFor(() => byTestId(mounted!.root, 'signin-form'));
    expect(s.cognito.calls.at(-1)).toMatchObject({ op: 'GlobalSignOut', body: { AccessToken: 'access-ana@example.com' } });
    expect(await auth.idToken()).toBeUndefined();
    for (const gone of ['models-table', 'user', 'nav-training', 'serving-summary']) expect(has(gone), gone).toBe(false);
  });

  it('goes back to the sign-in form, saying why, when the API answers 401', async () => {
    stubApi({
      'GET /api/models': () => json(401, { message: 'Unauthorized' }),
      'GET /api/endpoint': () => json(401, { message: 'Unauthorized' }),
    });
    auth = (await signedIn(['approvers'])).auth;
    mounted = mount(<App auth={auth} />);
    const notice = await waitFor(() => byTestId(mounted!.root, 'signin-notice'));
    expect(notice.textContent).toBe('Your session ended; sign in again.');
    expect(has('user')).toBe(false);
  });

  it('shows the API’s 403 message', async () => {
    stubApi({
      ...readRoutes(),
      'POST /api/training': () =>
        json(403, { error: { code: 'forbidden', message: 'starting training needs the approvers group', fix: 'ask an administrator' } }),
    });
    auth = (await signedIn(['approvers'])).auth;
    history.replaceState(null, '', '#/training');
    mounted = mount(<App auth={auth} />);
    await click(await waitFor(() => byTestId(mounted!.root, 'start-training')));
    await waitFor(() =>
      expect(byTestId(mounted!.root, 'start-result').textContent).toBe(
        'Error: Starting training needs the approvers group — ask an administrator',
      ),
    );
    expect(has('user')).toBe(true);
  });

  it('shows approvers every action', async () => {
    stubApi(readRoutes());
    auth = (await signedIn(['approvers'])).auth;
    mounted = mount(<App auth={auth} />);
    await go('training');
    await waitFor(() => byTestId(mounted!.root, 'start-training'));
    await go('review');
    await waitFor(() => byTestId(mounted!.root, 'accept'));
    expect(has('reject')).toBe(true);
    await go('history');
    await waitFor(() => byTestId(mounted!.root, 'rollback-m0'));
    await go('notifications');
    expect(has('subscribe')).toBe(true);
    expect(has('read-only-note')).toBe(false);
  });

  it('hides every action from a read-only user, who still sees the data and can predict', async () => {
    stubApi(readRoutes());
    auth = (await signedIn([], 'ro@example.com')).auth;
    mounted = mount(<App auth={auth} />);
    expect(byTestId(mounted.root, 'user-role').textContent).toBe('read-only');
    expect(byTestId(mounted.root, 'user-email').textContent).toBe('ro@example.com');

    await go('dashboard');
    await waitFor(() => byTestId(mounted!.root, 'models-table'));

    await go('training');
    await waitFor(() => byTestId(mounted!.root, 'training-status'));
    expect(has('start-training')).toBe(false);
    expect(byTestId(mounted.root, 'read-only-note').textContent).toContain('approvers group');

    await go('review');
    await waitFor(() => byTestId(mounted!.root, 'comparison'));
    expect(has('accept')).toBe(false);
    expect(has('reject')).toBe(false);
    expect(has('decision-reason')).toBe(false);
    expect(has('read-only-note')).toBe(true);

    await go('history');
    const timeline = await waitFor(() => byTestId(mounted!.root, 'timeline'));
    expect(timeline.textContent).toContain('ana@example.com accepted model m0');
    expect(mounted.root.querySelector('[data-testid^="rollback-"]')).toBeNull();

    await go('notifications');
    expect(has('subscribe')).toBe(false);
    expect(has('email-input')).toBe(false);
    expect(has('read-only-note')).toBe(true);

    await go('predict');
    expect(has('file-input')).toBe(true);
  });
});

describe('Root', () => {
  afterEach(() => installAuth(null));

  it('says the deployment has no user pool when config.json has no auth', async () => {
    stubApi({ 'GET /v1/config.json': () => json(200, { auth: null }) });
    mounted = mount(<Root base="http://127.0.0.1:4566/v1/" />);
    const err = await waitFor(() => byTestId(mounted!.root, 'config-error'));
    expect(err.textContent).toContain('This deployment has no user pool configured');
    expect(err.textContent).toContain('deployer up');
    expect(has('signin-form')).toBe(false);
  });

  it('says the app cannot start when config.json fails', async () => {
    stubApi({ 'GET /v1/config.json': () => new Response('no', { status: 500 }) });
    mounted = mount(<Root base="http://127.0.0.1:4566/v1/" />);
    const err = await waitFor(() => byTestId(mounted!.root, 'config-error'));
    expect(err.textContent).toContain('config.json answered HTTP 500');
  });

  it('signs in against the configured user pool', async () => {
    const calls = stubApi({
      'GET /v1/config.json': () => json(200, { auth: { ...AUTH_CONFIG, endpoint: 'http://127.0.0.1:4599/' } }),
      'POST /': () => tokens('ana@example.com', ['approvers']),
      ...readRoutes(),
    });
    mounted = mount(<Root base="http://127.0.0.1:4566/v1/" />);
    await type(await waitFor(() => byTestId<HTMLInputElement>(mounted!.root, 'signin-email')), 'ana@example.com');
    await type(byTestId(mounted.root, 'signin-password'), 'pw');
    await click(byTestId(mounted.root, 'signin-submit'));
    await waitFor(() => byTestId(mounted!.root, 'models-table'));
    const cognito = calls.find((c) => c.method === 'POST' && c.path === '/')!;
    expect((cognito.init.headers as Record<string, string>)['X-Amz-Target']).toBe('AWSCognitoIdentityProviderService.InitiateAuth');
    const models = calls.find((c) => c.path === '/api/models')!;
    expect(new Headers(models.init.headers).get('authorization')).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });
});
