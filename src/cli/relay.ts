/**
 * `corral relay`: the program IIS starts as its FastCGI process (scriptProcessor = node.exe +
 * dist/cli/main.js relay). It speaks FastCGI with IIS on fd 0 and forwards every request to the
 * shared corral service (starting it if needed), adding the site's settings from its environment.
 * Under IIS stdout and stderr are invalid handles, so it never writes there: its log is a file.
 */
import net from 'node:net';
import os from 'node:os';
import { isatty } from 'node:tty';
import { silentLogger, type Logger } from '../log/logger.js';
import { autostartEnabled, generationKey, locateService, secretPathFor, type ServiceLocation } from '../relay/discover.js';
import { ensureSecretFile, readSecretFile, type SecretRead } from '../relay/secret.js';
import { settingsFromEnv, SettingsInjector } from '../relay/inject.js';
import { ServiceLink } from '../relay/link.js';
import { createRelayLogger, relayLogPath } from '../relay/log.js';
import { Relay, type Connector } from '../relay/relay.js';

const HELP = `corral relay: the FastCGI program IIS starts (one per IIS instance)

It reads FastCGI from IIS on stdin and forwards each request to the corral service, which it
starts when nothing answers. Not meant to be run by hand. Configured by environment variables:
  CORRAL_SERVICE     service address (default, with auto-start, one per w3wp (the relay's parent):
                     \\\\.\\pipe\\corral-<APP_POOL_ID>-w<w3wp pid>-<tag> on Windows,
                     <tmp>/corral-<APP_POOL_ID>-w<w3wp pid>-<tag>.sock elsewhere)
  CORRAL_AUTOSTART   0 to never start the service (default: on)
  CORRAL_RELAY_LOG   log file (default: <tmp>/corral-relay-<APP_POOL_ID>.log)
  CORRAL_RELAY_SECRET_FILE  the secret shared with the service (default: <tmp>/corral-<APP_POOL_ID>.secret,
                     created when auto-start is on; an installed service names the same file in relaySecretFile)
  WSGI_APP, WSGI_HANDLER, PYTHONPATH, WATCH_FILE_CHANGES_MASK, ...: the site's settings,
                     forwarded to the service with every request
`;

/** Runs the relay until IIS closes its connection; resolves with the exit code. */
export async function runRelay(argv: string[], version: string): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  // A terminal on fd 0 means someone ran it by hand: under IIS fd 0 is a pipe.
  if (isatty(0)) {
    process.stderr.write(`corral relay: stdin is a terminal; this is the program IIS starts, see corral relay --help\n`);
    return 2;
  }
  const env = process.env;
  const tmp = os.tmpdir();
  const logFile = relayLogPath(env, process.platform, tmp, process.pid);
  let log: Logger;
  try {
    log = createRelayLogger(logFile, env.CORRAL_LOG_LEVEL?.trim() || 'info');
  } catch {
    log = silentLogger(); // No writable log file: run without one rather than fail every request.
  }
  routeProcessOutput(log);

  let location: ServiceLocation | null = null;
  let connector: Connector;
  let secret: SecretRead = { ok: false, missing: true, reason: 'not read' };
  let secretFile = '';
  let generation: string | null = null;
  try {
    const autostart = autostartEnabled(env);
    secretFile = secretPathFor(env, process.platform, tmp);
    // A relay that may start the service makes the secret; one that may not only reads it.
    secret = autostart ? ensureSecretFile(secretFile) : readSecretFile(secretFile);
    if (!secret.ok && !(secret.missing && !autostart))
      log.error({ file: secretFile, err: secret.reason }, 'cannot use the relay secret file: the service will ignore this site\'s app selection and settings');
    else if (!secret.ok) log.warn({ file: secretFile }, 'no relay secret file: the service will ignore this site\'s app selection and settings (set CORRAL_RELAY_SECRET_FILE to the service\'s relaySecretFile)');
    // One auto-started service per w3wp (its job object kills it with that w3wp): see generationKey.
    generation = generationKey(env, process.ppid);
    location = locateService(env, process.platform, tmp, secret.ok ? secret.secret : null, generation);
    connector = new ServiceLink({ location, autostart, env, log, secretFile: secret.ok ? secretFile : null });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.fatal({ err: message }, 'bad relay configuration; every request will get 502');
    connector = { connect: () => Promise.reject(new Error(message)) };
  }

  let iis: net.Socket;
  try {
    iis = new net.Socket({ fd: 0, readable: true, writable: true });
  } catch (err) {
    log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'stdin is not a connection (IIS hands the relay a named pipe)');
    return 1;
  }
  const settings = settingsFromEnv(env);
  const relay = new Relay({ iis, link: connector, injector: new SettingsInjector(settings, secret.ok ? secret.secret : null), log });
  log.info(
    {
      version, node: process.version, service: location?.text, autostart: autostartEnabled(env), appPool: env.APP_POOL_ID, w3wp: generation,
      settings: Object.fromEntries(settings), secretFile: secret.ok ? secretFile : null, startupMs: Math.round(performance.now()),
    },
    'relay started',
  );
  await relay.stopped;
  return 0;
}

/** Nothing may reach stdout/stderr (invalid under IIS): warnings and crashes go to the log. */
function routeProcessOutput(log: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (w) => log.warn({ warning: w.name, err: w.message }, 'node warning'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err: err.message, stack: err.stack }, 'relay crashed');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'relay crashed (unhandled rejection)');
    process.exit(1);
  });
}
