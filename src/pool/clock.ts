/**
 * Time as the supervisor sees it: a monotonic `now()` in milliseconds and one repeating timer.
 * Tests pass a fake clock and drive the supervisor's tick without sleeping.
 */

/** A cancellable timer. */
export interface Timer {
  cancel(): void;
}

/** The supervisor's clock. */
export interface Clock {
  now(): number;
  /** Calls `cb` every `ms` until cancelled. The timer must not keep the process alive. */
  every(ms: number, cb: () => void): Timer;
}

/** The real clock: performance.now() and an unref'd setInterval. */
export const realClock: Clock = {
  now: () => performance.now(),
  every(ms, cb) {
    const t = setInterval(cb, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};
