/**
 * The service: its apps (one pool each), the router that picks an app per request, the front
 * listeners, and an orderly stop. `corral serve`, `corral dev` and the tests build it from
 * loaded settings.
 */
import type { Duplex } from 'node:stream';
import type { Settings } from '../config/settings.js';
import { listenAddresses } from '../config/settings.js';
import { formatAddress, type ListenAddress } from '../config/address.js';
import type { Logger } from '../log/logger.js';
import type { Pool } from '../pool/pool.js';
import { FcgiConnection, type ConnectionOptions, type Router } from '../front/fcgi-connection.js';
import { openFront, type Front } from '../front/listeners.js';
import { HeldBudget } from '../front/held-budget.js';
import { LimitLog } from '../front/limit-log.js';
import { openHttpFront, type HttpFrontOptions } from '../front/http-front.js';
import { App } from './app.js';
import { AppRouter } from './router.js';
import { WorkerBudget } from '../pool/budget.js';
import { PromMetrics } from '../control/metrics.js';
import { StatsBook } from '../monitor/app-stats.js';
import { AppNames } from './app-names.js';
import { startControlServer, type ControlServer } from '../control/server.js';
import { accessLogger, observers, type RequestObserver } from '../front/access-log.js';
import { removeStaleSocket } from '../front/listeners.js';
import { bindShared, listenNow, type SharedListener } from '../pool/shared-listener.js';
import { chooseDataPlane, type PlaneChoice } from './data-plane.js';
import type { DevGeneration } from '../front/dev-page.js';

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
  /** ASP.NET Core Module's ASPNETCORE_TOKEN: the HTTP front refuses requests without it. */
  pairingToken?: string | null;
}

/** A running corral service. */
export class Service {
  readonly router: AppRouter;
  readonly #settings: Readonly<Settings>;
  readonly #log: Logger;
  readonly #opts: ServiceOptions;
  readonly #configured: App[];
  /** The apps came from the config file's `apps` (each may have addresses of its own). */
  readonly #fromAppsList: boolean;
  #fronts: Front[] = [];
  /** Direct or proxy, and why (an `error` when direct was asked for and cannot apply). */
  readonly plane: PlaneChoice;
  #connections = new Set<FcgiConnection>();
  #stopping: Promise<void> | null = null;
  /** Where the HTTP front listens, as bound (null without one). */
  httpBound: string | null = null;
  /** Requests and worker exits counted for the control listener's /metrics. */
  readonly metrics = new PromMetrics();
  /** Request rates, latency and recent errors per app for the status page (fed only with a control listener). */
  readonly stats = new StatsBook();
  #control: ControlServer | null = null;
  /** Where the control listener listens, as bound (null without one). */
  controlBound: string | null = null;

  /** True from the moment stop() begins: the control listener's /healthz answers 503. */
  get draining(): boolean {
    return this.#stopping !== null;
  }
  /** Resolves when the service has stopped (asked to, or its stdin front closed). */
  readonly stopped: Promise<void>;
  #resolveStopped!: () => void;

  /**
   * `apps`: the config file's apps (each with its settings); without them the service runs the
   * app its own settings describe, unless `opts.defaultApp` is false.
   */
  constructor(settings: Readonly<Settings>, log: Logger, opts: ServiceOptions = {}, apps: readonly Readonly<Settings>[] = []) {
    this.#settings = settings;
    this.#log = log;
    this.#opts = opts;
    this.stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
    const budget = new WorkerBudget(settings.maxTotalWorkers);
    const appOpts = { dev: opts.dev ?? false, reloadDebounceMs: opts.reloadDebounceMs ?? 200, budget, names: new AppNames(), ...(settings.control ? { metrics: this.metrics, stats: this.stats } : {}) };
    if (settings.control) this.metrics.collectProcessMetrics();
    const own = apps.length > 0 ? apps : opts.defaultApp === false ? [] : [settings];
    this.plane = chooseDataPlane(settings, { platform: process.platform, appsList: apps.length > 0, defaultApp: own.length > 0, dev: opts.dev ?? false });
    const direct = this.plane.error === undefined && this.plane.plane === 'direct';
    this.#configured = own.map((s) => new App(s, log, { ...appOpts, direct }));
    this.#fromAppsList = apps.length > 0;
    this.router = new AppRouter(settings, this.#configured, (s, env) => new App(s, log, appOpts, env), log, { budget });
  }

  /** The first configured app's pool. Throws when the service runs only apps that requests name. */
  get pool(): Pool {
    const first = this.#configured[0];
    if (!first) throw new Error('this service has no app of its own');
    return first.pool;
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
    return this.#configured[0]?.watching ?? null;
  }

  /** Starts the configured app and opens every listener. Rejects (after cleaning up) if a listener fails. */
  async start(): Promise<void> {
    const plane = this.plane;
    if (plane.error !== undefined) throw new Error(plane.error);
    this.#log.info({ dataPlane: plane.plane, why: plane.why }, plane.plane === 'direct' ? 'data plane: direct (the workers accept connections)' : 'data plane: proxy (the service accepts connections)');
    const s = this.#settings;
    // Bind first, then spawn: a port in use stops the start before any worker boots.
    const directSocket = plane.plane === 'direct' ? await this.#bindDirect(plane.address!) : null;
    const dev = this.#opts.dev ?? false;
    const metrics = s.control ? this.metrics : null;
    const observe = observers(
      s.accessLog ? accessLogger(this.#log) : null,
      metrics ? (r) => metrics.requestDone(r.app ?? 'none', r.status, r.durationMs / 1000, r.error) : null,
      metrics ? this.stats.observe : null,
      this.#opts.observe ?? null,
    );
    const connOpts: ConnectionOptions = {
      maxParamsBytes: s.maxParamsBytes,
      maxConns: s.maxConnections,
      maxReqs: s.maxConnectionRequests,
      devErrors: dev,
      observe,
      paramsTimeoutMs: s.paramsTimeout * 1000,
      bodyTimeoutMs: s.bodyTimeout * 1000,
      idleTimeoutMs: s.connectionIdleTimeout * 1000,
      maxConnectionBuffer: s.maxConnectionBuffer,
      maxBodySize: s.maxBodySize,
      budget: new HeldBudget(s.maxBufferedBytes),
      limitLog: new LimitLog(this.#log),
    };
    const httpOpts: HttpFrontOptions = {
      devErrors: dev,
      serverSoftware: `corral/${this.#opts.version ?? '0'}`,
      observe,
      maxBodySize: s.maxBodySize,
      maxConnections: s.maxConnections,
      paramsTimeout: s.paramsTimeout,
      bodyTimeout: s.bodyTimeout,
      connectionIdleTimeout: s.connectionIdleTimeout,
      trustForwarded: s.trustForwarded,
      mount: s.mount,
      pairingToken: this.#opts.pairingToken ?? null,
      staticFiles: s.static,
      // The dev error page's self-reload asks this; serve mode has no such path.
      devGeneration: dev ? () => this.#devGeneration() : null,
    };
    for (const app of this.#configured) app.observe = observe;
    // Apps with addresses of their own get fronts that serve only them.
    const ownFronts = this.#fromAppsList ? this.#configured.filter((a) => a.settings.listen.length > 0 || a.settings.http) : [];
    const shared = plane.plane === 'direct' || (ownFronts.length > 0 && s.listen.length === 0 && !s.http) ? [] : listenAddresses(s);
    try {
      for (const address of shared) await this.#openFastCgi(address, this.router, connOpts);
      if (s.http) this.httpBound = await this.#openHttp(s.http, this.router, httpOpts);
      for (const app of ownFronts) {
        const only: Router = { needsParams: false, route: () => app.pool };
        for (const address of app.settings.listen) await this.#openFastCgi(address, only, connOpts, app.settings.wsgiApp);
        if (app.settings.http) {
          const bound = await this.#openHttp(app.settings.http, only, httpOpts, app.settings.wsgiApp);
          this.httpBound ??= bound;
        }
      }
      if (s.control) {
        this.#control = await startControlServer({ address: s.control, target: this, log: this.#log, version: this.#opts.version ?? '0', metrics: this.metrics, readAccess: s.controlReadAccess });
        this.controlBound = this.#control.bound;
      }
      for (const app of this.#configured) app.start(directSocket);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** `corral dev`: the configured app's serving generation and its pool's state. */
  #devGeneration(): DevGeneration | null {
    const app = this.#configured[0];
    return app ? { generation: app.pool.servingGeneration, state: app.pool.state } : null;
  }

  /** A rolling reload of every app: new workers first, then the old ones drain. */
  async reload(reason: string): Promise<void> {
    await Promise.all(this.apps.map((a) => a.reload(reason)));
  }

  /**
   * The direct data plane's socket, bound before any worker starts (a port in use fails first);
   * the app's workers listen and accept on it. The service keeps its copy for the next
   * generations and never accepts on it.
   */
  async #bindDirect(address: ListenAddress): Promise<SharedListener> {
    if (address.kind === 'unix') await removeStaleSocket(address.path);
    const listener = await bindShared(address);
    this.#fronts.push({ address, bound: listener.bound, close: async () => listener.close() });
    const s = this.#settings;
    const failed = listenNow(listener, s.python, Math.max(1, s.queueLength));
    if (failed) this.#log.warn({ listen: listener.bound, err: failed }, 'could not listen before the workers boot; until the first one does, connections are refused');
    this.#log.info({ listen: listener.bound, kind: address.kind, dataPlane: 'direct' }, 'FastCGI front listening');
    return listener;
  }

  async #openFastCgi(address: ListenAddress, router: Router, opts: ConnectionOptions, app?: string): Promise<void> {
    // IIS's stdin pipe lives as long as IIS wants it: never closed for being idle.
    // Accepted sockets are read into reused memory; IIS's stdin is the process's own stream.
    const connOpts = address.kind === 'stdin' ? { ...opts, idleTimeoutMs: 0 } : { ...opts, reusedReads: true };
    const front = await openFront(
      address,
      (socket: Duplex) => this.#accept(socket, router, connOpts),
      () => {
        this.#log.info('stdin closed by the web server; stopping');
        void this.stop();
      },
      { maxConnections: this.#settings.maxConnections, limitLog: opts.limitLog ?? null, pipeAllUsers: this.#settings.pipeAllUsers },
    );
    this.#fronts.push(front);
    this.#log.info({ listen: front.bound, kind: address.kind, ...(app ? { app } : {}) }, 'FastCGI front listening');
  }

  async #openHttp(address: ListenAddress, router: Router, opts: HttpFrontOptions, app?: string): Promise<string> {
    const front = await openHttpFront(address, router, opts, this.#log);
    this.#fronts.push(front);
    this.#log.info({ http: front.bound, url: `http://${front.bound}/`, ...(app ? { app } : {}) }, 'HTTP front listening');
    return front.bound;
  }

  #accept(socket: Duplex, router: Router, opts: ConnectionOptions): void {
    const conn = new FcgiConnection(socket, router, opts, this.#log);
    this.#connections.add(conn);
    socket.once('close', () => this.#connections.delete(conn));
    if (this.#stopping) conn.closeWhenIdle();
  }

  /** Stops accepting, lets in-flight requests finish, stops the workers. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#log.info({ fronts: this.#fronts.map((f) => formatAddress(f.address)) }, 'service stopping');
      await Promise.all(this.#fronts.map((f) => f.close()));
      this.router.close();
      for (const c of this.#connections) c.closeWhenIdle();
      await Promise.all(this.apps.map((a) => a.stop()));
      // Requests are done; a client that keeps an idle connection open must not keep us alive.
      for (const c of this.#connections) c.destroy();
      // Last: /status and /healthz keep answering (503 "draining") while the apps stop.
      await this.#control?.close();
      this.#log.info('service stopped');
      this.#resolveStopped();
    })();
    return this.#stopping;
  }
}
