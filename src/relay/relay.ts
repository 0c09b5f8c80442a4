/**
 * The relay's pump: FastCGI from IIS (on fd 0) to the corral service over one kept-alive
 * connection, and the answers back. A byte pump: records pass as they came (request ids too: IIS
 * sends one request at a time, so its ids are unique on the service connection as well); the only
 * rewriting is FCGI_KEEP_CONN on BEGIN (the service connection lives as long as the relay) and
 * the settings record added before each request's empty PARAMS. GET_VALUES and unknown types are
 * answered here; FCGI_STDERR from the service is dropped (IIS would turn it into a 500 page).
 */
import type net from 'node:net';
import path from 'node:path';
import { FCGI_KEEP_CONN, FCGI_MAXTYPE, HEADER_LEN, NULL_REQUEST_ID, RecordType } from '../fcgi/constants.js';
import { paramsToMap } from '../fcgi/params.js';
import { RecordParser, type FcgiRecord } from '../fcgi/parser.js';
import { decodeBeginRequest, encodeUnknownType } from '../fcgi/records.js';
import type { Logger } from '../log/logger.js';
import { WriteBatch } from './batch.js';
import type { SettingsInjector } from './inject.js';
import { gatewayFailure, getValuesAnswer } from './management.js';
import { Replay } from './replay.js';

/** Something that yields a connection to the service (ServiceLink). */
export interface Connector {
  connect(root: string | null): Promise<net.Socket>;
}

export interface RelayOptions {
  /** The IIS connection (fd 0 under IIS). */
  readonly iis: net.Socket;
  readonly link: Connector;
  readonly injector: SettingsInjector;
  readonly log: Logger;
  readonly platform?: NodeJS.Platform;
  /** Request bytes held while the service connection is being made; IIS is paused beyond this. */
  readonly maxPendingBytes?: number;
}

/** One request between BEGIN and END_REQUEST. */
interface Active {
  readonly keepConn: boolean;
  responseStarted: boolean;
  paramsDone: boolean;
  /** PARAMS contents, kept only while there is no service connection (to find the app root for auto-start). */
  params: Buffer[] | null;
  /** What was sent to the service, until the answer starts; null once resent or answered. */
  replay: Replay | null;
}

/** Forwards between IIS and the service until IIS closes the connection. */
export class Relay {
  readonly #iis: net.Socket;
  readonly #link: Connector;
  readonly #injector: SettingsInjector;
  readonly #log: Logger;
  readonly #path: path.PlatformPath;
  readonly #maxPending: number;
  readonly #iisParser = new RecordParser();
  readonly #toIis: WriteBatch;
  readonly #active = new Map<number, Active>();
  readonly #iisPauses = new Set<'pending' | 'service'>();
  #up: net.Socket | null = null;
  #upParser = new RecordParser();
  #toUp: WriteBatch | null = null;
  #upDrainHooked = false;
  #iisDrainHooked = false;
  #connecting = false;
  #connections = 0;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #lastRoot: string | null = null;
  #served = 0;
  #stderrDropped = 0;
  #warned = new Set<string>();
  #stopped = false;
  #resolveStopped!: (reason: string) => void;
  /** Resolves with the reason once the relay stopped (IIS closed its end, or a fatal protocol error). */
  readonly stopped: Promise<string>;

  constructor(opts: RelayOptions) {
    this.#iis = opts.iis;
    this.#link = opts.link;
    this.#injector = opts.injector;
    this.#log = opts.log;
    this.#path = (opts.platform ?? process.platform) === 'win32' ? path.win32 : path.posix;
    this.#maxPending = opts.maxPendingBytes ?? 1024 * 1024;
    this.#toIis = new WriteBatch(this.#iis);
    this.stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
    const iis = this.#iis;
    iis.on('data', this.#onIisData);
    // IIS closes its end of the pipe to stop us (before it signals or kills): stop at once.
    iis.on('end', () => this.stop('IIS closed the connection'));
    iis.on('close', () => this.stop('IIS closed the connection'));
    iis.on('error', (err: NodeJS.ErrnoException) => this.stop(`IIS connection error: ${err.code ?? err.message}`));
  }

  /** Requests answered so far. */
  get served(): number {
    return this.#served;
  }

  /**
   * Stops forwarding and closes both connections. Idempotent. `graceful` lets what was written to
   * IIS go out first (a client that did not ask for FCGI_KEEP_CONN expects the close after the answer).
   */
  stop(reason: string, graceful = false): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#log.info({ reason, requests: this.#served, open: this.#active.size, stderrDropped: this.#stderrDropped || undefined }, 'relay stopping');
    this.#up?.destroy();
    const iis = this.#iis;
    const done = (): void => this.#resolveStopped(reason);
    if (graceful && !iis.destroyed) {
      this.#toIis.flush();
      iis.once('close', done);
      iis.end(() => {
        iis.destroy();
        done();
      });
    } else {
      iis.destroy();
      done();
    }
  }

  // ---- IIS -> service

  readonly #onIisData = (chunk: Buffer): void => {
    const err = this.#iisParser.push(chunk, this.#onIisRecord);
    if (err) {
      this.#log.error({ code: 'CORRAL_FCGI_PROTOCOL', err: err.message }, 'IIS sent bytes that are not FastCGI');
      this.stop('bad FastCGI input from IIS');
      return;
    }
    this.#flushUp();
    this.#flushIis();
  };

  readonly #onIisRecord = (r: FcgiRecord): void => {
    const id = r.requestId;
    switch (r.type) {
      case RecordType.STDIN:
      case RecordType.DATA:
      case RecordType.ABORT_REQUEST:
        if (this.#active.has(id)) this.#toService(r.frame, id);
        return;
      case RecordType.PARAMS:
        this.#onParams(r);
        return;
      case RecordType.BEGIN_REQUEST:
        this.#onBegin(r);
        return;
      case RecordType.GET_VALUES:
        if (id === NULL_REQUEST_ID) {
          const answer = getValuesAnswer(r.content);
          if (answer) this.#toIis.push(answer);
          else this.#warnOnce('get-values', 'IIS sent a malformed FCGI_GET_VALUES; ignored');
          return;
        }
        break;
    }
    if (r.type > FCGI_MAXTYPE || id === NULL_REQUEST_ID) this.#toIis.push(encodeUnknownType(r.type));
    else this.#warnOnce(`type-${r.type}`, `IIS sent a record of type ${r.type}, which only an application sends; ignored`);
  };

  #onBegin(r: FcgiRecord): void {
    const begin = decodeBeginRequest(r.content);
    if (!begin || r.requestId === NULL_REQUEST_ID || this.#active.has(r.requestId)) {
      this.#log.error({ code: 'CORRAL_FCGI_PROTOCOL', requestId: r.requestId, bytes: r.content.length }, 'IIS sent a malformed or duplicate BEGIN_REQUEST');
      this.stop('bad FastCGI input from IIS');
      return;
    }
    this.#active.set(r.requestId, {
      keepConn: (begin.flags & FCGI_KEEP_CONN) !== 0, responseStarted: false, paramsDone: false,
      params: this.#up ? null : [], replay: new Replay(),
    });
    // The service connection is kept for the relay's life whatever IIS asks: the flag is set in place.
    r.frame[HEADER_LEN + 2] = begin.flags | FCGI_KEEP_CONN;
    this.#toService(r.frame, r.requestId);
  }

  #onParams(r: FcgiRecord): void {
    const a = this.#active.get(r.requestId);
    if (!a || a.paramsDone) return;
    if (r.content.length > 0) {
      a.params?.push(r.content);
      this.#toService(r.frame, r.requestId);
      return;
    }
    a.paramsDone = true;
    if (!this.#injector.empty) this.#toService(this.#injector.recordsFor(r.requestId), r.requestId);
    this.#toService(r.frame, r.requestId);
    if (a.params) {
      this.#lastRoot = this.#rootOf(a.params) ?? this.#lastRoot;
      a.params = null;
    }
    if (!this.#up) this.#connect();
  }

  /** APPL_PHYSICAL_PATH without its trailing separator, or null. */
  #rootOf(params: Buffer[]): string | null {
    const physical = paramsToMap(Buffer.concat(params))?.get('APPL_PHYSICAL_PATH');
    return physical ? this.#path.resolve(physical) : null;
  }

  /** Sends (or holds, while connecting) bytes of request `id`, keeping them for a resend while they are few. */
  #toService(b: Buffer, id: number): void {
    this.#active.get(id)?.replay?.keep(b);
    if (this.#toUp) {
      this.#toUp.push(b);
      return;
    }
    this.#pending.push(b);
    this.#pendingBytes += b.length;
    if (this.#pendingBytes > this.#maxPending) this.#pauseIis('pending');
  }

  #flushUp(): void {
    const up = this.#up;
    if (!up || !this.#toUp || this.#toUp.flush() || this.#upDrainHooked) return;
    this.#upDrainHooked = true;
    this.#pauseIis('service');
    up.once('drain', () => {
      this.#upDrainHooked = false;
      this.#resumeIis('service');
    });
  }

  #pauseIis(why: 'pending' | 'service'): void {
    if (this.#iisPauses.size === 0) this.#iis.pause();
    this.#iisPauses.add(why);
  }

  #resumeIis(why: 'pending' | 'service'): void {
    if (this.#iisPauses.delete(why) && this.#iisPauses.size === 0 && !this.#stopped) this.#iis.resume();
  }

  // ---- the service connection

  #connect(): void {
    if (this.#connecting || this.#up || this.#stopped) return;
    this.#connecting = true;
    this.#link.connect(this.#lastRoot).then(this.#attach, (err: Error) => {
      this.#connecting = false;
      this.#log.error({ code: 'CORRAL_SERVICE_UNREACHABLE', err: err.message }, 'cannot reach the corral service');
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#failActive(`cannot reach the corral service: ${err.message}`);
      this.#resumeIis('pending');
    });
  }

  readonly #attach = (socket: net.Socket): void => {
    this.#connecting = false;
    if (this.#stopped) {
      socket.destroy();
      return;
    }
    this.#connections++;
    this.#log.info({ connection: this.#connections }, this.#connections === 1 ? 'connected to the corral service' : 'reconnected to the corral service');
    this.#up = socket;
    this.#upParser = new RecordParser();
    this.#toUp = new WriteBatch(socket);
    socket.on('data', this.#onUpData);
    socket.on('close', () => this.#onUpClose(socket));
    socket.on('error', (err: NodeJS.ErrnoException) => this.#log.warn({ err: err.code ?? err.message }, 'service connection error'));
    for (const a of this.#active.values()) a.params = null;
    for (const b of this.#pending) this.#toUp.push(b);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#flushUp();
    this.#resumeIis('pending');
  };

  readonly #onUpData = (chunk: Buffer): void => {
    const err = this.#upParser.push(chunk, this.#onUpRecord);
    if (err) {
      this.#log.error({ err: err.message }, 'the service sent bytes that are not FastCGI; dropping the connection');
      this.#up?.destroy();
      return;
    }
    this.#flushIis();
  };

  readonly #onUpRecord = (r: FcgiRecord): void => {
    const a = this.#active.get(r.requestId);
    if (r.type === RecordType.STDOUT) {
      if (!a) return;
      if (r.content.length > 0 && !a.responseStarted) {
        a.responseStarted = true;
        a.replay = null;
      }
      this.#toIis.push(r.frame);
    } else if (r.type === RecordType.END_REQUEST) {
      if (!a) return;
      this.#active.delete(r.requestId);
      this.#toIis.push(r.frame);
      this.#served++;
      if (!a.keepConn) this.stop('IIS did not ask to keep the connection', true);
    } else if (r.type === RecordType.STDERR) {
      this.#stderrDropped += r.content.length;
      this.#warnOnce('stderr', 'dropping FCGI_STDERR from the service (IIS would answer 500); the app\'s stderr is in the service log');
    }
    // Anything else (management answers, types we do not know) has no place on the IIS side.
  };

  #onUpClose(socket: net.Socket): void {
    if (this.#up !== socket) return;
    this.#up = null;
    this.#toUp = null;
    if (this.#upDrainHooked) {
      this.#upDrainHooked = false;
      this.#resumeIis('service');
    }
    if (this.#stopped) return;
    if (this.#resend()) return;
    if (this.#active.size > 0) {
      this.#log.error({ code: 'CORRAL_SERVICE_UNREACHABLE', open: this.#active.size }, 'lost the connection to the corral service in the middle of a request');
      this.#failActive('lost the connection to the corral service in the middle of the request');
    } else this.#log.info('the corral service closed the connection; reconnecting on the next request');
    this.#flushIis();
  }

  /**
   * After the service connection closed with requests open and no answer started: if every one of
   * them can be sent again (see Replay; never twice), queue them for a new connection. This covers
   * the service closing an idle kept-alive connection (a restart) just as IIS's next request went
   * out, which would otherwise be a 502.
   */
  #resend(): boolean {
    if (this.#active.size === 0) return false;
    const resend: Array<readonly Buffer[]> = [];
    for (const a of this.#active.values()) {
      const frames = a.responseStarted ? null : (a.replay?.resendable() ?? null);
      if (frames === null) return false;
      resend.push(frames);
    }
    for (const a of this.#active.values()) a.replay = null;
    for (const b of resend.flat()) {
      this.#pending.push(b);
      this.#pendingBytes += b.length;
    }
    this.#log.warn({ open: this.#active.size }, 'the corral service closed the connection before answering; sending the request again on a new connection');
    this.#connect();
    return true;
  }

  /** Ends every open request with a 502 (or a cut-short response). */
  #failActive(message: string): void {
    for (const [id, a] of this.#active) {
      this.#toIis.push(gatewayFailure(id, a.responseStarted, message));
      this.#served++;
    }
    const closeAfter = [...this.#active.values()].some((a) => !a.keepConn);
    this.#active.clear();
    this.#flushIis();
    if (closeAfter) this.stop('IIS did not ask to keep the connection', true);
  }

  // ---- service -> IIS

  #flushIis(): void {
    if (this.#toIis.flush() || this.#iisDrainHooked) return;
    const up = this.#up;
    if (!up) return;
    this.#iisDrainHooked = true;
    up.pause();
    this.#iis.once('drain', () => {
      this.#iisDrainHooked = false;
      if (!up.destroyed) up.resume();
    });
  }

  #warnOnce(key: string, msg: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log.warn(msg);
  }
}

