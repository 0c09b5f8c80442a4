/**
 * Request figures over the last minute, in one-second buckets: counts by status class and a
 * fixed-bucket latency histogram per second. Recording a request is O(1) with no allocation (a
 * bucket is reused once its second has passed), so the proxy hot path can afford it; reading
 * (the status page, a few times a minute) walks at most 60 buckets.
 */

/** Upper bounds of the latency buckets, in ms; one more bucket takes everything above the last. */
export const LATENCY_BOUNDS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000] as const;
const BUCKETS = LATENCY_BOUNDS_MS.length + 1;
/** Seconds kept. */
export const WINDOW_SECONDS = 60;
/** Count columns per second: requests, 1xx..5xx (index = class), then the other statuses. */
const COLS = 7;
const OTHER = 6;

/** Status classes as the page and the JSON name them. */
export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx';
const CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** One second of the chart. */
export interface SecondPoint {
  /** Epoch seconds. */
  t: number;
  requests: number;
  errors: number;
  /** Slowest request finished in that second, ms (0 when none). */
  maxMs: number;
  /** p95 of that second (bucket estimate), ms; null when no request. */
  p95Ms: number | null;
}

/** What the window holds when read. */
export interface WindowFigures {
  /** Seconds the figures cover (less than a minute just after start). */
  seconds: number;
  requests: number;
  /** Requests per second over the last 10 seconds (uwsgitop's "live" rate) and over the window. */
  perSecond: number;
  perSecondMinute: number;
  byClass: Record<StatusClass, number>;
  /** Share of requests answered 5xx, 0..1 (0 without requests). */
  errorRate: number;
  /** Latency percentiles over the window, ms (bucket estimates); null without requests. */
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  /** Per second, oldest first, seconds without requests included (for the chart). */
  series: SecondPoint[];
}

/** The bucket index for a duration: a scan of 15 bounds, constant work. */
export function bucketOf(ms: number): number {
  for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) if (ms <= LATENCY_BOUNDS_MS[i]!) return i;
  return LATENCY_BOUNDS_MS.length;
}

/**
 * The value at quantile `q` of a histogram, interpolated linearly inside its bucket (as
 * Prometheus' histogram_quantile does); the open top bucket answers with `maxMs`.
 */
export function quantile(hist: ArrayLike<number>, q: number, maxMs: number): number | null {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i]!;
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    const n = hist[i]!;
    if (n === 0) continue;
    if (seen + n >= rank) {
      if (i >= LATENCY_BOUNDS_MS.length) return maxMs;
      const lo = i === 0 ? 0 : LATENCY_BOUNDS_MS[i - 1]!;
      const hi = LATENCY_BOUNDS_MS[i]!;
      // Never above what was seen: one request of 3 ms reads 3, not the bucket's 5.
      return Math.min(maxMs, lo + ((hi - lo) * (rank - seen)) / n);
    }
    seen += n;
  }
  return maxMs;
}

/** The last minute of requests, one bucket per second. */
export class RequestWindow {
  /** Which epoch second each slot holds; -1 for never used. */
  readonly #second = new Float64Array(WINDOW_SECONDS).fill(-1);
  readonly #counts = new Uint32Array(WINDOW_SECONDS * COLS);
  readonly #hist = new Uint32Array(WINDOW_SECONDS * BUCKETS);
  readonly #max = new Float64Array(WINDOW_SECONDS);
  /** First second recorded or read, so the rate just after start is not diluted by empty seconds. */
  #since = -1;

  constructor(startMs: number | null = null) {
    if (startMs !== null) this.#since = Math.floor(startMs / 1000);
  }

  /** One finished request at `nowMs` (epoch ms). */
  record(status: number, ms: number, nowMs: number): void {
    const slot = this.#slot(Math.floor(nowMs / 1000));
    if (slot < 0) return;
    const c = slot * COLS;
    this.#counts[c]!++;
    const cls = Math.floor(status / 100);
    this.#counts[c + (cls >= 1 && cls <= 5 ? cls : OTHER)]!++;
    this.#hist[slot * BUCKETS + bucketOf(ms)]!++;
    if (ms > this.#max[slot]!) this.#max[slot] = ms;
  }

  /** The figures at `nowMs`: the current second and the 59 before it. */
  read(nowMs: number): WindowFigures {
    const now = Math.floor(nowMs / 1000);
    if (this.#since < 0) this.#since = now;
    const hist = new Array<number>(BUCKETS).fill(0);
    const byClass: Record<StatusClass, number> = { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 };
    const series: SecondPoint[] = [];
    let requests = 0;
    let recent = 0;
    let maxMs = 0;
    for (let t = now - WINDOW_SECONDS + 1; t <= now; t++) {
      const slot = ((t % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
      const live = this.#second[slot] === t;
      const c = slot * COLS;
      const n = live ? this.#counts[c]! : 0;
      const point: SecondPoint = { t, requests: n, errors: live ? this.#counts[c + 5]! : 0, maxMs: live ? this.#max[slot]! : 0, p95Ms: null };
      if (n > 0) {
        requests += n;
        if (t > now - 10) recent += n;
        CLASSES.forEach((name, i) => (byClass[name] += this.#counts[c + i + 1]!));
        const own = this.#hist.subarray(slot * BUCKETS, (slot + 1) * BUCKETS);
        for (let b = 0; b < BUCKETS; b++) hist[b] = hist[b]! + own[b]!;
        point.p95Ms = quantile(own, 0.95, point.maxMs);
        if (point.maxMs > maxMs) maxMs = point.maxMs;
      }
      series.push(point);
    }
    const seconds = Math.max(1, Math.min(WINDOW_SECONDS, now - this.#since + 1));
    return {
      seconds,
      requests,
      perSecond: recent / Math.min(10, seconds),
      perSecondMinute: requests / seconds,
      byClass,
      errorRate: requests === 0 ? 0 : byClass['5xx'] / requests,
      p50Ms: quantile(hist, 0.5, maxMs),
      p95Ms: quantile(hist, 0.95, maxMs),
      p99Ms: quantile(hist, 0.99, maxMs),
      maxMs: requests === 0 ? null : maxMs,
      series,
    };
  }

  /** The slot for epoch second `t`, cleared if it held an older second; -1 if it holds a newer one (the clock stepped back). */
  #slot(t: number): number {
    if (this.#since < 0) this.#since = t;
    const slot = ((t % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
    if (this.#second[slot]! > t) return -1;
    if (this.#second[slot] !== t) {
      this.#second[slot] = t;
      this.#counts.fill(0, slot * COLS, (slot + 1) * COLS);
      this.#hist.fill(0, slot * BUCKETS, (slot + 1) * BUCKETS);
      this.#max[slot] = 0;
    }
    return slot;
  }
}
