/**
 * What of the service's environment a worker (and the DEPLOY_FILE script) gets: a base list that
 * Python, its libraries and the OS need, plus what `passEnv` names. Nothing else is inherited, so
 * the service's own secrets (tokens, database passwords of other apps) never reach app code.
 */

/**
 * Variables every worker gets, as names or `PREFIX*` patterns (docs/security.md quotes this list).
 * Matched case-insensitively, so `http_proxy` and `HTTP_PROXY` both pass.
 */
export const BASE_ENV: readonly string[] = Object.freeze([
  // POSIX basics
  'PATH', 'HOME', 'USER', 'USERNAME', 'LOGNAME', 'LANG', 'LC_*', 'TZ', 'TMPDIR', 'TEMP', 'TMP',
  // Windows: the system and the account's folders (Python and many libraries fail without them)
  'SYSTEMROOT', 'WINDIR', 'COMSPEC', 'PATHEXT', 'SYSTEMDRIVE', 'PROGRAMDATA', 'PROGRAMFILES*',
  'APPDATA', 'LOCALAPPDATA', 'USERPROFILE', 'HOMEDRIVE', 'HOMEPATH',
  // Python and its environments (corral still sets PYTHONPATH and PYTHONUNBUFFERED itself)
  'PYTHON*', 'VIRTUAL_ENV', 'CONDA_PREFIX',
  // network and TLS settings libraries read
  'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'REQUESTS_CA_BUNDLE',
  // glibc malloc tunables, and the frameworks' own switches
  'MALLOC_*', 'DJANGO_SETTINGS_MODULE', 'FLASK_*',
]);

/** A matcher for names: exact, `PREFIX*`, or `*` (everything). */
function matcher(patterns: readonly string[], ignoreCase: boolean): (name: string) => boolean {
  const norm = (s: string): string => (ignoreCase ? s.toUpperCase() : s);
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const p of patterns) {
    if (p === '*') return () => true;
    if (p.endsWith('*')) prefixes.push(norm(p.slice(0, -1)));
    else exact.add(norm(p));
  }
  return (name) => {
    const n = norm(name);
    return exact.has(n) || prefixes.some((p) => n.startsWith(p));
  };
}

/**
 * The part of `base` a worker inherits: BASE_ENV (always case-insensitive) and `passEnv` (exact
 * names, `PREFIX*` or `*`; case-insensitive on Windows, where variable names are).
 */
export function inheritedEnv(base: NodeJS.ProcessEnv, passEnv: readonly string[], platform: NodeJS.Platform = process.platform): NodeJS.ProcessEnv {
  const inBase = matcher(BASE_ENV, true);
  const passed = matcher(passEnv, platform === 'win32');
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) {
    if (value !== undefined && (inBase(name) || passed(name))) env[name] = value;
  }
  return env;
}

/**
 * `env` with an app's own variables (its web.config appSettings that are not corral settings, as
 * wfastcgi copies them into os.environ) set over it. The names were checked by envRefusal
 * (src/config/app-settings.ts): never PYTHON* or CORRAL_*, so what corral sets stays. On Windows a
 * name replaces the inherited one in any case (`Path` and `PATH` are one variable there).
 */
export function withAppEnv(env: NodeJS.ProcessEnv, vars: Readonly<Record<string, string>>, platform: NodeJS.Platform = process.platform): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const [name, value] of Object.entries(vars)) {
    if (platform === 'win32') for (const k of Object.keys(out)) if (k.toUpperCase() === name.toUpperCase()) delete out[k];
    out[name] = value;
  }
  return out;
}
