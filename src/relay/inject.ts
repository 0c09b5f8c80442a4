/**
 * The app settings a relay carries to the service. IIS passes a site's settings to its FastCGI
 * program as environment variables (`<fastCgi><application><environmentVariables>`); the relay
 * adds each one it knows to every request as a `CORRAL_SETTING_<NAME>` param, so one service can
 * run several sites, each with its own settings. The service decides which it honours.
 */
import { expandVars } from '../config/app-settings.js';
import { boolean } from '../config/kinds.js';
import { RecordType } from '../fcgi/constants.js';
import { encodeParams } from '../fcgi/params.js';
import { frameStream } from '../fcgi/records.js';
import { RELAY_TOKEN_PARAM } from './secret.js';

/** Prefix of the params that carry a site's settings (the service strips it to get the setting's name). */
export const SETTING_PARAM_PREFIX = 'CORRAL_SETTING_';

/**
 * Environment variables forwarded as settings: wfastcgi's and Helicon Zoo's names, and corral's
 * per-app ones. Only names a site sets for its FastCGI program: the relay cannot tell a site's
 * `<environmentVariables>` from the machine's environment it also inherits, so PYTHONPATH, which
 * machines commonly set, goes only on the site's word (PYTHONPATH_OPT_IN).
 */
export const FORWARDED_SETTINGS = [
  'WSGI_APP', 'WSGI_HANDLER', 'PYTHONPATH', 'WATCH_FILE_CHANGES_MASK', 'WSGI_RESTART_FILE_REGEX',
  'DEPLOY_FILE', 'DEPLOY_LOG', 'ERROR_LOG_DIR', 'WSGI_LOG', 'CORRAL_PYTHON', 'CORRAL_WORKERS', 'CORRAL_THREADS',
  // Not settings: the service passes them to the app's environment (the PTVS virtualenv proxy reads them).
  'WSGI_ALT_VIRTUALENV_HANDLER', 'WSGI_ALT_VIRTUALENV_ACTIVATE_THIS',
] as const;

/**
 * A machine-wide PYTHONPATH (set for some other Python program) would override every site's and,
 * lying outside allowedRoots, get every site refused. So the relay forwards PYTHONPATH only when
 * the site also sets this to true in its `<environmentVariables>`; a site's PYTHONPATH belongs in
 * its web.config appSettings (as in wfastcgi), which the service reads itself.
 */
export const PYTHONPATH_OPT_IN = 'CORRAL_FORWARD_PYTHONPATH';

/**
 * The settings present in `env`, in table order, with `%VAR%` expanded against `env` itself (the
 * IIS worker's environment, as wfastcgi expanded them in its own process): the service never
 * expands a value a request carries against its environment. `%APPL_PHYSICAL_PATH%` (a
 * per-request server variable) stays for the service to expand; other unknown names become ""
 * as in wfastcgi. Empty values are kept: `WSGI_RESTART_FILE_REGEX=""` means "off".
 */
export function settingsFromEnv(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const optIn = env[PYTHONPATH_OPT_IN];
  const parsed = optIn === undefined ? null : boolean().fromText(optIn, { baseDir: '', platform });
  const pythonPath = parsed?.ok === true && parsed.value;
  for (const name of FORWARDED_SETTINGS) {
    if (name === 'PYTHONPATH' && !pythonPath) continue;
    const value = env[name];
    if (value !== undefined) out.push([name, expandVars(value, platform, env, 'keep-service')]);
  }
  return out;
}

/**
 * The PARAMS record(s) to send before a request's empty PARAMS record. Encoded once at start-up;
 * the bytes for each request id are built on first use and kept (ids are 1..255 under IIS), so
 * per request the relay only writes a ready buffer.
 */
export class SettingsInjector {
  readonly #body: Buffer;
  readonly #byId = new Map<number, Buffer>();

  /** `token`: the relay secret, sent first so the service honours the rest (null: none, the service ignores them). */
  constructor(settings: ReadonlyArray<readonly [string, string]>, token: string | null = null) {
    const pairs: Array<readonly [string, string]> = settings.map(([name, value]) => [`${SETTING_PARAM_PREFIX}${name}`, value] as const);
    if (token !== null) pairs.unshift([RELAY_TOKEN_PARAM, token]);
    this.#body = encodeParams(pairs);
  }

  /** Whether there is anything to inject. */
  get empty(): boolean {
    return this.#body.length === 0;
  }

  /** The records for request `id` (empty when there are no settings). Never mutate the result: it is shared. */
  recordsFor(id: number): Buffer {
    let b = this.#byId.get(id);
    if (b === undefined) {
      b = Buffer.concat(frameStream(RecordType.PARAMS, id, this.#body));
      // Clients other than IIS may use ids up to 65535; do not keep those forever.
      if (this.#byId.size < 256) this.#byId.set(id, b);
    }
    return b;
  }
}
