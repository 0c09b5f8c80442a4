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
import { CONNECTION_SLABS, readReused, type ReadOutcome, type ReadOwner } from '../pool/reused-reads.js';
import { checkParams, getValuesResult, paramsToMap, scanParams } from '../fcgi/params.js';
import type { HeldBudget } from './held-budget.js';
import { peerOf, type LimitLog } from './limit-log.js';
import { CGI_STATUS_PROBE, cgiStatus, exchangeFacts, type RequestObserver, type RequestRecord } from './access-log.js';
import { headEnd } from './cgi-response.js';
import { decodeBeginRequest, encodeEndRequest, encodeRecord, encodeUnknownType, frameStream, header } from '../fcgi/records.js';
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Exchange, ExchangeSink, WorkerPort } from '../pool/exchange.js';
import type { Upstream } from '../pool/pool.js';
import { Outbox } from '../pool/outbox.js';
import { errorResponse } from './error-page.js';
import { DEVTRACE_TYPE, parseDevTraceJson } from '../devtrace.js';

/** How the worker starts its dev-mode answer to an app exception (corral_worker.py, Exchange.fail). */
const DEVTRACE_HEAD = Buffer.from(`Status: 500 Internal Server Error\r\nContent-Type: ${DEVTRACE_TYPE}\r\n`, 'latin1');
/** Largest devtrace body held to render (the worker keeps it under 1 MiB). */
const MAX_DEVTRACE = 4 << 20;

/** Limits, timeouts and answers for GET_VALUES. Timeouts in ms; 0 turns one off. */
export interface ConnectionOptions {
  maxParamsBytes: number;
  /** FCGI_MAX_CONNS as answered to GET_VALUES (the listener enforces it). */
  maxConns: number;
  /** FCGI_MAX_REQS: requests open at once on this connection; more are answered FCGI_OVERLOADED. */
  maxReqs: number;
  devErrors: boolean;
  /** Told about each finished request (access log, metrics). */
  observe?: RequestObserver | null;
  /** From BEGIN_REQUEST to the end of its params (slowloris guard). */
  paramsTimeoutMs?: number;
  /** Longest silence of the client while a request body is incomplete and the service waits for it. */
  bodyTimeoutMs?: number;
  /** A connection with no open request is closed after this (0 for IIS's stdin pipe, which lives as long as IIS wants). */
  idleTimeoutMs?: number;
  /** Bytes this connection may have held in the service (params not yet routed, bodies not yet sent on). */
  maxConnectionBuffer?: number;
  /** Largest request body (0: no limit). */
  maxBodySize?: number;
  /** The service-wide bound on held bytes, shared by every connection. */
  budget?: HeldBudget | null;
  /** Where limit hits are logged, once per peer and condition. */
  limitLog?: LimitLog | null;
  /**
   * Read the socket into memory the connection reuses (reused-reads.ts) instead of a new buffer
   * per read. For sockets a listener accepted; not IIS's stdin.
   */
  reusedReads?: boolean;
}

/**
 * A worker that has not yet handed everything it was sent to the OS. A port without settled() and
 * whenSettled() copies what it is sent (test doubles): never unsettled.
 */
function unsettled(port: WorkerPort): port is WorkerPort & Required<Pick<WorkerPort, 'settled' | 'whenSettled'>> {
  return port.settled !== undefined && port.whenSettled !== undefined && !port.settled();
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

/** Writes a connection's request id into a record frame received from a worker. */
function setRequestId(frame: Buffer, id: number): void {
  frame[2] = id >>> 8;
  frame[3] = id & 0xff;
}

/** Whether a worker's END_REQUEST frame says REQUEST_COMPLETE with `appStatus`, in the usual 8 bytes (then it is passed on as it is). */
function isPlainEnd(frame: Buffer, appStatus: number): boolean {
  return frame.length >= HEADER_LEN + 8 && frame[4] === 0 && frame[5] === 8 && frame.readUInt32BE(HEADER_LEN) === appStatus >>> 0 && frame[HEADER_LEN + 4] === ProtocolStatus.REQUEST_COMPLETE;
}

/** `Status: ` at the very start of a CGI head, byte for byte as the worker writes it. */
const STATUS_PREFIX = Buffer.from('Status: ', 'latin1');

/** The status of a head that starts `Status: NNN` (what cgiStatus returns for it), else 0. */
function leadingStatus(head: Buffer): number {
  const n = STATUS_PREFIX.length;
  if (head.length < n + 3) return 0;
  for (let i = 0; i < n; i++) if (head[i] !== STATUS_PREFIX[i]) return 0;
  const a = head[n]! - 48;
  const b = head[n + 1]! - 48;
  const c = head[n + 2]! - 48;
  if (a < 0 || a > 9 || b < 0 || b > 9 || c < 0 || c > 9) return 0;
  return a * 100 + b * 10 + c;
}

/** The content of a record frame (header and padding cut off). */
function contentOf(frame: Buffer): Buffer {
  return frame.subarray(HEADER_LEN, HEADER_LEN + ((frame[4]! << 8) | frame[5]!));
}

class FrontRequest implements ExchangeSink {
  readonly id: number;
  readonly keepConn: boolean;
  /** When its BEGIN_REQUEST came (performance.now()). */
  readonly beganAt: number;
  exchange: Exchange | null = null;
  /** PARAMS records held until the empty one ends them; null once the request is routed. */
  params: Buffer[] | null = [];
  paramsBytes = 0;
  paramsDone = false;
  stdinDone = false;
  bodyBytes = 0;
  /** Still counted among the connection's requests whose input is incomplete. */
  incomplete = true;
  /** END_REQUEST was sent: whatever the pool still says about it is dropped. */
  done = false;
  conn: FcgiConnection;
  // For the access log (filled only when someone observes requests).
  seen: Record<string, string> | null = null;
  status = 0;
  /** The CGI head seen so far while it has not ended (for the status); null once it has. */
  #head: Buffer | null = EMPTY;
  bytes = 0;
  error: string | null = null;
  /** Dev: the worker's 500 carries an exception's facts, held to be sent as the dev page at the end. */
  #devtrace: Buffer[] | null = null;
  #devtraceBytes = 0;

  /** The client's BEGIN_REQUEST (RESPONDER, 8 content bytes, checked), until a worker takes it. */
  #begin: Buffer | null;

  constructor(conn: FcgiConnection, id: number, keepConn: boolean, now: number, begin: Buffer) {
    this.conn = conn;
    this.id = id;
    this.keepConn = keepConn;
    this.beganAt = now;
    this.#begin = begin;
  }

  /** What stdout and end are given goes to the connection's Outbox, or is copied (devtrace, status probe). */
  readonly viewsToOutbox = true;

  takeBeginFrame(): Buffer | null {
    const b = this.#begin;
    this.#begin = null;
    return b;
  }

  /** The BEGIN_REQUEST frame (a view of a read) still waits for a worker. */
  get holdsBegin(): boolean {
    return this.#begin !== null;
  }

  assigned(worker: WorkerPort): void {
    this.conn.sentVia(worker);
  }

  stdout(content: Buffer, frame?: Buffer): void {
    if (this.done) return;
    if (this.#devtrace !== null || (this.bytes === 0 && this.conn.devErrors && content.subarray(0, DEVTRACE_HEAD.length).equals(DEVTRACE_HEAD))) {
      this.#holdDevtrace(content);
      return;
    }
    if (frame !== undefined) {
      // The worker's record as it came (a view into its read), with this connection's request id.
      setRequestId(frame, this.id);
      this.conn.write(frame);
    } else {
      // A fresh header and the content as it came from the worker (a view: no copy of the body).
      this.conn.write(header(RecordType.STDOUT, this.id, content.length));
      if (content.length > 0) this.conn.write(content);
    }
    if (this.#head !== null && content.length > 0) this.#probeStatus(content);
    this.bytes += content.length;
    const ex = this.exchange;
    const bytes = content.length; // not the view itself: its memory is read into again
    if (ex && bytes > 0) this.conn.afterFlush(() => ex.credit(bytes));
  }

  end(appStatus: number, frame?: Buffer): void {
    if (this.done) return;
    if (this.#devtrace !== null) return this.#sendDevPage();
    this.conn.endRequest(this, appStatus, frame);
  }

  #holdDevtrace(content: Buffer): void {
    this.#devtrace ??= [];
    if (this.#devtraceBytes + content.length <= MAX_DEVTRACE) this.#devtrace.push(Buffer.from(content)); // a view of a reused read buffer
    this.#devtraceBytes += content.length;
    const ex = this.exchange;
    if (ex && content.length > 0) ex.credit(content.length);
  }

  /** Dev: the app raised; its facts become the dev page (the worker logged the traceback). */
  #sendDevPage(): void {
    const all = Buffer.concat(this.#devtrace ?? []);
    this.#devtrace = null;
    const at = headEnd(all);
    const trace = at && this.#devtraceBytes <= MAX_DEVTRACE ? parseDevTraceJson(all.subarray(at.end + at.sep)) : null;
    const first = trace?.exceptions[0];
    const message = first ? `${first.type}: ${first.message}` : 'the app raised an exception (its facts could not be read; the traceback is in the log)';
    this.error = 'CORRAL_APP_EXCEPTION';
    this.#sendPage(new CorralError('CORRAL_APP_EXCEPTION', message, trace ? { trace, detail: trace.text } : {}));
  }

  /** The status for the access log, from the CGI head, which may come in more than one piece. */
  #probeStatus(content: Buffer): void {
    // The worker starts every head with its Status line: read it in place (what cgiStatus finds
    // first), without making a string of the head or searching it for its end.
    const leading = this.#head!.length === 0 ? leadingStatus(content) : 0;
    if (leading > 0) {
      this.status = leading;
      this.#head = null;
      return;
    }
    const head = this.#head!.length === 0 ? content : Buffer.concat([this.#head!, content.subarray(0, CGI_STATUS_PROBE)]);
    this.status = cgiStatus(head);
    // Only the probed start counts: a large first piece is not searched to its end.
    const ended = headEnd(head.subarray(0, CGI_STATUS_PROBE)) !== null;
    this.#head = ended || head.length >= CGI_STATUS_PROBE ? null : Buffer.from(head);
  }

  /** `logged`: the front already logged why (its own limits, routing); errors from the pool are logged here. */
  fail(error: CorralError, logged = false): void {
    if (this.done) return;
    this.error = error.code;
    // The client gets the code (and in dev the message); the log gets the message and any traceback.
    if (!logged) this.conn.logFailure(this, error);
    if (!this.exchange?.responseStarted) this.#sendPage(error);
    else this.conn.endRequest(this, 1);
  }

  /** corral's own answer (error page), and the end of the request. */
  #sendPage(error: CorralError): void {
    const page = errorResponse(error, this.conn.devErrors);
    this.status = cgiStatus(page);
    this.bytes += page.length;
    for (const part of frameStream(RecordType.STDOUT, this.id, page)) this.conn.write(part);
    this.conn.endRequest(this, 0);
  }

  /** Notes method and path from a PARAMS record (first records only: nginx sends them in one). */
  noteParams(content: Buffer): void {
    const seen = (this.seen ??= {});
    if (seen.REQUEST_METHOD === undefined || seen.REQUEST_URI === undefined) scanParams(content, ACCESS_PARAMS, seen);
  }

  describe(): { method: string; path: string } | null {
    const seen = this.seen;
    return seen ? { method: seen.REQUEST_METHOD ?? '-', path: seen.REQUEST_URI ?? ((seen.SCRIPT_NAME ?? '') + (seen.PATH_INFO ?? '') || '-') } : null;
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
      durationMs: now - this.beganAt,
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

  held(delta: number): void {
    this.conn.hold(delta);
  }
}

/**
 * Serves one front connection until it closes. Everything the client sends is checked here,
 * before any of it reaches a worker: record order per request (BEGIN, PARAMS to the empty one,
 * STDIN to the empty one), params framing, sizes, ids, and how long each phase may take. A
 * client's framing error closes its connection; a request over a limit gets its own answer.
 */
export class FcgiConnection {
  readonly #socket: Duplex;
  readonly #route: Router;
  readonly #opts: ConnectionOptions;
  readonly #log: Logger;
  // STDIN records that span two reads come in parts (views of each read), not assembled: nginx
  // sends a body in records of up to 32 KiB, so nearly every read of an upload ends inside one,
  // and assembling it would copy it into a new buffer (memory V8 then answers with collections).
  readonly #parser = new RecordParser({ splitStreams: true });
  readonly #outbox: Outbox;
  readonly #requests = new Map<number, FrontRequest>();
  readonly #peer: string;
  readonly #paramsTimeout: number;
  readonly #bodyTimeout: number;
  readonly #idleTimeout: number;
  /** The shorter of the params and body timeouts that are on: how soon a new deadline can fall. */
  readonly #phaseTimeout: number;
  readonly #maxBuffer: number;
  readonly #maxBody: number;
  #pauses = 0;
  #closing = false;
  #closed = false;
  /** Requests whose params or body are not complete yet. */
  #incomplete = 0;
  /** Bytes of this connection's requests held in the service. */
  #held = 0;
  /** Why the connection must be dropped once the record being handled is done (set by `hold`). */
  #overflow: { code: 'CORRAL_OVERLOADED' | 'CORRAL_FCGI_PROTOCOL'; message: string } | null = null;
  #inRecord = false;
  #lastInput: number;
  #lastActivity: number;
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  #warnedReqs = false;
  /** Everything held was given back when the connection ended; later reports are ignored. */
  #released = false;
  /** Workers sent views of this connection's reads since it last found nothing referring to them. */
  readonly #ports = new Set<WorkerPort>();
  /** Reads into reused memory (reused-reads.ts), when the socket is read that way. */
  readonly #reads: ReadOwner = {
    parse: (view) => this.#onData(view),
    idle: () => this.#quiescent(),
    idleCoversAll: true,
    // Every read is written on at once (no batching with the turn's other reads), so that its
    // memory can be read into again right away: a request's records go to a worker that waits.
    streamFrom: 0,
    afterRead: (outcome: ReadOutcome) => {
      if (outcome === 'queued') this.#waitForWorkers();
    },
  };

  constructor(socket: Duplex, route: Router, opts: ConnectionOptions, log: Logger) {
    this.#route = route;
    this.#opts = opts;
    this.#log = log;
    this.#peer = peerOf(socket);
    // The socket reading into reused memory takes the handle over; the one given closes when it
    // does, for those who count it (net.Server, the service).
    const reused = opts.reusedReads ? readReused(socket, this.#reads, CONNECTION_SLABS) : null;
    this.#socket = reused ?? socket;
    this.#outbox = new Outbox(this.#socket);
    this.#paramsTimeout = opts.paramsTimeoutMs ?? 0;
    this.#bodyTimeout = opts.bodyTimeoutMs ?? 0;
    this.#idleTimeout = opts.idleTimeoutMs ?? 0;
    this.#phaseTimeout = Math.min(this.#paramsTimeout || Infinity, this.#bodyTimeout || Infinity);
    this.#maxBuffer = opts.maxConnectionBuffer ?? Infinity;
    this.#maxBody = opts.maxBodySize ?? 0;
    this.#lastInput = this.#lastActivity = performance.now();
    if (reused === null) socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('end', () => this.#onEnd());
    this.#socket.on('close', () => this.#onClose());
    this.#socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') this.#log.warn({ err: err.message, peer: this.#peer }, 'front connection error');
    });
    this.#arm(this.#lastActivity);
  }

  get devErrors(): boolean {
    return this.#opts.devErrors;
  }
  /** Requests open on this connection. */
  get active(): number {
    return this.#requests.size;
  }
  /** Bytes of this connection's requests held in the service. */
  get heldBytes(): number {
    return this.#held;
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
    if (this.#pauses > 0 && --this.#pauses === 0) {
      // Time spent paused was the service's wait, not the client's silence.
      this.#lastInput = performance.now();
      this.#socket.resume();
    }
  }

  /** A worker took one of this connection's requests: views of its reads go there. */
  sentVia(worker: WorkerPort): void {
    this.#ports.add(worker);
  }

  /**
   * Nothing refers to any read of this connection any more: no record left incomplete, nothing
   * held for a worker (params, bodies, a BEGIN frame), and everything sent to workers has left
   * for the OS. Then its read memory can be read into again from the start.
   */
  #quiescent(): boolean {
    if (this.#parser.buffered > 0 || this.#held !== 0) return false;
    for (const req of this.#requests.values()) if (req.holdsBegin) return false;
    const ports = this.#ports;
    if (ports.size === 0) return true;
    for (const port of ports) if (unsettled(port)) return false;
    // All of it has left: from now on only the workers of requests still open are watched.
    ports.clear();
    for (const req of this.#requests.values()) {
      const worker = req.exchange?.worker;
      if (worker) ports.add(worker);
    }
    return true;
  }

  /**
   * A large read went to workers whose pipes did not take all of it: read no more until they
   * have, so that a body waits in the web server and the kernel rather than in new memory here.
   */
  #waitForWorkers(): void {
    if (this.#closed) return;
    const slow = [...this.#ports].filter(unsettled);
    if (slow.length === 0) return;
    this.pause();
    let left = slow.length;
    for (const port of slow)
      port.whenSettled(() => {
        if (--left === 0) this.resume();
      });
  }

  /** Held bytes of a request changed; over a bound, the connection is dropped after the current record. */
  hold(delta: number): void {
    if (this.#released || (this.#closed && delta > 0)) return;
    this.#held += delta;
    const budget = this.#opts.budget;
    const within = budget ? budget.add(delta) : true;
    if (delta <= 0 || this.#overflow) return;
    if (this.#held > this.#maxBuffer)
      this.#overflow = { code: 'CORRAL_FCGI_PROTOCOL', message: `the connection holds ${this.#held} bytes of unsent request data, more than maxConnectionBuffer (${this.#maxBuffer})` };
    else if (!within)
      this.#overflow = { code: 'CORRAL_OVERLOADED', message: `all connections together hold ${budget!.held} bytes of unsent request data, more than maxBufferedBytes (${budget!.limit}); closing the connection that crossed it` };
    else return;
    if (!this.#inRecord) queueMicrotask(() => this.#checkOverflow());
  }

  /** Logs why the pool could not serve a request (serve's error page names only the code). */
  logFailure(req: FrontRequest, error: CorralError): void {
    const seen = req.seen ?? {};
    this.#log.info(
      { app: req.exchange?.app ?? null, path: seen.REQUEST_URI ?? null, code: error.code, err: error.message, ...(error.detail ? { detail: error.detail } : {}) },
      'request failed',
    );
  }

  /**
   * Ends a request with END_REQUEST (the worker's own record passed on when it is a plain
   * REQUEST_COMPLETE with this status); closes the connection if the client did not ask to keep it.
   */
  endRequest(req: FrontRequest, appStatus: number, frame?: Buffer): void {
    if (this.#requests.get(req.id) !== req) return;
    this.#requests.delete(req.id);
    this.#settle(req);
    this.#opts.observe?.(req.record());
    if (frame !== undefined && isPlainEnd(frame, appStatus)) {
      setRequestId(frame, req.id);
      this.write(frame);
    } else this.write(encodeEndRequest(req.id, appStatus, ProtocolStatus.REQUEST_COMPLETE));
    if (!req.keepConn) this.#closeAfterFlush();
    else if (this.#closing && this.#requests.size === 0) this.#closeAfterFlush();
    else if (this.#requests.size === 0) {
      this.#lastActivity = performance.now();
      if (this.#timer === null) this.#arm(this.#lastActivity);
    }
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
    if (this.#closed) return;
    const now = performance.now();
    this.#lastInput = this.#lastActivity = now;
    const err = this.#parser.push(chunk, this.#onRecord);
    if (err) this.#drop('CORRAL_FCGI_PROTOCOL', err.message);
    // Input left incomplete may need a sooner deadline than the armed one (a timer that fires
    // early only looks again, so this re-arms at most once per phase timeout).
    else if ((this.#incomplete > 0 || this.#parser.buffered > 0) && this.#timerAt > now + this.#phaseTimeout) this.#arm(now);
  }

  readonly #onRecord = (r: FcgiRecord): void => {
    if (this.#closed) return;
    this.#inRecord = true;
    try {
      this.#dispatchRecord(r);
    } finally {
      this.#inRecord = false;
    }
    if (this.#overflow) this.#checkOverflow();
  };

  #dispatchRecord(r: FcgiRecord): void {
    const type = r.type;
    if (type === RecordType.STDIN) return this.#onStdin(r);
    if (type === RecordType.PARAMS) return this.#onParams(r);
    if (type === RecordType.BEGIN_REQUEST) return this.#onBegin(r);
    if (type === RecordType.ABORT_REQUEST) {
      const req = this.#requests.get(r.requestId);
      if (req?.exchange) req.exchange.abort();
      else if (req) this.endRequest(req, 0);
      return;
    }
    if (type === RecordType.GET_VALUES && r.requestId === NULL_REQUEST_ID) return this.#onGetValues(r.content);
    if (type === RecordType.DATA) return; // FILTER role only; we never accept that role.
    if (type > FCGI_MAXTYPE || r.requestId === NULL_REQUEST_ID) {
      this.write(encodeUnknownType(type));
      return;
    }
    this.#drop('CORRAL_FCGI_PROTOCOL', `record type ${type} is not one a web server sends (request ${r.requestId})`);
  }

  #onBegin(r: FcgiRecord): void {
    const begin = decodeBeginRequest(r.content);
    if (!begin || r.requestId === NULL_REQUEST_ID) {
      this.#drop('CORRAL_FCGI_PROTOCOL', `malformed BEGIN_REQUEST (request ${r.requestId}, ${r.content.length} content bytes)`);
      return;
    }
    if (this.#requests.has(r.requestId)) {
      this.#drop('CORRAL_FCGI_PROTOCOL', `BEGIN_REQUEST for request ${r.requestId}, which is still open`);
      return;
    }
    const keepConn = (begin.flags & FCGI_KEEP_CONN) !== 0;
    if (begin.role !== Role.RESPONDER) {
      this.#refuseBegin(r.requestId, keepConn, ProtocolStatus.UNKNOWN_ROLE);
      return;
    }
    if (this.#closing) {
      this.#refuseBegin(r.requestId, keepConn, ProtocolStatus.OVERLOADED);
      return;
    }
    if (this.#requests.size >= this.#opts.maxReqs) {
      if (!this.#warnedReqs) {
        this.#warnedReqs = true;
        this.#limit('CORRAL_OVERLOADED', { open: this.#requests.size }, `a FastCGI client opened more than maxConnectionRequests (${this.#opts.maxReqs}) requests on one connection; answering FCGI_OVERLOADED`);
      }
      this.#refuseBegin(r.requestId, keepConn, ProtocolStatus.OVERLOADED);
      return;
    }
    this.#requests.set(r.requestId, new FrontRequest(this, r.requestId, keepConn, performance.now(), r.frame));
    this.#incomplete++;
  }

  /** Answers a BEGIN_REQUEST that opens no request; records that follow for its id are ignored. */
  #refuseBegin(id: number, keepConn: boolean, status: number): void {
    this.write(encodeEndRequest(id, 0, status));
    if (!keepConn && this.#requests.size === 0) this.#closeAfterFlush();
  }

  #onParams(r: FcgiRecord): void {
    // Records of a request that is not open (never begun, refused, already answered) are ignored, as the spec says.
    const req = this.#requests.get(r.requestId);
    if (!req) return;
    if (req.paramsDone) {
      this.#drop('CORRAL_FCGI_PROTOCOL', `PARAMS after the end of the params of request ${r.requestId}`);
      return;
    }
    const length = r.content.length;
    if (length === 0) {
      this.#endParams(req, r.frame);
      return;
    }
    if (req.paramsBytes + length > this.#opts.maxParamsBytes) {
      this.#limit('CORRAL_PARAMS_TOO_LARGE', { request: req.id }, `params of a request exceed maxParamsBytes (${this.#opts.maxParamsBytes}); answering 431`);
      req.fail(new CorralError('CORRAL_PARAMS_TOO_LARGE', `the request's params exceed maxParamsBytes (${this.#opts.maxParamsBytes} bytes)`), true);
      return;
    }
    req.paramsBytes += length;
    req.params!.push(r.frame);
    this.hold(r.frame.length);
    if (this.#opts.observe) req.noteParams(r.content);
  }

  /** The params are complete: check them, route the request, hand it to the pool. */
  #endParams(req: FrontRequest, last: Buffer): void {
    req.paramsDone = true;
    const frames = req.params!;
    req.params = null;
    this.#releaseParams(frames);
    const body = frames.length === 1 ? contentOf(frames[0]!) : Buffer.concat(frames.map(contentOf));
    const bad = checkParams(body);
    if (bad !== null) {
      this.#drop('CORRAL_FCGI_PROTOCOL', `malformed params in request ${req.id}: ${bad}`);
      return;
    }
    // Decoded once when routing needs it; otherwise only CONTENT_LENGTH is looked for.
    const params = this.#route.needsParams ? paramsToMap(body) : null;
    if (this.#maxBody > 0) {
      let declared: string | undefined;
      if (params) declared = params.get('CONTENT_LENGTH')?.trim();
      else {
        const found: Record<string, string> = {};
        scanParams(body, ['CONTENT_LENGTH'], found);
        declared = found.CONTENT_LENGTH?.trim();
      }
      if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > this.#maxBody) {
        this.#limit('CORRAL_BODY_TOO_LARGE', { request: req.id, contentLength: Number(declared) }, `request body larger than maxBodySize (${this.#maxBody}); answering 413`);
        req.fail(new CorralError('CORRAL_BODY_TOO_LARGE', `CONTENT_LENGTH ${declared} exceeds maxBodySize (${this.#maxBody} bytes)`), true);
        return;
      }
    }
    const budget = this.#opts.budget;
    if (budget?.exceeded) {
      this.#limit('CORRAL_OVERLOADED', { held: budget.held }, `the service holds more than maxBufferedBytes (${budget.limit}) of request data; answering 503`);
      req.fail(new CorralError('CORRAL_OVERLOADED', `the service holds more than maxBufferedBytes (${budget.limit}) of request data`, { retryAfter: 1 }), true);
      return;
    }
    if (!this.#begin(req, params)) return;
    const ex = req.exchange!;
    for (const f of frames) ex.params(f);
    ex.params(last);
  }

  #releaseParams(frames: readonly Buffer[]): void {
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    if (bytes > 0) this.hold(-bytes);
  }

  #onStdin(r: FcgiRecord): void {
    const req = this.#requests.get(r.requestId);
    if (!req) return;
    if (!req.paramsDone) {
      this.#drop('CORRAL_FCGI_PROTOCOL', `STDIN before the end of the params of request ${r.requestId}`);
      return;
    }
    if (req.stdinDone) {
      this.#drop('CORRAL_FCGI_PROTOCOL', `STDIN after the end of the body of request ${r.requestId}`);
      return;
    }
    const length = r.content.length;
    if (length === 0) {
      req.stdinDone = true;
      this.#complete(req);
    } else {
      req.bodyBytes += length;
      if (this.#maxBody > 0 && req.bodyBytes > this.#maxBody) {
        this.#limit('CORRAL_BODY_TOO_LARGE', { request: req.id }, `request body grew past maxBodySize (${this.#maxBody}); aborting it`);
        const ex = req.exchange;
        req.fail(new CorralError('CORRAL_BODY_TOO_LARGE', `the request body exceeds maxBodySize (${this.#maxBody} bytes)`), true);
        ex?.abort();
        return;
      }
    }
    const ex = req.exchange;
    if (ex === null) return;
    if (r.received) ex.stdin(r.frame);
    else ex.stdinPart(r.content);
  }

  /** Starts the exchange in the routed pool; answers the request itself when there is none. */
  #begin(req: FrontRequest, params: ReadonlyMap<string, string> | null): boolean {
    const target = this.#route.route(params);
    if (target instanceof CorralError) {
      this.#log.warn({ code: target.code, err: target.message }, 'request refused');
      req.fail(target, true);
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
      this.#drop('CORRAL_FCGI_PROTOCOL', `malformed GET_VALUES: ${answer.message}`);
      return;
    }
    this.write(answer.record);
  }

  /** A request's input is complete (or it ended): it no longer counts for the phase timeouts. */
  #complete(req: FrontRequest): void {
    if (!req.incomplete) return;
    req.incomplete = false;
    this.#incomplete--;
  }

  /** A request left the connection: release what it held. */
  #settle(req: FrontRequest): void {
    req.done = true;
    this.#complete(req);
    if (req.params) {
      this.#releaseParams(req.params);
      req.params = null;
    }
  }

  #checkOverflow(): void {
    const o = this.#overflow;
    if (!o || this.#closed) return;
    this.#drop(o.code, o.message);
  }

  #limit(code: string, fields: Record<string, unknown>, msg: string): void {
    const remote = this.#remote();
    if (this.#opts.limitLog) this.#opts.limitLog.warn(this.#peer, code, { ...fields, remote }, msg);
    else this.#log.warn({ code, peer: this.#peer, remote, ...fields }, msg);
  }

  #remote(): string | undefined {
    const s = this.#socket as Duplex & { remoteAddress?: string; remotePort?: number };
    return s.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : undefined;
  }

  /** Closes this connection at once because of what its client did; every other connection goes on. */
  #drop(code: 'CORRAL_FCGI_PROTOCOL' | 'CORRAL_OVERLOADED' | 'CORRAL_PARAMS_TIMEOUT' | 'CORRAL_BODY_TIMEOUT', message: string): void {
    if (this.#closed) return;
    this.#limit(code, { err: message }, code === 'CORRAL_FCGI_PROTOCOL' ? 'closing front connection: bad FastCGI input' : 'closing front connection');
    this.#closed = true;
    this.#outbox.discard();
    this.#abortAll();
    this.#socket.destroy();
  }

  #closeAfterFlush(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#outbox.flush();
    this.#socket.end();
  }

  #onEnd(): void {
    // The client will send nothing more. Requests still waiting for params or body can never
    // complete: abort them (queued ones leave the queue). Complete ones are answered (half-close).
    this.#closing = true;
    for (const req of [...this.#requests.values()]) {
      if (!req.incomplete) continue;
      if (req.exchange) req.exchange.abort();
      else this.endRequest(req, 1);
    }
    if (this.#requests.size === 0) this.#closeAfterFlush();
  }

  #onClose(): void {
    this.#closed = true;
    this.#outbox.discard();
    this.#abortAll();
  }

  #abortAll(): void {
    this.#clearTimer();
    const open = [...this.#requests.values()];
    this.#requests.clear();
    for (const req of open) {
      this.#settle(req);
      req.exchange?.abort();
    }
    // Whatever is still counted (held by exchanges that ignore aborts) is released here, once.
    if (this.#held !== 0) this.#opts.budget?.add(-this.#held);
    this.#held = 0;
    this.#released = true;
  }

  // ---- timeouts: one timer per connection, armed for the nearest deadline

  /** Arms the timer for the nearest of: idle close, a request's params deadline, the body silence limit. */
  #arm(now: number): void {
    let at = Infinity;
    if (this.#requests.size === 0) {
      if (this.#idleTimeout > 0) at = this.#lastActivity + this.#idleTimeout;
      // Bytes of a record that never completes, with no request open, are a stalled connection too.
      if (this.#parser.buffered > 0 && this.#paramsTimeout > 0) at = Math.min(at, this.#lastInput + this.#paramsTimeout);
    } else {
      for (const req of this.#requests.values()) {
        if (!req.incomplete) continue;
        if (!req.paramsDone) {
          if (this.#paramsTimeout > 0) at = Math.min(at, req.beganAt + this.#paramsTimeout);
        } else if (this.#bodyTimeout > 0 && this.#pauses === 0) at = Math.min(at, this.#lastInput + this.#bodyTimeout);
      }
    }
    this.#clearTimer();
    if (at === Infinity || this.#closed) return;
    this.#timerAt = at;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, Math.ceil(at - now)) + 1);
    this.#timer.unref();
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    this.#timerAt = Infinity;
    if (this.#closed) return;
    const now = performance.now();
    if (this.#requests.size === 0) {
      if (this.#parser.buffered > 0 && this.#paramsTimeout > 0 && now - this.#lastInput >= this.#paramsTimeout) {
        this.#drop('CORRAL_PARAMS_TIMEOUT', `a record started ${Math.round((now - this.#lastInput) / 1000)} s ago was never completed (paramsTimeout)`);
        return;
      }
      if (this.#idleTimeout > 0 && now - this.#lastActivity >= this.#idleTimeout) {
        // Normal for kept connections: not a warning.
        this.#log.debug({ peer: this.#peer, remote: this.#remote() }, 'closing idle front connection (connectionIdleTimeout)');
        this.#closed = true;
        this.#outbox.discard();
        this.#socket.destroy();
        return;
      }
    } else {
      for (const req of this.#requests.values()) {
        if (!req.incomplete) continue;
        if (!req.paramsDone) {
          if (this.#paramsTimeout > 0 && now - req.beganAt >= this.#paramsTimeout) {
            this.#drop('CORRAL_PARAMS_TIMEOUT', `params of request ${req.id} not complete ${Math.round(this.#paramsTimeout / 1000)} s after its BEGIN_REQUEST (paramsTimeout)`);
            return;
          }
        } else if (this.#bodyTimeout > 0 && this.#pauses === 0 && now - this.#lastInput >= this.#bodyTimeout) {
          this.#drop('CORRAL_BODY_TIMEOUT', `no body data for request ${req.id} in ${Math.round(this.#bodyTimeout / 1000)} s (bodyTimeout)`);
          return;
        }
      }
    }
    this.#arm(now);
  };

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }
}
