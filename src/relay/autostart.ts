/**
 * Starting the corral service from a relay: `corral serve --listen ADDR --allowed-roots ROOTS`,
 * detached, with no stdio, so it outlives the relay (IIS recycles relays) and holds no handle on
 * the IIS pipe (Node clears the inherit flag of its std handles at start-up). It does inherit the
 * handle of IIS's shutdown event, inheritable by IIS's choice: libuv passes every inheritable
 * handle on and Node cannot close a raw handle (docs/windows.md, Handle inheritance). Its lifetime: until it is stopped or killed. On Windows it stays in the job object
 * (KILL_ON_JOB_CLOSE) of the w3wp that started its relay (libuv spawns without breakaway), so it
 * ends with that w3wp, like Helicon Zoo's backends; hence its address is per w3wp (discover.ts'
 * generationKey). Elsewhere it runs until killed.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { splitPathList } from '../config/path-list.js';
import { sanitizeName } from './discover.js';
import { FORWARDED_SETTINGS } from './inject.js';

/** corral's CLI, found from this file in dist/relay/. */
export const CLI_SCRIPT = fileURLToPath(new URL('../cli/main.js', import.meta.url));
/** The package directory: the service's working directory (never a site's, which it would lock on Windows). */
const PACKAGE_DIR = fileURLToPath(new URL('../..', import.meta.url));

/** Variables that must not reach the service: IIS's private ones, the relay's own, and per-site settings. */
const NOT_INHERITED = new Set<string>([
  '_FCGI_X_PIPE_', '_FCGI_SHUTDOWN_EVENT_', '_FCGI_MUTEX_',
  'CORRAL_SERVICE', 'CORRAL_AUTOSTART', 'CORRAL_RELAY_LOG', 'CORRAL_APP_DIR', 'CORRAL_ALLOWED_ROOTS', 'CORRAL_RELAY_SECRET_FILE',
  // Per-site settings arrive with each request; as the service's own environment they would become
  // every site's defaults (and PYTHONPATH would reach every worker). The interpreter stays: the
  // service's Python is the app pool's.
  ...FORWARDED_SETTINGS.filter((n) => n !== 'CORRAL_PYTHON'),
]);

/** How to run the service. */
export interface ServeCommand {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

/** Where things are, for serveCommand; the defaults are this process's. */
export interface ServeCommandPlaces {
  readonly execPath?: string;
  readonly cli?: string;
  readonly tmpDir?: string;
  readonly platform?: NodeJS.Platform;
  /** The relay secret file the service checks requests against (`--relay-secret-file`). */
  readonly secretFile?: string | null;
}

/**
 * The command line for a service on `listen` that runs apps under `root` (the first request's
 * APPL_PHYSICAL_PATH) and under the relay's CORRAL_ALLOWED_ROOTS (the app pool's other sites).
 * Its log goes to CORRAL_LOG_FILE, else to `<tmp>/corral-service-<APP_POOL_ID>.log`: with no
 * stdio, a log on stdout would be lost.
 */
export function serveCommand(listen: string, root: string, env: NodeJS.ProcessEnv, places: ServeCommandPlaces = {}): ServeCommand {
  const platform = places.platform ?? process.platform;
  const p = platform === 'win32' ? path.win32 : path.posix;
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!NOT_INHERITED.has(k.toUpperCase())) clean[k] = v;
  const extra = splitPathList(env.CORRAL_ALLOWED_ROOTS ?? '', platform).map((r) => r.trim()).filter((r) => r !== '');
  const roots = [root, ...extra.filter((r) => p.resolve(r) !== p.resolve(root))];
  const args = [places.cli ?? CLI_SCRIPT, 'serve', '--listen', listen, '--allowed-roots', roots.join(';')];
  if (places.secretFile) args.push('--relay-secret-file', places.secretFile);
  if (!env.CORRAL_LOG_FILE?.trim()) {
    const pool = sanitizeName(env.APP_POOL_ID ?? 'default');
    args.push('--log-file', p.join(places.tmpDir ?? os.tmpdir(), `corral-service-${pool}.log`));
  }
  return { command: places.execPath ?? process.execPath, args, env: clean, cwd: PACKAGE_DIR };
}

/** A spawned service. `exited` settles if it exits while this relay is alive. */
export interface StartedService {
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns the service detached. Throws if the OS refuses to start it. */
export function spawnService(cmd: ServeCommand): StartedService {
  const child = spawn(cmd.command, [...cmd.args], {
    cwd: cmd.cwd,
    env: cmd.env,
    // All three 'ignore': the service must not inherit IIS's pipe (our fd 0) nor our black-hole stdout/stderr.
    stdio: 'ignore',
    detached: true,
    windowsHide: true,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
  if (child.pid === undefined) throw new Error(`cannot start ${cmd.command} ${cmd.args.join(' ')}`);
  child.unref();
  return { pid: child.pid, exited };
}
