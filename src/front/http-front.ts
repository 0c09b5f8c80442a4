/**
 * A minimal HTTP front: turns each HTTP request into the same FastCGI request a web server would
 * send, runs it through the pool, and turns the CGI answer back into HTTP. For use without a web
 * server (`--http`, and `corral dev`). Bodies stream both ways under the pool's flow control.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RecordType } from '../fcgi/constants.js';
import { encodeParams } from '../fcgi/params.js';
import { encodeRecord } from '../fcgi/records.js';
import { MAX_CONTENT } from '../fcgi/constants.js';
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { ExchangeSink, Exchange } from '../pool/exchange.js';
import type { Router } from './fcgi-connection.js';
import { CgiHeadParser } from './cgi-response.js';
import { clientStatus, errorBody } from './error-page.js';
import { exchangeFacts, type RequestObserver, type RequestRecord } from './access-log.js';
import type { Front } from './listeners.js';
import { formatAddress, type ListenAddress } from '../config/address.js';

/** Options of the HTTP front. */
export interface HttpFrontOptions {
  devErrors: boolean;
  serverSoftware: string;
  /** Told about each finished request (access log, metrics). */
  observe?: RequestObserver | null;
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

/** The CGI/1.1 params for an HTTP request. */
export function paramsFor(req: http.IncomingMessage, local: AddressInfo, software: string): Array<[string, string]> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  const hostHeader = req.headers.host ?? '';
  const serverName = hostHeader.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') || local.address;
  const p: Array<[string, string]> = [
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SERVER_SOFTWARE', software],
    ['REQUEST_METHOD', req.method ?? 'GET'],
    ['SCRIPT_NAME', ''],
    ['PATH_INFO', decodePathBytes(rawPath)],
    ['QUERY_STRING', q >= 0 ? url.slice(q + 1) : ''],
    ['REQUEST_URI', url],
    ['SERVER_NAME', serverName],
    ['SERVER_PORT', String(local.port)],
    ['SERVER_PROTOCOL', `HTTP/${req.httpVersion}`],
    ['REQUEST_SCHEME', 'http'],
    ['REMOTE_ADDR', req.socket.remoteAddress ?? ''],
    ['REMOTE_PORT', String(req.socket.remotePort ?? '')],
  ];
  if (req.headers['content-type'] !== undefined) p.push(['CONTENT_TYPE', req.headers['content-type']]);
  if (req.headers['content-length'] !== undefined) p.push(['CONTENT_LENGTH', req.headers['content-length']]);
  const merged = new Map<string, string>();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = `HTTP_${raw[i]!.toUpperCase().replace(/-/g, '_')}`;
    if (name === 'HTTP_CONTENT_TYPE' || name === 'HTTP_CONTENT_LENGTH' || name === 'HTTP_PROXY') continue; // httpoxy
    const prev = merged.get(name);
    merged.set(name, prev === undefined ? raw[i + 1]! : `${prev}, ${raw[i + 1]!}`);
  }
  for (const e of merged) p.push(e);
  return p;
}

class HttpExchange implements ExchangeSink {
  readonly #req: http.IncomingMessage;
  readonly #res: http.ServerResponse;
  readonly #opts: HttpFrontOptions;
  readonly #log: Logger;
  readonly #head = new CgiHeadParser();
  #started = false;
  exchange: Exchange | null = null;

  constructor(req: http.IncomingMessage, res: http.ServerResponse, opts: HttpFrontOptions, log: Logger) {
    this.#req = req;
    this.#res = res;
    this.#opts = opts;
    this.#log = log;
  }

  stdout(content: Buffer): void {
    if (!this.#started) {
      const r = this.#head.push(content);
      if (r === null) return this.#credit(content.length);
      if ('error' in r) {
        this.#log.warn({ err: r.error, path: this.#req.url }, 'app sent a malformed CGI response');
        this.exchange?.abort();
        this.#sendError(new CorralError('CORRAL_BAD_RESPONSE', `the app's response is not valid CGI: ${r.error}`));
        return;
      }
      this.#started = true;
      const flat: string[] = [];
      for (const [n, v] of r.head.headers) flat.push(n, v);
      this.#res.writeHead(r.head.status, r.head.reason, flat);
      this.#write(r.rest, content.length);
      return;
    }
    this.#write(content, content.length);
  }

  end(appStatus = 0): void {
    if (!this.#started && !this.#res.headersSent) {
      this.#sendError(new CorralError('CORRAL_BAD_RESPONSE', 'the app ended the response without sending headers'));
      return;
    }
    // appStatus 1: the body is cut short (the app raised mid-body, or sent less than its
    // Content-Length). Ending it normally would pass it on as complete, or leave the client
    // waiting for the rest: close the connection instead.
    if (appStatus !== 0) this.#res.destroy();
    else this.#res.end();
  }

  fail(error: CorralError): void {
    if (this.#res.headersSent) {
      this.#res.destroy();
      return;
    }
    this.#sendError(error);
  }

  pauseInput(): void {
    this.#req.pause();
  }

  resumeInput(): void {
    this.#req.resume();
  }

  /** The access record, once the response is over. */
  record(startedAt: number): RequestRecord {
    const now = performance.now();
    return {
      app: this.exchange?.app ?? null,
      method: this.#req.method ?? '-',
      path: this.#req.url ?? '-',
      status: this.#res.statusCode,
      bytes: this.bytes,
      durationMs: now - startedAt,
      ...exchangeFacts(this.exchange, now),
      error: this.error,
    };
  }

  bytes = 0;
  error: string | null = null;

  #write(body: Buffer, credit: number): void {
    this.bytes += body.length;
    if (body.length === 0 || this.#res.write(body)) this.#credit(credit);
    else this.#res.once('drain', () => this.#credit(credit));
  }

  #credit(n: number): void {
    this.exchange?.credit(n);
  }

  #sendError(error: CorralError): void {
    this.error = error.code;
    if (this.#res.headersSent) return;
    const { type, body } = errorBody(error, this.#opts.devErrors);
    const headers: Record<string, string | number> = { 'content-type': type, 'content-length': body.length, 'x-corral-error': error.code };
    if (error.retryAfter !== undefined) headers['retry-after'] = error.retryAfter;
    this.#res.writeHead(clientStatus(error, this.#opts.devErrors), headers);
    this.#res.end(body);
  }
}

/** Starts the HTTP front on `address` (TCP or unix socket). */
export async function openHttpFront(address: ListenAddress, route: Router, opts: HttpFrontOptions, log: Logger): Promise<Front> {
  const server = http.createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
    const startedAt = performance.now();
    const local = req.socket.address() as AddressInfo;
    const sink = new HttpExchange(req, res, opts, log);
    const observe = opts.observe;
    if (observe) res.once('close', () => observe(sink.record(startedAt)));
    const target = route.route(null);
    if (target instanceof CorralError) {
      sink.fail(target);
      req.resume();
      return;
    }
    const ex = target.begin(sink);
    sink.exchange = ex;
    const params = encodeParams(paramsFor(req, local, opts.serverSoftware));
    for (let off = 0; off < params.length; off += MAX_CONTENT) {
      ex.params(encodeRecord(RecordType.PARAMS, 0, params.subarray(off, Math.min(params.length, off + MAX_CONTENT))));
    }
    ex.params(encodeRecord(RecordType.PARAMS, 0));
    req.on('data', (chunk: Buffer) => {
      for (let off = 0; off < chunk.length; off += MAX_CONTENT) {
        ex.stdin(encodeRecord(RecordType.STDIN, 0, chunk.subarray(off, Math.min(chunk.length, off + MAX_CONTENT))));
      }
    });
    req.on('end', () => ex.stdin(encodeRecord(RecordType.STDIN, 0)));
    res.on('close', () => {
      if (!res.writableFinished) ex.abort();
    });
  });
  const opts2 = address.kind === 'tcp' ? { host: address.host, port: address.port } : address.kind === 'unix' || address.kind === 'pipe' ? { path: address.path } : null;
  if (!opts2) throw new Error(`--http needs host:port or a socket path, not ${formatAddress(address)}`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot listen (HTTP) on ${formatAddress(address)}: ${err.code ?? err.message}`)));
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
