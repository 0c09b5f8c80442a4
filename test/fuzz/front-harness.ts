/**
 * Drives one FcgiConnection in-process over a fake socket with a fake pool, for the fuzz suites:
 * input is delivered as 'data' events (synchronously, so an exception thrown by the connection is
 * caught here instead of escaping), the pool's "worker" parses what the exchange forwards and
 * answers each request once its body ended.
 */
import { Duplex } from 'node:stream';
import { FcgiConnection, type Router } from '../../src/front/fcgi-connection.js';
import { RecordType } from '../../src/fcgi/constants.js';
import { decodeParams } from '../../src/fcgi/params.js';
import { RecordParser, type ParseError } from '../../src/fcgi/parser.js';
import { Exchange, type ExchangeSink } from '../../src/pool/exchange.js';
import type { Upstream } from '../../src/pool/pool.js';
import { silentLogger } from '../../src/log/logger.js';

/** A socket whose writes are collected; the harness emits its input events. */
export class FakeSocket extends Duplex {
  readonly out: Buffer[] = [];
  constructor() {
    super({ allowHalfOpen: true, read() {}, write: (c: Buffer, _e, cb) => (this.out.push(Buffer.from(c)), cb()) });
  }
}

/** What the fake worker saw of one exchange. */
export interface WorkerView {
  readonly ex: Exchange;
  /** PARAMS contents in order (the empty terminator not included). */
  params: Buffer[];
  paramsEnded: boolean;
  /** STDIN came while the params had not ended. */
  stdinBeforeParamsEnd: boolean;
  stdinEnded: boolean;
  /** The worker's stream from the exchange was not FastCGI. */
  streamError: ParseError | null;
  aborted: boolean;
}

/** A pool that assigns every exchange at once to a fake worker which answers when the body ends. */
export class FakePool implements Upstream {
  readonly views: WorkerView[] = [];
  begin(sink: ExchangeSink): Exchange {
    const ex = new Exchange(sink, 0);
    const v: WorkerView = { ex, params: [], paramsEnded: false, stdinBeforeParamsEnd: false, stdinEnded: false, streamError: null, aborted: false };
    this.views.push(v);
    const parser = new RecordParser();
    const port = {
      pid: 1,
      send: (bytes: Buffer) => {
        const err = parser.push(Buffer.from(bytes), (r) => {
          if (r.type === RecordType.PARAMS) {
            if (r.content.length === 0) v.paramsEnded = true;
            else v.params.push(Buffer.from(r.content));
          } else if (r.type === RecordType.STDIN) {
            if (!v.paramsEnded) v.stdinBeforeParamsEnd = true;
            if (r.content.length === 0 && !v.stdinEnded) {
              v.stdinEnded = true;
              queueMicrotask(() => {
                ex.onStdout(Buffer.from('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok'));
                ex.finish(0);
              });
            }
          }
        });
        if (err) v.streamError ??= err;
      },
      grantWindow: () => undefined,
      abort: () => {
        v.aborted = true;
        queueMicrotask(() => ex.finish(0));
      },
    };
    ex.assign(port, 1, 1 << 20, 1 << 20);
    return ex;
  }

  /** Answers every request still open (a worker that answers whatever it got). */
  finishAll(): void {
    for (const v of this.views) if (v.ex.state !== 'done') v.ex.finish(0);
  }
}

export interface Drive {
  socket: FakeSocket;
  pool: FakePool;
  /** Exceptions thrown out of the connection's event handlers. */
  thrown: unknown[];
  conn: FcgiConnection;
}

/** A connection with one app (needsParams false) or a router that decodes params (needsParams true). */
export function connect(needsParams: boolean, maxParamsBytes = 4096): Drive {
  const socket = new FakeSocket();
  const pool = new FakePool();
  const router: Router = { needsParams, route: () => pool };
  const conn = new FcgiConnection(socket, router, { maxParamsBytes, maxConns: 10, maxReqs: 20, devErrors: false }, silentLogger());
  return { socket, pool, thrown: [], conn };
}

/** Emits one event on the fake socket as the stream machinery would, catching what the handlers throw. */
export function emit(d: Drive, event: 'data' | 'end' | 'close', chunk?: Buffer): void {
  if (d.socket.destroyed && event !== 'close') return;
  try {
    if (event === 'data') d.socket.emit('data', chunk);
    else d.socket.emit(event);
  } catch (err) {
    d.thrown.push(err);
  }
}

/** Lets queued microtasks and immediates (the outbox flush) run. */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** True once the connection closed its side (ended or destroyed). */
export function closed(s: FakeSocket): boolean {
  return s.destroyed || s.writableEnded;
}

/** Records the connection wrote back, or the parse error if it wrote bytes that are not FastCGI. */
export function answers(s: FakeSocket): { records: Array<{ type: number; requestId: number; content: Buffer }>; error: ParseError | null } {
  const records: Array<{ type: number; requestId: number; content: Buffer }> = [];
  const error = new RecordParser().push(Buffer.concat(s.out), (r) => records.push({ type: r.type, requestId: r.requestId, content: Buffer.from(r.content) }));
  return { records, error };
}

/** True if `body` is a params body that decodes. */
export function decodes(parts: Buffer[]): boolean {
  return decodeParams(Buffer.concat(parts)).ok;
}
