import type { Ref } from 'preact';

export interface DecisionValues {
  name: string;
  reason: string;
}

export interface DecisionErrors {
  name?: string;
  reason?: string;
}

/** Both fields are required (the API refuses an empty `by` or `reason`). */
export function checkDecision(v: DecisionValues): DecisionErrors {
  const e: DecisionErrors = {};
  if (!v.name.trim()) e.name = 'Enter your name: it is recorded with the decision.';
  if (!v.reason.trim()) e.reason = 'Enter a reason: it is recorded and shown in the history.';
  return e;
}

/** The name and reason inputs of a decision (accept, reject, rollback); test hooks `<idPrefix>-name`, `<idPrefix>-reason`. */
export function DecisionFields({
  idPrefix,
  values,
  errors,
  onChange,
  disabled,
  nameRef,
  reasonRef,
}: {
  idPrefix: string;
  values: DecisionValues;
  errors: DecisionErrors;
  onChange: (v: DecisionValues) => void;
  disabled?: boolean;
  nameRef?: Ref<HTMLInputElement>;
  reasonRef?: Ref<HTMLTextAreaElement>;
}) {
  const nameId = `${idPrefix}-name`;
  const reasonId = `${idPrefix}-reason`;
  return (
    <div class="fields">
      <div class="field">
        <label for={nameId}>
          Your name <span class="req">(required)</span>
        </label>
        <input
          id={nameId}
          ref={nameRef}
          type="text"
          autocomplete="name"
          required
          aria-required="true"
          aria-invalid={errors.name ? 'true' : undefined}
          aria-describedby={errors.name ? `${nameId}-error` : undefined}
          value={values.name}
          disabled={disabled}
          data-testid={nameId}
          onInput={(e) => onChange({ ...values, name: (e.target as HTMLInputElement).value })}
        />
        {errors.name && (
          <p id={`${nameId}-error`} class="field-error">
            {errors.name}
          </p>
        )}
      </div>
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
          value={values.reason}
          disabled={disabled}
          data-testid={reasonId}
          onInput={(e) => onChange({ ...values, reason: (e.target as HTMLTextAreaElement).value })}
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
