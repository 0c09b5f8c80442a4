/**
 * One FastCGI client connection (nginx, Apache, IIS through the relay, cgi-fcgi): parses its
 * records, starts an exchange per request in the pool, writes the answers back. Supports
 * FCGI_KEEP_CONN, multiplexed requests, GET_VALUES, ABORT_REQUEST, UNKNOWN_TYPE and
 * UNKNOWN_ROLE. Malformed input closes this connection only.
 */
import type { Duplex } from 'node:stream';
import {
  FCGI_KEEP_CONN,
  FCGI_MAXTYPE,
  HEADER_LEN,
  ManagementVar,
  NULL_REQUEST_ID,
  ProtocolStatus,
  RecordType,
  Role,
} from '../fcgi/constants.js';
import { RecordParser, type FcgiRecord } from '../fcgi/parser.js';
import { getValuesResult, paramsToMap, scanParams } from '../fcgi/params.js';
import { CGI_STATUS_PROBE, cgiStatus, exchangeFacts, type RequestObserver, type RequestRecord } from './access-log.js';
import { headEnd } from './cgi-response.js';
import { decodeBeginRequest, encodeEndRequest, encodeRecord, encodeUnknownType, frameStream, header } from '../fcgi/records.js';
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Exchange, ExchangeSink } from '../pool/exchange.js';
import type { Upstream } from '../pool/pool.js';
import { Outbox } from '../pool/outbox.js';
import { errorResponse } from './error-page.js';

/** Limits and answers for GET_VALUES. */
export interface ConnectionOptions {
  maxParamsBytes: number;
  /** FCGI_MAX_CONNS and FCGI_MAX_REQS as answered to GET_VALUES. */
  maxConns: number;
  maxReqs: number;
  devErrors: boolean;
  /** Told about each finished request (access log, metrics). */
  observe?: RequestObserver | null;
}

/** Params the access log needs. */
const ACCESS_PARAMS = ['REQUEST_METHOD', 'REQUEST_URI', 'SCRIPT_NAME', 'PATH_INFO'];
const EMPTY = Buffer.alloc(0);

/** Picks the pool for a request. */
export interface Router {
  /** True when the choice depends on the request's params (several apps, IIS): they are then decoded. */
  readonly needsParams: boolean;
  /** The pool for a request, or why there is none. `params` is null unless `needsParams`. */
  route(params: ReadonlyMap<string, string> | null): Upstream | CorralError;
}

class FrontRequest implements ExchangeSink {
  readonly id: number;
  readonly keepConn: boolean;
  exchange: Exchange | null = null;
  paramsBytes = 0;
  paramsDone = false;
  /** PARAMS records held until routing can decode them all. */
  heldParams: Buffer[] | null = null;
  conn: FcgiConnection;
  // For the access log (filled only when someone observes requests).
  readonly startedAt = performance.now();
  seen: Record<string, string> | null = null;
  status = 0;
  /** The CGI head seen so far while it has not ended (for the status); null once it has. */
  #head: Buffer | null = EMPTY;
  bytes = 0;
  error: string | null = null;

  constructor(conn: FcgiConnection, id: number, keepConn: boolean) {
    this.conn = conn;
    this.id = id;
    this.keepConn = keepConn;
  }

  stdout(content: Buffer): void {
    // A fresh header and the content as it came from the worker (a view: no copy of the body).
    this.conn.write(header(RecordType.STDOUT, this.id, content.length));
    if (content.length > 0) this.conn.write(content);
    if (this.#head !== null && content.length > 0) this.#probeStatus(content);
    this.bytes += content.length;
    const ex = this.exchange;
    if (ex && content.length > 0) this.conn.afterFlush(() => ex.credit(content.length));
  }

  end(appStatus: number): void {
    this.conn.endRequest(this, appStatus);
  }

  /** The status for the access log, from the CGI head, which may come in more than one piece. */
  #probeStatus(content: Buffer): void {
    const head = this.#head!.length === 0 ? content : Buffer.concat([this.#head!, content.subarray(0, CGI_STATUS_PROBE)]);
    this.status = cgiStatus(head);
    // Only the probed start counts: a large first piece is not searched to its end.
    const ended = headEnd(head.subarray(0, CGI_STATUS_PROBE)) !== null;
    this.#head = ended || head.length >= CGI_STATUS_PROBE ? null : Buffer.from(head);
  }

  fail(error: CorralError): void {
    this.error = error.code;
    if (!this.exchange?.responseStarted) {
      const page = errorResponse(error, this.conn.devErrors);
      this.status = cgiStatus(page);
      this.bytes += page.length;
      for (const part of frameStream(RecordType.STDOUT, this.id, page)) this.conn.write(part);
      this.conn.endRequest(this, 0);
    } else this.conn.endRequest(this, 1);
  }

  /** Notes method and path from a PARAMS record (first records only: nginx sends them in one). */
  noteParams(content: Buffer): void {
    const seen = (this.seen ??= {});
    if (seen.REQUEST_METHOD === undefined || seen.REQUEST_URI === undefined) scanParams(content, ACCESS_PARAMS, seen);
  }

  /** The access record, once the request is over. */
  record(): RequestRecord {
    const now = performance.now();
    const seen = this.seen ?? {};
    return {
      app: this.exchange?.app ?? null,
      method: seen.REQUEST_METHOD ?? '-',
      path: seen.REQUEST_URI ?? ((seen.SCRIPT_NAME ?? '') + (seen.PATH_INFO ?? '') || '-'),
      status: this.status,
      bytes: this.bytes,
      durationMs: now - this.startedAt,
      ...exchangeFacts(this.exchange, now),
      error: this.error,
    };
  }

  pauseInput(): void {
    this.conn.pause();
  }

  resumeInput(): void {
    this.conn.resume();
  }
}

/** Serves one front connection until it closes. */
export class FcgiConnection {
  readonly #socket: Duplex;
  readonly #route: Router;
  readonly #opts: ConnectionOptions;
  readonly #log: Logger;
  readonly #parser = new RecordParser();
  readonly #outbox: Outbox;
  readonly #requests = new Map<number, FrontRequest>();
  #pauses = 0;
  #closing = false;
  #closed = false;

  constructor(socket: Duplex, route: Router, opts: ConnectionOptions, log: Logger) {
    this.#socket = socket;
    this.#route = route;
    this.#opts = opts;
    this.#log = log;
    this.#outbox = new Outbox(socket);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('close', () => this.#onClose());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') this.#log.warn({ err: err.message }, 'front connection error');
    });
  }

  get devErrors(): boolean {
    return this.#opts.devErrors;
  }
  /** Requests open on this connection. */
  get active(): number {
    return this.#requests.size;
  }

  write(b: Buffer): void {
    if (!this.#closed) this.#outbox.push(b);
  }

  afterFlush(cb: () => void): void {
    this.#outbox.afterFlush(cb);
  }

  pause(): void {
    if (this.#pauses++ === 0) this.#socket.pause();
  }

  resume(): void {
    if (this.#pauses > 0 && --this.#pauses === 0) this.#socket.resume();
  }

  /** Ends a request with END_REQUEST; closes the connection if the client did not ask to keep it. */
  endRequest(req: FrontRequest, appStatus: number): void {
    if (this.#requests.get(req.id) !== req) return;
    this.#requests.delete(req.id);
    this.#opts.observe?.(req.record());
    this.write(encodeEndRequest(req.id, appStatus, ProtocolStatus.REQUEST_COMPLETE));
    if (!req.keepConn) this.#closeAfterFlush();
    else if (this.#closing && this.#requests.size === 0) this.#closeAfterFlush();
  }

  /** Stops the connection after its open requests finish (service shutdown). */
  closeWhenIdle(): void {
    this.#closing = true;
    if (this.#requests.size === 0) this.#closeAfterFlush();
  }

  /** Drops the connection now (service stop, after the requests finished). */
  destroy(): void {
    this.#closed = true;
    this.#outbox.discard();
    this.#abortAll();
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    const err = this.#parser.push(chunk, this.#onRecord);
    if (err) this.#protocolError(err.message);
  }

  readonly #onRecord = (r: FcgiRecord): void => {
    const type = r.type;
    if (type === RecordType.STDIN) {
      this.#requests.get(r.requestId)?.exchange?.stdin(r.frame);
      return;
    }
    if (type === RecordType.PARAMS) {
      this.#onParams(r);
      return;
    }
    if (type === RecordType.BEGIN_REQUEST) {
      this.#onBegin(r);
      return;
    }
    if (type === RecordType.ABORT_REQUEST) {
      const req = this.#requests.get(r.requestId);
      if (req?.exchange) req.exchange.abort();
      else if (req) this.endRequest(req, 0);
      return;
    }
    if (type === RecordType.GET_VALUES && r.requestId === NULL_REQUEST_ID) {
      this.#onGetValues(r.content);
      return;
    }
    if (type === RecordType.DATA) return; // FILTER role only; we never accept that role.
    if (type > FCGI_MAXTYPE || r.requestId === NULL_REQUEST_ID) {
      this.write(encodeUnknownType(type));
      return;
    }
    this.#protocolError(`record type ${type} is not one a web server sends (request ${r.requestId})`);
  };

  #onBegin(r: FcgiRecord): void {
    const begin = decodeBeginRequest(r.content);
    if (!begin || r.requestId === NULL_REQUEST_ID) {
      this.#protocolError(`malformed BEGIN_REQUEST (request ${r.requestId}, ${r.content.length} content bytes)`);
      return;
    }
    if (this.#requests.has(r.requestId)) {
      this.#protocolError(`BEGIN_REQUEST for request ${r.requestId}, which is still open`);
      return;
    }
    const keepConn = (begin.flags & FCGI_KEEP_CONN) !== 0;
    if (begin.role !== Role.RESPONDER) {
      this.write(encodeEndRequest(r.requestId, 0, ProtocolStatus.UNKNOWN_ROLE));
      if (!keepConn) this.#closeAfterFlush();
      return;
    }
    if (this.#closing) {
      this.write(encodeEndRequest(r.requestId, 0, ProtocolStatus.OVERLOADED));
      return;
    }
    this.#requests.set(r.requestId, new FrontRequest(this, r.requestId, keepConn));
  }

  #onParams(r: FcgiRecord): void {
    const req = this.#requests.get(r.requestId);
    if (!req || req.paramsDone) return;
    req.paramsBytes += r.content.length;
    if (req.paramsBytes > this.#opts.maxParamsBytes) {
      this.#protocolError(`params of request ${r.requestId} exceed maxParamsBytes (${this.#opts.maxParamsBytes})`, 'CORRAL_PARAMS_TOO_LARGE');
      return;
    }
    const last = r.content.length === 0;
    if (last) req.paramsDone = true;
    else if (this.#opts.observe) req.noteParams(r.content);
    if (!this.#route.needsParams) {
      // One app: the exchange starts with the first PARAMS record, so that it can queue early.
      if (!req.exchange && !this.#begin(req, null)) return;
      req.exchange!.params(r.frame);
      return;
    }
    (req.heldParams ??= []).push(r.frame);
    if (!last) return;
    const held = req.heldParams;
    req.heldParams = null;
    const body = Buffer.concat(held.map((f) => f.subarray(HEADER_LEN, HEADER_LEN + ((f[4]! << 8) | f[5]!))));
    const params = paramsToMap(body);
    if (!params) {
      this.#protocolError(`malformed params in request ${r.requestId}`);
      return;
    }
    if (!this.#begin(req, params)) return;
    for (const f of held) req.exchange!.params(f);
  }

  /** Starts the exchange in the routed pool; answers the request itself when there is none. */
  #begin(req: FrontRequest, params: ReadonlyMap<string, string> | null): boolean {
    const target = this.#route.route(params);
    if (target instanceof CorralError) {
      this.#log.warn({ code: target.code, err: target.message }, 'request refused');
      req.fail(target);
      return false;
    }
    req.exchange = target.begin(req);
    return true;
  }

  #onGetValues(content: Buffer): void {
    const answer = getValuesResult(content, {
      [ManagementVar.MAX_CONNS]: String(this.#opts.maxConns),
      [ManagementVar.MAX_REQS]: String(this.#opts.maxReqs),
      [ManagementVar.MPXS_CONNS]: '1',
    });
    if (!answer.ok) {
      this.#protocolError(`malformed GET_VALUES: ${answer.message}`);
      return;
    }
    this.write(answer.record);
  }

  #protocolError(message: string, code: 'CORRAL_FCGI_PROTOCOL' | 'CORRAL_PARAMS_TOO_LARGE' = 'CORRAL_FCGI_PROTOCOL'): void {
    const s = this.#socket as Duplex & { remoteAddress?: string; remotePort?: number };
    this.#log.warn({ code, err: message, remote: s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : undefined }, 'closing front connection: bad FastCGI input');
    this.#abortAll();
    this.#closed = true;
    this.#outbox.discard();
    this.#socket.destroy();
  }

  #closeAfterFlush(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#outbox.flush();
    this.#socket.end();
  }

  #onEnd(): void {
    // The client will send nothing more. Finish what is open (half-close), then close.
    this.#closing = true;
    if (this.#requests.size === 0) this.#closeAfterFlush();
    else for (const req of this.#requests.values()) if (!req.exchange) this.endRequest(req, 1);
  }

  #onClose(): void {
    this.#closed = true;
    this.#outbox.discard();
    this.#abortAll();
  }

  #abortAll(): void {
    const open = [...this.#requests.values()];
    this.#requests.clear();
    for (const req of open) req.exchange?.abort();
  }
}

