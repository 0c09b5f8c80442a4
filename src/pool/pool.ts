/**
 * The supervisor of one app's workers, after gunicorn's arbiter and PHP-FPM's process manager:
 * worker exits, READY, PONG and memory samples only enqueue events; one tick drains them, then
 * reaps, enforces timeouts and reconciles the pool with what it should be, in that order. The
 * clock, the spawn and the sampler are injected, so unit tests drive it without processes or sleeps.
 *
 * The request path stays out of the queue for speed: a request is dispatched at once to the
 * least-loaded READY worker of the serving generation, or queued in Node (bounded).
 */
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Clock, Timer } from './clock.js';
import { Exchange, type ExchangeSink } from './exchange.js';
import { classifyExit, WorkerExit } from './exit.js';
import type { DirectReport, RunningRequest } from './report.js';
import type { WorkerEvents, WorkerHandle } from './handle.js';
import { parseDevTrace } from '../devtrace.js';

/** How a pool runs. Times in milliseconds; 0 turns a limit off where noted. */
export interface PoolOptions {
  /** Name in logs (the app). */
  app: string;
  minWorkers: number;
  maxWorkers: number;
  /** 0: no limit. */
  requestTimeoutMs: number;
  startupTimeoutMs: number;
  /** Workers above minWorkers idle this long are stopped; 0: never. */
  idleTimeoutMs: number;
  /** 0: never recycle by count. */
  maxRequests: number;
  maxRequestsJitter: number;
  /** 0: no memory limit. */
  maxMemoryMB: number;
  queueLength: number;
  /** 0: wait as long as it takes. */
  queueTimeoutMs: number;
  gracefulTimeoutMs: number;
  /** First retry of a failed pool; it doubles up to FAILED_RETRY_MAX_MS. */
  failedRetryMs: number;
  /** Unexpected exits of READY workers per minute before the pool is taken offline (IIS: rapidFailsPerMinute). */
  rapidFailsPerMinute: number;
  /** An idle worker is pinged this often; one silent for pingTimeoutMs is replaced. */
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** CPU/RSS sampling period; 0: off. */
  monitorIntervalMs: number;
  /** Period of the supervisor's tick (timeouts are enforced at this resolution). */
  tickMs: number;
  /**
   * When a reload's new generation fails to boot: keep the old one serving (serve), or stop it
   * and answer with the error so the developer sees it (dev).
   */
  keepOldOnFailedReload: boolean;
  /**
   * `corral dev`: the worker's traceback is already in the terminal, whole and readable (the app
   * groups its stderr): the "pool failed" record then names the error without repeating it as an
   * escaped string.
   */
  tracebackShownAbove?: boolean;
  /**
   * Direct data plane: the workers accept their own connections and report what they do
   * (CORRAL_REPORT); the pool supervises only. No request passes through `begin()`: scaling follows
   * their reports and the listen queue, and a draining worker is told at once (it finishes its
   * requests itself).
   */
  direct?: boolean;
}

/** One sample of a process. */
export interface Usage {
  /** Percent of one CPU. */
  cpu: number;
  /** Resident set size, bytes. */
  memory: number;
  /** CPU time used since the process started (user + system), seconds; absent where unknown. */
  cpuSeconds?: number;
}

/** What the supervisor needs from the outside world. */
export interface PoolDeps {
  spawn(generation: number, events: WorkerEvents): WorkerHandle;
  clock: Clock;
  random(): number;
  sample(pids: number[]): Promise<Map<number, Usage>>;
  /** Where a worker's stderr lines go (default: the log, as `worker stderr`). */
  stderr?(w: WorkerHandle, line: string): void;
  /** A worker exited (for metrics); `reason` as in the exit log line, or why it was recycled. */
  workerExit?(reason: string, pid: number | null): void;
  /**
   * Runs once before the first worker of each generation starts (Helicon Zoo's DEPLOY_FILE:
   * migrations and the like). An error blocks that generation like a boot failure.
   */
  beforeGeneration?(generation: number): Promise<CorralError | null>;
  /** The service-wide worker budget (maxTotalWorkers): a unit per live worker process. */
  budget?: { take(): boolean; give(): void };
  /** A direct worker's report, as it arrives (its finished requests go to the access log and metrics). */
  report?(w: WorkerHandle, r: DirectReport): void;
  /**
   * Direct mode: the pool failed and no worker of the app accepts (`error`: what clients should be
   * answered), or a worker is ready again (null). Nothing else would answer on the shared socket:
   * the service keeps an answerer there meanwhile (answerer.ts).
   */
  answer?(error: CorralError | null, handoffTo?: string): void;
}

export type PoolState = 'starting' | 'running' | 'reloading' | 'failed' | 'stopping' | 'stopped';

/** Legal state changes; anything else is refused and logged. */
/** Lines of a crashed worker's stderr a lost request's error carries. */
const LOST_STDERR_LINES = 20;
const TRANSITIONS: Record<PoolState, readonly PoolState[]> = {
  starting: ['running', 'failed', 'stopping'],
  running: ['reloading', 'failed', 'stopping'],
  reloading: ['running', 'failed', 'stopping'],
  failed: ['running', 'stopping', 'reloading'],
  stopping: ['stopped'],
  stopped: [],
};

/** Something that takes requests: the pool, as fronts see it. */
export interface Upstream {
  begin(sink: ExchangeSink): Exchange;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
const FAILED_RETRY_MAX_MS = 60_000;
/** A worker that lived this long resets the crash backoff. */
const STABLE_MS = 30_000;
/** Scale-up adds one worker at a time, at most this often. */
const SCALE_UP_EVERY_MS = 200;
/** A direct worker past requestTimeout by this much has failed to end its request itself: killed. */
const DIRECT_TIMEOUT_GRACE_MS = 5_000;
/** Direct mode without a visible listen queue (unix sockets): every worker busy this long means more are needed. */
const DIRECT_BUSY_SCALE_MS = 1_000;
/**
 * Proxy path: requests a worker whose threads are all busy may be given ahead, while requests wait
 * anyway, so that it finds the next one in its pipe when it ends one instead of sleeping through
 * the round trip to the service and back (measured: +15-25 % requests/s on small requests, half the
 * service's context switches). Only while the app's requests have lately taken under
 * AHEAD_BELOW_MS on average, and never behind a request that has run that long already: one given
 * ahead waits for the request before it, so a slow app keeps plain queueing (a request waits for
 * whichever worker frees first).
 */
const AHEAD = 1;
const AHEAD_BELOW_MS = 10;
/** Weight of the newest request in the pool's mean request time (an exponential moving average). */
const MEAN_WEIGHT = 1 / 8;

/** The supervisor's record of one worker. */
interface Slot {
  readonly w: WorkerHandle;
  readonly spawnedAt: number;
  readyAt: number | null;
  /** Since when it has had no request; null while busy. */
  idleSince: number | null;
  /** Its own request budget (maxRequests + jitter); 0 = none. */
  readonly maxRequests: number;
  /** Why it is being replaced (serves until its replacement is READY). */
  recycle: string | null;
  /** When it stopped taking requests. */
  drainingSince: number | null;
  /** When its stdin was closed. */
  stopAt: number | null;
  /** Why we killed it, for the exit log. */
  killReason: string | null;
  /** Its exit was our doing and is no failure (stop, drain, recycle, discard, timeout kill). */
  expectedExit: boolean;
  lastPongAt: number;
  pingSentAt: number | null;
  usage: Usage | null;
  /** When its last REPORT came (direct workers). */
  reportAt: number | null;
  /** Drains that named it first among their handoff targets (direct workers: #handoffTarget). */
  handoffs: number;
}

type PoolEvent =
  | { kind: 'ready'; w: WorkerHandle }
  | { kind: 'exit'; w: WorkerHandle; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'pong'; w: WorkerHandle }
  | { kind: 'usage'; usage: Map<number, Usage> }
  | { kind: 'idle'; w: WorkerHandle }
  | { kind: 'report'; w: WorkerHandle; report: DirectReport }
  | { kind: 'deployed'; generation: number; error: CorralError | null };

/** A pool's figures for status pages and tests. */
export interface WorkerStatus {
  pid: number;
  generation: number;
  state: string;
  inflight: number;
  requests: number;
  uptimeMs: number;
  cpu: number | null;
  /** CPU time used so far, seconds, at the last sample. */
  cpuSeconds: number | null;
  rssBytes: number | null;
  recycle: string | null;
  /** Requests running on it: as a direct worker last reported, or the service's exchanges on a proxied one (as their fronts describe them). */
  running: readonly RunningRequest[];
}

/** Requests given ahead to w, not running yet (see AHEAD). */
function givenAhead(w: WorkerHandle): number {
  let n = 0;
  for (const ex of w.exchanges) if (ex.ahead) n++;
  return n;
}

/** The requests a proxied worker runs, as their fronts describe them (path without the query: it may carry tokens). */
function proxied(w: WorkerHandle, now: number): RunningRequest[] {
  const out: RunningRequest[] = [];
  for (const ex of w.exchanges) {
    if (ex.ahead) continue; // given ahead: not running yet
    const d = ex.sink.describe?.();
    if (d) out.push({ method: d.method, path: d.path.split('?')[0] ?? d.path, ageMs: Math.max(0, now - ex.dispatchedAt) });
  }
  return out;
}

/** Workers of one app and the queue in front of them. */
export class Pool implements Upstream {
  readonly log: Logger;
  readonly #opts: PoolOptions;
  readonly #deps: PoolDeps;
  #state: PoolState = 'starting';
  #slots = new Map<WorkerHandle, Slot>();
  #queue: Exchange[] = [];
  /** Generation that gets new requests. */
  #servingGen = 1;
  /** Highest generation started (a reload in progress when > servingGen). */
  #newestGen = 1;
  /** Workers wanted now, between minWorkers and maxWorkers. */
  #target: number;
  #events: PoolEvent[] = [];
  #tickScheduled = false;
  #ticking = false;
  #timer: Timer | null = null;
  #crashes = 0;
  #crashTimes: number[] = [];
  #nextSpawnAt = 0;
  #lastScaleUpAt = -Infinity;
  /** Mean time of the app's recent requests on a worker thread, ms (null: none finished yet). */
  #meanMs: number | null = null;
  /** Direct mode: the listen queue depth the workers last reported (null: not visible). */
  #listenQueue: number | null = null;
  #allBusySince: number | null = null;
  #failure: CorralError | null = null;
  #failedRetries = 0;
  #retryAt = 0;
  #lastSampleAt = -Infinity;
  #sampling = false;
  #stopStartedAt = 0;
  /** Deploy step per generation: running, or done. */
  #deploys = new Map<number, 'running' | 'ok'>();
  #warned = new Set<string>();
  #stopWaiters: Array<() => void> = [];
  #readyWaiters: Array<(err: CorralError | null) => void> = [];
  #reloadWaiters: Array<(err: CorralError | null) => void> = [];
  /** Last boot error of a discarded generation, for status pages. */
  lastReloadError: CorralError | null = null;
  /** Most requests (direct: connections in the listen queue) ever waiting at once, for status pages. */
  queueHighWater = 0;
  /** Times requests had to wait because maxWorkers were running (PHP-FPM's "max children reached"). */
  maxWorkersReached = 0;

  constructor(opts: PoolOptions, deps: PoolDeps, log: Logger) {
    this.#opts = opts;
    this.#deps = deps;
    this.log = log.child({ app: opts.app });
    this.#target = opts.minWorkers;
  }

  get state(): PoolState {
    return this.#state;
  }
  /** Why the pool is failed, if it is. */
  get failure(): CorralError | null {
    return this.#failure;
  }
  get workers(): WorkerHandle[] {
    return [...this.#slots.keys()];
  }
  /** Requests waiting for a worker thread: in the queue, or given ahead to a busy worker. */
  get queued(): number {
    let n = this.#queue.length;
    for (const s of this.#slots.values()) n += givenAhead(s.w);
    return n;
  }
  get servingGeneration(): number {
    return this.#servingGen;
  }
  /** How long the oldest request still waiting (queued, or given ahead) has waited, ms (0 with none). */
  get longestWaitMs(): number {
    let oldest = this.#queue.find((q) => q.state === 'queued')?.createdAt ?? Infinity;
    for (const s of this.#slots.values()) for (const ex of s.w.exchanges) if (ex.ahead && ex.createdAt < oldest) oldest = ex.createdAt;
    return oldest === Infinity ? 0 : Math.max(0, this.#deps.clock.now() - oldest);
  }

  /** Figures per worker. */
  status(): WorkerStatus[] {
    const now = this.#deps.clock.now();
    return [...this.#slots.values()].map((s) => ({
      pid: s.w.pid,
      generation: s.w.generation,
      state: s.w.state,
      inflight: s.w.busy - givenAhead(s.w),
      requests: s.w.requests,
      uptimeMs: Math.round(now - s.spawnedAt),
      cpu: s.usage?.cpu ?? null,
      cpuSeconds: s.usage?.cpuSeconds ?? null,
      rssBytes: s.usage?.memory ?? null,
      recycle: s.recycle,
      running: this.#opts.direct ? s.w.running : proxied(s.w, now),
    }));
  }

  /** Starts the tick and the first workers. */
  start(): void {
    this.#timer = this.#deps.clock.every(this.#opts.tickMs, () => this.tick());
    this.tick();
  }

  /** Resolves when a worker is READY, or with the boot failure. */
  whenReady(): Promise<CorralError | null> {
    if (this.#state === 'running' || this.#state === 'reloading') return Promise.resolve(null);
    if (this.#state === 'failed') return Promise.resolve(this.#failure);
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  // ---- the request path

  begin(sink: ExchangeSink): Exchange {
    const ex = new Exchange(sink, this.#deps.clock.now());
    ex.app = this.#opts.app;
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      this.#failLater(ex, new CorralError('CORRAL_STOPPING', `app ${this.#opts.app} is stopping`));
      return ex;
    }
    if (this.#state === 'failed' && this.#failure) {
      this.#failLater(ex, this.#failure);
      return ex;
    }
    const slot = this.#pick() ?? this.#pickAhead();
    if (slot) {
      this.#dispatch(slot, ex);
      return ex;
    }
    // Requests whose client gave up leave the queue only at its head; they must not hold places.
    if (this.#queue.length >= this.#opts.queueLength) this.#queue = this.#queue.filter((q) => q.state === 'queued');
    if (this.#queue.length >= this.#opts.queueLength) {
      this.#warnOnce('queue full', { queueLength: this.#opts.queueLength, workers: this.#slots.size }, 'queue full: answering 503 (raise queueLength or maxWorkers)');
      this.#failLater(
        ex,
        new CorralError('CORRAL_QUEUE_FULL', `all worker threads busy and ${this.#queue.length} requests queued (queueLength ${this.#opts.queueLength})`, {
          retryAfter: 1,
        }),
      );
      return ex;
    }
    this.#queue.push(ex);
    if (this.#queue.length > this.queueHighWater) this.queueHighWater = this.#queue.length;
    // Scale up (or start the first worker with minWorkers 0) without waiting for the next tick.
    if (this.#slots.size < this.#opts.maxWorkers) this.#schedule();
    return ex;
  }

  #failLater(ex: Exchange, error: CorralError): void {
    queueMicrotask(() => ex.fail(error));
  }

  #pick(): Slot | null {
    let best: Slot | null = null;
    for (const s of this.#slots.values()) {
      const w = s.w;
      if (w.state !== 'ready' || w.generation !== this.#servingGen || w.inflight >= w.capacity) continue;
      // Least loaded first; a worker waiting to be recycled only when no other has a free thread.
      if (!best || (best.recycle && !s.recycle) || (!!best.recycle === !!s.recycle && w.inflight < best.w.inflight)) best = s;
    }
    return best;
  }

  /**
   * A worker to give a request ahead of a free thread (see AHEAD), or null: proxy path, a fast app,
   * a ready worker of the serving generation that is not to be recycled, with room, and whose
   * running requests are all young; the least loaded.
   */
  #pickAhead(): Slot | null {
    if (this.#opts.direct || this.#meanMs === null || this.#meanMs >= AHEAD_BELOW_MS) return null;
    const since = this.#deps.clock.now() - AHEAD_BELOW_MS;
    let best: Slot | null = null;
    for (const s of this.#slots.values()) {
      const w = s.w;
      if (w.state !== 'ready' || w.generation !== this.#servingGen || s.recycle || w.inflight >= w.capacity + AHEAD) continue;
      let young = true;
      for (const ex of w.exchanges) if (!ex.ahead && ex.dispatchedAt <= since) young = false;
      if (young && (!best || w.inflight < best.w.inflight)) best = s;
    }
    return best;
  }

  #dispatch(slot: Slot, ex: Exchange): void {
    slot.idleSince = null;
    ex.dispatchedAt = this.#deps.clock.now();
    ex.ahead = slot.w.inflight >= slot.w.capacity;
    slot.w.dispatch(ex);
  }

  #drainQueue(): void {
    while (this.#queue.length > 0) {
      const ex = this.#queue[0]!;
      if (ex.state !== 'queued') {
        this.#queue.shift();
        continue;
      }
      const slot = this.#pick() ?? this.#pickAhead();
      if (!slot) return;
      this.#queue.shift();
      this.#dispatch(slot, ex);
    }
    this.#clearWarning('queue full');
  }

  #onIdle(w: WorkerHandle, done?: Exchange): void {
    const slot = this.#slots.get(w);
    if (!slot) return;
    const now = this.#deps.clock.now();
    if (done && !done.ahead) {
      const ms = now - done.dispatchedAt;
      this.#meanMs = this.#meanMs === null ? ms : this.#meanMs + (ms - this.#meanMs) * MEAN_WEIGHT;
    }
    this.#threadFreed(w, now);
    if (w.inflight === 0) slot.idleSince = now;
    if (slot.maxRequests > 0 && w.requests >= slot.maxRequests && slot.drainingSince === null && this.#state !== 'stopping') {
      // Its budget is spent: no new request goes to it. The replacement is started by the next tick;
      // meanwhile the other workers serve (or requests wait briefly in the queue).
      slot.recycle = `served maxRequests (${slot.maxRequests})`;
      w.log.info({ reason: slot.recycle, requests: w.requests }, 'recycling worker: its replacement starts first');
      this.#drain(slot, now);
      this.#enqueue({ kind: 'idle', w });
      return;
    }
    if (w.state === 'ready') this.#drainQueue();
    // A draining or recycling worker that just finished its last request can be stopped now.
    if (w.inflight === 0 && (w.state === 'draining' || slot.recycle || this.#state === 'stopping')) this.#enqueue({ kind: 'idle', w });
  }

  /** A thread of w came free: the first request given to it ahead (if any) runs now (a worker
   *  serves its pipe's requests in order), and its time (requestTimeout, status) starts. */
  #threadFreed(w: WorkerHandle, now: number): void {
    let running = w.inflight - givenAhead(w);
    for (const ex of w.exchanges) {
      if (running >= w.capacity) return;
      if (!ex.ahead) continue;
      ex.ahead = false;
      ex.dispatchedAt = now;
      running++;
    }
  }

  // ---- control

  /** Starts a new generation; the old one serves until the new one is READY, then drains. */
  reload(reason: string): Promise<CorralError | null> {
    if (this.#state === 'stopping' || this.#state === 'stopped') return Promise.resolve(new CorralError('CORRAL_STOPPING', 'stopping'));
    const done = new Promise<CorralError | null>((resolve) => this.#reloadWaiters.push(resolve));
    if (this.#state === 'failed' || this.#state === 'starting') {
      // Nothing serves: boot a fresh generation at once; workers still booting the old code are dropped.
      for (const s of this.#slots.values()) if (s.readyAt === null) this.#kill(s, 'superseded by a reload');
      this.#newestGen++;
      this.#servingGen = this.#newestGen;
      this.#failedRetries = 0;
      this.#retryAt = 0;
      this.log.info({ reason, gen: this.#newestGen }, `reload of a ${this.#state} pool: starting the new generation now`);
      this.#schedule();
      return done;
    }
    if (this.#state === 'reloading') this.#discardGeneration(this.#newestGen, 'superseded by a newer reload');
    this.#newestGen++;
    this.#transition('reloading');
    this.log.info({ reason, gen: this.#newestGen }, 'reload: starting a new generation');
    this.#schedule();
    return done;
  }

  /** Stops taking requests, serves those in flight and queued, then stops every worker. */
  stop(): Promise<void> {
    if (this.#state === 'stopped') return Promise.resolve();
    const done = new Promise<void>((resolve) => this.#stopWaiters.push(resolve));
    if (this.#state !== 'stopping') {
      this.#stopStartedAt = this.#deps.clock.now();
      if (this.#state === 'reloading') this.#discardGeneration(this.#newestGen, 'service stopping');
      this.#transition('stopping');
      this.log.info({ queued: this.#queue.length, inflight: this.#inflight() }, 'pool stopping');
      const stopping = new CorralError('CORRAL_STOPPING', `app ${this.#opts.app} is stopping`);
      this.#settle(this.#reloadWaiters, stopping);
      this.#settle(this.#readyWaiters, stopping);
      if (this.#readyCount() === 0) this.#failQueue(new CorralError('CORRAL_STOPPING', `app ${this.#opts.app} is stopping`));
      this.#schedule();
    }
    return done;
  }

  // ---- the tick

  #enqueue(ev: PoolEvent): void {
    this.#events.push(ev);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#tickScheduled) return;
    this.#tickScheduled = true;
    queueMicrotask(() => {
      this.#tickScheduled = false;
      this.tick();
    });
  }

  /** One pass: apply events (reap), enforce timeouts, reconcile. Public for tests with a fake clock. */
  tick(): void {
    if (this.#ticking || this.#state === 'stopped') return;
    this.#ticking = true;
    try {
      const now = this.#deps.clock.now();
      for (let ev = this.#events.shift(); ev; ev = this.#events.shift()) this.#apply(ev, now);
      this.#enforceTimeouts(now);
      this.#reconcile(now);
      this.#maybeSample(now);
    } finally {
      this.#ticking = false;
    }
  }

  #apply(ev: PoolEvent, now: number): void {
    switch (ev.kind) {
      case 'exit':
        this.#reap(ev.w, ev.code, ev.signal, now);
        return;
      case 'ready':
        this.#onReady(ev.w, now);
        return;
      case 'pong': {
        const slot = this.#slots.get(ev.w);
        if (slot) {
          slot.pingSentAt = null;
          slot.lastPongAt = now;
        }
        return;
      }
      case 'usage':
        for (const [pid, u] of ev.usage) for (const s of this.#slots.values()) if (s.w.pid === pid) s.usage = u;
        return;
      case 'idle':
        return; // the timeouts/reconcile pass does the rest
      case 'report':
        this.#onReport(ev.w, ev.report, now);
        return;
      case 'deployed':
        this.#onDeployed(ev.generation, ev.error, now);
        return;
    }
  }

  /** A direct worker's report: whether it is idle (for scale-down) and the listen queue (for scale-up). */
  #onReport(w: WorkerHandle, r: DirectReport, now: number): void {
    const slot = this.#slots.get(w);
    if (!slot) return;
    slot.reportAt = now;
    if (r.busy > 0) slot.idleSince = null;
    else slot.idleSince ??= now;
    if (r.queue !== null) this.#listenQueue = r.queue;
    if (r.queue !== null && r.queue > this.queueHighWater) this.queueHighWater = r.queue;
    if (r.accessDropped > 0) this.#warnOnce(`access dropped ${w.pid}`, { pid: w.pid, dropped: r.accessDropped }, 'a worker dropped access-log entries the service did not read in time');
    // Its request count (maxRequests) is the report's `served`: #checkRecycle sees it at the next tick.
  }

  #onReady(w: WorkerHandle, now: number): void {
    const slot = this.#slots.get(w);
    if (!slot) return;
    slot.readyAt = now;
    slot.idleSince = now;
    w.log.info({ threads: w.capacity, python: w.info?.python, bootMs: Math.round(now - slot.spawnedAt) }, 'worker ready');
    if (this.#state === 'stopping') return;
    if (w.generation === this.#servingGen && (this.#state === 'starting' || this.#state === 'failed')) {
      const recovered = this.#state === 'failed';
      if (recovered) this.log.info({ gen: w.generation }, 'pool recovered');
      this.#crashes = 0;
      this.#failure = null;
      this.#failedRetries = 0;
      this.#transition('running');
      // The answerer (direct mode) drains now, like an old generation: this worker accepts too.
      // It takes the answerer's kept connections (handoffTo), as a live worker takes a drained one's.
      if (recovered && this.#opts.direct) this.#deps.answer?.(null, w.info?.handoff);
      this.#settle(this.#readyWaiters, null);
      this.#settle(this.#reloadWaiters, null);
    }
  }

  #reap(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null, now: number): void {
    const slot = this.#slots.get(w);
    if (!slot) return;
    this.#slots.delete(w);
    this.#deps.budget?.give();
    this.#clearWarning(`memory ${w.pid}`);
    this.#clearWarning(`access dropped ${w.pid}`);
    const lost = w.forgetExchanges();
    const uptimeMs = now - slot.spawnedAt;
    // Exits we caused on purpose (stop, drain, recycle, discard, a timeout kill) are not failures.
    const expected = slot.expectedExit || this.#state === 'stopping';
    const verdict = classifyExit({
      code,
      signal,
      requested: expected,
      ready: slot.readyAt !== null,
      uptimeMs,
      spawnError: w.spawnError?.message ?? null,
      inflight: lost.length,
    });
    const reason = slot.killReason ?? verdict.reason;
    this.#deps.workerExit?.(slot.recycle ?? reason, w.pid);
    const fields = { code, signal, uptimeMs: Math.round(uptimeMs), requests: w.requests, lost: lost.length, reason };
    if (slot.killReason) w.log.warn(fields, `worker killed: ${slot.killReason}`);
    else w.log[verdict.level](fields, verdict.message);
    if (lost.length > 0) {
      // What the worker last wrote to stderr (a fatal Python error, a C extension's abort) is the
      // best clue to a crash: the dev page shows it, the log line of each lost request carries it.
      const stderr = w.lastStderr.split('\n').slice(-LOST_STDERR_LINES).join('\n');
      const detail = stderr ? { detail: `The worker's last stderr lines:\n${stderr}` } : {};
      for (const ex of lost) ex.fail(new CorralError('CORRAL_WORKER_LOST', `worker ${w.pid} exited (${reason}) during the request`, detail));
    }
    if (expected) return; // reconcile starts a replacement if the pool needs one
    if (slot.readyAt === null) {
      this.#onBootFailure(w, reason, now);
      return;
    }
    // Killed from outside (an operator, a supervisor, the OOM killer): not the app crashing, so it
    // is replaced at once and does not count towards taking the pool offline. (Windows'
    // TerminateProcess shows no signal and counts as a crash.)
    // A direct worker that timed a request out (and answered 504) did its job: replaced at once.
    if (signal === 'SIGKILL' || signal === 'SIGTERM' || (this.#opts.direct && code === WorkerExit.REQUEST_TIMEOUT)) {
      this.#nextSpawnAt = now;
      return;
    }
    // An unexpected exit of a serving worker: back off, and take the pool offline on a crash storm.
    if (uptimeMs > STABLE_MS) this.#crashes = 0;
    const delay = this.#crashes === 0 ? 0 : Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.#crashes - 1));
    this.#crashes++;
    this.#nextSpawnAt = now + delay;
    this.#crashTimes = this.#crashTimes.filter((t) => now - t < 60_000);
    this.#crashTimes.push(now);
    if (this.#crashTimes.length > this.#opts.rapidFailsPerMinute) {
      this.#crashTimes = [];
      this.#fail(
        new CorralError('CORRAL_RAPID_FAIL', `app ${this.#opts.app}: workers exited ${this.#opts.rapidFailsPerMinute + 1} times within a minute (rapidFailsPerMinute)`, {
          detail: w.lastStderr,
        }),
        now,
      );
    }
  }

  #onBootFailure(w: WorkerHandle, reason: string, now: number): void {
    const fatal = w.fatal;
    const importFailed = reason === 'app import failed';
    const message = fatal?.error ?? w.spawnError?.message ?? (w.lastStderr.split('\n').pop() || reason);
    const trace = fatal?.devtrace !== undefined ? parseDevTrace(fatal.devtrace) : null;
    const error = new CorralError(
      importFailed ? 'CORRAL_APP_IMPORT_FAILED' : 'CORRAL_WORKER_BOOT_FAILED',
      `app ${this.#opts.app}: ${importFailed ? 'import failed' : `worker boot failed (${reason})`}: ${message}`,
      { detail: fatal?.traceback ?? w.lastStderr, ...(trace ? { trace } : {}) },
    );
    if (w.generation > this.#servingGen && this.#state === 'reloading' && !this.#opts.keepOldOnFailedReload) {
      // Dev mode: the developer wants to see the error, not yesterday's code.
      this.lastReloadError = error;
      const failedGen = w.generation;
      for (const s of this.#slots.values()) if (s.w.generation < failedGen && s.drainingSince === null) this.#drain(s, now);
      this.#servingGen = failedGen;
      this.#fail(error, now);
      return;
    }
    if (w.generation > this.#servingGen && this.#state === 'reloading') {
      // A reload whose code does not import: keep the old generation serving.
      this.lastReloadError = error;
      this.log.error({ err: message, traceback: error.detail, file: fatal?.file, line: fatal?.line, gen: w.generation }, 'reload failed: new generation did not boot; the old one keeps serving');
      this.#discardGeneration(w.generation, 'generation failed to boot');
      this.#transition('running');
      this.#settle(this.#reloadWaiters, error);
      return;
    }
    if (this.#readyCount() > 0) {
      // Others still serve: try this one again later, slowly.
      this.#nextSpawnAt = now + this.#opts.failedRetryMs;
      this.log.warn({ err: message }, 'worker failed to boot while others serve; retrying slowly');
      return;
    }
    this.#fail(error, now);
  }

  #fail(cause: CorralError, now: number): void {
    const first = this.#state !== 'failed';
    // Once per distinct failure: retries failing the same way stay quiet, a new error (after a reload) is shown.
    if (first || cause.message !== this.#failure?.message)
      this.log.error({ code: cause.code, err: cause.message, ...(this.#opts.tracebackShownAbove ? {} : { traceback: cause.detail }) }, 'pool failed: answering 503 and retrying slowly');
    if (first) this.#failedRetries = 0;
    this.#transition('failed');
    const delay = Math.min(FAILED_RETRY_MAX_MS, this.#opts.failedRetryMs * 2 ** this.#failedRetries);
    this.#failedRetries++;
    this.#retryAt = now + delay;
    // Clients are told when the next attempt comes (Retry-After), on either data plane.
    const error =
      cause.retryAfter !== undefined
        ? cause
        : new CorralError(cause.code, cause.message, {
            ...(cause.detail !== undefined ? { detail: cause.detail } : {}),
            ...(cause.trace !== undefined ? { trace: cause.trace } : {}),
            retryAfter: Math.max(1, Math.ceil(delay / 1000)),
          });
    this.#failure = error;
    for (const s of this.#slots.values()) {
      if (s.readyAt === null) this.#kill(s, 'pool failed');
      else if (s.drainingSince === null) this.#drain(s, now);
    }
    this.#failQueue(error);
    // Direct mode: nobody of the app accepts now; the answerer does, with this error's page.
    if (this.#opts.direct) this.#deps.answer?.(error);
    this.#settle(this.#readyWaiters, error);
    this.#settle(this.#reloadWaiters, error);
  }

  #enforceTimeouts(now: number): void {
    const o = this.#opts;
    for (const s of this.#slots.values()) {
      const w = s.w;
      if (w.state === 'exited') continue;
      if (s.readyAt === null) {
        if (s.killReason === null && now - s.spawnedAt > o.startupTimeoutMs) this.#kill(s, `no READY within startupTimeout (${o.startupTimeoutMs / 1000} s)`, false);
        continue;
      }
      if (s.stopAt !== null) {
        if (now - s.stopAt > o.gracefulTimeoutMs && s.killReason === null) this.#kill(s, `did not exit within gracefulTimeout (${o.gracefulTimeoutMs / 1000} s) after stdin closed`);
        continue;
      }
      if (o.requestTimeoutMs > 0) this.#enforceRequestTimeout(s, now);
      if (s.killReason) continue;
      if (s.drainingSince !== null) {
        if (w.inflight === 0) this.#closeStdin(s, now);
        else if (now - s.drainingSince > o.gracefulTimeoutMs) this.#kill(s, `requests still running gracefulTimeout (${o.gracefulTimeoutMs / 1000} s) after draining began`);
        continue;
      }
      // Liveness: an idle worker answers PING from its reader thread, even with busy app threads.
      if (s.pingSentAt !== null && now - s.pingSentAt > o.pingTimeoutMs) {
        this.#kill(s, `no PONG within ${o.pingTimeoutMs / 1000} s (worker stuck)`);
        continue;
      }
      if (s.pingSentAt === null && s.idleSince !== null && w.inflight === 0 && now - Math.max(s.idleSince, s.lastPongAt) > o.pingIntervalMs) {
        s.pingSentAt = now;
        w.ping();
      }
      if (!s.recycle) this.#checkRecycle(s, now);
    }
    if (o.queueTimeoutMs > 0) {
      while (this.#queue.length > 0 && now - this.#queue[0]!.createdAt > o.queueTimeoutMs) {
        const ex = this.#queue.shift()!;
        ex.fail(new CorralError('CORRAL_QUEUE_TIMEOUT', `waited ${o.queueTimeoutMs / 1000} s for a free worker thread (queueTimeout)`, { retryAfter: 1 }));
      }
    }
    if (this.#state === 'stopping' && now - this.#stopStartedAt > o.gracefulTimeoutMs) {
      for (const s of this.#slots.values()) if (s.killReason === null) this.#kill(s, `service stop took longer than gracefulTimeout (${o.gracefulTimeoutMs / 1000} s)`);
    }
  }

  #enforceRequestTimeout(s: Slot, now: number): void {
    const limit = this.#opts.requestTimeoutMs;
    if (this.#opts.direct) {
      // The worker's own watchdog answers 504 and exits (code 5); this is the backstop for a worker
      // too stuck to do even that. Ages are as of its last report, plus the time since.
      const since = s.reportAt === null ? 0 : now - s.reportAt;
      const oldest = Math.max(0, ...s.w.running.map((r) => r.ageMs + since));
      if (oldest > limit + DIRECT_TIMEOUT_GRACE_MS) this.#kill(s, `a request ran over requestTimeout (${limit / 1000} s) and the worker did not end it`);
      return;
    }
    for (const ex of s.w.exchanges) {
      if (ex.state !== 'assigned' || ex.ahead || now - ex.dispatchedAt <= limit) continue;
      ex.fail(new CorralError('CORRAL_REQUEST_TIMEOUT', `the app did not finish within requestTimeout (${limit / 1000} s); its worker ${s.w.pid} is replaced`));
      this.#kill(s, `request ran over requestTimeout (${limit / 1000} s)`);
      return;
    }
  }

  #checkRecycle(s: Slot, now: number): void {
    const o = this.#opts;
    if (s.maxRequests > 0 && s.w.requests >= s.maxRequests) s.recycle = `served maxRequests (${s.maxRequests})`;
    else if (o.maxMemoryMB > 0 && s.usage && s.usage.memory > o.maxMemoryMB * 1024 * 1024) {
      s.recycle = `RSS ${Math.round(s.usage.memory / 1048576)} MB over maxMemoryMB (${o.maxMemoryMB})`;
      this.#warnOnce(`memory ${s.w.pid}`, { pid: s.w.pid, rssMB: Math.round(s.usage.memory / 1048576) }, 'memory limit hit: recycling worker');
    } else if (
      o.idleTimeoutMs > 0 &&
      s.idleSince !== null &&
      s.w.busy === 0 &&
      now - s.idleSince > o.idleTimeoutMs &&
      this.#queue.length === 0 &&
      this.#target > o.minWorkers &&
      s.w.generation === this.#servingGen
    ) {
      this.#target--;
      s.w.log.info({ idleMs: Math.round(now - s.idleSince), target: this.#target }, 'scaling down: idle worker stopped');
      this.#drain(s, now);
      return;
    }
    if (s.recycle) s.w.log.info({ reason: s.recycle, requests: s.w.requests }, 'recycling worker: its replacement starts first');
  }

  #reconcile(now: number): void {
    if (this.#state === 'stopping') {
      if (this.#queue.length === 0) for (const s of this.#slots.values()) if (s.w.inflight === 0 && s.stopAt === null && s.killReason === null) this.#closeStdin(s, now);
      if (this.#slots.size === 0) this.#finishStop();
      return;
    }
    if (this.#state === 'failed') {
      if (now >= this.#retryAt && !this.#hasStarting(this.#servingGen) && this.#deployedFor(this.#servingGen)) {
        this.log.info({ attempt: this.#failedRetries }, 'retrying failed pool');
        if (this.#spawn(this.#servingGen, now)) this.#retryAt = Infinity; // the next failure schedules the next retry
      }
      return;
    }
    if (this.#state === 'reloading') this.#reconcileReload(now);
    this.#scale(now);
    const gen = this.#servingGen;
    const active = this.#active(gen);
    // Replace recycled workers first (their replacement counts as active), then spawn up to target.
    if (now >= this.#nextSpawnAt) {
      if (active.length < this.#target && this.#deployedFor(gen)) for (let n = active.length; n < this.#target; n++) this.#spawn(gen, now);
    }
    const activeReady = active.filter((s) => s.readyAt !== null).length;
    for (const s of this.#slots.values()) {
      if (s.recycle && s.drainingSince === null && s.killReason === null && activeReady >= this.#target) {
        this.#drain(s, now);
      }
    }
    this.#drainQueue();
  }

  /** Grows the target when requests wait and every thread is busy. */
  #scale(now: number): void {
    if (this.#opts.direct) {
      this.#scaleDirect(now);
      return;
    }
    if (this.#queue.length === 0) {
      this.#clearWarning('max workers');
      if (this.#target < this.#opts.minWorkers) this.#target = this.#opts.minWorkers;
      return;
    }
    if (this.#target === 0) {
      this.#target = 1; // minWorkers 0: the first request starts the first worker
      return;
    }
    if (this.#pick()) return;
    // Workers still booting will take some of the queue: boot more only for what they cannot
    // cover, all at once (booting one after the other would make the last request in a burst
    // wait for several start-ups in a row).
    const active = this.#active(this.#servingGen);
    const threads = Math.max(1, active.find((s) => s.readyAt !== null)?.w.capacity ?? 1);
    const booting = active.filter((s) => s.readyAt === null).length;
    const uncovered = this.#queue.length - booting * threads;
    if (uncovered <= 0) return;
    if (this.#target >= this.#opts.maxWorkers) {
      if (!this.#warned.has('max workers')) this.maxWorkersReached++;
      this.#warnOnce('max workers', { maxWorkers: this.#opts.maxWorkers, queued: this.#queue.length }, 'maxWorkers reached: requests wait in the queue');
      return;
    }
    if (now - this.#lastScaleUpAt < SCALE_UP_EVERY_MS) return;
    this.#lastScaleUpAt = now;
    const step = Math.min(Math.ceil(uncovered / threads), this.#opts.maxWorkers - this.#target);
    this.#target += step;
    this.log.info({ target: this.#target, step, queued: this.#queue.length }, 'scaling up: all threads busy');
  }

  /**
   * Direct mode: no queue of our own; requests wait in the listen socket's queue, which the
   * workers report (Linux TCP), while every thread is busy. Nothing accepts without a worker, so
   * at least one always runs.
   */
  #scaleDirect(now: number): void {
    const floor = Math.max(1, this.#opts.minWorkers);
    if (this.#target < floor) this.#target = floor;
    const active = this.#active(this.#servingGen);
    const ready = active.filter((s) => s.readyAt !== null && s.w.state === 'ready');
    const saturated = ready.length > 0 && ready.every((s) => s.w.busy >= Math.max(1, s.w.capacity));
    if (!saturated) {
      this.#allBusySince = null;
      this.#clearWarning('max workers');
      return;
    }
    this.#allBusySince ??= now;
    const waiting = this.#listenQueue;
    const pressure = waiting !== null ? waiting > 0 : now - this.#allBusySince >= DIRECT_BUSY_SCALE_MS;
    if (!pressure || active.some((s) => s.readyAt === null)) return;
    if (this.#target >= this.#opts.maxWorkers) {
      if (!this.#warned.has('max workers')) this.maxWorkersReached++;
      this.#warnOnce('max workers', { maxWorkers: this.#opts.maxWorkers, listenQueue: waiting }, 'maxWorkers reached: connections wait in the listen queue');
      return;
    }
    if (now - this.#lastScaleUpAt < SCALE_UP_EVERY_MS) return;
    this.#lastScaleUpAt = now;
    this.#target++;
    this.log.info({ target: this.#target, listenQueue: waiting }, 'scaling up: every worker busy and connections wait');
  }

  #reconcileReload(now: number): void {
    const gen = this.#newestGen;
    const fresh = this.#active(gen);
    const want = Math.max(1, this.#target);
    if (fresh.length < want && this.#deployedFor(gen)) for (let n = fresh.length; n < want; n++) this.#spawn(gen, now);
    const ready = this.#active(gen).filter((s) => s.readyAt !== null).length;
    if (ready < want) return;
    const old = this.#servingGen;
    this.#servingGen = gen;
    for (const s of this.#slots.values()) if (s.w.generation < gen && s.drainingSince === null) this.#drain(s, now);
    this.log.info({ gen, previous: old, workers: ready }, 'reload: new generation serving, old one draining');
    this.#transition('running');
    this.lastReloadError = null;
    this.#settle(this.#reloadWaiters, null);
  }

  /** True once the generation's deploy step (if any) succeeded; starts it when not yet run. */
  #deployedFor(gen: number): boolean {
    const hook = this.#deps.beforeGeneration;
    if (!hook) return true;
    const state = this.#deploys.get(gen);
    if (state === 'ok') return true;
    if (state === 'running') return false;
    this.#deploys.set(gen, 'running');
    this.log.info({ gen }, 'deploy step running before the generation starts');
    hook(gen).then(
      (error) => this.#enqueue({ kind: 'deployed', generation: gen, error }),
      (err: unknown) => this.#enqueue({ kind: 'deployed', generation: gen, error: new CorralError('CORRAL_DEPLOY_FAILED', String(err)) }),
    );
    return false;
  }

  #onDeployed(gen: number, error: CorralError | null, now: number): void {
    if (!error) {
      this.#deploys.set(gen, 'ok');
      this.log.info({ gen }, 'deploy step done');
      return;
    }
    // Not kept: the next attempt for this generation (a slow retry) runs the step again.
    this.#deploys.delete(gen);
    if (this.#state === 'stopping') return;
    if (gen > this.#servingGen && this.#state === 'reloading') {
      this.lastReloadError = error;
      this.log.error({ err: error.message, output: error.detail, gen }, 'reload failed: deploy step failed; the old generation keeps serving');
      this.#transition('running');
      this.#settle(this.#reloadWaiters, error);
      return;
    }
    if (this.#readyCount() > 0) {
      this.log.error({ err: error.message, output: error.detail, gen }, 'deploy step failed');
      return;
    }
    this.#fail(error, now);
  }

  #discardGeneration(gen: number, why: string): void {
    for (const s of this.#slots.values()) if (s.w.generation === gen && s.killReason === null) this.#kill(s, why);
  }

  /** Starts a worker; false when the service-wide budget has none left (tried again next tick). */
  #spawn(gen: number, now: number): boolean {
    const budget = this.#deps.budget;
    if (budget && !budget.take()) {
      this.#warnOnce('worker budget', { workers: this.#slots.size }, 'maxTotalWorkers reached: this app waits for another app\'s worker to exit');
      return false;
    }
    this.#clearWarning('worker budget');
    const events: WorkerEvents = {
      ready: (w) => this.#enqueue({ kind: 'ready', w }),
      idle: (w, ex) => this.#onIdle(w, ex),
      exit: (w, code, signal) => this.#enqueue({ kind: 'exit', w, code, signal }),
      stderr: this.#deps.stderr ?? ((w, line) => w.log.info({ line }, 'worker stderr')),
      pong: (w) => this.#enqueue({ kind: 'pong', w }),
      report: (w, report) => {
        this.#deps.report?.(w, report);
        this.#enqueue({ kind: 'report', w, report });
      },
    };
    const w = this.#deps.spawn(gen, events);
    const o = this.#opts;
    const jitter = o.maxRequests > 0 && o.maxRequestsJitter > 0 ? Math.floor(this.#deps.random() * (o.maxRequestsJitter + 1)) : 0;
    this.#slots.set(w, {
      w,
      spawnedAt: now,
      readyAt: null,
      idleSince: null,
      maxRequests: o.maxRequests > 0 ? o.maxRequests + jitter : 0,
      recycle: null,
      drainingSince: null,
      stopAt: null,
      killReason: null,
      expectedExit: false,
      lastPongAt: now,
      pingSentAt: null,
      usage: null,
      reportAt: null,
      handoffs: 0,
    });
    w.log.info('worker spawned');
    return true;
  }

  #drain(s: Slot, now: number): void {
    s.drainingSince = now;
    s.expectedExit = true;
    s.w.drain();
    if (s.w.inflight === 0) this.#closeStdin(s, now);
  }

  #closeStdin(s: Slot, now: number): void {
    if (s.stopAt !== null) return;
    s.stopAt = now;
    s.expectedExit = true;
    s.w.closeStdin(this.#handoffTarget(s));
  }

  /**
   * Direct mode: where a draining worker hands the front's kept connections (closing one races with
   * the front's next request on it: PROTOCOL.md, "Handing off kept connections"): the handoff
   * sockets of the READY workers of the newest generation that are not draining, recycling or
   * killed, one a line; the worker takes them in turn, starting with the one named first least
   * often (several drains at once start at different ones). None while the pool stops.
   */
  #handoffTarget(from: Slot): string | undefined {
    if (!this.#opts.direct || this.#state === 'stopping') return undefined;
    const live: Slot[] = [];
    for (const s of this.#slots.values()) {
      if (s === from || !s.w.info?.handoff || s.w.state !== 'ready' || s.drainingSince !== null || s.stopAt !== null || s.killReason !== null || s.recycle) continue;
      live.push(s);
    }
    const newest = Math.max(...live.map((s) => s.w.generation));
    const targets = live.filter((s) => s.w.generation === newest).sort((a, b) => a.handoffs - b.handoffs);
    if (targets.length === 0) return undefined;
    targets[0]!.handoffs++;
    return targets.map((s) => s.w.info!.handoff!).join('\n');
  }

  /** Kills a worker. `expected` = not a failure (a startup timeout is a boot failure; a request timeout is not). */
  #kill(s: Slot, reason: string, expected = true): void {
    if (s.killReason !== null) return;
    s.killReason = reason;
    s.expectedExit = expected;
    s.w.drain();
    s.w.kill();
  }

  #maybeSample(now: number): void {
    const every = this.#opts.monitorIntervalMs;
    if (every <= 0 || this.#sampling || now - this.#lastSampleAt < every || this.#slots.size === 0) return;
    this.#sampling = true;
    this.#lastSampleAt = now;
    const pids = [...this.#slots.keys()].map((w) => w.pid).filter((p) => p > 0);
    this.#deps.sample(pids).then(
      (usage) => {
        this.#sampling = false;
        this.#enqueue({ kind: 'usage', usage });
      },
      () => {
        this.#sampling = false; // a worker exited between listing and sampling; next round
      },
    );
  }

  #finishStop(): void {
    if (this.#state !== 'stopping') return;
    // Workers killed at the grace limit leave queued requests behind: answer them.
    this.#failQueue(new CorralError('CORRAL_STOPPING', `app ${this.#opts.app} is stopping`));
    this.#transition('stopped');
    this.#timer?.cancel();
    this.log.info('pool stopped');
    const waiters = this.#stopWaiters;
    this.#stopWaiters = [];
    for (const w of waiters) w();
  }

  #transition(to: PoolState): void {
    const from = this.#state;
    if (from === to) return;
    if (!TRANSITIONS[from].includes(to)) {
      this.log.error({ from, to }, 'refused illegal pool state change');
      return;
    }
    this.#state = to;
    this.log.info({ from, to }, 'pool state');
  }

  /**
   * Workers of `gen` that take (or will take) requests: not recycling, draining or killed. One killed
   * for a startup timeout still counts until its exit, which is a boot failure: no replacement before it.
   */
  #active(gen: number): Slot[] {
    const out: Slot[] = [];
    for (const s of this.#slots.values()) {
      const killed = s.killReason !== null && !(s.readyAt === null && !s.expectedExit);
      if (s.w.generation === gen && !s.recycle && s.drainingSince === null && !killed) out.push(s);
    }
    return out;
  }

  #hasStarting(gen: number): boolean {
    for (const s of this.#slots.values()) if (s.w.generation === gen && s.readyAt === null && s.killReason === null) return true;
    return false;
  }

  #readyCount(): number {
    let n = 0;
    for (const s of this.#slots.values()) if (s.readyAt !== null && s.killReason === null && s.w.state !== 'exited') n++;
    return n;
  }

  #inflight(): number {
    let n = 0;
    for (const w of this.#slots.keys()) n += w.inflight;
    return n;
  }

  #failQueue(error: CorralError): void {
    const queue = this.#queue;
    this.#queue = [];
    for (const ex of queue) ex.fail(error);
  }

  #settle(waiters: Array<(err: CorralError | null) => void>, err: CorralError | null): void {
    for (const w of waiters.splice(0)) w(err);
  }

  /** Warns once per condition until it clears (STYLE.md practice 13). */
  #warnOnce(key: string, fields: Record<string, unknown>, msg: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.log.warn(fields, msg);
  }

  #clearWarning(key: string): void {
    if (this.#warned.delete(key)) this.log.info({ condition: key }, 'condition cleared');
  }
}
