/**
 * A minimal HTTP front: turns each HTTP request into the same FastCGI request a web server would
 * send, runs it through the pool, and turns the CGI answer back into HTTP. For use without a web
 * server (`--http`, and `corral dev`). Bodies stream both ways under the pool's flow control.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { RecordType } from '../fcgi/constants.js';
import { encodeParams } from '../fcgi/params.js';
import { encodeRecord } from '../fcgi/records.js';
import { MAX_CONTENT } from '../fcgi/constants.js';
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Router } from './fcgi-connection.js';
import type { RequestObserver } from './access-log.js';
import { HttpExchange } from './http-exchange.js';
import type { Front } from './listeners.js';
import { formatAddress, listenFailure, type ListenAddress } from '../config/address.js';
import { forwardedClient, forwardedHost, forwardedProto, isLoopback, splitMount, tokenMatches } from './forwarded.js';
import { sendStatic, staticTargetOf, type StaticMapping } from './static-files.js';
import { DEV_GENERATION_PATH, type DevGeneration } from './dev-page.js';

/** Options of the HTTP front. */
export interface HttpFrontOptions {
  devErrors: boolean;
  serverSoftware: string;
  /** Told about each finished request (access log, metrics). */
  observe?: RequestObserver | null;
  /** Largest request body in bytes (0: no limit): a larger Content-Length gets 413 before the app runs, a longer body is cut off. */
  maxBodySize?: number;
  /** Open connections; more are closed at once (Node's server.maxConnections). */
  maxConnections?: number;
  /** Seconds for a request's headers to arrive (slowloris). */
  paramsTimeout?: number;
  /** Seconds a request body may send nothing while the front waits for it. */
  bodyTimeout?: number;
  /** Seconds a kept-alive connection may stay idle between requests. */
  connectionIdleTimeout?: number;
  /** Honour X-Forwarded-For/-Proto/-Host, from loopback peers only (IIS's HttpPlatformHandler or ANCM in front). */
  trustForwarded?: boolean;
  /** Path base the app is mounted under (`/app`, or '' for none): SCRIPT_NAME; requests outside it get 404. */
  mount?: string;
  /** ANCM's pairing token: requests without it in MS-ASPNETCORE-TOKEN get 400 (null: no check). */
  pairingToken?: string | null;
  /** URL paths under the mount whose files the front serves itself (static-files.ts). */
  staticFiles?: readonly StaticMapping[];
  /**
   * `corral dev` only: which generation of the app serves. The dev error page polls it at
   * DEV_GENERATION_PATH and reloads itself once a fixed generation serves. Null: no such path.
   */
  devGeneration?: (() => DevGeneration | null) | null;
}

/** How paramsFor reads a request besides the request itself. */
export interface ParamsOptions {
  trustForwarded?: boolean;
  mount?: string;
  /** Leave out MS-ASPNETCORE-TOKEN: the pairing token is the service's, not the app's. */
  dropPairingToken?: boolean;
}

/** Percent-decodes a URL path to raw bytes, read as latin-1 (WSGI's PATH_INFO is bytes-as-latin-1). */
export function decodePathBytes(path: string): string {
  if (!path.includes('%')) return path;
  const bytes: number[] = [];
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 && i + 2 < path.length && /^[0-9a-fA-F]{2}$/.test(path.slice(i + 1, i + 3))) {
      bytes.push(parseInt(path.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c & 0xff);
  }
  return Buffer.from(bytes).toString('latin1');
}

/**
 * The CGI/1.1 params for an HTTP request. With `trustForwarded` and a loopback peer, the client,
 * scheme and host come from the X-Forwarded-* headers (REMOTE_ADDR is the last hop; the proxy's own
 * address stays in CORRAL_PEER_ADDR). With `mount`, SCRIPT_NAME is the prefix and PATH_INFO the
 * rest (callers check splitMount first: a path outside the prefix keeps SCRIPT_NAME empty).
 */
export function paramsFor(req: http.IncomingMessage, local: AddressInfo, software: string, opts: ParamsOptions = {}): Array<[string, string]> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  const path = decodePathBytes(rawPath);
  const place = splitMount(path, opts.mount ?? '') ?? { scriptName: '', pathInfo: path };
  const peer = req.socket.remoteAddress ?? '';
  const proxied = opts.trustForwarded === true && isLoopback(peer);
  const client = proxied ? forwardedClient(headerText(req, 'x-forwarded-for')) : null;
  const proto = proxied ? forwardedProto(headerText(req, 'x-forwarded-proto')) : null;
  const fwdHost = proxied ? forwardedHost(headerText(req, 'x-forwarded-host')) : null;
  const hostHeader = fwdHost ?? req.headers.host ?? '';
  const serverName = hostHeader.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') || local.address;
  const scheme = proto ?? 'http';
  // Behind a proxy the local port is the proxy's loopback hop: the public one is in Host, or the scheme's.
  const hostPort = /:(\d+)$/.exec(hostHeader)?.[1];
  const serverPort = proto !== null || fwdHost !== null ? (hostPort ?? (scheme === 'https' ? '443' : '80')) : String(local.port);
  const p: Array<[string, string]> = [
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SERVER_SOFTWARE', software],
    ['REQUEST_METHOD', req.method ?? 'GET'],
    ['SCRIPT_NAME', place.scriptName],
    ['PATH_INFO', place.pathInfo],
    ['QUERY_STRING', q >= 0 ? url.slice(q + 1) : ''],
    ['REQUEST_URI', url],
    ['SERVER_NAME', serverName],
    ['SERVER_PORT', serverPort],
    ['SERVER_PROTOCOL', `HTTP/${req.httpVersion}`],
    ['REQUEST_SCHEME', scheme],
    ['REMOTE_ADDR', client?.address ?? peer],
  ];
  if (client === null) p.push(['REMOTE_PORT', String(req.socket.remotePort ?? '')]);
  else {
    if (client.port !== null) p.push(['REMOTE_PORT', client.port]);
    p.push(['CORRAL_PEER_ADDR', peer]);
  }
  if (scheme === 'https') p.push(['HTTPS', 'on']);
  if (req.headers['content-type'] !== undefined) p.push(['CONTENT_TYPE', req.headers['content-type']]);
  if (req.headers['content-length'] !== undefined) p.push(['CONTENT_LENGTH', req.headers['content-length']]);
  const merged = new Map<string, string>();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = `HTTP_${raw[i]!.toUpperCase().replace(/-/g, '_')}`;
    if (name === 'HTTP_CONTENT_TYPE' || name === 'HTTP_CONTENT_LENGTH' || name === 'HTTP_PROXY') continue; // httpoxy
    if (name === 'HTTP_MS_ASPNETCORE_TOKEN' && opts.dropPairingToken === true) continue;
    const prev = merged.get(name);
    merged.set(name, prev === undefined ? raw[i + 1]! : `${prev}, ${raw[i + 1]!}`);
  }
  if (fwdHost !== null) merged.set('HTTP_HOST', fwdHost);
  for (const e of merged) p.push(e);
  return p;
}

/** A header's value as one string (repeated headers joined with commas, as HTTP allows for lists). */
function headerText(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Starts the HTTP front on `address` (TCP or unix socket). */
export async function openHttpFront(address: ListenAddress, route: Router, opts: HttpFrontOptions, log: Logger): Promise<Front> {
  const server = http.createServer(
    {
      noDelay: true,
      keepAliveTimeout: (opts.connectionIdleTimeout ?? 65) * 1000,
      // The slowloris guard: the request line and headers must arrive within paramsTimeout.
      headersTimeout: (opts.paramsTimeout ?? 60) * 1000,
      // Not a whole-request limit: a large upload on a slow link may take long; a body that
      // stalls is caught by bodyTimeout instead (below), the app's time by requestTimeout.
      requestTimeout: 0,
      // How often Node checks headersTimeout (default 30 s, so a 30 s limit would act at up to 60 s).
      connectionsCheckingInterval: Math.min(30_000, Math.max(1_000, ((opts.paramsTimeout ?? 60) * 1000) / 4)),
    },
    (req, res) => serveRequest(req, res, route, opts, log),
  );
  if (opts.maxConnections !== undefined) server.maxConnections = opts.maxConnections;
  // Expect: 100-continue: a body over maxBodySize is refused before the client sends it.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!overLimit(req, opts.maxBodySize ?? 0)) res.writeContinue();
    serveRequest(req, res, route, opts, log);
  });
  // Node closes connections past maxConnections itself ('drop'); say so once until the count is below it again.
  let atLimit = false;
  server.on('drop', (data?: { remoteAddress?: string }) => {
    if (atLimit) return;
    atLimit = true;
    log.warn({ maxConnections: opts.maxConnections, peer: data?.remoteAddress }, 'HTTP front at maxConnections: new connections are closed');
  });
  server.on('connection', (socket: Socket) => {
    socket.once('close', () => {
      if (!atLimit) return;
      server.getConnections((_err, n) => {
        if (!atLimit || n >= (opts.maxConnections ?? Infinity)) return;
        atLimit = false;
        log.info({ maxConnections: opts.maxConnections, open: n }, 'HTTP front below maxConnections again');
      });
    });
  });
  const opts2 = address.kind === 'tcp' ? { host: address.host, port: address.port } : address.kind === 'unix' || address.kind === 'pipe' ? { path: address.path } : null;
  if (!opts2) throw new Error(`--http needs host:port or a socket path, not ${formatAddress(address)}`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot listen (HTTP) on ${formatAddress(address)}: ${err.code ? listenFailure(err.code, '--http') : err.message}`)));
    server.listen(opts2, () => resolve());
  });
  const a = server.address();
  const bound = a && typeof a === 'object' ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : String(a);
  return {
    address,
    bound,
    close: async () => {
      server.close();
      server.closeIdleConnections();
    },
  };
}

/** Why the front answers a request itself before any app runs: a wrong ANCM pairing token, or a path outside the mount. */
function refusal(req: http.IncomingMessage, opts: HttpFrontOptions): CorralError | null {
  if (opts.pairingToken != null && !tokenMatches(req.headers['ms-aspnetcore-token'], opts.pairingToken))
    return new CorralError('CORRAL_BAD_PAIRING_TOKEN', 'request without the ASP.NET Core Module pairing token (MS-ASPNETCORE-TOKEN): 400, the app does not run');
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  if (opts.mount && splitMount(decodePathBytes(q >= 0 ? url.slice(0, q) : url), opts.mount) === null)
    return new CorralError('CORRAL_OUTSIDE_MOUNT', `request path outside the mount ${opts.mount}: 404, the app does not run`);
  return null;
}

/** The request's decoded path below the mount (refusal() has already turned away paths outside it). */
function pathBelowMount(req: http.IncomingMessage, mount: string): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const decoded = decodePathBytes(q >= 0 ? url.slice(0, q) : url);
  const below = splitMount(decoded, mount)?.pathInfo ?? decoded;
  // PATH_INFO's bytes-as-latin-1 back to the UTF-8 file names they spell.
  return Buffer.from(below, 'latin1').toString('utf8');
}

/** Whether the request's Content-Length is over `limit` (0: no limit). */
function overLimit(req: http.IncomingMessage, limit: number): boolean {
  const declared = req.headers['content-length'];
  return limit > 0 && declared !== undefined && Number(declared) > limit;
}

function bodyTooLarge(limit: number): CorralError {
  return new CorralError('CORRAL_BODY_TOO_LARGE', `the request body is larger than maxBodySize (${limit} bytes)`);
}

function serveRequest(req: http.IncomingMessage, res: http.ServerResponse, route: Router, opts: HttpFrontOptions, log: Logger): void {
  const startedAt = performance.now();
  const local = req.socket.address() as AddressInfo;
  const sink = new HttpExchange(req, res, opts, log);
  const observe = opts.observe;
  if (observe) res.once('close', () => observe(sink.record(startedAt)));
  if (opts.devGeneration && (req.url === DEV_GENERATION_PATH || req.url?.startsWith(`${DEV_GENERATION_PATH}?`))) {
    sendGeneration(res, opts.devGeneration());
    req.resume();
    return;
  }
  const limit = opts.maxBodySize ?? 0;
  if (overLimit(req, limit)) {
    log.warn({ path: req.url, peer: req.socket.remoteAddress, contentLength: req.headers['content-length'], maxBodySize: limit }, 'request body larger than maxBodySize: 413, the app does not run');
    // The body is not read: the connection closes after the answer.
    sink.giveUp(bodyTooLarge(limit), { connection: 'close' });
    return;
  }
  const refused = refusal(req, opts);
  if (refused !== null) {
    sink.fail(refused);
    req.resume();
    return;
  }
  if (opts.staticFiles && opts.staticFiles.length > 0) {
    const target = staticTargetOf(pathBelowMount(req, opts.mount ?? ''), opts.staticFiles);
    if (target.kind !== 'not-static') return sendStatic(req, res, target);
  }
  const target = route.route(null);
  if (target instanceof CorralError) {
    sink.fail(target);
    req.resume();
    return;
  }
  const ex = target.begin(sink);
  sink.exchange = ex;
  const params = encodeParams(
    paramsFor(req, local, opts.serverSoftware, { trustForwarded: opts.trustForwarded ?? false, mount: opts.mount ?? '', dropPairingToken: opts.pairingToken != null }),
  );
  for (let off = 0; off < params.length; off += MAX_CONTENT) {
    ex.params(encodeRecord(RecordType.PARAMS, 0, params.subarray(off, Math.min(params.length, off + MAX_CONTENT))));
  }
  ex.params(encodeRecord(RecordType.PARAMS, 0));
  const idle = bodyIdleTimer(req, (opts.bodyTimeout ?? 0) * 1000, () => {
    log.warn({ app: ex.app, path: req.url, peer: req.socket.remoteAddress, bodyTimeout: opts.bodyTimeout }, 'request body sent nothing for bodyTimeout: request aborted, connection closed');
    ex.abort();
    req.socket.destroy();
  });
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    if (sink.answered) return;
    received += chunk.length;
    if (limit > 0 && received > limit) {
      idle.stop();
      log.warn({ app: ex.app, path: req.url, peer: req.socket.remoteAddress, received, maxBodySize: limit }, 'request body grew past maxBodySize: request aborted');
      sink.giveUp(bodyTooLarge(limit), { connection: 'close' });
      req.pause();
      return;
    }
    for (let off = 0; off < chunk.length; off += MAX_CONTENT) {
      ex.stdin(encodeRecord(RecordType.STDIN, 0, chunk.subarray(off, Math.min(chunk.length, off + MAX_CONTENT))));
    }
  });
  req.on('end', () => {
    idle.stop();
    if (!sink.answered) ex.stdin(encodeRecord(RecordType.STDIN, 0));
  });
  res.on('close', () => {
    idle.stop();
    if (!res.writableFinished) ex.abort();
  });
}

/** The dev page's poll: `{generation, state}` of the app, never cached; 404 when there is no app. */
function sendGeneration(res: http.ServerResponse, gen: DevGeneration | null): void {
  const body = Buffer.from(`${JSON.stringify(gen ?? { generation: null, state: 'none' })}\n`, 'utf8');
  res.writeHead(gen ? 200 : 404, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
}

/**
 * Calls `onIdle` when the body sends nothing for `ms` while the front reads it. Paused reading
 * (the worker has not taken what came) does not count: the client is not the one waiting.
 */
function bodyIdleTimer(req: http.IncomingMessage, ms: number, onIdle: () => void): { stop(): void } {
  if (ms <= 0 || req.complete) return { stop: () => undefined };
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const poke = (): void => {
    if (stopped) return;
    if (timer) timer.refresh();
    else timer = setTimeout(onIdle, ms).unref();
  };
  const onPause = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  poke();
  req.on('data', poke);
  req.on('resume', poke);
  req.on('pause', onPause);
  return {
    stop: () => {
      stopped = true;
      onPause();
      req.off('data', poke);
      req.off('resume', poke);
      req.off('pause', onPause);
    },
  };
}
