/**
 * Prometheus metrics (prom-client, a registry of our own, not the global one). Counters and the
 * duration histogram are fed by events as they happen (`Metrics`); gauges are read from the
 * status snapshot at scrape time, so they are never stale and cost nothing between scrapes.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StatusDocument } from './snapshot.js';

/** What the fronts and pools report as things happen. */
export interface Metrics {
  /** A request finished: the HTTP status the client got (corral's own 5xx included) and its duration. */
  requestDone(app: string, status: number, seconds: number): void;
  /** A worker process exited; `reason` is the pool's free text (see restartReason). */
  workerExit(app: string, reason: string): void;
}

/** Seconds. Up to IIS's 90 s requestTimeout and beyond, since slow requests are what people look for. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

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
  readonly #restarts: Counter<'app' | 'reason'>;
  readonly #queue: Gauge<'app'>;
  readonly #workers: Gauge<'app' | 'state'>;
  readonly #rss: Gauge<'app' | 'pid'>;
  readonly #cpu: Gauge<'app' | 'pid'>;
  readonly #poolState: Gauge<'app' | 'state'>;
  readonly #generation: Gauge<'app'>;
  readonly #draining: Gauge;

  constructor() {
    const registers = [this.registry];
    this.#requests = new Counter({ name: 'corral_requests_total', help: 'Requests finished, by the HTTP status the client got.', labelNames: ['app', 'status'], registers });
    this.#duration = new Histogram({ name: 'corral_request_duration_seconds', help: 'Time from a request entering corral to its last byte, queue wait included.', labelNames: ['app'], buckets: DURATION_BUCKETS, registers });
    this.#restarts = new Counter({ name: 'corral_worker_restarts_total', help: 'Worker exits by reason; the pool replaces each one unless it is stopping or scaling down.', labelNames: ['app', 'reason'], registers });
    this.#queue = new Gauge({ name: 'corral_queue_length', help: 'Requests waiting for a free worker thread.', labelNames: ['app'], registers });
    this.#workers = new Gauge({ name: 'corral_workers', help: 'Worker processes by state.', labelNames: ['app', 'state'], registers });
    this.#rss = new Gauge({ name: 'corral_worker_rss_bytes', help: 'Resident memory of each worker process at the last sample.', labelNames: ['app', 'pid'], registers });
    this.#cpu = new Gauge({ name: 'corral_worker_cpu_percent', help: 'CPU use of each worker process at the last sample, in percent of one CPU.', labelNames: ['app', 'pid'], registers });
    this.#poolState = new Gauge({ name: 'corral_pool_state', help: 'Pool state of each app: 1 for its current state, 0 for the others.', labelNames: ['app', 'state'], registers });
    this.#generation = new Gauge({ name: 'corral_serving_generation', help: 'Generation of workers that gets new requests; it grows by one per reload.', labelNames: ['app'], registers });
    this.#draining = new Gauge({ name: 'corral_draining', help: '1 while the service is stopping (/healthz answers 503).', registers });
  }

  requestDone(app: string, status: number, seconds: number): void {
    this.#requests.inc({ app, status: String(status) });
    this.#duration.observe({ app }, seconds);
  }

  workerExit(app: string, reason: string): void {
    this.#restarts.inc({ app, reason: restartReason(reason) });
  }

  /** The exposition text, with the gauges set from `doc`. */
  async text(doc: StatusDocument): Promise<string> {
    this.#setGauges(doc);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #setGauges(doc: StatusDocument): void {
    for (const g of [this.#queue, this.#workers, this.#rss, this.#cpu, this.#poolState, this.#generation]) g.reset();
    this.#draining.set(doc.service.draining ? 1 : 0);
    // Apps sharing a WSGI callable (IIS sites with the same wsgi.py layout) share a label: add up.
    for (const a of doc.apps) {
      const app = a.name;
      this.#queue.inc({ app }, a.queued);
      this.#generation.set({ app }, a.servingGeneration);
      for (const state of POOL_STATES) this.#poolState.inc({ app, state }, a.state === state ? 1 : 0);
      for (const state of WORKER_STATES) this.#workers.inc({ app, state }, 0);
      for (const w of a.workers) {
        this.#workers.inc({ app, state: w.state }, 1);
        if (w.rssBytes !== null) this.#rss.set({ app, pid: String(w.pid) }, w.rssBytes);
        if (w.cpuPercent !== null) this.#cpu.set({ app, pid: String(w.pid) }, w.cpuPercent);
      }
    }
  }
}
