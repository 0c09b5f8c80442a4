/**
 * `corral service install|uninstall|start|stop`: the corral service as a Windows service, through
 * node-windows. node-windows registers WinSW, which runs node.exe on node-windows' wrapper.js, which
 * forks `corral serve --config FILE` and restarts it if it dies. With `stopparentfirst` a service
 * stop reaches corral as the IPC message 'shutdown' (a graceful stop: drain, then stop the
 * workers); without it the wrapper would TerminateProcess corral (coreybutler/node-windows
 * lib/wrapper.js). Elsewhere the command only points to the systemd unit.
 */
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSettings, type LoadResult } from '../config/load.js';
import { ConfigError } from '../config/problems.js';
import { formatAddress } from '../config/address.js';
import { listenAddresses } from '../config/settings.js';

const ACTIONS = ['install', 'uninstall', 'start', 'stop'] as const;
type Action = (typeof ACTIONS)[number];

/** The node-windows events that end each action (lib/daemon.js). */
const OUTCOMES: Readonly<Record<Action, readonly string[]>> = {
  install: ['install', 'alreadyinstalled', 'invalidinstallation', 'error'],
  uninstall: ['uninstall', 'alreadyuninstalled', 'error'],
  start: ['start', 'error'],
  stop: ['stop', 'alreadystopped', 'error'],
};

/** The service name when --name is not given; also what the docs and templates use. */
export const DEFAULT_SERVICE_NAME = 'corral';

/** corral's CLI (dist/cli/main.js next to this file once built): the script the service runs. */
const CLI_SCRIPT = fileURLToPath(new URL('./main.js', import.meta.url));
/** The package directory: the service's working directory (never a site's, which it would lock). */
const PACKAGE_DIR = fileURLToPath(new URL('../..', import.meta.url));
const SYSTEMD_UNIT = fileURLToPath(new URL('../../config/systemd/corral.service', import.meta.url));

const USAGE = `Usage:
  corral service install --config FILE [--log-dir DIR] [--name NAME]
  corral service uninstall|start|stop [--name NAME]

Installs corral as a Windows service (node-windows/WinSW) running \`corral serve --config FILE\`.
  --config FILE   the service's config file (JSON, see config/iis/corral-service.json); required by install
  --log-dir DIR   where WinSW writes the service's output and the wrapper's log (default: a "logs"
                  folder next to the config file); corral's own log is "logFile" in the config
  --name NAME     the service's name (default: ${DEFAULT_SERVICE_NAME}); give the same one to every action
Run it from an elevated prompt. Windows only: on Linux use config/systemd/corral.service.
`;

/** A parsed command line. */
export interface ServiceArgs {
  readonly action: Action;
  readonly config: string | null;
  readonly logDir: string | null;
  readonly name: string;
}

/** What the command reads and writes, injectable for tests. */
export interface ServiceIo {
  readonly platform: NodeJS.Platform;
  readonly cwd: string;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Loads node-windows (only ever called on Windows). */
  readonly loadNodeWindows: () => Promise<NodeWindows>;
  /** How long to wait for node-windows to report an outcome. */
  readonly timeoutMs: number;
}

/** The part of node-windows this command uses (the package ships no types). */
export interface NodeWindows {
  Service: new (config: WindowsServiceConfig) => NodeWindowsService;
  isAdminUser(callback: (isAdmin: boolean) => void): void;
}

interface NodeWindowsService {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  install(): void;
  uninstall(waitSeconds?: number): void;
  start(): void;
  stop(): void;
  readonly exists: boolean;
}

/** The node-windows Service options corral sets. */
export interface WindowsServiceConfig {
  readonly name: string;
  readonly description: string;
  readonly script: string;
  readonly scriptOptions: string;
  readonly workingDirectory: string;
  readonly execPath: string;
  readonly logpath?: string;
  readonly stopparentfirst: boolean;
  readonly stoptimeout: number;
}

const defaultIo: ServiceIo = {
  platform: process.platform,
  cwd: process.cwd(),
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  // A variable specifier: node-windows has no types, and must not load (it throws) off Windows.
  loadNodeWindows: async () => {
    const specifier = 'node-windows';
    const mod = (await import(specifier)) as { default?: NodeWindows } & NodeWindows;
    return mod.default ?? mod;
  },
  timeoutMs: 120_000,
};

/** Parses `ARGS` of `corral service ARGS`; a string is the problem to report. */
export function parseServiceArgs(argv: readonly string[], cwd: string, platform: NodeJS.Platform): ServiceArgs | string {
  const p = platform === 'win32' ? path.win32 : path.posix;
  let action: string | null = null;
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      if (action !== null) return `unexpected argument ${JSON.stringify(a)} (one action: ${ACTIONS.join(', ')})`;
      action = a;
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq < 0 ? a : a.slice(0, eq);
    if (!['--config', '--log-dir', '--name'].includes(name)) return `unknown option ${JSON.stringify(name)}`;
    const value = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (value === undefined || value.trim() === '' || (eq < 0 && value.startsWith('--'))) return `${name} needs a value`;
    if (values.has(name)) return `${name} given twice`;
    values.set(name, value.trim());
  }
  if (action === null) return `no action given (expected one of: ${ACTIONS.join(', ')})`;
  if (!(ACTIONS as readonly string[]).includes(action)) return `unknown action ${JSON.stringify(action)} (expected one of: ${ACTIONS.join(', ')})`;
  const config = values.get('--config');
  if (action === 'install' && config === undefined) return 'install needs --config FILE: the config file the service runs `corral serve` with (allowedRoots, listen, python)';
  const name = values.get('--name') ?? DEFAULT_SERVICE_NAME;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_ .-]{0,63}$/.test(name)) return `--name ${JSON.stringify(name)} is not a service name (expected 1 to 64 letters, digits, spaces, _ . -, starting with a letter, digit or _)`;
  const logDir = values.get('--log-dir');
  return {
    action: action as Action,
    config: config === undefined ? null : p.resolve(cwd, config),
    logDir: logDir === undefined ? null : p.resolve(cwd, logDir),
    name,
  };
}

/** The node-windows options for a service running `corral serve --config FILE`. */
export function windowsServiceConfig(name: string, configFile: string | null, logDir: string | null, gracefulTimeout: number): WindowsServiceConfig {
  return {
    name,
    description: 'corral: FastCGI process manager for Python WSGI apps (IIS relays connect to it)',
    script: CLI_SCRIPT,
    // node-windows' wrapper splits this on spaces (install refuses a config path with spaces).
    scriptOptions: configFile === null ? 'serve' : `serve --config ${configFile}`,
    workingDirectory: PACKAGE_DIR,
    execPath: process.execPath,
    ...(logDir === null ? {} : { logpath: logDir }),
    // The IPC 'shutdown' message, then this long before WinSW kills: corral's own deadline plus slack.
    stopparentfirst: true,
    stoptimeout: gracefulTimeout + 15,
  };
}

/** Runs `corral service ARGS`; resolves with the exit code. */
export async function runServiceCommand(argv: string[], io: Partial<ServiceIo> = {}): Promise<number> {
  const o: ServiceIo = { ...defaultIo, ...io };
  if (argv.includes('--help') || argv.includes('-h')) {
    o.out(USAGE);
    return 0;
  }
  const args = parseServiceArgs(argv, o.cwd, o.platform);
  if (typeof args === 'string') {
    o.err(`corral service: ${args}\n\n${USAGE}`);
    return 2;
  }
  if (o.platform !== 'win32') {
    o.err(
      `corral service: installing a Windows service works only on Windows (this is ${o.platform}).\n` +
        `On Linux, run corral under systemd with the unit in config/systemd/corral.service:\n  ${SYSTEMD_UNIT}\n`,
    );
    return 2;
  }
  let gracefulTimeout = 30;
  let logDir = args.logDir;
  if (args.action === 'install') {
    const checked = checkConfig(args.config!, o);
    if (typeof checked === 'string') {
      o.err(`corral service install: ${checked}\n`);
      return 2;
    }
    gracefulTimeout = checked.settings.gracefulTimeout;
    logDir ??= path.win32.join(path.win32.dirname(args.config!), 'logs');
    try {
      mkdirSync(logDir, { recursive: true });
    } catch (err) {
      o.err(`corral service install: cannot create the log directory ${logDir}: ${(err as Error).message}\n`);
      return 1;
    }
  } else if (args.config !== null || args.logDir !== null) {
    o.err(`corral service ${args.action}: --config and --log-dir are used by install only; ignored\n`);
  }
  return manage(args, logDir, gracefulTimeout, o);
}

/** Loads the config file as the service will (flags and environment aside); a string is the problem. */
function checkConfig(file: string, o: ServiceIo): LoadResult | string {
  // node-windows passes the script options as one string and its wrapper splits it on spaces.
  if (/\s/.test(file)) return `the config path ${JSON.stringify(file)} contains a space, which node-windows cannot pass to the service; move the file to a path without spaces`;
  const stat = statSync(file, { throwIfNoEntry: false });
  if (!stat?.isFile()) return `config file ${file} does not exist`;
  let loaded: LoadResult;
  try {
    loaded = loadSettings({ argv: ['--config', file], env: {}, cwd: o.cwd, platform: o.platform });
  } catch (err) {
    if (err instanceof ConfigError) return `${file}: ${err.message}`;
    throw err;
  }
  const s = loaded.settings;
  // `apps` (several configured apps) is newer than this command; read it without depending on it.
  const apps = (loaded as { apps?: readonly unknown[] }).apps ?? [];
  if (s.allowedRoots.length === 0 && loaded.sources.root === 'default' && apps.length === 0)
    return `${file} sets neither allowedRoots (the directories of the IIS sites this service may run) nor an app of its own (root); the service would have nothing to serve`;
  const addresses = listenAddresses(s);
  if (addresses.some((a) => a.kind === 'stdin' || a.kind === 'listen-fd'))
    return `${file}: a Windows service has no web server handing it a connection; listen on a named pipe such as \\\\.\\pipe\\corral-APPPOOL`;
  if (!addresses.some((a) => a.kind === 'pipe'))
    o.err(`note: the service will listen on ${addresses.map(formatAddress).join(', ')}, not a named pipe; relays find it only if CORRAL_SERVICE names that address\n`);
  return loaded;
}

async function manage(args: ServiceArgs, logDir: string | null, gracefulTimeout: number, o: ServiceIo): Promise<number> {
  const nw = await o.loadNodeWindows();
  const admin = await new Promise<boolean>((resolve) => nw.isAdminUser(resolve));
  if (!admin) {
    o.err(`corral service ${args.action}: needs administrator rights; run it from an elevated prompt (Run as administrator)\n`);
    return 1;
  }
  const svc = new nw.Service(windowsServiceConfig(args.name, args.action === 'install' ? args.config : null, logDir, gracefulTimeout));
  const id = `${args.name.replace(/[^\w]/g, '').toLowerCase()}.exe`;
  if (args.action !== 'install' && !svc.exists) {
    o.err(`corral service ${args.action}: no service ${JSON.stringify(args.name)} is installed from this corral (${path.dirname(CLI_SCRIPT)}\\daemon)\n`);
    return args.action === 'start' ? 1 : 0;
  }
  const outcome = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), o.timeoutMs);
    // Only this action's own outcomes: uninstall stops the service first, and emits 'stop' on the way.
    for (const e of OUTCOMES[args.action])
      svc.on(e, (detail) => {
        clearTimeout(timer);
        resolve(e === 'error' ? `error: ${detail instanceof Error ? detail.message : String(detail)}` : e);
      });
    if (args.action === 'uninstall') svc.uninstall();
    else svc[args.action]();
  });
  const named = JSON.stringify(args.name);
  switch (outcome) {
    case 'install':
      o.out(
        `installed the Windows service ${named} (service id ${id}): corral serve --config ${args.config}; logs in ${logDir}\n` +
          `Start it with: corral service start${args.name === DEFAULT_SERVICE_NAME ? '' : ` --name "${args.name}"`}\n`,
      );
      return 0;
    case 'uninstall':
      o.out(`service ${named}: stopped and uninstalled\n`);
      return 0;
    case 'start':
      o.out(`service ${named}: started\n`);
      return 0;
    case 'stop':
      o.out(`service ${named}: stopped\n`);
      return 0;
    case 'alreadyuninstalled':
      o.out(`service ${named}: not installed; nothing to do\n`);
      return 0;
    case 'alreadystopped':
      o.out(`service ${named}: not running; nothing to do\n`);
      return 0;
    case 'alreadyinstalled':
    case 'invalidinstallation':
      o.err(`corral service install: ${named} is already installed${outcome === 'invalidinstallation' ? ' (with files missing)' : ''}; uninstall it first to change its config or log dir\n`);
      return 1;
    case 'timeout':
      o.err(`corral service ${args.action}: node-windows reported nothing within ${o.timeoutMs / 1000} s; see the Windows Event Log (Application, source "${args.name} Monitor")\n`);
      return 1;
    default:
      o.err(`corral service ${args.action}: ${outcome}; see the Windows Event Log (Application, source "${args.name} Monitor")\n`);
      return 1;
  }
}
