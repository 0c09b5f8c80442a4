/**
 * The service: its apps (one pool each), the router that picks an app per request, the front
 * listeners, and an orderly stop. `corral serve`, `corral dev` and the tests build it from
 * loaded settings.
 */
import type { Duplex } from 'node:stream';
import type { Settings } from '../config/settings.js';
import { listenAddresses } from '../config/settings.js';
import { formatAddress } from '../config/address.js';
import type { Logger } from '../log/logger.js';
import type { Pool } from '../pool/pool.js';
import { FcgiConnection, type ConnectionOptions } from '../front/fcgi-connection.js';
import { openFront, type Front } from '../front/listeners.js';
import { openHttpFront } from '../front/http-front.js';
import { App } from './app.js';
import { AppRouter } from './router.js';
import { accessLogger, observers, type RequestObserver } from '../front/access-log.js';

export { WORKER_SCRIPT, poolOptions, workerEnv } from './app.js';

/** Options that are not user settings. */
export interface ServiceOptions {
  /** `corral dev`: tracebacks in the browser, a failed reload shows its error. */
  dev?: boolean;
  version?: string;
  /** Quiet period closing a burst of file saves. */
  reloadDebounceMs?: number;
  /** Whether the configured app runs (false when only apps named by requests, under allowedRoots, should). */
  defaultApp?: boolean;
  /** Also told about each finished request (metrics). */
  observe?: RequestObserver | null;
}

/** A running corral service. */
export class Service {
  readonly router: AppRouter;
  readonly #settings: Readonly<Settings>;
  readonly #log: Logger;
  readonly #opts: ServiceOptions;
  readonly #default: App | null;
  #fronts: Front[] = [];
  #connections = new Set<FcgiConnection>();
  #stopping: Promise<void> | null = null;
  /** Where the HTTP front listens, as bound (null without one). */
  httpBound: string | null = null;
  /** Resolves when the service has stopped (asked to, or its stdin front closed). */
  readonly stopped: Promise<void>;
  #resolveStopped!: () => void;

  constructor(settings: Readonly<Settings>, log: Logger, opts: ServiceOptions = {}) {
    this.#settings = settings;
    this.#log = log;
    this.#opts = opts;
    this.stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
    const appOpts = { dev: opts.dev ?? false, reloadDebounceMs: opts.reloadDebounceMs ?? 200 };
    this.#default = opts.defaultApp === false ? null : new App(settings, log, appOpts);
    this.router = new AppRouter(settings, this.#default, (s) => new App(s, log, appOpts), log);
  }

  /** The configured app's pool. Throws when the service runs only apps that requests name. */
  get pool(): Pool {
    if (!this.#default) throw new Error('this service has no app of its own');
    return this.#default.pool;
  }

  /** Every app running. */
  get apps(): App[] {
    return this.router.apps;
  }

  /** Where each front listens, as bound (e.g. the real port for `:0`). */
  get bound(): string[] {
    return this.#fronts.map((f) => f.bound);
  }

  /** What the configured app's watcher watches; null when off. */
  get watching(): { root: string; mask: string | null; regex: string | null } | null {
    return this.#default?.watching ?? null;
  }

  /** Starts the configured app and opens every listener. Rejects (after cleaning up) if a listener fails. */
  async start(): Promise<void> {
    this.#default?.start();
    const s = this.#settings;
    const dev = this.#opts.dev ?? false;
    const observe = observers(s.accessLog ? accessLogger(this.#log) : null, this.#opts.observe ?? null);
    const connOpts: ConnectionOptions = { maxParamsBytes: s.maxParamsBytes, maxConns: 10_000, maxReqs: 10_000, devErrors: dev, observe };
    try {
      for (const address of listenAddresses(s)) {
        const front = await openFront(
          address,
          (socket: Duplex) => this.#accept(socket, connOpts),
          () => {
            this.#log.info('stdin closed by the web server; stopping');
            void this.stop();
          },
        );
        this.#fronts.push(front);
        this.#log.info({ listen: front.bound, kind: address.kind }, 'FastCGI front listening');
      }
      if (s.http) {
        const front = await openHttpFront(s.http, this.router, { devErrors: dev, serverSoftware: `corral/${this.#opts.version ?? '0'}`, observe }, this.#log);
        this.#fronts.push(front);
        this.httpBound = front.bound;
        this.#log.info({ http: front.bound, url: `http://${front.bound}/` }, 'HTTP front listening');
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** A rolling reload of every app: new workers first, then the old ones drain. */
  async reload(reason: string): Promise<void> {
    await Promise.all(this.apps.map((a) => a.reload(reason)));
  }

  #accept(socket: Duplex, opts: ConnectionOptions): void {
    const conn = new FcgiConnection(socket, this.router, opts, this.#log);
    this.#connections.add(conn);
    socket.once('close', () => this.#connections.delete(conn));
    if (this.#stopping) conn.closeWhenIdle();
  }

  /** Stops accepting, lets in-flight requests finish, stops the workers. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#log.info({ fronts: this.#fronts.map((f) => formatAddress(f.address)) }, 'service stopping');
      await Promise.all(this.#fronts.map((f) => f.close()));
      for (const c of this.#connections) c.closeWhenIdle();
      await Promise.all(this.apps.map((a) => a.stop()));
      // Requests are done; a client that keeps an idle connection open must not keep us alive.
      for (const c of this.#connections) c.destroy();
      this.#log.info('service stopped');
      this.#resolveStopped();
    })();
    return this.#stopping;
  }
}
