/**
 * `corral status`, `corral top`, `corral reload [APP]` and `corral stop`: calls to a running service's control
 * listener. Exit codes: 0 done, 1 the service answered with an error, 2 bad usage, 3 nothing
 * answers at the address, 4 the token could not be read or was refused.
 */
import http from 'node:http';
import { formatAddress, type ListenAddress } from '../config/address.js';
import { CONTROL_FORMS, DEFAULT_CONTROL, parseControlAddress } from '../config/control-address.js';
import type { ControlAnswer } from '../control/routes.js';
import type { StatusDocument } from '../control/snapshot.js';
import { readTokenFile, tokenPath } from '../control/token.js';
import { renderStatusTable } from './status-table.js';
import { runTop } from './top.js';

/** The commands this file runs. */
export type ControlCommand = 'status' | 'top' | 'reload' | 'stop';

/** Exit codes, as the header says. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, NOT_RUNNING: 3, TOKEN: 4 } as const;

const USAGE: Record<ControlCommand, string> = {
  status: 'corral status [--control ADDR] [--json]',
  top: 'corral top [--control ADDR] [--interval SECONDS]   (q or Ctrl-C quits)',
  reload: 'corral reload [APP] [--control ADDR]',
  stop: 'corral stop [--control ADDR] [--no-wait]',
};

/** What each command does and its own options, for --help; the address and exit codes are common. */
const HELP: Record<ControlCommand, string> = {
  status: `Shows a running service's apps, workers, queue and last errors as a table.

Options:
  --control ADDR   the service's control listener
  --json           print the service's /status.json instead of the table (shape:
                   StatusDocument in src/control/snapshot.ts)
`,
  top: `Shows the same as corral status, refreshed in the terminal like uwsgitop: rates,
error rate, latency, queue, workers and their current requests. q or Ctrl-C quits and
restores the terminal.

Options:
  --control ADDR      the service's control listener
  --interval SECONDS  how often it refreshes (default 1)
`,
  reload: `Rolling reload of every app, or of APP (its WSGI callable, directory or name):
new workers start, and the old ones drain once the new serve. Answers once the
new generation serves, or with the error (and traceback) of one that does not
boot, which leaves the old one serving.

Options:
  --control ADDR   the service's control listener
`,
  stop: `Graceful stop: requests in flight finish, workers stop, listeners close last.
Waits until the service no longer answers (up to 2 minutes).

Options:
  --control ADDR   the service's control listener
  --no-wait        return once the service accepted the stop request
`,
};

const COMMON_HELP = `  -h, --help       show this help

ADDR defaults to CORRAL_CONTROL, then ${DEFAULT_CONTROL} (loopback TCP, a unix
socket or a named pipe). The token is read from the file the service wrote at
start (CORRAL_CONTROL_TOKEN_FILE names another), so run this as its user.

Exit codes: 0 done; 1 the service answered with an error (a reload that did not
boot); 2 bad usage; 3 nothing answers at ADDR; 4 the token file cannot be read
or the service refused the token.
`;

/** `corral status|reload|stop --help`. */
export function controlHelp(command: ControlCommand): string {
  return `Usage: ${USAGE[command]}\n\n${HELP[command]}${COMMON_HELP}`;
}

/** Where the output goes; tests pass their own. */
export interface ControlIo {
  env: NodeJS.ProcessEnv;
  out(text: string): void;
  err(text: string): void;
}

const processIo: ControlIo = { env: process.env, out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };

/** A failure with its exit code and message. */
class CommandError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

interface Parsed {
  address: ListenAddress;
  json: boolean;
  wait: boolean;
  app: string | null;
  /** `corral top`: time between refreshes. */
  intervalMs: number;
}

/** Runs one control command; resolves with the exit code. */
export async function runControlCommand(command: ControlCommand, argv: string[], io: ControlIo = processIo): Promise<number> {
  try {
    if (argv.includes('--help') || argv.includes('-h')) {
      io.out(controlHelp(command));
      return EXIT.OK;
    }
    const p = parseArgs(command, argv, io.env);
    switch (command) {
      case 'status':
        return await status(p, io);
      case 'top':
        return await top(p, io);
      case 'reload':
        return await reload(p, io);
      case 'stop':
        return await stop(p, io);
    }
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    io.err(`corral ${command}: ${err.message}\n`);
    return err.exitCode;
  }
}

function parseArgs(command: ControlCommand, argv: string[], env: NodeJS.ProcessEnv): Parsed {
  let addressText = env.CORRAL_CONTROL || DEFAULT_CONTROL;
  let json = false;
  let wait = true;
  let intervalMs = 1000;
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--control' || arg.startsWith('--control=')) {
      const value = arg === '--control' ? argv[++i] : arg.slice('--control='.length);
      if (value === undefined || value === '') throw new CommandError(EXIT.USAGE, `--control needs an address (${CONTROL_FORMS})`);
      addressText = value;
    } else if (arg === '--json' && command === 'status') json = true;
    else if (arg === '--no-wait' && command === 'stop') wait = false;
    else if ((arg === '--interval' || arg.startsWith('--interval=')) && command === 'top') {
      const value = Number(arg === '--interval' ? argv[++i] : arg.slice('--interval='.length));
      if (!Number.isFinite(value) || value < 0.2 || value > 3600) throw new CommandError(EXIT.USAGE, `--interval takes seconds between 0.2 and 3600 (usage: ${USAGE[command]})`);
      intervalMs = Math.round(value * 1000);
    }
    else if (arg.startsWith('-')) throw new CommandError(EXIT.USAGE, `unknown option ${arg} (usage: ${USAGE[command]})`);
    else positional.push(arg);
  }
  const max = command === 'reload' ? 1 : 0;
  if (positional.length > max) throw new CommandError(EXIT.USAGE, `unexpected argument ${JSON.stringify(positional[max])} (usage: ${USAGE[command]})`);
  let address: ListenAddress;
  try {
    address = parseControlAddress(addressText);
  } catch (err) {
    throw new CommandError(EXIT.USAGE, `control address ${(err as Error).message}`);
  }
  return { address, json, wait, app: positional[0] ?? null, intervalMs };
}

async function status(p: Parsed, io: ControlIo): Promise<number> {
  // With the token the service shows app directories, error messages and tracebacks; without it
  // (another user) a redacted status, or 401 under controlReadAccess "token".
  const token = tryReadToken(p.address, io.env);
  const r = await call(p.address, 'GET', '/status.json', token?.value ?? null, 10_000);
  if (r.status === 401) {
    if (token) checkToken(r, token.file);
    throw new CommandError(EXIT.TOKEN, `the service reads status only with its token, and none could be read from ${tokenPath(p.address, io.env)} (run this as the service's user, or set CORRAL_CONTROL_TOKEN_FILE)`);
  }
  if (r.status !== 200) throw serverError(r);
  if (p.json) io.out(r.body.endsWith('\n') ? r.body : `${r.body}\n`);
  else io.out(renderStatusTable(JSON.parse(r.body) as StatusDocument));
  return EXIT.OK;
}

async function top(p: Parsed, io: ControlIo): Promise<number> {
  if (!process.stdout.isTTY) throw new CommandError(EXIT.USAGE, 'top needs a terminal; in scripts use corral status (or corral status --json)');
  const token = tryReadToken(p.address, io.env);
  const load = async (): Promise<StatusDocument | string> => {
    const r = await call(p.address, 'GET', '/status.json', token?.value ?? null, 10_000);
    if (r.status === 401) return `the service reads status only with its token; none accepted from ${tokenPath(p.address, io.env)}`;
    if (r.status !== 200) return serverError(r).message;
    return JSON.parse(r.body) as StatusDocument;
  };
  return runTop({ where: formatAddress(p.address), intervalMs: p.intervalMs, load, stdin: process.stdin, stdout: process.stdout });
}

async function reload(p: Parsed, io: ControlIo): Promise<number> {
  const token = readToken(p.address, io.env);
  const path = p.app === null ? '/reload' : `/reload?app=${encodeURIComponent(p.app)}`;
  // No time limit: a reload answers once the new generation serves, which can take a large app's boot time.
  const r = await call(p.address, 'POST', path, token.value, 0);
  checkToken(r, token.file);
  const answer = parseAnswer(r);
  if (!answer?.apps) throw serverError(r);
  for (const a of answer.apps) {
    if (!a.error) io.out(`reloaded ${a.name} (${a.root}): generation ${a.generation} serving\n`);
    else {
      io.err(`reload of ${a.name} (${a.root}) failed: ${a.error.message}\n`);
      if (a.error.detail) io.err(`${a.error.detail.trimEnd()}\n`);
      io.err(`generation ${a.generation} keeps serving\n`);
    }
  }
  return answer.ok ? EXIT.OK : EXIT.FAILED;
}

async function stop(p: Parsed, io: ControlIo): Promise<number> {
  const token = readToken(p.address, io.env);
  const r = await call(p.address, 'POST', '/stop', token.value, 10_000);
  checkToken(r, token.file);
  if (r.status !== 202) throw serverError(r);
  if (!p.wait) {
    io.out(`stopping the service at ${formatAddress(p.address)}\n`);
    return EXIT.OK;
  }
  io.out(`stopping the service at ${formatAddress(p.address)} ...\n`);
  await goneAway(p.address, 120_000);
  io.out('stopped\n');
  return EXIT.OK;
}

/** Polls /healthz until nothing answers; the service closes its control listener last. */
async function goneAway(address: ListenAddress, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await call(address, 'GET', '/healthz', null, 2_000);
    } catch (err) {
      if (err instanceof CommandError && err.exitCode === EXIT.NOT_RUNNING) return;
    }
    if (Date.now() > until) throw new CommandError(EXIT.FAILED, `the service at ${formatAddress(address)} still answers ${timeoutMs / 1000} s after the stop request`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function readToken(address: ListenAddress, env: NodeJS.ProcessEnv): { value: string; file: string } {
  const file = tokenPath(address, env);
  try {
    return { value: readTokenFile(file), file };
  } catch (err) {
    throw new CommandError(EXIT.TOKEN, `${(err as Error).message} (the service writes it at start; run this as the service's user, or set CORRAL_CONTROL_TOKEN_FILE to the service's token file)`);
  }
}

function tryReadToken(address: ListenAddress, env: NodeJS.ProcessEnv): { value: string; file: string } | null {
  try {
    return readToken(address, env);
  } catch {
    return null;
  }
}

function checkToken(r: Reply, file: string): void {
  if (r.status === 401) throw new CommandError(EXIT.TOKEN, `the service refused the token read from ${file}: ${parseAnswer(r)?.message ?? r.body.trim()} (is that file from another service, or an older start?)`);
}

function parseAnswer(r: Reply): ControlAnswer | null {
  try {
    return JSON.parse(r.body) as ControlAnswer;
  } catch {
    return null;
  }
}

function serverError(r: Reply): CommandError {
  const message = parseAnswer(r)?.message ?? r.body.trim();
  return new CommandError(EXIT.FAILED, `the service answered ${r.status}: ${message || '(no message)'}`);
}

interface Reply {
  status: number;
  body: string;
}

/** One HTTP call to the control listener; `timeoutMs` 0 waits as long as it takes. */
function call(address: ListenAddress, method: string, path: string, token: string | null, timeoutMs: number): Promise<Reply> {
  const where = address.kind === 'tcp' ? { host: address.host, port: address.port } : { socketPath: address.kind === 'unix' || address.kind === 'pipe' ? address.path : '' };
  const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const shown = formatAddress(address);
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new CommandError(EXIT.FAILED, `the answer from ${shown} broke off: ${err.message}`)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    if (timeoutMs > 0) req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // ENOENT: no socket file; ECONNREFUSED: nobody listens; a pipe with no server says ENOENT too.
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') {
        reject(new CommandError(EXIT.NOT_RUNNING, `no corral service answers at ${shown} (is it running with --control ${shown}?)`));
      } else reject(new CommandError(EXIT.FAILED, `calling ${shown}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' ')));
    });
    req.end();
  });
}
