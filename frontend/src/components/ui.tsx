import type { ComponentChildren } from 'preact';
import { statusTone } from '../format';

/** A status drawn as a badge; the label carries the meaning, the colour only repeats it. */
export function Badge({ status, label }: { status: string; label: string }) {
  return (
    <span class={`badge tone-${statusTone(status)}`} data-status={status}>
      {label}
    </span>
  );
}

export type Tone = 'info' | 'success' | 'error';

export interface Message {
  tone: Tone;
  text: string;
}

/**
 * A live region that is always in the page (so screen readers announce what appears in it);
 * the message inside carries the test hook.
 */
export function LiveMessage({
  message,
  testid,
  children,
}: {
  message: Message | null | undefined;
  testid?: string;
  children?: ComponentChildren;
}) {
  return (
    <div class="live" role="status" aria-live="polite" aria-atomic="true">
      {message && (
        <p class={`note note-${message.tone}`} data-testid={testid} data-tone={message.tone}>
          <span class="note-kind">
            {message.tone === 'error' ? 'Error: ' : message.tone === 'success' ? 'Done: ' : ''}
          </span>
          {message.text}
          {children}
        </p>
      )}
    </div>
  );
}

/**
 * A failure (a load, a sign-in), shown above whatever data the page still has. `id` lets a
 * field name it in `aria-describedby`.
 */
export function LoadError({
  error,
  id,
  testid,
}: {
  error: string | null | undefined;
  id?: string;
  testid?: string;
}) {
  return (
    <div role="alert" class="live">
      {error && (
        <p id={id} class="note note-error" data-testid={testid}>
          <span class="note-kind">Error: </span>
          {error}
        </p>
      )}
    </div>
  );
}

/** Why an action is missing for a signed-in user who is not an approver. */
export function ReadOnlyNote({ action }: { action: string }) {
  return (
    <p class="note note-info" data-testid="read-only-note">
      <span class="note-kind">Read-only: </span>
      {action} needs a user in the approvers group.
    </p>
  );
}

/** A scrollable table wrapper that keyboard users can scroll too. */
export function TableWrap({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-wrap" role="region" aria-label={label} tabIndex={0}>
      {children}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p class="muted">Loading {what}…</p>;
}
