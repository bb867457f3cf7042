import type { ComponentChildren, FunctionComponent, RefObject } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { hrefFor, PAGES, pageFromHash, titleFor, type PageId } from './router';
import { Auth, ConfigError, currentAuth, installAuth, loadConfig } from './auth';
import { useAuthState } from './hooks';
import { NewPasswordForm, SignInForm } from './components/SignIn';
import { Dashboard } from './pages/Dashboard';
import { Training } from './pages/Training';
import { Review } from './pages/Review';
import { Predict } from './pages/Predict';
import { History as HistoryPage } from './pages/History';
import { Notifications } from './pages/Notifications';

const VIEWS: Record<PageId, FunctionComponent> = {
  dashboard: Dashboard,
  training: Training,
  review: Review,
  predict: Predict,
  history: HistoryPage,
  notifications: Notifications,
};

const INTRO: Record<PageId, string> = {
  dashboard: 'Every model version, its metrics over time, and which one serves.',
  training: 'Start a training run and follow it.',
  review: 'Compare the staged model with the one that serves, then accept or reject it.',
  predict: 'Classify a photo of waste with the serving model.',
  history: 'Who accepted, rejected or rolled back which model, when and why.',
  notifications: "Get the pipeline's emails.",
};

/** The page's frame: skip link, header (brand, then the nav and the user when signed in), main. */
function Shell({
  pageKey,
  title,
  heading,
  header,
  children,
}: {
  pageKey: string;
  title: string;
  heading?: RefObject<HTMLHeadingElement>;
  header?: ComponentChildren;
  children: ComponentChildren;
}) {
  const own = useRef<HTMLHeadingElement>(null);
  const h1 = heading ?? own;
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => {
        e.preventDefault();
        h1.current?.focus();
      }}>
        Skip to content
      </a>
      <header class="top">
        <p class="brand">
          <span aria-hidden="true">♻</span> wastesort <span class="brand-sub">model pipeline</span>
        </p>
        {header}
      </header>
      <main id="main" data-page={pageKey}>
        <h1 ref={h1} tabIndex={-1}>
          {title}
        </h1>
        {children}
      </main>
    </>
  );
}

/** The signed-in user's email, role and the sign-out button. */
function UserBox({ auth, email, approver }: { auth: Auth; email: string; approver: boolean }) {
  const [leaving, setLeaving] = useState(false);
  return (
    <div class="user" data-testid="user">
      <span class="user-who">
        <span class="sr-only">Signed in as </span>
        <span data-testid="user-email">{email}</span>{' '}
        <span class={`role role-${approver ? 'approver' : 'read-only'}`} data-testid="user-role">
          {approver ? 'approver' : 'read-only'}
        </span>
      </span>
      <button
        type="button"
        class="signout"
        data-testid="sign-out"
        disabled={leaving}
        onClick={() => {
          setLeaving(true);
          void auth.signOut().finally(() => setLeaving(false));
        }}
      >
        {leaving ? 'Signing out…' : 'Sign out'}
      </button>
    </div>
  );
}

/** The app for one sign-in: the sign-in form while signed out, the pages once signed in. */
export function App({ auth }: { auth: Auth }) {
  // The API client takes the token from the installed sign-in: make it this one before any
  // page (whose effects run before this component's) loads anything.
  if (currentAuth() !== auth) installAuth(auth);
  const state = useAuthState(auth);
  const [page, setPage] = useState<PageId>(() => pageFromHash(location.hash));
  const heading = useRef<HTMLHeadingElement>(null);
  const first = useRef(true);
  const signedIn = state.status === 'signed_in';
  const title = signedIn ? titleFor(page) : state.status === 'new_password' ? 'Choose a new password' : 'Sign in';

  useEffect(() => {
    const onHash = () => setPage(pageFromHash(location.hash));
    window.addEventListener('hashchange', onHash);
    // An empty or unknown hash shows the dashboard; say so in the address too.
    if (hrefFor(pageFromHash(location.hash)) !== location.hash) {
      history.replaceState(null, '', hrefFor(pageFromHash(location.hash)));
    }
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    document.title = `${title} · wastesort`;
    // Move focus to the new page's heading (not on first load), so keyboard and screen reader
    // users land on what changed: another page, or signed in or out.
    if (first.current) first.current = false;
    else heading.current?.focus();
  }, [page, state.status]);

  if (state.status !== 'signed_in') {
    return (
      <Shell pageKey="sign-in" title={title} heading={heading}>
        <p class="intro">Sign in to see the pipeline's models, training runs and decisions.</p>
        {state.status === 'new_password' ? (
          <NewPasswordForm auth={auth} email={state.email} />
        ) : (
          <SignInForm auth={auth} notice={state.notice} />
        )}
      </Shell>
    );
  }

  const View = VIEWS[page];
  return (
    <Shell
      pageKey={page}
      title={titleFor(page)}
      heading={heading}
      header={
        <>
          <nav aria-label="Pages">
            <ul>
              {PAGES.map((p) => (
                <li key={p.id}>
                  <a
                    href={hrefFor(p.id)}
                    data-testid={`nav-${p.id}`}
                    aria-current={p.id === page ? 'page' : undefined}
                  >
                    {p.title}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
          <UserBox auth={auth} email={state.user.email} approver={state.user.approver} />
        </>
      }
    >
      <p class="intro">{INTRO[page]}</p>
      <View key={page} />
    </Shell>
  );
}

type Boot =
  | { kind: 'loading' }
  | { kind: 'failed'; message: string }
  | { kind: 'no-user-pool' }
  | { kind: 'ready'; auth: Auth };

/**
 * Loads `config.json`, then runs the app with the deployment's user pool; says so plainly when
 * the configuration cannot be loaded or names no user pool.
 */
export function Root({ base, fetchImpl }: { base?: string; fetchImpl?: typeof fetch }) {
  const [boot, setBoot] = useState<Boot>({ kind: 'loading' });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    let made: Auth | null = null;
    setBoot({ kind: 'loading' });
    loadConfig(base, fetchImpl).then(
      (cfg) => {
        if (!live) return;
        if (!cfg.auth) {
          setBoot({ kind: 'no-user-pool' });
          return;
        }
        made = new Auth(cfg.auth, fetchImpl ? { fetchImpl } : {});
        setBoot({ kind: 'ready', auth: made });
      },
      (e: unknown) => {
        if (!live) return;
        setBoot({ kind: 'failed', message: e instanceof ConfigError ? e.message : String(e) });
      },
    );
    return () => {
      live = false;
      if (made) {
        if (currentAuth() === made) installAuth(null);
        made.dispose();
      }
    };
  }, [attempt]);

  useEffect(() => {
    if (boot.kind === 'no-user-pool' || boot.kind === 'failed') document.title = 'Cannot start · wastesort';
  }, [boot.kind]);

  switch (boot.kind) {
    case 'ready':
      return <App auth={boot.auth} />;
    case 'loading':
      return (
        <Shell pageKey="loading" title="wastesort">
          <p class="muted">Loading…</p>
        </Shell>
      );
    case 'no-user-pool':
      return (
        <Shell pageKey="config-error" title="Sign-in is not set up">
          <section class="card" data-testid="config-error" data-reason="no-user-pool">
            <p>
              This deployment has no user pool configured, so nobody can sign in and the app cannot show anything.
            </p>
            <p>
              Run <code>deployer up</code> again: it creates the user pool and the app's sign-in settings. Then reload
              this page.
            </p>
          </section>
        </Shell>
      );
    case 'failed':
      return (
        <Shell pageKey="config-error" title="The app cannot start">
          <section class="card" data-testid="config-error" data-reason="config-failed">
            <p>The app could not load its sign-in settings: {boot.message}.</p>
            <p>
              Reload to try again. If it keeps failing, the deployment may be incomplete: run <code>deployer up</code>{' '}
              again.
            </p>
            <button type="button" class="primary" onClick={() => setAttempt((n) => n + 1)}>
              Try again
            </button>
          </section>
        </Shell>
      );
  }
}
