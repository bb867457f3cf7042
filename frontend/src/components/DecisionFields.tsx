import type { Ref } from 'preact';
import type { User } from '../auth';

export interface DecisionErrors {
  reason?: string;
}

/** The reason is required (the API refuses an empty one); the actor comes from the sign-in. */
export function checkDecision(reason: string): DecisionErrors {
  return reason.trim() ? {} : { reason: 'Enter a reason: it is recorded and shown in the history.' };
}

/**
 * Who decides (the signed-in user, recorded by the API from the token) and the reason input of
 * a decision (accept, reject, rollback); test hooks `<idPrefix>-actor`, `<idPrefix>-reason`.
 */
export function DecisionFields({
  idPrefix,
  user,
  reason,
  errors,
  onChange,
  disabled,
  reasonRef,
}: {
  idPrefix: string;
  user: User | null;
  reason: string;
  errors: DecisionErrors;
  onChange: (reason: string) => void;
  disabled?: boolean;
  reasonRef?: Ref<HTMLTextAreaElement>;
}) {
  const reasonId = `${idPrefix}-reason`;
  return (
    <div class="fields">
      <p class="actor">
        Recorded as <strong data-testid={`${idPrefix}-actor`}>{user?.email ?? 'you'}</strong>, the signed-in user.
      </p>
      <div class="field">
        <label for={reasonId}>
          Reason <span class="req">(required)</span>
        </label>
        <textarea
          id={reasonId}
          ref={reasonRef}
          rows={2}
          required
          aria-required="true"
          aria-invalid={errors.reason ? 'true' : undefined}
          aria-describedby={errors.reason ? `${reasonId}-error` : undefined}
          value={reason}
          disabled={disabled}
          data-testid={reasonId}
          onInput={(e) => onChange((e.target as HTMLTextAreaElement).value)}
        />
        {errors.reason && (
          <p id={`${reasonId}-error`} class="field-error">
            {errors.reason}
          </p>
        )}
      </div>
    </div>
  );
}
