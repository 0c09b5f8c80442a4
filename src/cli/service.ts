/**
 * The service: one pool per app, the front listeners, and an orderly stop. `corral serve` and the
 * integration tests build it from loaded settings.
 */
import { fileURLToPath } from 'node:url';
import type { Duplex } from 'node:stream';
import type { Settings } from '../config/settings.js';
import { listenAddresses } from '../config/settings.js';
import { formatAddress } from '../config/address.js';
import type { Logger } from '../log/logger.js';
import { Pool, type PoolOptions } from '../pool/pool.js';
import { Worker, type WorkerSpawnSpec } from '../pool/worker.js';
import { realClock } from '../pool/clock.js';
import { sampleUsage } from '../monitor/sampler.js';
import { workerBounds } from '../config/settings.js';
import { FcgiConnection, type ConnectionOptions } from '../front/fcgi-connection.js';
import { openFront, type Front } from '../front/listeners.js';
import { openHttpFront } from '../front/http-front.js';
import { relative } from 'node:path';
import { changeFilter } from '../watch/mask.js';
import { watchApp, type AppWatcher } from '../watch/watcher.js';

/** The Python worker shipped with corral (src/python), found from this file in src/ or dist/. */
export const WORKER_SCRIPT = fileURLToPath(new URL('../../src/python/corral_worker.py', import.meta.url));

/** Per-request response credit given to each worker (bytes). */
const RESPONSE_WINDOW = 256 * 1024;

/** Variables IIS sets for its own FastCGI process; workers must not see (or inherit) them. */
const IIS_PRIVATE_ENV = ['_FCGI_X_PIPE_', '_FCGI_SHUTDOWN_EVENT_', '_FCGI_MUTEX_'];

/** Options that are not user settings. */
export interface ServiceOptions {
  /** `corral dev`: tracebacks in the browser, a failed reload shows its error. */
  dev?: boolean;
  version?: string;
  /** Quiet period closing a burst of file saves. */
  reloadDebounceMs?: number;
}

/** The environment workers start with. */
export function workerEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const k of IIS_PRIVATE_ENV) delete env[k];
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
  };
}

/** A running corral service. */
export class Service {
  readonly pool: Pool;
  readonly #settings: Readonly<Settings>;
  readonly #log: Logger;
  readonly #opts: ServiceOptions;
  #fronts: Front[] = [];
  #connections = new Set<FcgiConnection>();
  #stopping: Promise<void> | null = null;
  #watcher: AppWatcher | null = null;
  /** Resolves when the service has stopped (asked to, or its stdin front closed). */
  readonly stopped: Promise<void>;
  #resolveStopped!: () => void;

  constructor(settings: Readonly<Settings>, log: Logger, opts: ServiceOptions = {}) {
    this.#settings = settings;
    this.#log = log;
    this.#opts = opts;
    this.stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
    const args = [
      WORKER_SCRIPT,
      '--app', settings.wsgiApp,
      '--root', settings.root,
      '--threads', String(settings.threads),
      '--window', String(RESPONSE_WINDOW),
    ];
    if (settings.pythonPath.length > 0) args.push('--pythonpath', settings.pythonPath.join(';'));
    const env = workerEnv(process.env);
    if (opts.dev) env.CORRAL_DEV_ERRORS = '1';
    const spec: WorkerSpawnSpec = { command: settings.python, args, cwd: settings.root, env, responseWindow: RESPONSE_WINDOW };
    this.pool = new Pool(
      poolOptions(settings, opts.dev ?? false),
      {
        spawn: (gen, events) => new Worker(spec, gen, events, this.#log.child({ app: settings.wsgiApp }), performance.now()),
        clock: realClock,
        random: Math.random,
        sample: sampleUsage,
      },
      log,
    );
  }

  /** Where the HTTP front listens, as bound (null without one). */
  httpBound: string | null = null;

  /** Where each front listens, as bound (e.g. the real port for `:0`). */
  get bound(): string[] {
    return this.#fronts.map((f) => f.bound);
  }

  /** Starts the workers, the file watcher and every listener. Rejects (after cleaning up) if a listener fails. */
  async start(): Promise<void> {
    this.pool.start();
    this.#startWatcher();
    const s = this.#settings;
    const connOpts: ConnectionOptions = {
      maxParamsBytes: s.maxParamsBytes,
      maxConns: 10_000,
      maxReqs: 10_000,
      devErrors: this.#opts.dev ?? false,
    };
    const route = (): Pool => this.pool;
    try {
      for (const address of listenAddresses(s)) {
        const front = await openFront(
          address,
          (socket: Duplex) => this.#accept(socket, route, connOpts),
          () => {
            this.#log.info('stdin closed by the web server; stopping');
            void this.stop();
          },
        );
        this.#fronts.push(front);
        this.#log.info({ listen: front.bound, kind: address.kind }, 'FastCGI front listening');
      }
      if (s.http) {
        const front = await openHttpFront(s.http, route, { devErrors: this.#opts.dev ?? false, serverSoftware: `corral/${this.#opts.version ?? '0'}` }, this.#log);
        this.#fronts.push(front);
        this.httpBound = front.bound;
        this.#log.info({ http: front.bound, url: `http://${front.bound}/` }, 'HTTP front listening');
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** What the watcher watches, for banners and logs; null when off. */
  get watching(): { root: string; mask: string | null; regex: string | null } | null {
    const s = this.#settings;
    return this.#watcher ? { root: s.root, mask: s.watchFileChangesMask, regex: s.restartFileRegex } : null;
  }

  /** Resolves once the watcher (if any) sees changes. */
  async watcherReady(): Promise<void> {
    await this.#watcher?.ready;
  }

  /** A rolling reload of the app: new workers first, then the old ones drain. */
  async reload(reason: string): Promise<void> {
    const err = await this.pool.reload(reason);
    if (!err) this.#log.info({ reason }, 'reload done');
  }

  #startWatcher(): void {
    const s = this.#settings;
    const filter = changeFilter(s.root, { mask: s.watchFileChangesMask, regex: s.restartFileRegex });
    if (!filter) return;
    this.#watcher = watchApp({
      root: s.root,
      filter,
      debounceMs: this.#opts.reloadDebounceMs ?? 200,
      log: this.#log,
      onReload: (paths) => {
        const files = paths.slice(0, 5).map((p) => relative(s.root, p) || p);
        void this.reload(`files changed: ${files.join(', ')}${paths.length > 5 ? ` and ${paths.length - 5} more` : ''}`);
      },
    });
    void this.#watcher.ready.then(() => this.#log.info({ root: s.root, mask: s.watchFileChangesMask, regex: s.restartFileRegex }, 'watching files'));
  }

  #accept(socket: Duplex, route: () => Pool, opts: ConnectionOptions): void {
    const conn = new FcgiConnection(socket, route, opts, this.#log);
    this.#connections.add(conn);
    socket.once('close', () => this.#connections.delete(conn));
    if (this.#stopping) conn.closeWhenIdle();
  }

  /** Stops accepting, lets in-flight requests finish, stops the workers. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#log.info({ fronts: this.#fronts.map((f) => formatAddress(f.address)) }, 'service stopping');
      await this.#watcher?.close();
      await Promise.all(this.#fronts.map((f) => f.close()));
      for (const c of this.#connections) c.closeWhenIdle();
      await this.pool.stop();
      // Requests are done; a client that keeps an idle connection open must not keep us alive.
      for (const c of this.#connections) c.destroy();
      this.#log.info('service stopped');
      this.#resolveStopped();
    })();
    return this.#stopping;
  }
}
