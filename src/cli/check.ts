/**
 * `corral check [same arguments as serve] [--no-import]`: what `serve` would run, checked without
 * binding any address: the settings, the interpreter (its full path and version, as the workers
 * will start it), that the app's module can be found and, unless --no-import, that the app imports
 * in one throwaway worker. Exit codes: 0 all good, 2 invalid settings or usage, 3 the interpreter
 * cannot run or a worker cannot boot, 4 the app's module is not found or the app fails to import.
 */
import { spawnSync } from 'node:child_process';
import { loadSettings, type LoadResult } from '../config/load.js';
import { ConfigError, formatProblem } from '../config/problems.js';
import { wantsHelp } from '../config/argv.js';
import { renderHelp } from '../config/help.js';
import { djangoLayout, findModule, topModule } from '../config/app-layout.js';
import { appSettings } from '../config/app-settings.js';
import { mergedSettings, readWebConfig, WebConfigError, type WebConfig } from '../config/webconfig.js';
import type { Settings } from '../config/settings.js';
import type { WorkerHandle } from '../pool/handle.js';
import { Worker } from '../pool/worker.js';
import { silentLogger } from '../log/logger.js';
import { spawnSpec } from './app.js';
import { chooseDataPlane } from './data-plane.js';
import { withDetectedApp } from './serve.js';

export const CHECK_EXIT = { OK: 0, USAGE: 2, BOOT: 3, APP: 4 } as const;

/** Where the report goes; tests may pass their own. */
export interface CheckIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: CheckIo = { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };

/** What the interpreter said about itself and about the app's top-level module. */
interface Probe {
  readonly executable: string;
  readonly version: string;
  /** The module's file or package directory as the interpreter finds it; '' when not found. */
  readonly origin: string;
}

// Finds the module without importing it: find_spec of a top-level name runs none of its code.
const PROBE = [
  'import sys, importlib.util',
  'sys.path[:0] = sys.argv[2:]',
  "print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])",
  'try:',
  '    s = importlib.util.find_spec(sys.argv[1])',
  "    print((s.origin if s.has_location else list(s.submodule_search_locations or [''])[0]) if s else '')",
  'except Exception:',
  "    print('')",
].join('\n');

/** Runs the app's interpreter as the workers will (same command, directory and environment). */
function probe(s: Readonly<Settings>, appVars: Readonly<Record<string, string>>): Probe | string {
  const spec = spawnSpec(s, false, appVars);
  const [cmd, ...pre] = s.python;
  if (cmd === undefined) return 'no interpreter command';
  const r = spawnSync(cmd, [...pre, '-c', PROBE, topModule(s.wsgiApp), s.root, ...s.pythonPath], { cwd: s.root, env: spec.env, encoding: 'utf8', timeout: 30_000, windowsHide: true });
  if (r.error) return `cannot run ${s.python.join(' ')}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`;
  if (r.status !== 0) return `${s.python.join(' ')} exited with code ${r.status}: ${(r.stderr || '').trim().split('\n').pop() ?? ''}`;
  const [executable = cmd, version = '?', origin = ''] = r.stdout.split(/\r?\n/);
  return { executable, version, origin };
}

/** The result of importing the app in one worker. */
type ImportResult = { ok: true; ms: number; pid: number; python: string } | { ok: false; exit: number; error: string; traceback: string };

/** Starts one worker, waits for READY or its failure, and stops it; no listener is involved. */
function importInWorker(s: Readonly<Settings>, appVars: Readonly<Record<string, string>>): Promise<ImportResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    let result: ImportResult | null = null;
    const stderr: string[] = [];
    // A worker that never says READY is a boot failure after startupTimeout, as in serve.
    const timer = setTimeout(() => {
      result = { ok: false, exit: CHECK_EXIT.BOOT, error: `the worker did not say READY within startupTimeout (${s.startupTimeout} s)`, traceback: stderr.join('\n') };
      worker.kill();
    }, s.startupTimeout * 1000);
    const events = {
      ready(w: WorkerHandle): void {
        result = { ok: true, ms: Math.round(performance.now() - started), pid: w.info?.pid ?? 0, python: w.info?.python ?? '?' };
        // The protocol's stop: stdin EOF. The exit event resolves.
        w.closeStdin();
      },
      idle(): void {},
      pong(): void {},
      stderr(_w: WorkerHandle, line: string): void {
        stderr.push(line);
      },
      exit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
        clearTimeout(timer);
        if (result === null) {
          const fatal = w.fatal;
          const how = signal ? `signal ${signal}` : `exit code ${code}`;
          result = fatal
            ? { ok: false, exit: fatal.kind === 'import' ? CHECK_EXIT.APP : CHECK_EXIT.BOOT, error: fatal.error, traceback: fatal.traceback ?? '' }
            : { ok: false, exit: CHECK_EXIT.BOOT, error: w.spawnError ? `cannot start ${s.python.join(' ')}: ${w.spawnError.message}` : `the worker exited (${how}) before READY`, traceback: stderr.join('\n') };
        }
        resolve(result);
      },
    };
    const worker = new Worker(spawnSpec(s, false, appVars), 1, events, silentLogger(), performance.now());
  });
}

const indent = (text: string): string =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n');

/** Checks one app; returns its exit code, writing its lines. */
async function checkApp(s: Readonly<Settings>, detected: string | null, noImport: boolean, io: CheckIo, appVars: Readonly<Record<string, string>> = {}): Promise<number> {
  const line = (label: string, text: string): void => io.out(`  ${label.padEnd(10)} ${text}\n`);
  io.out(`app ${s.wsgiApp} in ${s.root}\n`);
  if (detected !== null) line('layout', `no wsgi.py in the app directory: Django's project layout, so ${detected}`);
  const p = probe(s, appVars);
  if (typeof p === 'string') {
    line('python', `FAILED: ${p} (choose the interpreter with --python)`);
    return CHECK_EXIT.BOOT;
  }
  line('python', `${p.executable} (Python ${p.version})${p.executable === s.python[0] ? '' : `, from ${s.python.join(' ')}`}`);
  const top = topModule(s.wsgiApp);
  const dirs = [s.root, ...s.pythonPath];
  const local = findModule(top, dirs);
  if (p.origin === '') {
    const django = djangoLayout(s.root);
    const hint = django !== null ? `; this looks like Django's layout: try --wsgi-app ${django}` : `; if it is installed for another interpreter (a venv), choose that one with --python`;
    line('module', `FAILED: no module ${top} in ${dirs.join(', ')} nor in ${p.executable}'s own directories${hint}`);
    return CHECK_EXIT.APP;
  }
  line('module', `${top}: ${p.origin}${local === null ? ' (installed for the interpreter, not in the app directory)' : ''}`);
  // DEPLOY_FILE changes things (migrations): serve runs it, a check must not.
  if (s.deployFile !== null) line('deploy', `${s.deployFile} is not run by check (serve runs it before the first workers)`);
  if (noImport) {
    line('import', 'skipped (--no-import)');
    return CHECK_EXIT.OK;
  }
  const r = await importInWorker(s, appVars);
  if (r.ok) {
    line('import', `ok in ${r.ms} ms (one worker, pid ${r.pid}, stopped again)`);
    return CHECK_EXIT.OK;
  }
  line('import', `FAILED: ${r.error}`);
  if (r.traceback.trim() !== '') io.out(`${indent(r.traceback)}\n`);
  return r.exit;
}

/**
 * The settings with APP_DIR's web.config layered over them as the service does for a request
 * from IIS for that directory (its appSettings and Helicon Zoo variables win): what an IIS site
 * runs. The file and the keys it set; or why they are invalid.
 */
function withWebConfig(s: Readonly<Settings>): { settings: Readonly<Settings>; file: string | null; keys: string[]; vars: Readonly<Record<string, string>> } | string {
  let web: WebConfig;
  try {
    web = readWebConfig(s.root);
  } catch (err) {
    if (err instanceof WebConfigError) return err.message;
    throw err;
  }
  if (web.file === null) return { settings: s, file: null, keys: [], vars: {} };
  const values = mergedSettings(web);
  const layered = appSettings(s, s.root, [{ origin: web.file, values }], process.platform, { APPL_PHYSICAL_PATH: s.root });
  if (layered.problems.length > 0) return `invalid settings in ${web.file}:\n${layered.problems.map((p) => `  - ${formatProblem(p)}`).join('\n')}`;
  // Its other keys become the app's environment variables, as under IIS.
  return { settings: layered.settings, file: web.file, keys: [...values.keys()], vars: layered.env.vars };
}

/** Runs `corral check ARGS`; resolves with the exit code. */
export async function runCheck(argv: string[], io: CheckIo = processIo): Promise<number> {
  if (wantsHelp(argv)) {
    io.out(renderHelp('check'));
    return CHECK_EXIT.OK;
  }
  const noImport = argv.includes('--no-import');
  let loaded: LoadResult;
  try {
    loaded = loadSettings({ argv: argv.filter((a) => a !== '--no-import'), env: process.env, cwd: process.cwd(), platform: process.platform });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`corral check: ${err.message}\n`);
      return CHECK_EXIT.USAGE;
    }
    throw err;
  }
  const found = withDetectedApp(loaded);
  // An apps list names its apps' settings itself; a single app's directory may carry a web.config.
  const iis = loaded.apps.length > 0 ? { settings: found.settings, file: null, keys: [], vars: {} } : withWebConfig(found.settings);
  if (typeof iis === 'string') {
    io.err(`corral check: ${iis}\n`);
    return CHECK_EXIT.USAGE;
  }
  const s = iis.settings;
  const plane = chooseDataPlane(s, { platform: process.platform, appsList: loaded.apps.length > 0, defaultApp: true });
  if (plane.error !== undefined) {
    io.err(`corral check: ${plane.error}\n`);
    return CHECK_EXIT.USAGE;
  }
  const from = Object.values(loaded.sources);
  const count = (src: string): number => from.filter((x) => x === src).length;
  io.out(`settings ok: ${count('flag')} from flags, ${count('env')} from the environment, ${s.config === null ? 'no config file' : `${count('config')} from ${s.config}`}\n`);
  if (iis.file !== null)
    io.out(`web.config ${iis.keys.length > 0 ? `${iis.keys.join(', ')} from ${iis.file}: they win over flags and environment, as when IIS sends a request for this directory` : `${iis.file} sets nothing for corral`}\n`);
  let worst: number = CHECK_EXIT.OK;
  const apps = loaded.apps.length > 0 ? loaded.apps.map((a) => ({ s: a, detected: null })) : [{ s, detected: found.detected }];
  for (const app of apps) {
    const code = await checkApp(app.s, app.detected, noImport, io, iis.vars);
    if (code > worst) worst = code;
  }
  if (worst === CHECK_EXIT.OK) io.out(`ok: corral serve would start ${apps.length === 1 ? 'this app' : `these ${apps.length} apps`}\n`);
  else io.err(`corral check: failed (exit code ${worst})\n`);
  return worst;
}
