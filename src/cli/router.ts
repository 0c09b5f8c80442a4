/**
 * Which app serves a request. Without `allowedRoots` there is one app, the configured one, and
 * params are not even decoded. With it, a request that names its app directory (IIS's
 * APPL_PHYSICAL_PATH, forwarded by `corral relay` with the site's settings as CORRAL_SETTING_*
 * params) gets a pool of its own, started on first use, keyed by the directory and its settings.
 * Nothing outside the allowed roots ever runs.
 */
import { statSync } from 'node:fs';
import { join, posix, win32 } from 'node:path';
import { CorralError } from '../errors.js';
import type { Settings } from '../config/settings.js';
import { appSettings } from '../config/app-settings.js';
import { readAppSettings } from '../config/webconfig.js';
import { formatProblem } from '../config/problems.js';
import type { Router } from '../front/fcgi-connection.js';
import type { Upstream } from '../pool/pool.js';
import type { Logger } from '../log/logger.js';
import { SETTING_PARAM_PREFIX } from '../relay/inject.js';
import type { App } from './app.js';


/** Routes requests to apps, creating the ones requests name within the allowed roots. */
export class AppRouter implements Router {
  readonly needsParams: boolean;
  readonly #base: Readonly<Settings>;
  /** Apps the service was configured with; the first is the default for requests that name none. */
  readonly #configured: readonly App[];
  readonly #make: (settings: Readonly<Settings>) => App;
  readonly #log: Logger;
  readonly #platform: NodeJS.Platform;
  readonly #apps = new Map<string, App>();
  readonly #refused = new Map<string, CorralError>();

  constructor(base: Readonly<Settings>, configured: readonly App[], make: (settings: Readonly<Settings>) => App, log: Logger, platform: NodeJS.Platform = process.platform) {
    this.#base = base;
    this.#configured = configured;
    this.#make = make;
    this.#log = log;
    this.#platform = platform;
    this.needsParams = base.allowedRoots.length > 0 || configured.length > 1;
  }

  /** Every app started so far, the configured ones first. */
  get apps(): App[] {
    return [...this.#configured, ...this.#apps.values()];
  }

  route(params: ReadonlyMap<string, string> | null): Upstream | CorralError {
    const physical = params?.get('APPL_PHYSICAL_PATH');
    const first = this.#configured[0];
    if (!physical) return first?.pool ?? new CorralError('CORRAL_NO_APP', 'the request names no app (no APPL_PHYSICAL_PATH) and the service has no app of its own');
    const path = this.#platform === 'win32' ? win32 : posix;
    const root = path.resolve(physical).replace(/[\\/]+$/, '') || path.sep;
    const overrides = new Map<string, string>();
    for (const [k, v] of params!) if (k.startsWith(SETTING_PARAM_PREFIX)) overrides.set(k.slice(SETTING_PARAM_PREFIX.length), v);
    if (overrides.size === 0) for (const app of this.#configured) if (this.#same(root, app.settings.root)) return app.pool;
    // Without allowedRoots, requests cannot choose their app: they all go to the first one.
    if (this.#base.allowedRoots.length === 0 && first) return first.pool;
    const key = `${this.#fold(root)}\n${JSON.stringify([...overrides].sort())}`;
    const known = this.#apps.get(key);
    if (known) return known.pool;
    const refused = this.#refused.get(key);
    if (refused) return refused;
    const made = this.#create(root, overrides);
    if (made instanceof CorralError) {
      this.#refused.set(key, made);
      this.#log.warn({ code: made.code, root, err: made.message }, 'app refused');
      return made;
    }
    this.#apps.set(key, made);
    made.start();
    this.#log.info({ root, wsgiApp: made.settings.wsgiApp, settings: Object.fromEntries(overrides) }, 'app started for a request');
    return made.pool;
  }

  /** Forgets refusals (after a config reload, the same request may now be allowed). */
  clearRefusals(): void {
    this.#refused.clear();
  }

  #create(root: string, overrides: Map<string, string>): App | CorralError {
    if (!this.#allowed(root))
      return new CorralError('CORRAL_ROOT_NOT_ALLOWED', `app directory ${JSON.stringify(root)} is outside allowedRoots`);
    const stat = statSync(root, { throwIfNoEntry: false });
    if (!stat?.isDirectory()) return new CorralError('CORRAL_NO_APP', `app directory ${JSON.stringify(root)} does not exist`);
    const web = readAppSettings(root);
    const env = { ...process.env, APPL_PHYSICAL_PATH: root };
    const result = appSettings(this.#base, root, [
      { origin: join(root, 'web.config'), values: web },
      { origin: 'IIS environment', values: overrides },
    ], this.#platform, env);
    if (result.problems.length > 0)
      return new CorralError('CORRAL_BAD_APP_SETTINGS', `settings of the app in ${root} are invalid: ${result.problems.map(formatProblem).join('; ')}`);
    // Every path an app's own settings name must stay inside the allowed roots: a PYTHONPATH entry
    // or a DEPLOY_FILE elsewhere would let whoever can reach the service's pipe run their code.
    const path = this.#platform === 'win32' ? win32 : posix;
    const s = result.settings;
    const named: Array<[string, string | null]> = [
      ...s.pythonPath.map((p): [string, string] => ['PYTHONPATH', p]),
      ['DEPLOY_FILE', s.deployFile === null ? null : path.resolve(root, s.deployFile)],
      ['DEPLOY_LOG', s.deployLog === null ? null : path.resolve(root, s.deployLog)],
      ['ERROR_LOG_DIR', s.errorLogDir],
      ['WSGI_LOG', s.wsgiLog],
    ];
    for (const [name, p] of named) {
      if (p !== null && !this.#allowed(p) && !this.#inside(p, root))
        return new CorralError('CORRAL_ROOT_NOT_ALLOWED', `${name} ${JSON.stringify(p)} of the app in ${root} is outside allowedRoots`);
    }
    return this.#make(result.settings);
  }

  #allowed(dir: string): boolean {
    const roots = [...this.#base.allowedRoots, ...this.#configured.map((a) => a.settings.root)];
    return roots.some((r) => this.#inside(dir, r));
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
}
