/**
 * Per-app settings for apps that requests name (IIS through `corral relay`): the service's own
 * settings, overridden by the settings the relay carries from IIS's `<environmentVariables>`,
 * overridden by the site's web.config `<appSettings>` (wfastcgi lets appSettings win over the
 * process environment). Names are the settings table's environment names (WSGI_APP, WSGI_HANDLER,
 * PYTHONPATH, WATCH_FILE_CHANGES_MASK, ...), parsed by the same kinds. Other names become the
 * app's environment, as wfastcgi copies every appSetting into os.environ (appEnvironment below).
 *
 * Only app-level settings may be set this way. The interpreter, listeners, allowed roots and
 * anything else that would let a request choose what code runs stay with the service's own
 * configuration.
 */
import type { Problem } from './problems.js';
import { quote } from './problems.js';
import { SETTING_ROWS, type SettingKey, type Settings } from './settings.js';

/** Keys an app's own settings may change. */
export const PER_APP_KEYS: ReadonlySet<SettingKey> = new Set<SettingKey>([
  'wsgiApp', 'pythonPath', 'workers', 'minWorkers', 'maxWorkers', 'threads', 'requestTimeout', 'startupTimeout',
  'idleTimeout', 'maxRequests', 'maxRequestsJitter', 'maxMemoryMB', 'queueLength', 'queueTimeout', 'gracefulTimeout',
  'watchFileChangesMask', 'restartFileRegex', 'errorLogDir', 'wsgiLog', 'deployFile', 'deployLog',
  'trustOriginalUrl',
]);

/** Settings of one app, and what was wrong with its overrides. */
export interface AppSettingsResult {
  settings: Readonly<Settings>;
  problems: Problem[];
  /** Names given that corral does not know or does not allow per app (not settings; see `env` for what became environment). */
  ignored: string[];
  /** What the app's workers get in their environment besides corral's own, and what was kept out. */
  env: AppEnvironment;
}

/** The environment of an app from its settings' other names, and what was kept out and why (names only). */
export interface AppEnvironment {
  readonly vars: Readonly<Record<string, string>>;
  readonly exported: readonly string[];
  readonly ignored: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
}

/** wfastcgi's WSGI_RESTART_FILE_REGEX when a web.config gives none (wfastcgi.py 3.0.0). */
export const WFASTCGI_RESTART_REGEX = '.*((\\.py)|(\\.config))$';

/**
 * Why a name that is not a per-app setting may not become the app's environment, or null if it
 * may. wfastcgi copies every appSetting; corral keeps the interpreter's and its own variables.
 */
export function envRefusal(name: string, isSetting: boolean): string | null {
  const up = name.toUpperCase();
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name)) return 'not a usable environment variable name';
  if (isSetting) return 'a service-wide setting: not per app, and not passed to the app';
  if (up.startsWith('CORRAL_')) return 'CORRAL_* names are the service\'s own';
  if (up.startsWith('PYTHON')) return 'PYTHON* would change how the service\'s interpreter runs (PYTHONPATH is a setting)';
  if (up.startsWith('_FCGI_')) return 'IIS\'s own FastCGI variables';
  return null;
}

/**
 * Applies `layers` (lowest first; each maps setting names as in the environment to text values)
 * to `base` for the app at `root`. Relative paths resolve against the app root.
 *
 * `vars` are the only names `%VAR%` may expand to (APPL_PHYSICAL_PATH and the like): never the
 * service's own environment, which holds its secrets, since these values come from requests and
 * web.config files. The relay expands a site's values against its own (the IIS worker's)
 * environment before it sends them (see expandVars in src/relay/inject.ts).
 */
export function appSettings(
  base: Readonly<Settings>,
  root: string,
  layers: ReadonlyArray<{ origin: string; values: ReadonlyMap<string, string> }>,
  platform: NodeJS.Platform = process.platform,
  vars: Readonly<Record<string, string>> = {},
): AppSettingsResult {
  const out: Record<string, unknown> = { ...base, root };
  const problems: Problem[] = [];
  const ignored: string[] = [];
  const vars_ = new Map<string, [string, string]>(); // folded name -> [name, value]; later layers win
  const refusedEnv = new Map<string, { name: string; reason: string }>();
  const fold = (n: string): string => (platform === 'win32' ? n.toUpperCase() : n);
  let given = false; // a layer set WATCH_FILE_CHANGES_MASK or WSGI_RESTART_FILE_REGEX (even empty: "off")
  let wfastcgi = false; // a layer names WSGI_HANDLER: the site was written for wfastcgi
  for (const layer of layers) {
    for (const [name, text] of layer.values) {
      const row = SETTING_ROWS.find((r) => r.env.some((e) => e.toUpperCase() === name.toUpperCase()));
      if (!row || !PER_APP_KEYS.has(row.key)) {
        ignored.push(name);
        const reason = envRefusal(name, row !== undefined);
        if (reason === null) {
          vars_.set(fold(name), [name, expandVars(text, platform, vars, 'empty')]);
          refusedEnv.delete(fold(name));
        } else refusedEnv.set(fold(name), { name, reason });
        continue;
      }
      if (row.key === 'watchFileChangesMask' || row.key === 'restartFileRegex') given = true;
      if (name.toUpperCase() === 'WSGI_HANDLER') wfastcgi = true;
      if (text.trim() === '') continue;
      const parsed = row.kind.fromText(expandVars(text, platform, vars, 'empty'), { baseDir: root, platform });
      if (parsed.ok) out[row.key] = parsed.value;
      else
        for (const issue of parsed.issues)
          problems.push({ origin: `${layer.origin} ${name}`, key: row.key, received: quote(issue.received), reason: issue.reason, expected: issue.expected ?? row.kind.expected });
    }
  }
  // wfastcgi watches *.py and *.config by default; a site written for it expects that.
  if (wfastcgi && !given && base.watchFileChangesMask === null && base.restartFileRegex === null) out.restartFileRegex = WFASTCGI_RESTART_REGEX;
  const env: AppEnvironment = {
    vars: Object.fromEntries([...vars_.values()]),
    exported: [...vars_.values()].map(([n]) => n),
    ignored: [...refusedEnv.values()],
  };
  return { settings: Object.freeze(out) as unknown as Settings, problems, ignored, env };
}

/** Names the service expands itself (per request); the relay leaves them as written. */
export const SERVICE_VARS: readonly string[] = ['APPL_PHYSICAL_PATH'];

/**
 * wfastcgi expands `%VAR%` in PYTHONPATH; Helicon expands `%APPL_PHYSICAL_PATH%` and the like.
 * `env` must be what the value's author may read: the relay's own environment in the relay, only
 * the documented per-app names in the service. Unknown names: `keep` leaves them as written (the
 * default), `empty` drops them as wfastcgi does (`os.getenv(name, '')`), and `keep-service` drops
 * all but SERVICE_VARS, which the relay leaves for the service.
 */
export function expandVars(
  text: string,
  platform: NodeJS.Platform,
  env: Readonly<Record<string, string | undefined>>,
  unknown: 'keep' | 'empty' | 'keep-service' = 'keep',
): string {
  return text.replace(/%([A-Za-z_][A-Za-z0-9_]*)%/g, (m, name: string) => {
    const key = platform === 'win32' ? Object.keys(env).find((k) => k.toUpperCase() === name.toUpperCase()) : name;
    const value = key === undefined ? undefined : env[key];
    if (value !== undefined) return value;
    if (unknown === 'keep') return m;
    if (unknown === 'keep-service' && SERVICE_VARS.some((v) => v.toUpperCase() === name.toUpperCase())) return m;
    return '';
  });
}
