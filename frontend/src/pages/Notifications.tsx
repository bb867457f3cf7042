import { useRef, useState } from 'preact/hooks';
import { api, errorText } from '../api';
import { LiveMessage, ReadOnlyNote, type Message } from '../components/ui';
import { useUser } from '../hooks';
import { validEmail } from '../state';

export function Notifications() {
  const user = useUser();
  const [email, setEmail] = useState('');
  const [fieldError, setFieldError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  const [result, setResult] = useState<Message | null>(null);
  const input = useRef<HTMLInputElement>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = email.trim();
    if (!value) {
      setFieldError('Enter an email address.');
      setResult(null);
      input.current?.focus();
      return;
    }
    if (!validEmail(value)) {
      setFieldError(`“${value}” is not an email address — it needs one @ and a domain such as example.com.`);
      setResult(null);
      input.current?.focus();
      return;
    }
    setFieldError(null);
    setPending(true);
    setResult({ tone: 'info', text: `Subscribing ${value}…` });
    try {
      await api.subscribe(value);
      setResult({
        tone: 'success',
        text: `A confirmation email was sent to ${value}. Open the link in it to start receiving the pipeline's emails (staged models, deployments, failures).`,
      });
      setEmail('');
    } catch (err) {
      setResult({ tone: 'error', text: errorText(err) });
    } finally {
      setPending(false);
    }
  };

  return (
    <section class="card" aria-labelledby="sub-h">
      <h2 id="sub-h">Subscribe to the pipeline's emails</h2>
      <p>
        The pipeline emails when a model is staged for review (with its comparison against the serving model), when a
        deployment finishes or fails, and when training fails.
      </p>
      {!user?.approver ? (
        <ReadOnlyNote action="subscribing an address" />
      ) : (
        <form noValidate onSubmit={submit} class="inline-form">
          <div class="field">
            <label for="email">Email address</label>
            <input
              id="email"
              ref={input}
              type="email"
              inputMode="email"
              autocomplete="email"
              required
              aria-required="true"
              aria-invalid={fieldError ? 'true' : undefined}
              aria-describedby={fieldError ? 'email-error' : 'email-hint'}
              value={email}
              disabled={pending}
              data-testid="email-input"
              onInput={(e) => {
                setEmail((e.target as HTMLInputElement).value);
                if (fieldError) setFieldError(null);
              }}
            />
            {fieldError ? (
              <p id="email-error" class="field-error" data-testid="email-error">
                {fieldError}
              </p>
            ) : (
              <p id="email-hint" class="muted">
                You confirm the subscription from the email that is sent to this address.
              </p>
            )}
          </div>
          <button type="submit" class="primary" data-testid="subscribe" disabled={pending}>
            {pending ? 'Subscribing…' : 'Subscribe'}
          </button>
        </form>
      )}
      <LiveMessage message={result} testid="subscribe-result" />
    </section>
  );
}
