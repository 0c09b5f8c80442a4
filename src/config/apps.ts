/**
 * Several apps in one service: the config file's `apps` list. Each entry is an object of
 * settings for one app (`root` required); every other setting comes from the service's own
 * settings (defaults < config file < environment < flags), which the entry overrides. An entry
 * may have its own `listen`/`http` addresses, so a web server can send each app's traffic to its
 * own upstream (like PHP-FPM pools), or share the service's addresses and be picked by
 * APPL_PHYSICAL_PATH (IIS).
 */
import { pathApi } from './kinds.js';
import { PER_APP_KEYS } from './app-settings.js';
import { quote, type Problem } from './problems.js';
import { SETTING_ROWS, type SettingKey, type Settings } from './settings.js';

/** Keys an `apps` entry may set. */
export const APP_ENTRY_KEYS: readonly SettingKey[] = ['root', ...PER_APP_KEYS, 'python', 'listen', 'http'];

/** Parses the `apps` value of the config file at `file`. */
export function parseAppEntries(
  raw: unknown,
  file: string,
  base: Readonly<Settings>,
  platform: NodeJS.Platform,
  path: (at: readonly (string | number)[]) => string,
): { apps: Readonly<Settings>[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const where = (at: readonly (string | number)[]): string => `${file} ${path(['apps', ...at])}`;
  if (!Array.isArray(raw)) {
    problems.push({ origin: where([]), key: null, received: quote(raw), reason: 'is not a list', expected: 'a list of app objects' });
    return { apps: [], problems };
  }
  const ctx = { baseDir: pathApi(platform).dirname(file), platform };
  const apps: Readonly<Settings>[] = [];
  raw.forEach((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push({ origin: where([i]), key: null, received: quote(entry), reason: 'is not an object', expected: 'an object of app settings with a root' });
      return;
    }
    const out: Record<string, unknown> = { ...base, listen: [], http: null };
    const given = entry as Record<string, unknown>;
    if (!('root' in given)) problems.push({ origin: where([i]), key: 'root', received: null, reason: 'has no root', expected: 'the app directory' });
    for (const [key, value] of Object.entries(given)) {
      const row = SETTING_ROWS.find((r) => r.key === key);
      if (!row || !APP_ENTRY_KEYS.includes(row.key)) {
        problems.push({ origin: where([i, key]), key: null, received: null, reason: row ? 'cannot be set per app' : 'is not a known setting', expected: `one of ${APP_ENTRY_KEYS.join(', ')}` });
        continue;
      }
      const parsed = row.kind.fromJson(value, ctx);
      if (parsed.ok) out[key] = parsed.value;
      else for (const issue of parsed.issues) problems.push({ origin: where([i, key, ...issue.at]), key: row.key, received: quote(issue.received), reason: issue.reason, expected: issue.expected ?? row.kind.expected });
    }
    apps.push(Object.freeze(out) as unknown as Settings);
  });
  const roots = new Map<string, number>();
  apps.forEach((a, i) => {
    const key = `${a.root}\n${a.wsgiApp}`;
    const first = roots.get(key);
    if (first !== undefined) problems.push({ origin: where([i]), key: 'root', received: quote(a.root), reason: `repeats apps[${first}] (same root and wsgiApp)`, expected: 'each app once' });
    else roots.set(key, i);
  });
  return { apps, problems };
}
