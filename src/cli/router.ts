/**
 * Which app serves a request. Without `allowedRoots` there is one app, the configured one, and
 * params are not even decoded. With it, a request that names its app directory (IIS's
 * APPL_PHYSICAL_PATH, forwarded by `corral relay` with the site's settings as CORRAL_SETTING_*
 * params) gets a pool of its own, started on first use, keyed by the directory and its settings.
 *
 * Who may do that: only a request carrying the relay secret (src/relay/secret.ts). Nothing
 * outside the allowed roots ever runs, compared as real paths; request-started apps are capped
 * (maxApps, maxTotalWorkers, clamped workers and threads) and reaped when idle (appIdleTimeout).
 * Clients get error codes only: what a request sent is never echoed back, the log has the details.
 */
import { realpathSync, statSync } from 'node:fs';
import { join, posix, win32 } from 'node:path';
import { CorralError } from '../errors.js';
import { workerBounds, type Settings } from '../config/settings.js';
import { appSettings, type AppEnvironment } from '../config/app-settings.js';
import { readAppSettings, webConfigStamp, WebConfigError } from '../config/webconfig.js';
import { watchWebConfig } from '../watch/webconfig.js';
import type { AppWatcher } from '../watch/watcher.js';
import { formatProblem } from '../config/problems.js';
import type { Router } from '../front/fcgi-connection.js';
import type { Upstream } from '../pool/pool.js';
import type { WorkerBudget } from '../pool/budget.js';
import type { Logger } from '../log/logger.js';
import { SETTING_PARAM_PREFIX } from '../relay/inject.js';
import { RELAY_TOKEN_PARAM, SecretCheck } from '../relay/secret.js';
import type { App } from './app.js';

/** Most request threads per worker a request-started app may have (the settings table allows 256). */
export const REQUEST_APP_MAX_THREADS = 32;
/** Refusals remembered (a relay naming endless bad roots must not grow memory without bound). */
const MAX_REFUSALS = 1000;
/** A refusal lasts until the app's web.config changes (a stat per refused request), or this long at most. */
const REFUSAL_TTL_MS = 30_000;

/** What the router needs besides the settings; defaults are the real ones. */
export interface RouterOptions {
  readonly platform?: NodeJS.Platform;
  /** The service-wide worker budget, to refuse a new app that cannot get its minimum. */
  readonly budget?: WorkerBudget | null;
  /** The relay secret check; by default built from `relaySecretFile`. */
  readonly secret?: SecretCheck | null;
  readonly now?: () => number;
  /** Quiet period closing a burst of web.config saves before the app is reloaded (ms); 0 turns watching off. */
  readonly webConfigDebounceMs?: number;
}

/** An app a request started, and when a request last reached it. */
interface Started {
  app: App;
  lastUsed: number;
  /** The directory the request named, and the relay's settings: what #create needs to read the settings again. */
  readonly named: string;
  readonly overrides: ReadonlyMap<string, string>;
  /** The web.config settings the app runs with (JSON), to tell a real change from a touch. */
  web: string;
  watcher: AppWatcher | null;
  /** A reload for a web.config change is running; `again` when another change came meanwhile. */
  reloading: { again: boolean } | null;
}

/** A remembered refusal, and the web.config it was made for. */
interface Refusal {
  readonly error: CorralError;
  readonly at: number;
  readonly stamp: string;
}

/** The real path of `p`, resolving symlinks and junctions; for a path not there yet, its nearest existing ancestor's. */
export function realPathOf(p: string, platform: NodeJS.Platform = process.platform): string {
  const path = platform === 'win32' ? win32 : posix;
  const tail: string[] = [];
  let head = p;
  for (;;) {
    try {
      // .native: on Windows GetFinalPathNameByHandle, which resolves junctions as well as symlinks.
      const real = realpathSync.native(head);
      return tail.length === 0 ? real : path.join(real, ...tail.reverse());
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return p;
      tail.push(path.basename(head));
      head = parent;
    }
  }
}

/** Routes requests to apps, creating the ones requests name within the allowed roots. */
export class AppRouter implements Router {
  readonly needsParams: boolean;
  readonly #base: Readonly<Settings>;
  /** Apps the service was configured with; the first is the default for requests that name none. */
  readonly #configured: readonly App[];
  readonly #make: (settings: Readonly<Settings>, env: AppEnvironment | null) => App;
  readonly #log: Logger;
  readonly #platform: NodeJS.Platform;
  readonly #budget: WorkerBudget | null;
  readonly #secret: SecretCheck | null;
  readonly #now: () => number;
  readonly #apps = new Map<string, Started>();
  readonly #refused = new Map<string, Refusal>();
  readonly #webConfigDebounceMs: number;
  #closed = false;
  /** New apps starting for a web.config change, not yet serving (stopped with the service). */
  readonly #pending = new Set<App>();
  readonly #noted = new Set<string>();
  #reaper: NodeJS.Timeout | null = null;

  constructor(base: Readonly<Settings>, configured: readonly App[], make: (settings: Readonly<Settings>, env: AppEnvironment | null) => App, log: Logger, opts: RouterOptions = {}) {
    this.#base = base;
    this.#configured = configured;
    this.#make = make;
    this.#log = log;
    this.#platform = opts.platform ?? process.platform;
    this.#budget = opts.budget ?? null;
    this.#now = opts.now ?? Date.now;
    this.#webConfigDebounceMs = opts.webConfigDebounceMs ?? 200;
    this.#secret = opts.secret !== undefined ? opts.secret : base.relaySecretFile ? new SecretCheck(base.relaySecretFile, log, this.#platform) : null;
    // With a secret, params are decoded even for one app: the worker must not get a relay's
    // settings as if they were honoured, and a wrong token is worth a log line.
    this.needsParams = base.allowedRoots.length > 0 || configured.length > 1 || this.#secret !== null;
    if (base.appIdleTimeout > 0 && base.allowedRoots.length > 0) {
      const every = Math.min(30_000, Math.max(250, (base.appIdleTimeout * 1000) / 4));
      this.#reaper = setInterval(() => this.reapIdle(), every);
      this.#reaper.unref();
    }
  }

  /** Every app started so far, the configured ones first (and those starting to replace one). */
  get apps(): App[] {
    return [...this.#configured, ...[...this.#apps.values()].map((s) => s.app), ...this.#pending];
  }

  route(params: ReadonlyMap<string, string> | null): Upstream | CorralError {
    const trusted = this.#trusted(params);
    const physical = params?.get('APPL_PHYSICAL_PATH');
    const first = this.#configured[0];
    const overrides = new Map<string, string>();
    let sentSettings = false;
    for (const [k, v] of params ?? []) {
      if (!k.startsWith(SETTING_PARAM_PREFIX)) continue;
      sentSettings = true;
      if (trusted) overrides.set(k.slice(SETTING_PARAM_PREFIX.length), v);
    }
    if (sentSettings && !trusted) this.#noteOnce('untrusted-settings', 'a request without the relay secret carried CORRAL_SETTING_* params; ignored (only `corral relay` holding relaySecretFile may set app settings)');
    if (!physical) return first?.pool ?? new CorralError('CORRAL_NO_APP', 'the request names no app and the service has no app of its own');
    const path = this.#platform === 'win32' ? win32 : posix;
    const root = path.resolve(physical).replace(/[\\/]+$/, '') || path.sep;
    if (overrides.size === 0) for (const app of this.#configured) if (this.#same(root, app.settings.root)) return app.pool;
    // Without allowedRoots, requests cannot choose their app: they all go to the first one.
    if (this.#base.allowedRoots.length === 0 && first) return first.pool;
    if (!trusted) {
      this.#noteOnce('untrusted-app', 'a request without the relay secret named an app that is not configured; ignored (only `corral relay` holding relaySecretFile may choose an app)', { root });
      return first?.pool ?? new CorralError('CORRAL_ROOT_NOT_ALLOWED', 'only a relay holding the service\'s secret may name an app');
    }
    const key = `${this.#fold(root)}\n${JSON.stringify([...overrides].sort())}`;
    const known = this.#apps.get(key);
    if (known) {
      known.lastUsed = this.#now();
      return known.app.pool;
    }
    const refused = this.#refusal(key, root);
    if (refused) return refused;
    const stamp = webConfigStamp(root);
    const made = this.#create(root, overrides);
    if (made instanceof CorralError) {
      if (this.#refused.size >= MAX_REFUSALS) this.#refused.clear();
      this.#refused.set(key, { error: made, at: this.#now(), stamp });
      return made;
    }
    const full = this.#capacity(made.settings);
    if (full) return full;
    const app = this.#make(made.settings, made.env);
    const started: Started = { app, lastUsed: this.#now(), named: root, overrides, web: made.web, watcher: null, reloading: null };
    this.#apps.set(key, started);
    app.start();
    this.#watchWebConfig(key, started);
    this.#log.info({ root, realRoot: made.settings.root, wsgiApp: made.settings.wsgiApp, settings: Object.fromEntries(overrides) }, 'app started for a request');
    return app.pool;
  }

  /** Forgets refusals (after a config reload, the same request may now be allowed). */
  clearRefusals(): void {
    this.#refused.clear();
  }

  /** Stops and forgets request-started apps idle for appIdleTimeout (configured apps never). Runs on a timer. */
  reapIdle(): void {
    const idleMs = this.#base.appIdleTimeout * 1000;
    if (idleMs <= 0) return;
    const now = this.#now();
    for (const [key, s] of this.#apps) {
      const pool = s.app.pool;
      const busy = pool.queued > 0 || pool.workers.some((w) => w.inflight > 0);
      if (busy) {
        s.lastUsed = now;
        continue;
      }
      if (now - s.lastUsed < idleMs) continue;
      this.#apps.delete(key);
      void s.watcher?.close();
      // Room again: warn anew the next time a limit is hit.
      this.#noted.delete('max-apps');
      this.#noted.delete('worker-budget');
      s.app.log.info({ idleSeconds: Math.round((now - s.lastUsed) / 1000) }, 'idle app stopped and forgotten (appIdleTimeout)');
      void s.app.stop();
    }
  }

  /** Stops the reaper timer (the service is stopping). */
  close(): void {
    if (this.#reaper) clearInterval(this.#reaper);
    this.#reaper = null;
    this.#closed = true;
    for (const s of this.#apps.values()) void s.watcher?.close();
  }

  /** The remembered refusal for `key`, unless the app's web.config changed since (or it is old). */
  #refusal(key: string, root: string): CorralError | null {
    const r = this.#refused.get(key);
    if (!r) return null;
    if (this.#now() - r.at < REFUSAL_TTL_MS && webConfigStamp(root) === r.stamp) return r.error;
    this.#refused.delete(key);
    return null;
  }

  /** Re-reads a started app's web.config when it changes (see #reloadForWebConfig). */
  #watchWebConfig(key: string, s: Started): void {
    if (this.#webConfigDebounceMs <= 0) return;
    const watcher = watchWebConfig(s.app.settings.root, this.#webConfigDebounceMs, () => void this.#reloadForWebConfig(key, s), s.app.log);
    s.watcher = watcher;
    void watcher.ready.then(() => s.app.log.info('watching web.config'));
  }

  /**
   * A web.config change: the app's settings are read again and, when they differ, a new app with
   * them replaces the old one: the new one first, then requests go to it and the old one drains.
   * A file that does not parse, settings that are invalid or a new app that does not boot keep
   * the old app serving, and the log says why.
   */
  async #reloadForWebConfig(key: string, s: Started): Promise<void> {
    if (s.reloading) {
      s.reloading.again = true;
      return;
    }
    s.reloading = { again: false };
    try {
      do {
        s.reloading.again = false;
        await this.#replaceApp(key, s);
      } while (s.reloading.again && !this.#closed && this.#apps.get(key) === s);
    } finally {
      s.reloading = null;
    }
  }

  async #replaceApp(key: string, s: Started): Promise<void> {
    const old = s.app;
    const made = this.#create(s.named, s.overrides, 'web.config changed but its settings are not usable: keeping the old ones');
    if (made instanceof CorralError) return;
    if (made.web === s.web) {
      old.log.info('web.config changed; the settings it gives did not: nothing to reload');
      return;
    }
    const app = this.#make(made.settings, made.env);
    const need = Math.max(0, workerBounds(made.settings).min);
    const sideBySide = need > 0 && (!this.#budget || this.#budget.available >= need);
    app.start();
    if (sideBySide) {
      this.#pending.add(app);
      const err = await app.pool.whenReady();
      this.#pending.delete(app);
      if (err || this.#closed || this.#apps.get(key) !== s) {
        if (err && !this.#closed) old.log.warn({ code: err.code, err: err.message }, 'web.config changed but the app does not start with the new settings: keeping the old app serving');
        await app.stop();
        return;
      }
    } else {
      old.log.warn({ minWorkers: need, available: this.#budget?.available ?? null }, 'web.config changed: no room for the new app beside the old one, switching at once (requests queue until it is ready)');
    }
    s.app = app;
    s.web = made.web;
    old.log.info({ wsgiApp: made.settings.wsgiApp }, 'web.config changed: app reloaded with the new settings, the old one draining');
    await old.stop();
  }

  #trusted(params: ReadonlyMap<string, string> | null): boolean {
    const token = params?.get(RELAY_TOKEN_PARAM);
    if (token === undefined) return false;
    if (this.#secret?.matches(token)) return true;
    if (this.#secret) this.#noteOnce('bad-token', 'a request carried a wrong relay secret; its app selection and settings are ignored (a relay of another service, or a client guessing)');
    else this.#noteOnce('no-secret', 'a request carried a relay secret but the service has no relaySecretFile; its app selection and settings are ignored');
    return false;
  }

  /** 503 when one more app would exceed maxApps, or the worker budget cannot give it its minimum. */
  #capacity(settings: Readonly<Settings>): CorralError | null {
    if (this.#apps.size >= this.#base.maxApps) {
      this.#noteOnce('max-apps', 'maxApps reached: refusing to start another app for a request', { maxApps: this.#base.maxApps });
      return new CorralError('CORRAL_TOO_MANY_APPS', 'too many apps are running to start another', { retryAfter: 30 });
    }
    const need = Math.max(1, workerBounds(settings).min);
    if (this.#budget && this.#budget.available < need) {
      this.#noteOnce('worker-budget', 'maxTotalWorkers cannot give a new app its minimum workers: refusing it', { maxTotalWorkers: this.#budget.limit, used: this.#budget.used, need });
      return new CorralError('CORRAL_WORKER_LIMIT', 'not enough workers left in the service to start another app', { retryAfter: 30 });
    }
    return null;
  }

  /**
   * The settings of a new app, the environment its settings give its workers, and its web.config
   * settings as JSON; or why it may not run. Logs the details (with `refusal` as the message); the
   * error a client sees names none of its values.
   */
  #create(named: string, overrides: ReadonlyMap<string, string>, refusal = 'app refused'): { settings: Readonly<Settings>; env: AppEnvironment; web: string } | CorralError {
    const refuse = (code: 'CORRAL_ROOT_NOT_ALLOWED' | 'CORRAL_NO_APP' | 'CORRAL_BAD_APP_SETTINGS', client: string, detail: Record<string, unknown>): CorralError => {
      this.#log.warn({ code, root: named, ...detail }, refusal);
      return new CorralError(code, client);
    };
    if (!this.#allowed(named)) return refuse('CORRAL_ROOT_NOT_ALLOWED', 'the app directory is outside allowedRoots', { realRoot: realPathOf(named, this.#platform) });
    const stat = statSync(named, { throwIfNoEntry: false });
    if (!stat?.isDirectory()) return refuse('CORRAL_NO_APP', 'the app directory does not exist', {});
    // The app runs from its real directory: what was checked is what runs.
    const root = realPathOf(named, this.#platform);
    let web: Map<string, string>;
    try {
      web = readAppSettings(root);
    } catch (err) {
      if (!(err instanceof WebConfigError)) throw err;
      return refuse('CORRAL_BAD_APP_SETTINGS', 'the app\'s web.config cannot be read (the service log says why)', { err: err.message });
    }
    // %VAR% may name only these: never the service's environment (its secrets).
    const vars = { APPL_PHYSICAL_PATH: root };
    // web.config's appSettings win over what the relay carries from the environment, as in wfastcgi.
    const result = appSettings(this.#base, root, [
      { origin: 'IIS environment', values: overrides },
      { origin: join(root, 'web.config'), values: web },
    ], this.#platform, vars);
    if (result.problems.length > 0)
      return refuse('CORRAL_BAD_APP_SETTINGS', 'the app\'s settings are invalid (the service log names them)', { err: result.problems.map(formatProblem).join('; ') });
    // Every path an app's own settings name must stay inside the allowed roots (as real paths): a
    // PYTHONPATH entry or a DEPLOY_FILE elsewhere would let whoever reaches the service run their code.
    const path = this.#platform === 'win32' ? win32 : posix;
    const s = result.settings;
    const named_: Array<[string, string | null]> = [
      ...s.pythonPath.map((p): [string, string] => ['PYTHONPATH', p]),
      ['DEPLOY_FILE', s.deployFile === null ? null : path.resolve(root, s.deployFile)],
      // Run before the app's handler (wfastcgi's virtualenv proxy): code, like PYTHONPATH.
      ...Object.entries(result.env.vars).filter(([n]) => n.toUpperCase() === 'WSGI_ALT_VIRTUALENV_ACTIVATE_THIS').map(([n, p]): [string, string] => [n, path.resolve(root, p)]),
    ];
    for (const [name, p] of named_) {
      if (p !== null && !this.#allowed(p) && !this.#inside(realPathOf(p, this.#platform), root))
        return refuse('CORRAL_ROOT_NOT_ALLOWED', `the app's ${name} is outside allowedRoots`, { setting: name, path: p, realPath: realPathOf(p, this.#platform) });
    }
    // Log files are not code: one outside the allowed places is dropped with a warning (its lines
    // go to the service log), where refusing would take the whole site down for a log path.
    const logs: Array<[string, 'deployLog' | 'errorLogDir' | 'wsgiLog', string | null]> = [
      ['DEPLOY_LOG', 'deployLog', s.deployLog === null ? null : path.resolve(root, s.deployLog)],
      ['ERROR_LOG_DIR', 'errorLogDir', s.errorLogDir],
      ['WSGI_LOG', 'wsgiLog', s.wsgiLog],
    ];
    const dropped: Partial<Record<'deployLog' | 'errorLogDir' | 'wsgiLog', null>> = {};
    for (const [name, key, p] of logs) {
      if (p === null || this.#allowed(p) || this.#inside(realPathOf(p, this.#platform), root) || this.#inLogRoot(p)) continue;
      dropped[key] = null;
      this.#log.warn({ root, setting: name, path: p, logRoots: this.#base.logRoots }, `the app's ${name} is outside its directory, allowedRoots and logRoots: ignored, its lines go to the service log (add the directory to logRoots to allow it)`);
    }
    const kept = Object.keys(dropped).length > 0 ? (Object.freeze({ ...s, ...dropped }) as Readonly<Settings>) : s;
    return { settings: this.#clamp(kept, root), env: result.env, web: JSON.stringify([...web]) };
  }

  /** Caps the workers and threads a request-started app may ask for. */
  #clamp(s: Readonly<Settings>, root: string): Readonly<Settings> {
    const most = this.#base.maxTotalWorkers;
    const cap = (n: number | null, max: number): number | null => (n === null ? null : Math.min(n, max));
    const out = {
      ...s,
      workers: Math.min(s.workers, most),
      minWorkers: cap(s.minWorkers, most),
      maxWorkers: cap(s.maxWorkers, most),
      threads: Math.min(s.threads, REQUEST_APP_MAX_THREADS),
    };
    if (out.workers !== s.workers || out.minWorkers !== s.minWorkers || out.maxWorkers !== s.maxWorkers || out.threads !== s.threads)
      this.#log.warn({ root, asked: { workers: s.workers, minWorkers: s.minWorkers, maxWorkers: s.maxWorkers, threads: s.threads }, maxTotalWorkers: most, maxThreads: REQUEST_APP_MAX_THREADS }, 'app settings clamped');
    return Object.freeze(out);
  }

  /** Inside an allowed root or a configured app's directory, comparing real paths on both sides. */
  #allowed(dir: string): boolean {
    const real = realPathOf(dir, this.#platform);
    const roots = [...this.#base.allowedRoots, ...this.#configured.map((a) => a.settings.root)];
    return roots.some((r) => this.#inside(real, realPathOf(r, this.#platform)));
  }

  #inLogRoot(p: string): boolean {
    const real = realPathOf(p, this.#platform);
    return this.#base.logRoots.some((r) => this.#inside(real, realPathOf(r, this.#platform)));
  }

  #inside(dir: string, root: string): boolean {
    const path = this.#platform === 'win32' ? win32 : posix;
    const rel = path.relative(this.#fold(root), this.#fold(dir));
    return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
  }

  #same(a: string, b: string): boolean {
    return this.#fold(a).replace(/[\\/]+$/, '') === this.#fold(b).replace(/[\\/]+$/, '');
  }

  /** Windows paths compare case-insensitively. */
  #fold(p: string): string {
    return this.#platform === 'win32' ? p.toLowerCase() : p;
  }

  /** Logs a condition once (until the service restarts): a hostile client must not flood the log. */
  #noteOnce(key: string, msg: string, fields: Record<string, unknown> = {}): void {
    if (this.#noted.has(key)) return;
    this.#noted.add(key);
    this.#log.warn(fields, msg);
  }
}
