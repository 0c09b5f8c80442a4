/**
 * One read of the service's state: the document `GET /status.json` returns, which the HTML page,
 * the metrics gauges and `corral status` all render. Built synchronously from the pools' own
 * figures, so it answers even when every worker thread is busy.
 */
import { workerBounds } from '../config/settings.js';
import type { CorralError } from '../errors.js';
import type { RecentError, RecentExit, RecentReload, StatsFigures } from '../monitor/app-stats.js';
import type { SecondPoint, StatusClass } from '../monitor/window.js';
import type { PoolState } from '../pool/pool.js';
import type { ControlApp, ControlTarget } from './target.js';

/**
 * Bumped when a field changes meaning or goes away (new fields do not bump it). 2: `totals.requests`
 * counts since the app started (it was the live workers' sum, which a reload reset).
 */
export const STATUS_SCHEMA = 2;

/** `GET /status.json`. */
export interface StatusDocument {
  schema: typeof STATUS_SCHEMA;
  /** ISO time of this snapshot. */
  generatedAt: string;
  /** True when the request carried no control token: `root` is null, errors carry their code only. */
  redacted: boolean;
  service: ServiceStatus;
  apps: AppStatus[];
}

/** The corral process itself. */
export interface ServiceStatus {
  version: string;
  pid: number;
  node: string;
  platform: NodeJS.Platform;
  startedAt: string;
  uptimeSeconds: number;
  /** True while stopping: /healthz answers 503. */
  draining: boolean;
}

/** One app and its pool. */
export interface AppStatus {
  /** The `app` label of the metrics: the WSGI callable, or `callable@directory` when two apps share one. */
  name: string;
  /** The app directory (unique per app; `POST /reload?app=` accepts it too); null in a redacted document. */
  root: string | null;
  wsgiApp: string;
  state: PoolState;
  /** Generation that gets new requests; higher ones in `workers` are a reload booting. */
  servingGeneration: number;
  /** Requests waiting for a free worker thread. */
  queued: number;
  /** Most requests waiting at once since the app started (direct: connections in the listen queue). */
  queueHighWater: number;
  /** How long the oldest waiting request has waited, seconds. */
  longestWaitSeconds: number;
  /** Times requests had to wait because maxWorkers were running. */
  maxWorkersReached: number;
  limits: { minWorkers: number; maxWorkers: number; threadsPerWorker: number; queueLength: number };
  totals: {
    workers: number;
    /** Workers in state `ready`. */
    ready: number;
    /** Requests in flight over all workers, and the threads of the ready ones. */
    inflight: number;
    threads: number;
    /** Requests finished since the app started (reloads do not reset it); without a control listener, by the workers alive now. */
    requests: number;
    rssBytes: number;
  };
  workers: WorkerInfo[];
  /** The last minute of requests and lifetime counts; null where the service keeps no figures. */
  traffic: TrafficStatus | null;
  /** The last requests answered 5xx, newest first (path and exception null in a redacted document). */
  recentErrors: Array<Omit<RecentError, 'at' | 'path' | 'exception'> & { at: string; path: string | null; exception: string | null }>;
  /** The last worker exits and reload results, newest first. */
  recentExits: Array<Omit<RecentExit, 'at'> & { at: string }>;
  recentReloads: Array<Omit<RecentReload, 'at'> & { at: string }>;
  /** Why the pool is `failed` (it answers 503 and retries), or null. */
  failure: ErrorInfo | null;
  /** The boot or deploy error of the last reload that did not take; cleared by a good one. */
  lastReloadError: ErrorInfo | null;
  /**
   * Direct data plane, while the pool is failed: the one process that answers the error page on the
   * shared socket (not a worker of the app: not in `workers` nor the totals); null when none runs.
   */
  answerer: AnswererStatus | null;
}

/** The answerer (src/pool/answerer.ts) as the status page shows it. */
export interface AnswererStatus {
  pid: number;
  state: string;
  /** Requests it answered with the error page. */
  requests: number;
  /** The error code of that page. */
  code: string | null;
  uptimeSeconds: number;
}

/** An app's requests over the last minute (`windowSeconds` less just after start). */
export interface TrafficStatus {
  windowSeconds: number;
  /** Requests per second over the last 10 s, and over the window. */
  perSecond: number;
  perSecondMinute: number;
  requests: number;
  byClass: Record<StatusClass, number>;
  /** Share of the window's requests answered 5xx, 0..1. */
  errorRate: number;
  /** Percentiles over the window, ms (estimated within fixed buckets); null without requests. */
  latencyMs: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  /** Since the app started: requests over 1 s, and those corral answered itself by error code. */
  slow: number;
  byErrorCode: Record<string, number>;
  /** Per second, oldest first: the chart's data. */
  series: SecondPoint[];
}

/** One worker process. */
export interface WorkerInfo {
  pid: number;
  generation: number;
  /** starting | ready | draining | stopping | exited */
  state: string;
  /** Requests completed. */
  requests: number;
  inflight: number;
  /** Percent of one CPU at the last sample (about once a second); null before the first. */
  cpuPercent: number | null;
  /** CPU time used so far (user + system), seconds, at the last sample. */
  cpuSeconds: number | null;
  rssBytes: number | null;
  uptimeSeconds: number;
  /** Why it is being replaced (it serves until its replacement is ready), or null. */
  recycle: string | null;
  /** The requests running on it now (direct mode: as the worker last reported); path null in a redacted document. */
  current: Array<{ method: string; path: string | null; ageSeconds: number }>;
}

/** An error as operators read it: code, one-line message, and the traceback or output if any. */
export interface ErrorInfo {
  code: string;
  message: string;
  detail: string | null;
}

/** Facts about the process that the target does not know. */
export interface ServiceFacts {
  version: string;
  /** When the service started. */
  startedAt: Date;
}

/** Reads the target into a status document. */
export function snapshot(target: ControlTarget, facts: ServiceFacts, now: Date = new Date()): StatusDocument {
  return {
    schema: STATUS_SCHEMA,
    generatedAt: now.toISOString(),
    redacted: false,
    service: {
      version: facts.version,
      pid: process.pid,
      node: process.version,
      platform: process.platform,
      startedAt: facts.startedAt.toISOString(),
      uptimeSeconds: Math.max(0, Math.round((now.getTime() - facts.startedAt.getTime()) / 1000)),
      draining: target.draining,
    },
    apps: target.apps.map(appStatus),
  };
}

/** One app's part of the document. */
export function appStatus(app: ControlApp): AppStatus {
  const s = app.settings;
  const pool = app.pool;
  const { min, max } = workerBounds(s);
  const workers: WorkerInfo[] = pool.status().map((w) => ({
    pid: w.pid,
    generation: w.generation,
    state: w.state,
    requests: w.requests,
    inflight: w.inflight,
    cpuPercent: w.cpu === null ? null : Math.round(w.cpu * 10) / 10,
    cpuSeconds: w.cpuSeconds === null ? null : Math.round(w.cpuSeconds * 100) / 100,
    rssBytes: w.rssBytes,
    uptimeSeconds: Math.round(w.uptimeMs / 1000),
    recycle: w.recycle,
    current: w.running.map((r) => ({ method: r.method, path: r.path, ageSeconds: Math.round(r.ageMs / 100) / 10 })),
  }));
  const ready = workers.filter((w) => w.state === 'ready');
  const stats = app.stats?.read() ?? null;
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    name: app.name,
    root: s.root,
    wsgiApp: s.wsgiApp,
    state: pool.state,
    servingGeneration: pool.servingGeneration,
    queued: pool.queued,
    queueHighWater: pool.queueHighWater,
    longestWaitSeconds: Math.round(pool.longestWaitMs / 100) / 10,
    maxWorkersReached: pool.maxWorkersReached,
    limits: { minWorkers: min, maxWorkers: max, threadsPerWorker: s.threads, queueLength: s.queueLength },
    totals: {
      workers: workers.length,
      ready: ready.length,
      inflight: workers.reduce((n, w) => n + w.inflight, 0),
      threads: ready.length * s.threads,
      requests: stats ? stats.totals.requests : workers.reduce((n, w) => n + w.requests, 0),
      rssBytes: workers.reduce((n, w) => n + (w.rssBytes ?? 0), 0),
    },
    workers,
    traffic: stats ? traffic(stats) : null,
    recentErrors: (stats?.recentErrors ?? []).map((e) => ({ ...e, at: iso(e.at) })),
    recentExits: (stats?.recentExits ?? []).map((e) => ({ ...e, at: iso(e.at) })),
    recentReloads: (stats?.recentReloads ?? []).map((e) => ({ ...e, at: iso(e.at) })),
    failure: errorInfo(pool.failure),
    lastReloadError: errorInfo(pool.lastReloadError),
    answerer: answererStatus(app),
  };
}

function answererStatus(app: ControlApp): AnswererStatus | null {
  const a = app.answerer ?? null;
  return a ? { pid: a.pid, state: a.state, requests: a.requests, code: a.code, uptimeSeconds: Math.round(a.uptimeMs / 1000) } : null;
}

function traffic(f: StatsFigures): TrafficStatus {
  const w = f.window;
  const round = (v: number | null): number | null => (v === null ? null : Math.round(v * 100) / 100);
  return {
    windowSeconds: w.seconds,
    perSecond: Math.round(w.perSecond * 100) / 100,
    perSecondMinute: Math.round(w.perSecondMinute * 100) / 100,
    requests: w.requests,
    byClass: w.byClass,
    errorRate: Math.round(w.errorRate * 10_000) / 10_000,
    latencyMs: { p50: round(w.p50Ms), p95: round(w.p95Ms), p99: round(w.p99Ms), max: round(w.maxMs) },
    slow: f.totals.slow,
    byErrorCode: f.totals.byCode,
    series: w.series.map((p) => ({ ...p, maxMs: Math.round(p.maxMs * 100) / 100, p95Ms: round(p.p95Ms) })),
  };
}

/** One line of the recent errors as people read them: repeats of the same failure folded into one. */
export interface ErrorGroup {
  /** The newest of the group. */
  latest: AppStatus['recentErrors'][number];
  count: number;
}

/** Folds recent errors (newest first) that share status, request, code and exception, keeping the order of their newest. */
export function groupErrors(errors: AppStatus['recentErrors']): ErrorGroup[] {
  const groups = new Map<string, ErrorGroup>();
  for (const e of errors) {
    const key = JSON.stringify([e.status, e.method, e.path, e.code, e.exception]);
    const g = groups.get(key);
    if (g) g.count++;
    else groups.set(key, { latest: e, count: 1 });
  }
  return [...groups.values()];
}

/** The sentence a redacted error carries instead of its message. */
export const HIDDEN_MESSAGE = 'details hidden: send the control token (corral status does)';

/**
 * The document for a reader without the token: no app directories, no error messages (they quote
 * paths) and no tracebacks; codes, states and figures stay.
 */
export function redact(doc: StatusDocument): StatusDocument {
  const hide = (e: ErrorInfo | null): ErrorInfo | null => (e ? { code: e.code, message: HIDDEN_MESSAGE, detail: null } : null);
  return {
    ...doc,
    redacted: true,
    apps: doc.apps.map((a) => ({
      ...a,
      root: null,
      failure: hide(a.failure),
      lastReloadError: hide(a.lastReloadError),
      workers: a.workers.map((w) => ({ ...w, current: w.current.map((c) => ({ ...c, path: null })) })),
      // Paths may name private things, and exception messages quote data.
      recentErrors: a.recentErrors.map((e) => ({ ...e, path: null, exception: null })),
      recentReloads: a.recentReloads.map((r) => ({ ...r, reason: r.reason.startsWith('files changed') ? 'files changed' : r.reason, message: r.message === null ? null : HIDDEN_MESSAGE })),
    })),
  };
}

function errorInfo(err: CorralError | null): ErrorInfo | null {
  return err ? { code: err.code, message: err.message, detail: err.detail ?? null } : null;
}

/** The apps a `POST /reload?app=NAME` means: all for null, else those whose name, root or directory name is NAME. */
export function selectApps<A extends ControlApp>(apps: readonly A[], name: string | null): A[] {
  if (name === null || name === '') return [...apps];
  const trimmed = name.replace(/[\\/]+$/, '');
  return apps.filter((a) => {
    const root = a.settings.root.replace(/[\\/]+$/, '');
    const dir = root.split(/[\\/]/).pop() ?? '';
    return a.settings.wsgiApp === name || root === trimmed || dir === trimmed;
  });
}
