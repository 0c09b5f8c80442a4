/**
 * What the status page tells about one app beyond its pool's state: request rates, error rates
 * and latency over the last minute (window.ts), lifetime counts that survive reloads, and short
 * lists of what went wrong lately (failed requests with the exception line from the worker's
 * stderr, worker exits, reload results). Fed by the one request observer the service installs
 * on both data planes, by the worker's stderr and by the pool's exit hook; bounded in memory.
 */
import type { RequestRecord } from '../front/access-log.js';
import { RequestWindow, type WindowFigures } from './window.js';

/** Requests slower than this count as slow (PHP-FPM's "slow requests"). */
export const SLOW_REQUEST_MS = 1_000;
/** Entries kept per list. */
export const RECENT = 20;
/** A failed request and an exception line of the same worker this close in time belong together. */
const PAIR_MS = 3_000;
/** Longest exception line kept. */
const MAX_LINE = 300;

/** A request answered with a 5xx. */
export interface RecentError {
  /** Epoch ms. */
  at: number;
  status: number;
  /** corral's error code when corral answered (CORRAL_QUEUE_FULL...), else null: the app answered 5xx. */
  code: string | null;
  method: string;
  /** The path without its query string (it may carry tokens). */
  path: string;
  pid: number | null;
  /** The exception line (`ValueError: boom`) the worker wrote to stderr for it, if one was seen. */
  exception: string | null;
}

/** A worker that exited. */
export interface RecentExit {
  at: number;
  pid: number | null;
  reason: string;
}

/** The outcome of a reload. */
export interface RecentReload {
  at: number;
  reason: string;
  ok: boolean;
  /** The generation serving afterwards. */
  generation: number;
  code: string | null;
  message: string | null;
}

/** Lifetime counts (they do not reset when a reload replaces the workers). */
export interface StatsTotals {
  requests: number;
  errors5xx: number;
  slow: number;
  /** Requests corral answered itself, by error code (503 queue full vs import failed...). */
  byCode: Record<string, number>;
}

/** Everything AppStats knows, read at one instant. */
export interface StatsFigures {
  window: WindowFigures;
  totals: StatsTotals;
  recentErrors: RecentError[];
  recentExits: RecentExit[];
  recentReloads: RecentReload[];
}

/** A short list that drops its oldest entry when full. */
function push<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > RECENT) list.shift();
}

/** One app's request figures and recent events. */
export class AppStats {
  readonly #now: () => number;
  readonly #slowMs: number;
  readonly #window: RequestWindow;
  readonly #totals: StatsTotals = { requests: 0, errors5xx: 0, slow: 0, byCode: {} };
  readonly #errors: RecentError[] = [];
  readonly #exits: RecentExit[] = [];
  readonly #reloads: RecentReload[] = [];
  readonly #exceptions: Array<{ at: number; pid: number; line: string }> = [];
  /** Workers whose stderr is inside a Python traceback now. */
  readonly #inTraceback = new Set<number>();

  /** `now`: epoch ms (a fake clock in tests). */
  constructor(now: () => number = Date.now, slowMs = SLOW_REQUEST_MS) {
    this.#now = now;
    this.#slowMs = slowMs;
    this.#window = new RequestWindow(now());
  }

  /** One finished request: constant work, no allocation unless it failed. */
  request(r: RequestRecord): void {
    const at = this.#now();
    this.#window.record(r.status, r.durationMs, at);
    const t = this.#totals;
    t.requests++;
    if (r.durationMs > this.#slowMs) t.slow++;
    if (r.error !== null) t.byCode[r.error] = (t.byCode[r.error] ?? 0) + 1;
    if (r.status >= 500) {
      t.errors5xx++;
      const q = r.path.indexOf('?');
      push(this.#errors, { at, status: r.status, code: r.error, method: r.method, path: q < 0 ? r.path : r.path.slice(0, q), pid: r.pid, exception: null });
    }
  }

  /**
   * A line of a worker's stderr: the line that ends a Python traceback (`KeyError: 'x'`) is kept,
   * to stand beside the failed request of that worker.
   */
  stderr(pid: number, line: string): void {
    if (line.startsWith('Traceback (most recent call last)')) {
      this.#inTraceback.add(pid);
      return;
    }
    if (!this.#inTraceback.has(pid) || line === '' || line.startsWith(' ') || line.startsWith('\t')) return;
    this.#inTraceback.delete(pid);
    // Where a slow request is (slowLogAfter): a stack, not a failure of any request.
    if (line.startsWith('SlowRequest: ')) return;
    if (this.#exceptions.length >= RECENT) this.#exceptions.shift();
    this.#exceptions.push({ at: this.#now(), pid, line: line.slice(0, MAX_LINE) });
  }

  /** A worker exited; `reason` as the pool logs it. */
  exit(pid: number | null, reason: string): void {
    if (pid !== null) this.#inTraceback.delete(pid);
    push(this.#exits, { at: this.#now(), pid, reason });
  }

  /** A reload finished (`error` null: the new generation serves). */
  reload(reason: string, generation: number, error: { code?: unknown; message: string } | null): void {
    const code = error && typeof error.code === 'string' ? error.code : error ? 'CORRAL_RELOAD_FAILED' : null;
    push(this.#reloads, { at: this.#now(), reason, ok: error === null, generation, code, message: error?.message ?? null });
  }

  /** The figures now; lists newest first. */
  read(): StatsFigures {
    const now = this.#now();
    return {
      window: this.#window.read(now),
      totals: { ...this.#totals, byCode: { ...this.#totals.byCode } },
      recentErrors: this.#errors.map((e) => ({ ...e, exception: e.exception ?? this.#exceptionFor(e) })).reverse(),
      recentExits: [...this.#exits].reverse(),
      recentReloads: [...this.#reloads].reverse(),
    };
  }

  /** The exception line the same worker wrote closest in time to a failed request. */
  #exceptionFor(e: RecentError): string | null {
    let best: { at: number; line: string } | null = null;
    for (const x of this.#exceptions) {
      if (x.pid !== e.pid || Math.abs(x.at - e.at) > PAIR_MS) continue;
      if (best === null || Math.abs(x.at - e.at) <= Math.abs(best.at - e.at)) best = x;
    }
    return best?.line ?? null;
  }
}

/** The stats of every app, by the name requests carry (the pool's name). */
export class StatsBook {
  readonly #apps = new Map<string, AppStats>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The app's stats, made on first use. */
  for(app: string): AppStats {
    let s = this.#apps.get(app);
    if (!s) this.#apps.set(app, (s = new AppStats(this.#now)));
    return s;
  }

  /** The request observer: one map lookup and AppStats.request. */
  readonly observe = (r: RequestRecord): void => {
    this.for(r.app ?? '(no app)').request(r);
  };
}
