import type { FunctionComponent } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { hrefFor, PAGES, pageFromHash, titleFor, type PageId } from './router';
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

export function App() {
  const [page, setPage] = useState<PageId>(() => pageFromHash(location.hash));
  const heading = useRef<HTMLHeadingElement>(null);
  const first = useRef(true);

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
    document.title = `${titleFor(page)} · wastesort`;
    // Move focus to the new page's heading (not on first load), so keyboard and screen reader
    // users land on what changed.
    if (first.current) first.current = false;
    else heading.current?.focus();
  }, [page]);

  const View = VIEWS[page];
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => {
        e.preventDefault();
        heading.current?.focus();
      }}>
        Skip to content
      </a>
      <header class="top">
        <p class="brand">
          <span aria-hidden="true">♻</span> wastesort <span class="brand-sub">model pipeline</span>
        </p>
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
      </header>
      <main id="main" data-page={page}>
        <h1 ref={heading} tabIndex={-1}>
          {titleFor(page)}
        </h1>
        <p class="intro">{INTRO[page]}</p>
        <View key={page} />
      </main>
    </>
  );
}
