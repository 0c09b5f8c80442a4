/**
 * The control listener: a small node:http server on a loopback port, a unix socket or a named
 * pipe. It runs in the service's event loop and reads only the pools' in-memory figures, so it
 * answers while every worker thread is busy (PHP-FPM's status page, served by the saturated pool
 * itself, famously does not). On start it writes the token that `POST /reload` and `POST /stop`
 * need, and that reads need to see app directories, error messages and tracebacks (see token.ts).
 */
import http from 'node:http';
import net from 'node:net';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { formatAddress, listenFailure, type ListenAddress } from '../config/address.js';
import { controlAddressProblem, isLoopbackHost } from '../config/control-address.js';
import type { Logger } from '../log/logger.js';
import { PromMetrics } from './metrics.js';
import { handle, sendJson, type ReadAccess, type RouteContext } from './routes.js';
import type { ControlTarget } from './target.js';
import { newToken, removeTokenFile, tokenPath, writeTokenFile } from './token.js';

/** Connections the control listener keeps open at once; more are closed at once. */
export const MAX_CONNECTIONS = 64;

/** How to start the control listener. */
export interface ControlServerOptions {
  address: ListenAddress;
  target: ControlTarget;
  log: Logger;
  version: string;
  /** The recorder the fronts and pools feed; a fresh one if not given. */
  metrics?: PromMetrics;
  /** Where CORRAL_CONTROL_TOKEN_FILE is read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** When the service started (default now). */
  startedAt?: Date;
  /** controlReadAccess (default `local`): reads without the token are redacted, or refused with `token`. */
  readAccess?: ReadAccess;
}

/** A running control listener. */
export interface ControlServer {
  /** The address as bound (the real port for `:0`). */
  readonly address: ListenAddress;
  /** `127.0.0.1:9001`, `unix:/run/corral.sock`: what to pass to `corral status --control`. */
  readonly bound: string;
  readonly tokenFile: string;
  readonly metrics: PromMetrics;
  /** Answers pending calls with 503, removes the token file and stops listening. */
  close(): Promise<void>;
}

/** Starts the control listener; rejects with a message naming the address if it cannot listen. */
export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const problem = controlAddressProblem(opts.address);
  if (problem) throw new Error(`control address ${formatAddress(opts.address)} ${problem}`);
  const log = opts.log.child({ component: 'control' });
  const metrics = opts.metrics ?? new PromMetrics();
  const pending = new Set<http.ServerResponse>();
  let ctx: RouteContext | null = null;
  // A local client must not hold the service's file descriptors or the listener: few connections
  // (operators, a scraper), headers in 10 s, a request (a body of at most 4 KiB) in 30 s.
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 2_000 }, (req, res) => {
    if (!ctx) return void res.writeHead(503).end();
    const c = ctx;
    pending.add(res);
    res.once('close', () => pending.delete(res));
    void serve(c, opts.address, req, res);
  });
  // Keep-alive connections from browsers would otherwise hold close() up for 5 s.
  server.keepAliveTimeout = 2_000;
  server.maxConnections = MAX_CONNECTIONS;
  let atLimit = false;
  server.on('drop', () => {
    if (atLimit) return;
    atLimit = true;
    log.warn({ maxConnections: MAX_CONNECTIONS }, 'control: at its connection limit; new connections are closed');
    setTimeout(() => (atLimit = false), 60_000).unref();
  });
  await listen(server, opts.address);
  const address = boundAddress(server, opts.address);
  const bound = formatAddress(address);
  const tokenFile = tokenPath(address, opts.env ?? process.env);
  const token = newToken();
  try {
    writeTokenFile(tokenFile, token);
  } catch (err) {
    server.close();
    throw err;
  }
  ctx = { target: opts.target, metrics, facts: { version: opts.version, startedAt: opts.startedAt ?? new Date() }, token, tokenFile, log, readAccess: opts.readAccess ?? 'local' };
  log.info({ control: bound, tokenFile, url: address.kind === 'tcp' ? `http://${bound}/status` : undefined }, 'control listener ready');
  let closing: Promise<void> | null = null;
  return {
    address,
    bound,
    tokenFile,
    metrics,
    close: () =>
      (closing ??= (async () => {
        removeTokenFile(tokenFile, token);
        for (const res of pending) if (!res.headersSent) sendJson(res, 503, { ok: false, message: 'the service stopped before this call finished' });
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // Answers just sent get a moment to flush; then whatever is left (a slow client) is cut.
        setImmediate(() => server.closeAllConnections());
        await closed;
        if (opts.address.kind === 'unix') removeSocketFile(opts.address.path);
      })()),
  };
}

async function serve(ctx: RouteContext, listenOn: ListenAddress, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  try {
    // A web page elsewhere may point a name it controls at 127.0.0.1 (DNS rebinding) and read the
    // status through the browser: loopback listeners answer only requests addressed to loopback.
    const host = req.headers.host;
    if (listenOn.kind === 'tcp' && host !== undefined && !isLoopbackHost(host.replace(/:\d+$/, ''))) {
      return sendJson(res, 403, { ok: false, message: `Host ${JSON.stringify(host)} is not a loopback name; use 127.0.0.1, [::1] or localhost` });
    }
    await handle(ctx, req, res, new URL(req.url ?? '/', 'http://control'));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    ctx.log.error({ err: message, path: req.url }, 'control: call failed');
    if (!res.headersSent) sendJson(res, 500, { ok: false, message });
    else res.destroy();
  }
}

async function listen(server: http.Server, address: ListenAddress): Promise<void> {
  if (address.kind === 'unix') await removeStaleSocket(address.path);
  const opts: net.ListenOptions = address.kind === 'tcp' ? { host: address.host, port: address.port } : { path: address.kind === 'unix' || address.kind === 'pipe' ? address.path : '' };
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(new Error(`cannot listen (control) on ${formatAddress(address)}: ${err.code ? listenFailure(err.code, '--control') : err.message}`));
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function boundAddress(server: http.Server, address: ListenAddress): ListenAddress {
  const a = server.address();
  if (address.kind === 'tcp' && a && typeof a === 'object') return { kind: 'tcp', host: address.host, port: a.port };
  return address;
}

/**
 * A socket file left by a killed service blocks listen. Remove it only when nothing answers
 * there: a second service started on the same path must fail, not steal the first one's socket.
 */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path) || !lstatSync(path).isSocket()) return;
  const answers = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path }, () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answers) throw new Error(`cannot listen (control) on unix:${path}: another process answers there (another corral service?)`);
  removeSocketFile(path);
}

function removeSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    /* already gone */
  }
}
