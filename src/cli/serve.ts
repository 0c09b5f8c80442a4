/** `corral serve`: load settings, start the service, stop cleanly on a signal. */
import { loadSettings } from '../config/load.js';
import { ConfigError } from '../config/problems.js';
import { wantsHelp } from '../config/argv.js';
import { renderHelp } from '../config/help.js';
import { createLogger } from '../log/logger.js';
import { Service } from './service.js';

/** Signals that mean "stop gracefully". Windows has no SIGTERM to catch; Ctrl-Break is SIGBREAK there. */
const STOP_SIGNALS: NodeJS.Signals[] = process.platform === 'win32' ? ['SIGINT', 'SIGBREAK'] : ['SIGINT', 'SIGTERM'];

/** Runs `corral serve ARGS`; resolves with the exit code once the service stopped. */
export async function runServe(argv: string[], version: string): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(renderHelp('serve'));
    return 0;
  }
  let loaded;
  try {
    loaded = loadSettings({ argv, env: process.env, cwd: process.cwd(), platform: process.platform });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`corral serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const { settings, sources } = loaded;
  const log = createLogger({ level: settings.logLevel });
  log.info({ version, node: process.version, pid: process.pid, settings, sources }, 'corral starting');
  const service = new Service(settings, log, { version });
  let signals = 0;
  const onSignal = (signal: string): void => {
    signals++;
    if (signals === 1) {
      log.info({ signal }, 'stop requested');
      void service.stop();
    } else {
      log.warn({ signal }, 'second stop request: exiting now');
      for (const w of service.pool.workers) w.kill();
      process.exit(1);
    }
  };
  for (const s of STOP_SIGNALS) process.on(s, () => onSignal(s));
  // node-windows' service wrapper asks its child to stop with an IPC message, not a signal.
  process.on('message', (m) => {
    if (m === 'shutdown') onSignal('shutdown message');
  });
  try {
    await service.start();
  } catch (err) {
    log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'cannot start');
    return 1;
  }
  void service.pool.whenReady().then((failure) => {
    if (!failure) log.info({ workers: settings.workers, threads: settings.threads }, 'app ready');
  });
  await service.stopped;
  return 0;
}
