import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, errorText } from '../api';
import { LiveMessage, type Message } from '../components/ui';
import { formatPercent } from '../format';
import { checkImage, formatBytes } from '../image';
import type { Prediction } from '../types';

/** The words for a failed prediction; 503 (nothing serving) gets its own explanation. */
export function predictErrorText(e: unknown): string {
  if (e instanceof ApiError && e.status === 503) {
    return `No model is serving yet, so nothing can classify the image (${e.message.replace(/[.]+$/, '')}) — accept a staged model on the Review page, wait until it is deployed, then try again.`;
  }
  return errorText(e);
}

export function Predict() {
  const [preview, setPreview] = useState<{ url: string; name: string; size: number } | null>(null);
  const [result, setResult] = useState<Prediction | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<Message | null>(null);
  const [dragging, setDragging] = useState(false);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const run = useRef(0);

  // Free the preview's object URL when it is replaced or the page closes.
  useEffect(() => () => {
    if (preview) URL.revokeObjectURL(preview.url);
  }, [preview]);

  const take = async (file: File | undefined | null) => {
    if (!file) return;
    const mine = ++run.current;
    setResult(null);
    setError(null);
    setStatus(null);
    const check = await checkImage(file);
    if (mine !== run.current) return;
    if (!check.ok) {
      setPreview(null);
      setError(check.message);
      return;
    }
    setPreview({ url: URL.createObjectURL(file), name: file.name, size: file.size });
    setBusy(true);
    setStatus({ tone: 'info', text: `Classifying ${file.name}…` });
    try {
      const p = await api.predict(file, check.type);
      if (mine !== run.current) return;
      setResult(p);
      setStatus(null);
    } catch (e) {
      if (mine !== run.current) return;
      setError(predictErrorText(e));
      setStatus(null);
    } finally {
      if (mine === run.current) setBusy(false);
    }
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    void take(e.dataTransfer?.files?.[0]);
  };

  const probabilities = result ? Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]) : [];

  return (
    <>
      <section class="card" aria-labelledby="pick-h">
        <h2 id="pick-h">Choose an image</h2>
        <div
          class={`dropzone${dragging ? ' dragging' : ''}`}
          data-testid="dropzone"
          aria-busy={busy ? 'true' : undefined}
          onDragOver={(e) => {
            e.preventDefault();
            if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={onDrop}
        >
          <label for="file-input" class="drop-label">
            Drop a photo of waste here, or pick one
          </label>
          <input
            id="file-input"
            ref={input}
            type="file"
            accept="image/jpeg,image/png,.jpg,.jpeg,.png"
            data-testid="file-input"
            aria-describedby="file-hint"
            onChange={(e) => {
              const el = e.target as HTMLInputElement;
              void take(el.files?.[0]).finally(() => {
                // Let the same file be picked again.
                el.value = '';
              });
            }}
          />
          <p id="file-hint" class="muted">
            JPEG or PNG, at most 4 MB. It is classified as soon as it is chosen, and kept with the pipeline's uploads.
          </p>
        </div>
        <LiveMessage message={status} testid="predict-status" />
        <div role="alert" class="live">
          {error && (
            <p class="note note-error" data-testid="predict-error">
              <span class="note-kind">Error: </span>
              {error}
              {error.includes('Review page') && (
                <>
                  {' '}
                  <a href="#/review">Go to the Review page</a>
                </>
              )}
            </p>
          )}
        </div>
      </section>

      {(preview || result) && (
        <section class="card predict-out" aria-labelledby="result-h">
          <h2 id="result-h">Result</h2>
          <div class="predict-grid">
            {preview && (
              <figure class="preview">
                <img src={preview.url} alt={`The chosen image, ${preview.name}`} data-testid="preview" />
                <figcaption class="muted">
                  {preview.name}, {formatBytes(preview.size)}
                </figcaption>
              </figure>
            )}
            <div role="status" aria-live="polite" aria-atomic="true">
              {result && (
                <dl class="prediction">
                  <dt>Label</dt>
                  <dd class="big" data-testid="predict-label">
                    {result.label}
                  </dd>
                  <dt>Confidence</dt>
                  <dd data-testid="predict-confidence">{formatPercent(result.confidence)}</dd>
                  <dt>Model</dt>
                  <dd>
                    <code data-testid="predict-model-id">{result.model_id}</code>
                  </dd>
                  {probabilities.length > 0 && (
                    <>
                      <dt>Probabilities</dt>
                      <dd>
                        <ul class="probs">
                          {probabilities.map(([label, p]) => (
                            <li key={label}>
                              {label}: {formatPercent(p)}
                            </li>
                          ))}
                        </ul>
                      </dd>
                    </>
                  )}
                </dl>
              )}
            </div>
          </div>
        </section>
      )}
    </>
  );
}
