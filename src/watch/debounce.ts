/**
 * Collapses a burst of file events into one reload: fires `delayMs` after the last event, or
 * `maxWaitMs` after the first if events keep coming. Time is injected for tests.
 */

/** Timers as the debouncer needs them. */
export interface TimerApi {
  now(): number;
  setTimeout(cb: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: TimerApi = {
  now: () => performance.now(),
  setTimeout: (cb, ms) => {
    const t = setTimeout(cb, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Gathers changed paths and calls `fire` once per burst with all of them. */
export class Debouncer {
  readonly #delayMs: number;
  readonly #maxWaitMs: number;
  readonly #timers: TimerApi;
  readonly #fire: (paths: string[]) => void;
  #paths = new Set<string>();
  #firstAt = 0;
  #handle: unknown = null;

  constructor(delayMs: number, maxWaitMs: number, fire: (paths: string[]) => void, timers: TimerApi = realTimers) {
    this.#delayMs = delayMs;
    this.#maxWaitMs = maxWaitMs;
    this.#fire = fire;
    this.#timers = timers;
  }

  /** Records one change. */
  trigger(path: string): void {
    const now = this.#timers.now();
    if (this.#paths.size === 0) this.#firstAt = now;
    this.#paths.add(path);
    if (this.#handle !== null) this.#timers.clearTimeout(this.#handle);
    const wait = Math.max(0, Math.min(this.#delayMs, this.#firstAt + this.#maxWaitMs - now));
    this.#handle = this.#timers.setTimeout(() => this.flush(), wait);
  }

  /** Fires now if anything is pending. */
  flush(): void {
    if (this.#handle !== null) this.#timers.clearTimeout(this.#handle);
    this.#handle = null;
    if (this.#paths.size === 0) return;
    const paths = [...this.#paths];
    this.#paths.clear();
    this.#fire(paths);
  }

  /** Drops pending changes. */
  cancel(): void {
    if (this.#handle !== null) this.#timers.clearTimeout(this.#handle);
    this.#handle = null;
    this.#paths.clear();
  }
}
