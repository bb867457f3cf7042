import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { errorText } from './api';
import { currentAuth, type Auth, type AuthState, type User } from './auth';

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

/** An Auth's state, re-rendering on every change (sign-in, refresh, sign-out). */
export function useAuthState(auth: Auth | null): AuthState {
  const [state, setState] = useState<AuthState>(() => auth?.state ?? { status: 'signed_out' });
  useEffect(() => {
    if (!auth) return undefined;
    setState(auth.state);
    return auth.subscribe(setState);
  }, [auth]);
  return state;
}

/** The signed-in user of the installed sign-in (see auth.ts), or null. */
export function useUser(): User | null {
  const state = useAuthState(currentAuth());
  return state.status === 'signed_in' ? state.user : null;
}
