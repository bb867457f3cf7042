import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { errorText } from './api';

export interface Resource<T> {
  data: T | undefined;
  /** The last load's failure in words (the data, if any, is from before it). */
  error: string | undefined;
  loading: boolean;
  /** Load again now. */
  reload: () => Promise<void>;
}

/**
 * Loads `load()` on mount and again `every(data)` milliseconds after each load finishes (no
 * polling when it answers null). A failed load keeps the data it had and says why.
 */
export function useResource<T>(
  load: (signal: AbortSignal) => Promise<T>,
  every: (data: T | undefined) => number | null = () => null,
): Resource<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const loadRef = useRef(load);
  const everyRef = useRef(every);
  loadRef.current = load;
  everyRef.current = every;
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const ctrl = useRef<AbortController | undefined>(undefined);
  const alive = useRef(true);
  const seq = useRef(0);

  const run = useCallback(async () => {
    clearTimeout(timer.current);
    ctrl.current?.abort();
    const c = new AbortController();
    ctrl.current = c;
    const mine = ++seq.current;
    setLoading(true);
    let next: T | undefined;
    let ok = false;
    try {
      next = await loadRef.current(c.signal);
      ok = true;
    } catch (e) {
      if (c.signal.aborted || !alive.current || mine !== seq.current) return;
      setError(errorText(e));
    }
    if (!alive.current || mine !== seq.current) return;
    if (ok) {
      setData(next);
      setError(undefined);
    }
    setLoading(false);
    const ms = everyRef.current(ok ? next : undefined);
    if (ms !== null && ms > 0) timer.current = setTimeout(() => void run(), ms);
  }, []);

  useEffect(() => {
    alive.current = true;
    void run();
    return () => {
      alive.current = false;
      clearTimeout(timer.current);
      ctrl.current?.abort();
    };
  }, [run]);

  return { data, error, loading, reload: run };
}

/** The current time, ticking every `ms` while `active`. */
export function useNow(ms: number, active: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return undefined;
    setNow(Date.now());
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms, active]);
  return now;
}

const NAME_KEY = 'wastesort.decision-name';

/** The reviewer's name, remembered in this browser for the next decision. */
export function useRememberedName(): [string, (v: string) => void] {
  const [name, setName] = useState(() => {
    try {
      return localStorage.getItem(NAME_KEY) ?? '';
    } catch {
      return '';
    }
  });
  const set = useCallback((v: string) => {
    setName(v);
    try {
      localStorage.setItem(NAME_KEY, v);
    } catch {
      // Private mode or storage off: remembering is only a convenience.
    }
  }, []);
  return [name, set];
}
