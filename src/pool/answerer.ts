/**
 * The direct data plane's answer for a failed app. With direct, only workers accept on the shared
 * socket: while an app has no ready worker because its pool failed (an import error, a failed
 * DEPLOY_FILE, a crash storm), connections would wait in the listen queue until the web server
 * timed out, where the proxy path answers at once with the error page. So while the pool is failed
 * the service keeps ONE answerer on the socket: an ordinary direct worker (same loop, limits,
 * access REPORTs and drain) whose app is corral's own corral_wsgi/answer.py, which answers every
 * request with the page this service rendered (src/front/error-page.ts, the same bytes as the
 * proxy path). It is no worker of the app: the pool does not count it and /ready stays "failed";
 * the status page shows it apart (`info`), and it takes a unit of maxTotalWorkers like any
 * Python process the service runs. When a generation becomes READY the answerer is drained like an old generation: it
 * stops accepting, finishes what it has, and exits, so no request is lost.
 *
 * The page reaches it as a file (written whole, then renamed over the old one) rather than over
 * its control channel: the answerer needs it before its first request and from any state, the
 * worker's control reader stays untouched, and a new failure (a retry or a reload failing another
 * way) only rewrites the file, which the answerer reads again when it changes.
 */
import type { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { WorkerEvents, WorkerHandle, WorkerState } from './handle.js';
import type { DirectReport } from './report.js';

export interface AnswererDeps {
  /** Starts an answerer process (a direct worker running the answer app). */
  spawn(events: WorkerEvents): WorkerHandle;
  /** Renders the page for an error (the fronts' renderer). */
  render(error: CorralError): Buffer;
  /** Replaces the page the answerer reads, atomically. */
  writePage(page: Buffer): void;
  /** Finished requests from its reports (the access log). */
  report?(w: WorkerHandle, r: DirectReport): void;
  stderr?(w: WorkerHandle, line: string): void;
  readonly log: Logger;
  /** The service-wide worker budget (maxTotalWorkers): the answerer is a Python process too. */
  readonly budget?: { take(): boolean; give(): void };
  readonly startupTimeoutMs: number;
  /** After stdin closes, how long it may take to exit before it is killed. */
  readonly gracefulTimeoutMs: number;
}

/** First delay before an answerer that exited on its own is started again; it doubles up to the max. */
const RESPAWN_MIN_MS = 500;
const RESPAWN_MAX_MS = 30_000;
/** An answerer that lived this long resets the delay. */
const STABLE_MS = 30_000;
/** Past gracefulTimeout, the worker's own --eof-grace should have ended it: this is the backstop. */
const KILL_GRACE_MS = 5_000;

/** What the status page shows of the answerer. */
export interface AnswererInfo {
  pid: number;
  state: WorkerState;
  /** Requests it answered. */
  requests: number;
  /** The error code of the page it answers with. */
  code: string | null;
  uptimeMs: number;
}

export class Answerer {
  readonly #deps: AnswererDeps;
  /** The one answering now (or starting); null when none is wanted or it is between restarts. */
  #current: WorkerHandle | null = null;
  #currentSince = 0;
  /** Answerers told to leave, until they exit. */
  #leaving = new Set<WorkerHandle>();
  #wanted = false;
  #stopped = false;
  #failures = 0;
  #respawnTimer: NodeJS.Timeout | null = null;
  #bootTimer: NodeJS.Timeout | null = null;
  #exitWaiters: Array<() => void> = [];
  /** Why the page last changed (its code), for logs. */
  #shown: string | null = null;
  #budgetWarned = false;

  constructor(deps: AnswererDeps) {
    this.#deps = deps;
  }

  /** The answerer's pid while one runs (status, tests). */
  get pid(): number | null {
    return this.#current?.pid ?? null;
  }

  /** The one answering now, for the status page; null when none runs. */
  get info(): AnswererInfo | null {
    const w = this.#current;
    if (!w) return null;
    return { pid: w.pid, state: w.state, requests: w.requests, code: this.#shown, uptimeMs: performance.now() - this.#currentSince };
  }

  /** The pool failed with `error`: answer with its page, starting the answerer if none runs. */
  show(error: CorralError): void {
    if (this.#stopped) return;
    try {
      this.#deps.writePage(this.#deps.render(error));
    } catch (err) {
      this.#deps.log.error({ err: (err as Error).message }, 'cannot write the answer page; the answerer keeps the last one');
    }
    if (this.#shown !== error.code || !this.#wanted) this.#deps.log.info({ code: error.code }, 'no ready worker: an answerer answers with the error page');
    this.#shown = error.code;
    this.#wanted = true;
    if (!this.#current && !this.#respawnTimer) this.#spawn();
  }

  /**
   * The app serves again (or stops): the answerer drains and exits. `handoffTo`: the ready worker's
   * handoff socket, which takes the answerer's kept connections (else it closes them as it drains).
   */
  clear(why = 'the app has a ready worker', handoffTo?: string): void {
    this.#wanted = false;
    this.#shown = null;
    this.#cancelRespawn();
    const w = this.#current;
    if (!w) return;
    this.#current = null;
    this.#deps.log.info({ pid: w.pid, why }, 'answerer draining');
    this.#leave(w, handoffTo);
  }

  /** Drains any answerer and resolves once every one has exited. */
  stop(): Promise<void> {
    this.#stopped = true;
    this.clear('the service stops');
    if (this.#leaving.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#exitWaiters.push(resolve));
  }

  #spawn(): void {
    const budget = this.#deps.budget;
    if (budget && !budget.take()) {
      // Another app's workers hold every unit: clients wait in the listen queue meanwhile.
      if (!this.#budgetWarned) this.#deps.log.warn('maxTotalWorkers reached: the answerer waits for a worker to exit');
      this.#budgetWarned = true;
      this.#spawnLater(RESPAWN_MIN_MS);
      return;
    }
    this.#budgetWarned = false;
    const events: WorkerEvents = {
      ready: (w) => this.#onReady(w),
      idle: () => {},
      exit: (w, code, signal) => this.#onExit(w, code, signal),
      stderr: this.#deps.stderr ?? ((w, line) => w.log.info({ line }, 'answerer stderr')),
      pong: () => {},
      report: (w, r) => this.#deps.report?.(w, r),
    };
    let w: WorkerHandle;
    try {
      w = this.#deps.spawn(events);
    } catch (err) {
      budget?.give();
      throw err;
    }
    this.#current = w;
    this.#currentSince = performance.now();
    w.log.info('answerer spawned');
    this.#bootTimer = setTimeout(() => {
      this.#bootTimer = null;
      if (this.#current === w && w.state === 'starting') {
        w.log.warn({ startupTimeoutMs: this.#deps.startupTimeoutMs }, 'answerer not ready within startupTimeout; killing it');
        w.kill();
      }
    }, this.#deps.startupTimeoutMs);
    this.#bootTimer.unref();
  }

  #onReady(w: WorkerHandle): void {
    if (this.#current !== w) return;
    this.#clearBootTimer();
    w.log.info('answerer ready');
  }

  #leave(w: WorkerHandle, handoffTo?: string): void {
    this.#clearBootTimer();
    this.#leaving.add(w);
    w.drain();
    w.closeStdin(handoffTo);
    const t = setTimeout(() => {
      if (this.#leaving.has(w)) {
        w.log.warn('answerer did not exit after its drain; killing it');
        w.kill();
      }
    }, this.#deps.gracefulTimeoutMs + KILL_GRACE_MS);
    t.unref();
  }

  #onExit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    this.#deps.budget?.give();
    if (this.#leaving.delete(w)) {
      w.log.info({ code, signal }, 'answerer exited');
      if (this.#leaving.size === 0) for (const done of this.#exitWaiters.splice(0)) done();
      return;
    }
    if (this.#current !== w) return;
    this.#current = null;
    this.#clearBootTimer();
    if (!this.#wanted || this.#stopped) return;
    // It exited on its own (it should not: its app cannot fail): start another, slower each time.
    if (performance.now() - this.#currentSince > STABLE_MS) this.#failures = 0;
    const delay = Math.min(RESPAWN_MAX_MS, RESPAWN_MIN_MS * 2 ** this.#failures);
    this.#failures++;
    w.log.warn({ code, signal, stderr: w.lastStderr, fatal: w.fatal?.error, retryMs: delay }, 'answerer exited; starting another');
    this.#spawnLater(delay);
  }

  /** Starts one after `ms`, if it is still wanted then. */
  #spawnLater(ms: number): void {
    this.#respawnTimer = setTimeout(() => {
      this.#respawnTimer = null;
      if (this.#wanted && !this.#stopped && !this.#current) this.#spawn();
    }, ms);
    this.#respawnTimer.unref();
  }

  #cancelRespawn(): void {
    if (this.#respawnTimer) clearTimeout(this.#respawnTimer);
    this.#respawnTimer = null;
  }

  #clearBootTimer(): void {
    if (this.#bootTimer) clearTimeout(this.#bootTimer);
    this.#bootTimer = null;
  }
}
