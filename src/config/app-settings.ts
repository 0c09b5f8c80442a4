/**
 * Per-app settings for apps that requests name (IIS through `corral relay`): the service's own
 * settings, overridden by the site's web.config `<appSettings>`, overridden by the settings the
 * relay carries from IIS's `<environmentVariables>`. Names are the settings table's environment
 * names (WSGI_APP, WSGI_HANDLER, PYTHONPATH, WATCH_FILE_CHANGES_MASK, ...), parsed by the same kinds.
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
  /** Names given that corral does not know or does not allow per app (ignored, like wfastcgi ignores unknown keys). */
  ignored: string[];
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
  for (const layer of layers) {
    for (const [name, text] of layer.values) {
      const row = SETTING_ROWS.find((r) => r.env.some((e) => e.toUpperCase() === name.toUpperCase()));
      if (!row || !PER_APP_KEYS.has(row.key)) {
        ignored.push(name);
        continue;
      }
      if (text.trim() === '') continue;
      const parsed = row.kind.fromText(expandVars(text, platform, vars), { baseDir: root, platform });
      if (parsed.ok) out[row.key] = parsed.value;
      else
        for (const issue of parsed.issues)
          problems.push({ origin: `${layer.origin} ${name}`, key: row.key, received: quote(issue.received), reason: issue.reason, expected: issue.expected ?? row.kind.expected });
    }
  }
  return { settings: Object.freeze(out) as unknown as Settings, problems, ignored };
}

/**
 * wfastcgi expands `%VAR%` in PYTHONPATH; Helicon expands `%APPL_PHYSICAL_PATH%` and the like.
 * Unknown names stay as written. `env` must be what the value's author may read: the relay's own
 * environment in the relay, only the documented per-app names in the service.
 */
export function expandVars(text: string, platform: NodeJS.Platform, env: Readonly<Record<string, string | undefined>>): string {
  return text.replace(/%([A-Za-z_][A-Za-z0-9_]*)%/g, (m, name: string) => {
    const key = platform === 'win32' ? Object.keys(env).find((k) => k.toUpperCase() === name.toUpperCase()) : name;
    const value = key === undefined ? undefined : env[key];
    return value ?? m;
  });
}
