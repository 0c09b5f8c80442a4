/**
 * One app at run time: its settings, its pool of workers and its file watcher. The service has one
 * for the app it was started with, and one per app that requests name (IIS sites through the relay).
 */
import { fileURLToPath } from 'node:url';
import { lstatSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, isAbsolute, join, relative } from 'node:path';
import { Answerer, type AnswererInfo } from '../pool/answerer.js';
import { pidAlive } from '../relay/lock.js';
import { errorResponse } from '../front/error-page.js';
import type { DirectReport } from '../pool/report.js';
import { runDeploy, type DeploySpec } from '../pool/deploy.js';
import { RotatingFile, appFileStem, dailyPath, stderrLine } from '../log/stderr-file.js';
import type { WorkerHandle } from '../pool/handle.js';
import type { Metrics } from '../control/metrics.js';
import type { Settings } from '../config/settings.js';
import { workerBounds } from '../config/settings.js';
import type { Logger } from '../log/logger.js';
import type { CorralError } from '../errors.js';
import { Pool, type PoolOptions } from '../pool/pool.js';
import type { WorkerBudget } from '../pool/budget.js';
import { Worker, type WorkerSpawnSpec } from '../pool/worker.js';
import { realClock } from '../pool/clock.js';
import { sampleUsage } from '../monitor/sampler.js';
import { changeFilter } from '../watch/mask.js';
import { watchApp, type AppWatcher } from '../watch/watcher.js';
import { invalidateBytecode } from '../watch/bytecode.js';
import { inheritedEnv, withAppEnv } from './worker-env.js';
import type { AppEnvironment } from '../config/app-settings.js';
import type { RequestObserver } from '../front/access-log.js';
import type { SharedListener } from '../pool/shared-listener.js';
import { TracebackLines } from '../log/traceback-lines.js';
import type { AppStats, StatsBook } from '../monitor/app-stats.js';
import type { AppNames } from './app-names.js';

/** The Python worker shipped with corral (src/python), found from this file in src/ or dist/. */
export const WORKER_SCRIPT = fileURLToPath(new URL('../../src/python/corral_worker.py', import.meta.url));

/** corral's own Python packages (corral_wsgi: the answerer's app). */
const PYTHON_DIR = dirname(WORKER_SCRIPT);

/** The answerer's WSGI app (src/python/corral_wsgi/answer.py) and how it finds its page. */
const ANSWER_APP = 'corral_wsgi.answer:app';
const ANSWER_PAGE_VAR = 'CORRAL_ANSWER_PAGE';

/** Per-request response credit given to each worker (bytes). */
const RESPONSE_WINDOW = 1024 * 1024;

/** Variables IIS sets for its own FastCGI process; workers must not see (or inherit) them. */
const IIS_PRIVATE_ENV = ['_FCGI_X_PIPE_', '_FCGI_SHUTDOWN_EVENT_', '_FCGI_MUTEX_'];

/** How apps run, beyond their settings. */
export interface AppOptions {
  /** `corral dev`: tracebacks in the browser, a failed reload shows its error. */
  dev: boolean;
  /** Quiet period closing a burst of file saves. */
  reloadDebounceMs: number;
  /** Counts worker exits for /metrics. */
  metrics?: Metrics;
  /** The service-wide worker budget (maxTotalWorkers) every pool spawns within. */
  budget?: WorkerBudget;
  /** Direct data plane: the workers accept on the listener `start()` is given. */
  direct?: boolean;
  /** Request figures and recent events for the status page (with a control listener). */
  stats?: StatsBook;
  /** Gives each app a name unique in the service (the `app` label of metrics and records). */
  names?: AppNames;
}

/** The environment workers start with: the base list and `passEnv` of `base` (worker-env.ts), and corral's own. */
export function workerEnv(base: NodeJS.ProcessEnv, passEnv: readonly string[] = []): NodeJS.ProcessEnv {
  const env = inheritedEnv(base, passEnv);
  for (const k of IIS_PRIVATE_ENV) delete env[k]; // even with passEnv `*`
  env.PYTHONUNBUFFERED = '1';
  return env;
}

/** The pool's options from the settings (seconds become milliseconds). */
export function poolOptions(s: Readonly<Settings>, dev = false): PoolOptions {
  const { min, max } = workerBounds(s);
  return {
    app: s.wsgiApp,
    minWorkers: min,
    maxWorkers: max,
    requestTimeoutMs: s.requestTimeout * 1000,
    startupTimeoutMs: s.startupTimeout * 1000,
    idleTimeoutMs: s.idleTimeout * 1000,
    maxRequests: s.maxRequests,
    maxRequestsJitter: s.maxRequestsJitter,
    maxMemoryMB: s.maxMemoryMB,
    queueLength: s.queueLength,
    queueTimeoutMs: s.queueTimeout * 1000,
    gracefulTimeoutMs: s.gracefulTimeout * 1000,
    failedRetryMs: 5_000,
    rapidFailsPerMinute: 10,
    pingIntervalMs: 10_000,
    pingTimeoutMs: 30_000,
    monitorIntervalMs: 1_000,
    tickMs: 250,
    keepOldOnFailedReload: !dev,
    // Unless worker stderr goes to a file (ERROR_LOG_DIR, WSGI_LOG): then the record keeps it.
    tracebackShownAbove: dev && s.errorLogDir === null && s.wsgiLog === null,
  };
}

/**
 * The worker's direct-mode arguments: the shared socket as fd 3 and the limits the service's own
 * front enforces on the proxy path, so that a connection meets the same defences either way.
 */
export function directArgs(s: Readonly<Settings>): string[] {
  return [
    '--direct-fd', '3',
    '--backlog', String(Math.max(1, s.queueLength)),
    '--request-timeout', String(s.requestTimeout),
    '--params-timeout', String(s.paramsTimeout),
    '--idle-timeout', String(s.connectionIdleTimeout),
    '--body-timeout', String(s.bodyTimeout),
    '--max-connections', String(s.maxConnections),
    '--max-body-size', String(s.maxBodySize),
    '--max-params', String(s.maxParamsBytes),
    '--eof-grace', String(s.gracefulTimeout),
    // A direct worker logs the stack of a request it times out as it answers 504 itself: before
    // that, only at slowLogAfter (this, after spawnSpec's, is the value it takes).
    '--stack-after', String(s.slowLogAfter),
  ];
}

/** Private temporary directories of a service (the answer page's, the handoff sockets'), named PREFIX + pid + '-' + 6 characters. */
export const ANSWER_DIR_PREFIX = 'corral-answer-';
export const HANDOFF_DIR_PREFIX = 'corral-handoff-';

/** A new private directory (mode 0700) PREFIX + this pid + '-XXXXXX' in the temporary directory, after removing those of services that are gone. */
function makePrivateDir(prefix: string, log: Logger): string {
  removeOrphanDirs(tmpdir(), prefix, log);
  return mkdtempSync(join(tmpdir(), `${prefix}${process.pid}-`));
}

/** Removes such directories in `dir` left by corral services that no longer run (same user only). */
export function removeOrphanDirs(dir: string, prefix: string, log: Logger): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  const uid = process.getuid?.() ?? null;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)-[A-Za-z0-9]{6}$/.exec(name.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    const path = join(dir, name);
    try {
      if (uid !== null && lstatSync(path).uid !== uid) continue;
      rmSync(path, { recursive: true, force: true });
      log.info({ path, pid }, 'removed the temporary directory of a corral service that is gone');
    } catch {
      /* another service's sweep got there first, or it is not ours to remove */
    }
  }
}


/**
 * When a proxied worker logs where a request is (--stack-after): at slowLogAfter, and in any case
 * before requestTimeout ends the request by killing its worker (a second before; half of it if
 * shorter), so that the kill leaves the stack in the log. 0: never.
 */
export function proxyStackAfter(s: Readonly<Pick<Settings, 'requestTimeout' | 'slowLogAfter'>>): number {
  const beforeKill = s.requestTimeout > 0 ? (s.requestTimeout > 1 ? s.requestTimeout - 1 : s.requestTimeout / 2) : 0;
  if (s.slowLogAfter > 0 && (beforeKill === 0 || s.slowLogAfter < beforeKill)) return s.slowLogAfter;
  return beforeKill;
}

/** How the worker process is started for these settings (`appVars`: the app's own variables, from its web.config). */
export function spawnSpec(s: Readonly<Settings>, dev: boolean, appVars: Readonly<Record<string, string>> = {}): WorkerSpawnSpec {
  const args = [WORKER_SCRIPT, '--app', s.wsgiApp, '--root', s.root, '--threads', String(s.threads), '--window', String(RESPONSE_WINDOW)];
  if (s.pythonPath.length > 0) args.push('--pythonpath', s.pythonPath.join(';'));
  if (s.trustOriginalUrl) args.push('--trust-x-original-url');
  const stackAfter = proxyStackAfter(s);
  if (stackAfter > 0) args.push('--stack-after', String(stackAfter));
  const env = withAppEnv(workerEnv(process.env, s.passEnv), appVars);
  if (dev) env.CORRAL_DEV_ERRORS = '1';
  return { command: s.python, args, cwd: s.root, env, responseWindow: RESPONSE_WINDOW };
}

/**
 * How the answerer starts (direct data plane, while the pool is failed): the app's interpreter, but
 * corral's own app, in the directory of its page, with the base environment only (not the app's
 * variables: its code never runs there).
 */
export function answererSpec(s: Readonly<Settings>, pageFile: string): WorkerSpawnSpec {
  const dir = dirname(pageFile);
  const args = [WORKER_SCRIPT, '--app', ANSWER_APP, '--root', dir, '--pythonpath', PYTHON_DIR, '--threads', '1', '--window', String(RESPONSE_WINDOW)];
  const env = workerEnv(process.env);
  env[ANSWER_PAGE_VAR] = pageFile;
  return { command: s.python, args, cwd: dir, env, responseWindow: RESPONSE_WINDOW };
}

/** How DEPLOY_FILE runs: the worker's interpreter, directory and environment (plus the app's sys.path). */
export function deploySpec(s: Readonly<Settings>, worker: WorkerSpawnSpec): DeploySpec {
  const inApp = (p: string): string => (isAbsolute(p) ? p : join(s.root, p));
  const env = { ...worker.env, PYTHONPATH: [s.root, ...s.pythonPath, worker.env.PYTHONPATH].filter((p) => p).join(delimiter) };
  return {
    command: s.python,
    script: inApp(s.deployFile ?? ''),
    cwd: s.root,
    env,
    logFile: s.deployLog ? inApp(s.deployLog) : null,
    timeoutMs: Math.max(600, s.startupTimeout) * 1000,
  };
}

/** The file worker stderr goes to (ERROR_LOG_DIR, else WSGI_LOG), or null for the log. */
export function stderrFileFor(s: Readonly<Settings>): RotatingFile | null {
  // Helicon Zoo's examples write ERROR_LOG_DIR="NULL" for "off".
  if (s.errorLogDir !== null && basename(s.errorLogDir) !== 'NULL') return new RotatingFile(dailyPath(s.errorLogDir, appFileStem(s.root, s.wsgiApp)));
  if (s.wsgiLog !== null) {
    const file = s.wsgiLog;
    return new RotatingFile(() => file);
  }
  return null;
}

/** An app: pool + watcher. */
export class App {
  readonly settings: Readonly<Settings>;
  readonly pool: Pool;
  readonly log: Logger;
  readonly #opts: AppOptions;
  #watcher: AppWatcher | null = null;
  readonly #stderrFile: RotatingFile | null;
  #stderrFileFailed = false;
  /** Direct data plane: the socket the workers share (set by start()). */
  #shared: SharedListener | null = null;
  /** Where a direct worker's finished requests go (the access log and metrics); set by the service. */
  observe: RequestObserver | null = null;
  /** Direct data plane: answers on the socket while the pool is failed. */
  readonly #answerer: Answerer | null = null;
  /** The answerer's page (a file in a private temporary directory), made when first needed. */
  #answerPage: string | null = null;
  /** Direct data plane: the private directory (mode 0700) of the workers' handoff sockets, made when first needed. */
  #handoffDir: string | null = null;
  /** The pool's name, unique in the service: the WSGI callable, or `callable@directory` when two apps share one. */
  readonly name: string;
  /** Figures for the status page; null without a control listener. */
  readonly stats: AppStats | null;

  /** `env`: the app's own variables (request-started apps: from its web.config), logged once here by name. */
  constructor(settings: Readonly<Settings>, log: Logger, opts: AppOptions, env: AppEnvironment | null = null) {
    this.settings = settings;
    this.#opts = opts;
    this.log = log.child({ app: settings.wsgiApp, root: settings.root });
    const spec = spawnSpec(settings, opts.dev, env?.vars);
    if (env && (env.exported.length > 0 || env.ignored.length > 0))
      this.log.info({ exported: env.exported, ignored: env.ignored }, 'app environment from its settings (names only)');
    const workerLog = log.child({ app: settings.wsgiApp });
    this.#stderrFile = stderrFileFor(settings);
    const name = (this.name = opts.names?.take(settings) ?? settings.wsgiApp);
    const stats = (this.stats = opts.stats?.for(name) ?? null);
    this.pool = new Pool(
      { ...poolOptions(settings, opts.dev), app: name, direct: opts.direct ?? false },
      {
        spawn: (gen, events) => new Worker(this.#withShared(spec, true), gen, events, workerLog, performance.now()),
        clock: realClock,
        random: Math.random,
        sample: sampleUsage,
        stderr: (w, line) => this.#onStderr(w, line),
        ...(opts.metrics || stats
          ? {
              workerExit: (reason: string, pid: number | null) => {
                opts.metrics?.workerExit(name, reason);
                stats?.exit(pid, reason);
              },
            }
          : {}),
        ...(opts.budget ? { budget: opts.budget } : {}),
        ...(settings.deployFile ? { beforeGeneration: (gen: number) => runDeploy(deploySpec(settings, spec), gen, this.log) } : {}),
        report: (w, r) => this.#observeReport(w, r),
        ...(opts.direct ? { answer: (error: CorralError | null, handoffTo?: string) => (error ? this.#answerer?.show(error) : this.#answerer?.clear(undefined, handoffTo)) } : {}),
      },
      log,
    );
    if (opts.direct) {
      this.#answerer = new Answerer({
        spawn: (events) => new Worker(this.#withShared(answererSpec(settings, this.#answerPageFile())), 0, events, workerLog.child({ answerer: true }), performance.now()),
        render: (error) => errorResponse(error, opts.dev),
        writePage: (page) => {
          const file = this.#answerPageFile();
          writeFileSync(`${file}.new`, page, { mode: 0o600 });
          renameSync(`${file}.new`, file);
        },
        report: (w, r) => this.#observeReport(w, r),
        log: this.log,
        ...(opts.budget ? { budget: opts.budget } : {}),
        startupTimeoutMs: settings.startupTimeout * 1000,
        gracefulTimeoutMs: settings.gracefulTimeout * 1000,
      });
    }
    if (this.#stderrFile) this.log.info({ file: this.#stderrFile.path }, 'worker stderr goes to a file');
  }

  /** What the watcher watches; null when off. */
  get watching(): { root: string; mask: string | null; regex: string | null } | null {
    const s = this.settings;
    return this.#watcher ? { root: s.root, mask: s.watchFileChangesMask, regex: s.restartFileRegex } : null;
  }

  /** Resolves once the watcher (if any) sees changes. */
  async watcherReady(): Promise<void> {
    await this.#watcher?.ready;
  }

  /** Starts the workers and the watcher; on the direct data plane the workers accept on `shared`. */
  start(shared: SharedListener | null = null): void {
    if (this.#opts.direct && !shared) throw new Error('a direct-mode app needs its shared listener');
    this.#shared = shared;
    const { min, max } = workerBounds(this.settings);
    const facts = { minWorkers: min, maxWorkers: max, dataPlane: shared ? 'direct' : 'proxy' };
    if (this.#opts.dev) this.log.debug({ settings: this.settings, ...facts }, 'app configuration');
    else this.log.info({ settings: this.settings, ...facts }, 'app configuration');
    this.pool.start();
    this.#startWatcher();
  }

  /** A rolling reload: new workers first, then the old ones drain. Resolves with the boot error, if any. */
  async reload(reason: string): Promise<Error | null> {
    const err = await this.pool.reload(reason);
    this.stats?.reload(reason, this.pool.servingGeneration, err);
    if (!err) this.log.info({ reason }, 'reload done');
    return err;
  }

  async stop(): Promise<void> {
    await this.#watcher?.close();
    await Promise.all([this.pool.stop(), this.#answerer?.stop()]);
    this.#stderrFile?.close();
    if (this.#answerPage) rmSync(dirname(this.#answerPage), { recursive: true, force: true });
    if (this.#handoffDir) rmSync(this.#handoffDir, { recursive: true, force: true });
  }

  /** The answerer's pid while one runs. */
  get answererPid(): number | null {
    return this.#answerer?.pid ?? null;
  }

  /** The answerer while one runs, for the status page. */
  get answerer(): AnswererInfo | null {
    return this.#answerer?.info ?? null;
  }

  /**
   * Where the answerer's page lives: a private directory (mode 0700) made on first use, named with
   * this service's pid so that one left by a service that was killed (no stop() ran) is removed here.
   */
  #answerPageFile(): string {
    this.#answerPage ??= join(makePrivateDir(ANSWER_DIR_PREFIX, this.log), 'page');
    return this.#answerPage;
  }

  /** A direct worker's (or the answerer's) finished requests, to the access log and metrics. */
  #observeReport(w: WorkerHandle, r: DirectReport): void {
    const observe = this.observe;
    if (!observe) return;
    const app = this.name;
    for (const a of r.access) {
      observe({ app, method: a.method, path: a.path, status: a.status, bytes: a.bytes, durationMs: a.ms, pid: w.pid, queueMs: null, error: a.error });
    }
  }

  /**
   * The spawn spec with the shared socket as fd 3 and the direct-mode arguments, when direct. The
   * pool's workers (`handoff`) also get the directory of their handoff sockets: a draining worker
   * passes its kept connections to a live one (PROTOCOL.md, "Handing off kept connections").
   */
  #withShared(spec: WorkerSpawnSpec, handoff = false): WorkerSpawnSpec {
    const shared = this.#shared;
    if (!shared) return spec;
    const args = [...spec.args, ...directArgs(this.settings)];
    if (handoff) {
      // mkdtemp makes it 0700: only this user's processes can reach the sockets in it.
      // Named with this service's pid, like the answer page's: a killed service's is removed by the next.
      this.#handoffDir ??= makePrivateDir(HANDOFF_DIR_PREFIX, this.log);
      args.push('--handoff-dir', this.#handoffDir);
    }
    return { ...spec, args, extraFds: [shared.fd] };
  }

  /** `corral dev`: a traceback is one ERROR record per worker, shown whole. */
  readonly #tracebacks = new WeakMap<WorkerHandle, TracebackLines>();
  /** The last boot traceback shown: a failed pool's retries that fail the same way say so in one line. */
  #lastBootTraceback: string | null = null;

  #onStderr(w: WorkerHandle, line: string): void {
    this.stats?.stderr(w.pid, line);
    const file = this.#stderrFile;
    if (!file) {
      if (!this.#opts.dev) {
        w.log.info({ line }, 'worker stderr');
        return;
      }
      let grouper = this.#tracebacks.get(w);
      if (!grouper) {
        grouper = new TracebackLines((item) => {
          if (item.kind === 'line') w.log.info({ line: item.text }, 'worker stderr');
          else if (w.state === 'starting' && item.text === this.#lastBootTraceback) w.log.info(`worker failed to boot again, same traceback: ${item.summary}`);
          else {
            // Only a boot traceback is remembered: a request's exception is shown each time it happens.
            this.#lastBootTraceback = w.state === 'starting' ? item.text : this.#lastBootTraceback;
            w.log.error({ err: { type: 'Traceback', message: item.summary, stack: item.text } }, `worker traceback: ${item.summary}`);
          }
        });
        this.#tracebacks.set(w, grouper);
      }
      grouper.push(line);
      return;
    }
    const err = file.writeLine(stderrLine(w.pid, line));
    if (err && !this.#stderrFileFailed) {
      this.#stderrFileFailed = true;
      this.log.warn({ file: file.path, err: err.message }, 'cannot write worker stderr to its file; logging it here until it works again');
    } else if (!err && this.#stderrFileFailed) {
      this.#stderrFileFailed = false;
      this.log.info({ file: file.path }, 'worker stderr file writable again');
    }
    if (err) w.log.info({ line }, 'worker stderr');
  }

  #startWatcher(): void {
    const s = this.settings;
    const filter = changeFilter(s.root, { mask: s.watchFileChangesMask, regex: s.restartFileRegex });
    if (!filter) return;
    this.#watcher = watchApp({
      root: s.root,
      filter,
      debounceMs: this.#opts.reloadDebounceMs,
      log: this.log,
      onReload: (paths) => {
        // A quick save can keep the mtime second and the size: drop the bytecode Python would reuse.
        const removed = invalidateBytecode(paths);
        if (removed.length > 0) this.log.debug({ removed }, 'removed cached bytecode of changed files');
        const files = paths.slice(0, 5).map((p) => relative(s.root, p) || p);
        void this.reload(`files changed: ${files.join(', ')}${paths.length > 5 ? ` and ${paths.length - 5} more` : ''}`);
      },
    });
    void this.#watcher.ready.then(() => this.log.info({ mask: s.watchFileChangesMask, regex: s.restartFileRegex }, 'watching files'));
  }
}
