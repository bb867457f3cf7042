import { useRef, useState } from 'preact/hooks';
import { AuthError, type Auth } from '../auth';
import { LoadError } from './ui';

function words(e: unknown): string {
  return e instanceof AuthError ? e.message : 'Signing in failed. Try again.';
}

/** Email and password; Cognito's refusals in words ("Wrong email or password."). */
export function SignInForm({ auth, notice }: { auth: Auth; notice?: string }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  const emailRef = useRef<HTMLInputElement>(null);
  const passwordRef = useRef<HTMLInputElement>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!email.trim() || !password) {
      setError(!email.trim() ? 'Enter your email address.' : 'Enter your password.');
      (!email.trim() ? emailRef : passwordRef).current?.focus();
      return;
    }
    setError(null);
    setPending(true);
    try {
      await auth.signIn(email, password);
      // Signed in (the app replaces this form) or asked for a new password.
    } catch (err) {
      setError(words(err));
      passwordRef.current?.focus();
    } finally {
      setPending(false);
    }
  };

  return (
    <section class="card signin" aria-labelledby="signin-h">
      <h2 id="signin-h">Your account</h2>
      {notice && !error && (
        <p class="note note-info" role="status" data-testid="signin-notice">
          {notice}
        </p>
      )}
      <form noValidate onSubmit={submit} data-testid="signin-form">
        <div class="field">
          <label for="signin-email">Email</label>
          <input
            id="signin-email"
            ref={emailRef}
            type="email"
            inputMode="email"
            autocomplete="username"
            required
            aria-required="true"
            aria-describedby={error ? 'signin-error' : undefined}
            value={email}
            data-testid="signin-email"
            onInput={(e) => setEmail((e.target as HTMLInputElement).value)}
          />
        </div>
        <div class="field">
          <label for="signin-password">Password</label>
          <input
            id="signin-password"
            ref={passwordRef}
            type="password"
            autocomplete="current-password"
            required
            aria-required="true"
            aria-describedby={error ? 'signin-error' : undefined}
            value={password}
            data-testid="signin-password"
            onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
          />
        </div>
        <LoadError error={error} id="signin-error" testid="signin-error" />
        <div class="actions">
          <button type="submit" class="primary" data-testid="signin-submit" disabled={pending}>
            {pending ? 'Signing in…' : 'Sign in'}
          </button>
        </div>
      </form>
      <p class="muted">
        No account? An administrator adds users with <code>deployer users add</code>.
      </p>
    </section>
  );
}

/** The first sign-in with a temporary password: choose a new one (NEW_PASSWORD_REQUIRED). */
export function NewPasswordForm({ auth, email }: { auth: Auth; email: string }) {
  const [password, setPassword] = useState('');
  const [confirm, setConfirm] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  const first = useRef<HTMLInputElement>(null);
  const second = useRef<HTMLInputElement>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!password) {
      setError('Enter a new password.');
      first.current?.focus();
      return;
    }
    if (password !== confirm) {
      setError('The two passwords differ. Type the same new password twice.');
      second.current?.focus();
      return;
    }
    setError(null);
    setPending(true);
    try {
      await auth.completeNewPassword(password);
    } catch (err) {
      setError(words(err));
      first.current?.focus();
    } finally {
      setPending(false);
    }
  };

  return (
    <section class="card signin" aria-labelledby="newpw-h">
      <h2 id="newpw-h">Choose a new password</h2>
      <p>
        <strong data-testid="new-password-email">{email}</strong> signed in with a temporary password. Choose your own
        password to continue.
      </p>
      <form noValidate onSubmit={submit} data-testid="new-password-form">
        <div class="field">
          <label for="new-password">New password</label>
          <input
            id="new-password"
            ref={first}
            type="password"
            autocomplete="new-password"
            required
            aria-required="true"
            aria-describedby={error ? 'new-password-error' : undefined}
            value={password}
            data-testid="new-password"
            onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
          />
        </div>
        <div class="field">
          <label for="new-password-confirm">New password again</label>
          <input
            id="new-password-confirm"
            ref={second}
            type="password"
            autocomplete="new-password"
            required
            aria-required="true"
            aria-describedby={error ? 'new-password-error' : undefined}
            value={confirm}
            data-testid="new-password-confirm"
            onInput={(e) => setConfirm((e.target as HTMLInputElement).value)}
          />
        </div>
        <LoadError error={error} id="new-password-error" testid="new-password-error" />
        <div class="actions">
          <button type="submit" class="primary" data-testid="new-password-submit" disabled={pending}>
            {pending ? 'Saving…' : 'Set password and sign in'}
          </button>
          <button type="button" disabled={pending} onClick={() => auth.cancelNewPassword()}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}
