/**
 * A pool of Python workers for one app: starts them, dispatches each request to the
 * least-loaded READY worker, queues when every thread is busy, replaces workers that die, and
 * stops them by protocol (stdin EOF) before force.
 */
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { Exchange, type ExchangeSink } from './exchange.js';
import { Worker, type WorkerSpawnSpec } from './worker.js';
import { classifyExit } from './exit.js';

/** How a pool runs. Times in milliseconds. */
export interface PoolOptions {
  /** Name in logs (the app). */
  app: string;
  spawn: WorkerSpawnSpec;
  workers: number;
  queueLength: number;
  gracefulTimeoutMs: number;
  /** Slow retry of a pool whose app failed to boot. */
  failedRetryMs: number;
  /** Show tracebacks to clients (dev mode). */
  devErrors: boolean;
}

export type PoolState = 'starting' | 'running' | 'failed' | 'stopping' | 'stopped';

/** Something that takes requests: the pool, as fronts see it. */
export interface Upstream {
  begin(sink: ExchangeSink): Exchange;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** A worker that lived this long resets the crash backoff. */
const STABLE_MS = 30_000;

/** Workers of one app and the queue in front of them. */
export class Pool implements Upstream {
  readonly log: Logger;
  readonly #opts: PoolOptions;
  #state: PoolState = 'starting';
  #workers = new Set<Worker>();
  #queue: Exchange[] = [];
  #generation = 1;
  #crashes = 0;
  #respawnTimer: NodeJS.Timeout | null = null;
  #failure: CorralError | null = null;
  #stopWaiters: Array<() => void> = [];
  #readyWaiters: Array<(err: CorralError | null) => void> = [];

  constructor(opts: PoolOptions, log: Logger) {
    this.#opts = opts;
    this.log = log.child({ app: opts.app });
  }

  get state(): PoolState {
    return this.#state;
  }
  /** Why the pool is failed, if it is. */
  get failure(): CorralError | null {
    return this.#failure;
  }
  get workers(): readonly Worker[] {
    return [...this.#workers];
  }
  get queued(): number {
    return this.#queue.length;
  }

  /** Spawns the workers. */
  start(): void {
    for (let i = 0; i < this.#opts.workers; i++) this.#spawn();
  }

  /** Resolves when at least one worker is READY, or with the boot failure. */
  whenReady(): Promise<CorralError | null> {
    if (this.#state === 'running') return Promise.resolve(null);
    if (this.#state === 'failed') return Promise.resolve(this.#failure);
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  begin(sink: ExchangeSink): Exchange {
    const ex = new Exchange(sink, performance.now());
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      queueMicrotask(() => ex.fail(new CorralError('CORRAL_STOPPING', `app ${this.#opts.app} is stopping`)));
      return ex;
    }
    if (this.#state === 'failed' && this.#failure) {
      const failure = this.#failure;
      queueMicrotask(() => ex.fail(failure));
      return ex;
    }
    const worker = this.#pick();
    if (worker) {
      worker.dispatch(ex);
      return ex;
    }
    if (this.#queue.length >= this.#opts.queueLength) {
      queueMicrotask(() =>
        ex.fail(
          new CorralError('CORRAL_QUEUE_FULL', `all worker threads busy and ${this.#queue.length} requests queued (queueLength)`, {
            retryAfter: 1,
          }),
        ),
      );
      return ex;
    }
    this.#queue.push(ex);
    return ex;
  }

  /** Stops taking requests, lets the ones in flight and queued finish, then stops the workers. */
  stop(): Promise<void> {
    if (this.#state === 'stopped') return Promise.resolve();
    const done = new Promise<void>((resolve) => this.#stopWaiters.push(resolve));
    if (this.#state !== 'stopping') {
      this.#state = 'stopping';
      this.log.info({ queued: this.#queue.length, inflight: this.#inflight() }, 'pool stopping');
      if (this.#respawnTimer) clearTimeout(this.#respawnTimer);
      // Queued requests still get served by the workers we have; failed pools have none.
      if (this.#readyCount() === 0) this.#failQueue(new CorralError('CORRAL_STOPPING', `app ${this.#opts.app} is stopping`));
      const force = setTimeout(() => this.#forceStop(), this.#opts.gracefulTimeoutMs);
      force.unref();
      this.#stopIdleWorkers();
    }
    return done;
  }

  #pick(): Worker | null {
    let best: Worker | null = null;
    for (const w of this.#workers) {
      if (w.state !== 'ready' || w.inflight >= w.capacity) continue;
      if (!best || w.inflight < best.inflight) best = w;
    }
    return best;
  }

  #spawn(): void {
    const w = new Worker(
      this.#opts.spawn,
      this.#generation,
      {
        ready: (wk) => this.#onReady(wk),
        idle: (wk) => this.#onIdle(wk),
        exit: (wk, code, signal) => this.#onExit(wk, code, signal),
        stderr: (wk, line) => wk.log.info({ line }, 'worker stderr'),
      },
      this.log,
      performance.now(),
    );
    this.#workers.add(w);
    w.log.info('worker spawned');
  }

  #onReady(w: Worker): void {
    w.log.info({ threads: w.capacity, python: w.info?.python, bootMs: Math.round(performance.now() - w.startedAt) }, 'worker ready');
    if (this.#state === 'stopping') {
      this.#stopIdleWorkers();
      return;
    }
    if (this.#state !== 'running') {
      if (this.#state === 'failed') this.log.info('pool recovered');
      this.#state = 'running';
      this.#failure = null;
      this.#resolveReady(null);
    }
    this.#drainQueue();
  }

  #onIdle(w: Worker): void {
    if (w.state === 'ready') this.#drainQueue();
    if (this.#state === 'stopping') this.#stopIdleWorkers();
  }

  #drainQueue(): void {
    while (this.#queue.length > 0) {
      const ex = this.#queue[0]!;
      if (ex.state !== 'queued') {
        this.#queue.shift();
        continue;
      }
      const w = this.#pick();
      if (!w) return;
      this.#queue.shift();
      w.dispatch(ex);
    }
  }

  #onExit(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    this.#workers.delete(w);
    const lost = w.forgetExchanges();
    const uptimeMs = performance.now() - w.startedAt;
    const verdict = classifyExit({
      code,
      signal,
      requested: w.state === 'stopping' || this.#state === 'stopping',
      ready: w.info !== null,
      uptimeMs,
      spawnError: w.spawnError?.message ?? null,
      inflight: lost.length,
    });
    w.log[verdict.level](
      { code, signal, uptimeMs: Math.round(uptimeMs), requests: w.requests, lost: lost.length, reason: verdict.reason },
      verdict.message,
    );
    for (const ex of lost) {
      ex.fail(new CorralError('CORRAL_WORKER_LOST', `worker ${w.pid} exited (${verdict.reason}) during the request`));
    }
    if (this.#state === 'stopping') {
      this.#checkStopped();
      return;
    }
    if (verdict.bootFailure) {
      this.#onBootFailure(w, verdict.reason);
      return;
    }
    if (uptimeMs > STABLE_MS) this.#crashes = 0;
    const delay = this.#crashes === 0 ? 0 : Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.#crashes - 1));
    this.#crashes++;
    this.#scheduleSpawn(delay);
  }

  #onBootFailure(w: Worker, reason: string): void {
    const fatal = w.fatal;
    const import_ = reason === 'app import failed';
    const message = fatal?.error ?? w.spawnError?.message ?? (w.lastStderr.split('\n').pop() || reason);
    const detail = fatal?.traceback ?? w.lastStderr;
    const error = new CorralError(
      import_ ? 'CORRAL_APP_IMPORT_FAILED' : 'CORRAL_WORKER_BOOT_FAILED',
      `app ${this.#opts.app}: ${import_ ? 'import of' : 'worker for'} ${w.info?.app ?? this.#appName()} failed: ${message}`,
      { detail },
    );
    if (this.#readyCount() > 0) {
      // Other workers still serve; retry this one slowly.
      this.#scheduleSpawn(this.#opts.failedRetryMs);
      return;
    }
    const first = this.#state !== 'failed';
    this.#state = 'failed';
    this.#failure = error;
    if (first) this.log.error({ err: message, traceback: detail, file: fatal?.file, line: fatal?.line }, 'app failed to boot; pool failed, retrying slowly');
    this.#failQueue(error);
    this.#resolveReady(error);
    // One retry worker at a time while failed; the rest follow once it is READY.
    for (const other of this.#workers) if (other.state === 'starting') return;
    this.#scheduleSpawn(this.#opts.failedRetryMs, () => {
      const missing = this.#opts.workers - this.#workers.size;
      return this.#state === 'failed' ? Math.min(1, missing) : missing;
    });
  }

  #appName(): string {
    const i = this.#opts.spawn.args.indexOf('--app');
    return i >= 0 ? (this.#opts.spawn.args[i + 1] ?? '?') : '?';
  }

  #scheduleSpawn(delayMs: number, count: () => number = () => this.#opts.workers - this.#workers.size): void {
    if (this.#respawnTimer) return;
    const run = (): void => {
      this.#respawnTimer = null;
      if (this.#state === 'stopping' || this.#state === 'stopped') return;
      for (let n = count(); n > 0; n--) this.#spawn();
    };
    if (delayMs === 0) {
      run();
      return;
    }
    this.#respawnTimer = setTimeout(run, delayMs);
    this.#respawnTimer.unref();
  }

  #failQueue(error: CorralError): void {
    const queue = this.#queue;
    this.#queue = [];
    for (const ex of queue) ex.fail(error);
  }

  #resolveReady(err: CorralError | null): void {
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const w of waiters) w(err);
  }

  #readyCount(): number {
    let n = 0;
    for (const w of this.#workers) if (w.state === 'ready') n++;
    return n;
  }

  #inflight(): number {
    let n = 0;
    for (const w of this.#workers) n += w.inflight;
    return n;
  }

  #stopIdleWorkers(): void {
    if (this.#queue.length > 0) return;
    for (const w of this.#workers) if (w.inflight === 0 && w.state !== 'stopping') w.closeStdin();
    this.#checkStopped();
  }

  #forceStop(): void {
    if (this.#state !== 'stopping') return;
    const left = [...this.#workers];
    if (left.length === 0) return;
    this.log.warn({ workers: left.map((w) => w.pid), gracefulTimeoutMs: this.#opts.gracefulTimeoutMs }, 'graceful stop timed out; killing workers');
    for (const w of left) w.kill();
  }

  #checkStopped(): void {
    if (this.#state !== 'stopping' || this.#workers.size > 0) return;
    this.#state = 'stopped';
    this.log.info('pool stopped');
    const waiters = this.#stopWaiters;
    this.#stopWaiters = [];
    for (const w of waiters) w();
  }
}
