// Hash routing: `#/dashboard`, `#/review`, ... (the emails link to `#/review`), so the server
// serves one document whatever the page and the stage prefix never matters.

export const PAGES = [
  { id: 'dashboard', title: 'Dashboard' },
  { id: 'training', title: 'Training' },
  { id: 'review', title: 'Review' },
  { id: 'predict', title: 'Predict' },
  { id: 'history', title: 'History' },
  { id: 'notifications', title: 'Notifications' },
] as const;

export type PageId = (typeof PAGES)[number]['id'];

export const DEFAULT_PAGE: PageId = 'dashboard';

/** The page a location hash names; the dashboard for an empty or unknown one. */
export function pageFromHash(hash: string): PageId {
  const path = hash.replace(/^#\/?/, '').split(/[?/]/)[0].toLowerCase();
  const found = PAGES.find((p) => p.id === path);
  return found ? found.id : DEFAULT_PAGE;
}

export function hrefFor(page: PageId): string {
  return `#/${page}`;
}

export function titleFor(page: PageId): string {
  return PAGES.find((p) => p.id === page)?.title ?? 'Dashboard';
}
