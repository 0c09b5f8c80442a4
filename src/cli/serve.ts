/**
 * `corral serve` and `corral dev`: load settings, start the service, reload on SIGHUP, stop
 * cleanly on a signal. `dev` is `serve` with a developer's defaults: HTTP on 127.0.0.1:8000, one
 * worker, `*.py` watched, pretty logs and tracebacks in the browser.
 */
import { spawnSync } from 'node:child_process';
import { loadSettings, type LoadResult } from '../config/load.js';
import { ConfigError } from '../config/problems.js';
import { wantsHelp } from '../config/argv.js';
import { renderHelp } from '../config/help.js';
import { SETTING_ROWS, type Settings } from '../config/settings.js';
import { DEV_DEFAULTS } from '../config/dev-defaults.js';
import { createLogger, createPrettyLogger, flushLogs, type Logger } from '../log/logger.js';
import { Service } from './service.js';
import { detectDefaultApp } from '../config/app-layout.js';
import { detectPlatform, platformSettings, type PlatformMode } from './iis-platform.js';

/** Signals that mean "stop gracefully". Windows has no SIGTERM to catch; Ctrl-Break is SIGBREAK there. */
const STOP_SIGNALS: NodeJS.Signals[] = process.platform === 'win32' ? ['SIGINT', 'SIGBREAK'] : ['SIGINT', 'SIGTERM'];

export type Mode = 'serve' | 'dev';

/** `corral serve` exit codes when failFast stops it (gunicorn's: 3 worker boot error, 4 app load error). */
export const FAIL_FAST_EXIT = { BOOT: 3, IMPORT: 4 } as const;

/**
 * The settings with the app found in Django's layout when the user named none and the default
 * `wsgi.py` is not in APP_DIR (`corral serve mysite/` with mysite/mysite/wsgi.py); the found spec or null.
 */
export function withDetectedApp(loaded: LoadResult): { settings: Settings; detected: string | null } {
  const s = loaded.settings;
  const detected = loaded.sources.wsgiApp === 'default' && loaded.apps.length === 0 ? detectDefaultApp(s.root, s.wsgiApp) : null;
  return { settings: detected === null ? s : { ...s, wsgiApp: detected }, detected };
}

/** Dev defaults (DEV_DEFAULTS), applied only where the user set nothing, neither that setting nor the one that would win. */
export function devSettings(loaded: LoadResult): Settings {
  const { settings: s, sources } = loaded;
  const out: Record<string, unknown> = { ...s };
  const ctx = { baseDir: process.cwd(), platform: process.platform };
  for (const row of SETTING_ROWS) {
    const dev = DEV_DEFAULTS[row.key];
    if (dev === undefined || sources[row.key] !== 'default' || (dev.unless !== undefined && sources[dev.unless] !== 'default')) continue;
    const parsed = row.kind.fromText(dev.text, ctx);
    if (!parsed.ok) throw new Error(`DEV_DEFAULTS.${row.key}: ${dev.text} does not parse`);
    out[row.key] = parsed.value;
  }
  return out as Settings;
}

/** Runs `corral serve|dev ARGS`; resolves with the exit code once the service stopped. */
export async function runServe(argv: string[], version: string, mode: Mode = 'serve'): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(renderHelp(mode));
    return 0;
  }
  let loaded: LoadResult;
  try {
    loaded = loadSettings({ argv, env: process.env, cwd: process.cwd(), platform: process.platform });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`corral ${mode}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Started by IIS's HttpPlatformHandler or ASP.NET Core Module: HTTP on the port it gave, not FastCGI.
  const platform = mode === 'serve' ? detectPlatform(process.env, loaded) : null;
  if (typeof platform === 'string') {
    process.stderr.write(`corral ${mode}: ${platform}\n`);
    return 2;
  }
  const found = withDetectedApp(loaded);
  loaded = { ...loaded, settings: found.settings };
  let settings = mode === 'dev' ? devSettings(loaded) : loaded.settings;
  let webConfig: readonly string[] = [];
  if (platform !== null) {
    const applied = platformSettings(loaded, platform, process.platform);
    if (applied.problems.length > 0) {
      process.stderr.write(`corral ${mode}: ${applied.problems.join('\n')}\n`);
      return 2;
    }
    settings = applied.settings;
    webConfig = applied.webConfig;
  }
  const log = mode === 'dev' ? createPrettyLogger(settings.logLevel) : createLogger({ level: settings.logLevel, file: settings.logFile });
  if (mode === 'dev') {
    // The terminal shows the banner first; the whole resolved settings only at debug level.
    log.info({ version, node: process.version, pid: process.pid, mode }, 'corral starting');
    log.debug({ settings, sources: loaded.sources }, 'resolved settings');
  } else log.info({ version, node: process.version, pid: process.pid, mode, settings, sources: loaded.sources }, 'corral starting');
  if (platform !== null) logPlatform(log, platform, settings, webConfig);
  if (found.detected !== null) log.info({ app: found.detected, root: settings.root }, `no wsgi.py in the app directory: using ${found.detected} (Django's project layout); set --wsgi-app to choose another`);
  // Started only to serve apps that requests name (e.g. auto-started by `corral relay`): no app of its own.
  const defaultApp = !(settings.allowedRoots.length > 0 && loaded.sources.root === 'default');
  const pairingToken = platform?.pairingToken ?? null;
  const service = new Service(settings, log, { version, dev: mode === 'dev', reloadDebounceMs: mode === 'dev' ? 100 : 200, defaultApp, pairingToken }, loaded.apps);
  if (service.plane.error !== undefined) {
    process.stderr.write(`corral ${mode}: ${service.plane.error}\n`);
    return 2;
  }
  handleSignals(service, log);
  try {
    await service.start();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.fatal({ err: message }, 'cannot start');
    // The log may be a file or JSON on stdout: the person at the terminal reads stderr.
    process.stderr.write(`corral ${mode}: cannot start: ${message}\n`);
    return 1;
  }
  if (mode === 'dev') printBanner(service, settings);
  let exitCode = 0;
  for (const app of service.apps)
    void app.pool.whenReady().then((failure) => {
      if (!failure) {
        log.info({ app: app.settings.wsgiApp, root: app.settings.root, workers: app.settings.workers, threads: app.settings.threads }, 'app ready');
        return;
      }
      // failFast: the first generation did not boot; dev keeps retrying, since the developer is editing.
      if (mode !== 'serve' || !app.settings.failFast || exitCode !== 0) return;
      exitCode = failure.code === 'CORRAL_APP_IMPORT_FAILED' ? FAIL_FAST_EXIT.IMPORT : FAIL_FAST_EXIT.BOOT;
      log.fatal({ code: failure.code, err: failure.message, exitCode }, 'worker failed to boot: stopping (failFast)');
      process.stderr.write(`corral ${mode}: worker failed to boot, stopping (failFast, exit code ${exitCode}): ${failure.message}\n`);
      void service.stop();
    });
  await service.stopped;
  return exitCode;
}

function logPlatform(log: Logger, p: PlatformMode, s: Settings, webConfig: readonly string[]): void {
  const fastcgi = s.listen.length > 0;
  log.info(
    {
      platform: p.module,
      why: `${p.portVar} is set and http is not`,
      http: `127.0.0.1:${p.port}`,
      fastcgi,
      trustForwarded: s.trustForwarded,
      mount: s.mount || null,
      pairingToken: p.pairingToken !== null,
      webConfigAppSettings: webConfig,
    },
    `started by IIS ${p.module}: HTTP on 127.0.0.1:${p.port}${fastcgi ? ' and FastCGI as asked' : ', no FastCGI listener'}`,
  );
}

function handleSignals(service: Service, log: Logger): void {
  let signals = 0;
  const onStop = (signal: string): void => {
    signals++;
    if (signals === 1) {
      log.info({ signal }, 'stop requested');
      void service.stop();
    } else {
      log.warn({ signal }, 'second stop request: exiting now');
      for (const app of service.apps) for (const w of app.pool.workers) w.kill();
      flushLogs();
      process.exit(1);
    }
  };
  for (const s of STOP_SIGNALS) process.on(s, () => onStop(s));
  // node-windows' service wrapper asks its child to stop with an IPC message, not a signal.
  process.on('message', (m) => {
    if (m === 'shutdown') onStop('shutdown message');
  });
  if (process.platform !== 'win32') process.on('SIGHUP', () => void service.reload('SIGHUP'));
}

function printBanner(service: Service, s: Settings): void {
  const http = service.httpBound;
  const w = service.watching;
  const lines = [
    '',
    `  corral dev: ${s.wsgiApp} from ${s.root}`,
    http ? `  serving    http://${http}/` : `  serving    FastCGI on ${service.bound.join(', ')}`,
    `  python     ${describeInterpreter(s.python)}, ${s.workers} worker × ${s.threads} threads`,
    `  watching   ${w ? [w.mask, w.regex].filter((x) => x).join(' and ') : 'nothing'}${w ? ` under ${w.root}` : ''}`,
    '  Ctrl-C to stop',
    '',
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
}

/**
 * Which interpreter `python` really is: its full path and version, found as the workers will
 * start it (the usual trap is a `python3` on PATH that is not the one with your packages).
 * 15 s: a pyenv shim on a loaded machine took more than 5 (the banner then said ETIMEDOUT).
 */
export function describeInterpreter(python: readonly string[]): string {
  const [cmd, ...pre] = python;
  if (!cmd) return '(none)';
  const r = spawnSync(cmd, [...pre, '-c', 'import sys; print(sys.executable); print(sys.version.split()[0])'], { encoding: 'utf8', timeout: 15_000, windowsHide: true });
  if (r.error || r.status !== 0) return `${python.join(' ')} (cannot run it: ${r.error ? (r.error as NodeJS.ErrnoException).code ?? r.error.message : `exit code ${r.status}`})`;
  const [exe = cmd, version = '?'] = r.stdout.trim().split(/\r?\n/);
  return `${exe} (Python ${version}${exe === cmd ? '' : `, from ${python.join(' ')}`})`;
}
