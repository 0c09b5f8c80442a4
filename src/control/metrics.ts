/**
 * Prometheus metrics (prom-client, a registry of our own, not the global one). Counters and the
 * duration histogram are fed by events as they happen (`Metrics`); gauges are read from the
 * status snapshot at scrape time, so they are never stale and cost nothing between scrapes.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { SLOW_REQUEST_MS } from '../monitor/app-stats.js';
import type { StatusDocument } from './snapshot.js';

/** What the fronts and pools report as things happen. */
export interface Metrics {
  /** A request finished: the HTTP status the client got (corral's own 5xx included), its duration, and corral's error code if corral answered. */
  requestDone(app: string, status: number, seconds: number, error?: string | null): void;
  /** A worker process exited; `reason` is the pool's free text (see restartReason). */
  workerExit(app: string, reason: string): void;
}

/** Seconds. Up to IIS's 90 s requestTimeout and beyond, since slow requests are what people look for. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * Exit reasons (restartReason labels) after which the pool starts a replacement because of the
 * worker itself. Scale-down, stops and reloads end workers too, but are no restart.
 */
const NOT_RESTARTS = new Set(['idle', 'stop', 'stopped', 'reload', 'grace_timeout', 'pool_failed']);

/** Worker states shown even when no worker is in them, so dashboards see 0 rather than no series. */
const WORKER_STATES = ['starting', 'ready', 'draining', 'stopping'] as const;
const POOL_STATES = ['starting', 'running', 'reloading', 'failed', 'stopping', 'stopped'] as const;

/**
 * A short, bounded label for a worker exit reason. The pool's reasons quote values ("served
 * maxRequests (1000)", "request ran over requestTimeout (90 s)"); labels must not, or every
 * setting change would create new series.
 */
export function restartReason(text: string): string {
  const rules: Array<[RegExp, string]> = [
    [/maxRequests/, 'max_requests'],
    [/maxMemoryMB|RSS/, 'memory'],
    [/requestTimeout/, 'request_timeout'],
    [/startupTimeout/, 'startup_timeout'],
    [/gracefulTimeout|grace period/, 'grace_timeout'],
    [/PONG|stuck/, 'unresponsive'],
    [/superseded|generation failed|reload/, 'reload'],
    [/idle|scal/, 'idle'],
    [/pool failed/, 'pool_failed'],
    [/service stop/, 'stop'],
    [/^stopped$/, 'stopped'],
    [/import failed/, 'import_failed'],
    [/spawn failed|boot failed|before ready/, 'boot_failed'],
    [/^killed$/, 'killed'],
    [/^signal (SIG[A-Z0-9]+)$/, 'signal'],
    [/^exit code/, 'crash'],
  ];
  for (const [re, label] of rules) {
    const m = re.exec(text);
    if (m) return label === 'signal' ? `signal_${m[1] ?? ''}` : label;
  }
  return 'other';
}

/** The service's registry and the recorder the pools and fronts call. */
export class PromMetrics implements Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'app' | 'status'>;
  readonly #duration: Histogram<'app'>;
  readonly #errors: Counter<'app' | 'code' | 'status'>;
  readonly #slow: Counter<'app'>;
  readonly #exits: Counter<'app' | 'reason'>;
  readonly #restarts: Counter<'app' | 'reason'>;
  readonly #queue: Gauge<'app'>;
  readonly #queueHigh: Gauge<'app'>;
  readonly #queueWait: Gauge<'app'>;
  readonly #maxReached: Counter<'app'>;
  readonly #workers: Gauge<'app' | 'state'>;
  readonly #busy: Gauge<'app'>;
  readonly #threads: Gauge<'app'>;
  readonly #rss: Gauge<'app'>;
  readonly #cpu: Counter<'app'>;
  readonly #poolState: Gauge<'app' | 'state'>;
  readonly #generation: Gauge<'app'>;
  readonly #draining: Gauge;
  readonly #build: Gauge<'version' | 'node'>;
  /** Per app: CPU seconds of each live worker at its last sample, of the exited ones, and what the counter holds. */
  readonly #cpuBook = new Map<string, { live: Map<number, number>; exited: number; counted: number }>();
  /** Per app: the pool's maxWorkersReached the counter holds. */
  readonly #maxSeen = new Map<string, number>();
  #defaults = false;

  constructor() {
    const registers = [this.registry];
    this.#requests = new Counter({ name: 'corral_requests_total', help: 'Requests finished, by the HTTP status the client got.', labelNames: ['app', 'status'], registers });
    this.#duration = new Histogram({ name: 'corral_request_duration_seconds', help: 'Time from a request entering corral to its last byte, queue wait included.', labelNames: ['app'], buckets: DURATION_BUCKETS, registers });
    this.#errors = new Counter({ name: 'corral_error_responses_total', help: 'Requests corral answered itself instead of the app, by error code (CORRAL_QUEUE_FULL, CORRAL_IMPORT_FAILED, ...) and status.', labelNames: ['app', 'code', 'status'], registers });
    this.#slow = new Counter({ name: 'corral_slow_requests_total', help: `Requests that took over ${SLOW_REQUEST_MS / 1000} s, queue wait included.`, labelNames: ['app'], registers });
    this.#exits = new Counter({ name: 'corral_worker_exits_total', help: 'Worker processes that exited, by reason: recycling, crashes, scale-down, reloads and stops alike.', labelNames: ['app', 'reason'], registers });
    this.#restarts = new Counter({ name: 'corral_worker_restarts_total', help: 'Worker exits the pool replaced because of the worker (recycled, over a limit, crashed, killed); not scale-down, reloads or stops.', labelNames: ['app', 'reason'], registers });
    this.#queue = new Gauge({ name: 'corral_queue_length', help: 'Requests waiting for a free worker thread.', labelNames: ['app'], registers });
    this.#queueHigh = new Gauge({ name: 'corral_queue_high_water', help: 'Most requests waiting at once since the app started (direct data plane: connections in the listen queue).', labelNames: ['app'], registers });
    this.#queueWait = new Gauge({ name: 'corral_queue_oldest_wait_seconds', help: 'How long the oldest request still waiting has waited.', labelNames: ['app'], registers });
    this.#maxReached = new Counter({ name: 'corral_max_workers_reached_total', help: 'Times requests had to wait because maxWorkers were running (PHP-FPM: max children reached).', labelNames: ['app'], registers });
    this.#workers = new Gauge({ name: 'corral_workers', help: 'Worker processes by state.', labelNames: ['app', 'state'], registers });
    this.#busy = new Gauge({ name: 'corral_busy_threads', help: 'Worker threads running a request now.', labelNames: ['app'], registers });
    this.#threads = new Gauge({ name: 'corral_threads', help: 'Worker threads of the ready workers.', labelNames: ['app'], registers });
    this.#rss = new Gauge({ name: 'corral_workers_rss_bytes', help: 'Resident memory of all worker processes at the last sample (per worker: the status page).', labelNames: ['app'], registers });
    this.#cpu = new Counter({ name: 'corral_workers_cpu_seconds_total', help: 'CPU time (user + system) used by the worker processes, exited ones included, as sampled about once a second.', labelNames: ['app'], registers });
    this.#poolState = new Gauge({ name: 'corral_pool_state', help: 'Pool state of each app: 1 for its current state, 0 for the others.', labelNames: ['app', 'state'], registers });
    this.#generation = new Gauge({ name: 'corral_serving_generation', help: 'Generation of workers that gets new requests; it grows by one per reload.', labelNames: ['app'], registers });
    this.#draining = new Gauge({ name: 'corral_draining', help: '1 while the service is stopping (/healthz answers 503).', registers });
    this.#build = new Gauge({ name: 'corral_build_info', help: 'Always 1; the labels say which corral and which Node run.', labelNames: ['version', 'node'], registers });
  }

  requestDone(app: string, status: number, seconds: number, error: string | null = null): void {
    this.#requests.inc({ app, status: String(status) });
    this.#duration.observe({ app }, seconds);
    if (error !== null) this.#errors.inc({ app, code: error, status: String(status) });
    if (seconds * 1000 > SLOW_REQUEST_MS) this.#slow.inc({ app });
  }

  workerExit(app: string, reason: string): void {
    const label = restartReason(reason);
    this.#exits.inc({ app, reason: label });
    if (!NOT_RESTARTS.has(label)) this.#restarts.inc({ app, reason: label });
  }

  /**
   * Adds Node's own process metrics (CPU, memory, event loop lag, handles), prefixed `corral_`.
   * Called by a service with a control listener at its start, so CPU counts from there; idempotent.
   */
  collectProcessMetrics(): void {
    if (this.#defaults) return;
    this.#defaults = true;
    collectDefaultMetrics({ register: this.registry, prefix: 'corral_' });
  }

  /** The exposition text, with the gauges set from `doc`. */
  async text(doc: StatusDocument): Promise<string> {
    this.collectProcessMetrics();
    this.#setGauges(doc);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #setGauges(doc: StatusDocument): void {
    for (const g of [this.#queue, this.#queueHigh, this.#queueWait, this.#workers, this.#busy, this.#threads, this.#rss, this.#poolState, this.#generation, this.#build]) g.reset();
    this.#draining.set(doc.service.draining ? 1 : 0);
    this.#build.set({ version: doc.service.version, node: doc.service.node }, 1);
    for (const a of doc.apps) {
      const app = a.name;
      this.#queue.set({ app }, a.queued);
      this.#queueHigh.set({ app }, a.queueHighWater);
      this.#queueWait.set({ app }, a.longestWaitSeconds);
      this.#generation.set({ app }, a.servingGeneration);
      this.#busy.set({ app }, a.totals.inflight);
      this.#threads.set({ app }, a.totals.threads);
      this.#rss.set({ app }, a.totals.rssBytes);
      for (const state of POOL_STATES) this.#poolState.set({ app, state }, a.state === state ? 1 : 0);
      for (const state of WORKER_STATES) this.#workers.set({ app, state }, 0);
      for (const w of a.workers) this.#workers.inc({ app, state: w.state }, 1);
      this.#countCpu(app, a.workers);
      // The pool's count restarts when an app is started again (apps that requests name): count on from there.
      const seen = this.#maxSeen.get(app) ?? 0;
      const step = a.maxWorkersReached >= seen ? a.maxWorkersReached - seen : a.maxWorkersReached;
      this.#maxReached.inc({ app }, step);
      this.#maxSeen.set(app, a.maxWorkersReached);
    }
  }

  /** Adds the CPU seconds the app's workers used since the last scrape; an exited worker's last sample stays counted. */
  #countCpu(app: string, workers: StatusDocument['apps'][number]['workers']): void {
    let book = this.#cpuBook.get(app);
    if (!book) this.#cpuBook.set(app, (book = { live: new Map(), exited: 0, counted: 0 }));
    const now = new Set<number>();
    for (const w of workers) {
      now.add(w.pid);
      if (w.cpuSeconds !== null) book.live.set(w.pid, Math.max(w.cpuSeconds, book.live.get(w.pid) ?? 0));
    }
    for (const [pid, seconds] of book.live) {
      if (now.has(pid)) continue;
      book.exited += seconds;
      book.live.delete(pid);
    }
    let total = book.exited;
    for (const seconds of book.live.values()) total += seconds;
    this.#cpu.inc({ app }, Math.max(0, total - book.counted));
    book.counted = Math.max(book.counted, total);
  }
}
