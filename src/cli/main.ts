#!/usr/bin/env node
/** `corral`: the command line. Subcommands live in their own files. */
import { readFileSync } from 'node:fs';
import { flushLogs, logsStarted } from '../log/flush.js';

/** How long the exit waits for a log file's thread that is still starting (see logsStarted). */
const LOG_START_WAIT_MS = 10_000;

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const USAGE = `corral ${VERSION}: hosts Python WSGI apps behind IIS, nginx or Apache over FastCGI

Usage:
  corral serve [APP_DIR] [MODULE:CALLABLE | --wsgi-app MOD:CALLABLE] [--listen ADDR]... [--http ADDR]
               [--workers N] [--threads N] [--python CMD] [--config FILE]
  corral dev [APP_DIR] [--http ADDR] [options of serve]
               HTTP on 127.0.0.1:8000, reload on *.py changes, tracebacks in the browser
  corral check [APP_DIR] [options of serve] [--no-import]
               the settings, interpreter and app import, without listening
  corral relay             the FastCGI program IIS starts; forwards to the service (see --help)
  corral status [--control ADDR] [--json]   apps, workers, queue and last errors of a running service
  corral top [--control ADDR]               the same, refreshed every second (q quits), like uwsgitop
  corral reload [APP] [--control ADDR]      rolling reload of every app (or APP); answers once it serves
  corral stop [--control ADDR] [--no-wait]  graceful stop; waits until the service is gone
  corral service install|uninstall|start|stop   the Windows service (corral service --help)
  corral migrate-webconfig [PATH] [--write]     a Helicon Zoo or wfastcgi web.config into corral's form
  corral serve --help      every option, its environment variable and default (also: corral help serve)
  corral --version         (also -V, corral version)
`;

const COMMANDS = ['serve', 'dev', 'check', 'relay', 'status', 'top', 'reload', 'stop', 'service', 'migrate-webconfig', 'help', 'version'];

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    // Commands load their modules on demand: IIS starts `relay` often, and it needs none of the service's.
    case 'serve':
      return (await import('./serve.js')).runServe(rest, VERSION, 'serve');
    case 'dev':
      return (await import('./serve.js')).runServe(rest, VERSION, 'dev');
    case 'check':
      return (await import('./check.js')).runCheck(rest);
    case 'relay':
      return (await import('./relay.js')).runRelay(rest, VERSION);
    case 'status':
    case 'top':
    case 'reload':
    case 'stop':
      return (await import('./control-client.js')).runControlCommand(command, rest);
    case 'service':
      return (await import('./service-cmd.js')).runServiceCommand(rest);
    case 'migrate-webconfig':
      return (await import('./migrate-webconfig.js')).runMigrateWebConfig(rest);
    case '--version':
    case '-v':
    case '-V':
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case 'help':
      // `corral help serve` is `corral serve --help`.
      if (rest[0] !== undefined && rest[0] !== 'help' && COMMANDS.includes(rest[0])) return main([rest[0], '--help']);
      process.stdout.write(USAGE);
      return 0;
    case undefined:
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default: {
      const { suggest } = await import('../config/argv.js');
      const near = suggest(command, COMMANDS);
      process.stderr.write(`corral: unknown command ${JSON.stringify(command)}${near ? `; did you mean \`corral ${near}\`?` : ''}\n\n${USAGE}`);
      return 2;
    }
  }
}

main(process.argv.slice(2)).then(
  async (code) => {
    // A log file's thread that is still starting has written nothing yet: give it that time.
    await logsStarted(LOG_START_WAIT_MS);
    // Exit now: the service has stopped, and a stray handle (an idle client, stdin) must not keep us alive.
    flushLogs();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`corral: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
