/**
 * The front connection against a fake pool: protocol behaviour (keep-conn, multiplexing,
 * GET_VALUES, ABORT, UNKNOWN_TYPE, UNKNOWN_ROLE, malformed input) over a real socket.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { RequestObserver, RequestRecord } from '../../src/front/access-log.js';
import { FcgiConnection } from '../../src/front/fcgi-connection.js';
import type { Upstream } from '../../src/pool/pool.js';
import { Exchange, type ExchangeSink } from '../../src/pool/exchange.js';
import { FCGI_KEEP_CONN, ProtocolStatus, RecordType, Role } from '../../src/fcgi/constants.js';
import { encodeParams, decodeParams } from '../../src/fcgi/params.js';
import { encodeBeginRequest, encodeEndRequest, encodeRecord } from '../../src/fcgi/records.js';
import { silentLogger } from '../../src/log/logger.js';
import { EchoUpstream, QueueUpstream } from '../helpers/fake-upstream.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';
import { encodeWithPadding } from '../fcgi/util.js';
import { RecordParser } from '../../src/fcgi/parser.js';

let server: net.Server | null = null;
const clients: FcgiClient[] = [];

async function serve(up: Upstream, observe: RequestObserver | null = null, reusedReads = false): Promise<{ host: string; port: number }> {
  server = net.createServer({ allowHalfOpen: true }, (s) => {
    new FcgiConnection(s, { needsParams: false, route: () => up }, { maxParamsBytes: 4096, maxConns: 10, maxReqs: 20, devErrors: false, observe, reusedReads }, silentLogger());
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const a = server.address() as net.AddressInfo;
  return { host: '127.0.0.1', port: a.port };
}

async function client(addr: { host: string; port: number }): Promise<FcgiClient> {
  const c = await FcgiClient.connect(addr);
  clients.push(c);
  return c;
}

/** A body of `n` patterned bytes as STDIN records of `record` bytes, and the empty one. */
function bodyWire(n: number, record: number, mix: number): { body: Buffer; wire: Buffer } {
  const body = Buffer.alloc(n);
  for (let i = 0; i < n; i++) body[i] = (i * mix + (i >> 9)) & 0xff;
  const records: Buffer[] = [];
  for (let off = 0; off < n; off += record) records.push(encodeRecord(RecordType.STDIN, 1, body.subarray(off, off + record)));
  return { body, wire: Buffer.concat([...records, encodeRecord(RecordType.STDIN, 1)]) };
}

/** Writes `wire` in pieces of `piece` bytes, a turn apart (separate reads on the server, mostly). */
async function writeInPieces(c: FcgiClient, wire: Buffer, piece: number): Promise<void> {
  for (let off = 0; off < wire.length; off += piece) {
    c.write(wire.subarray(off, off + piece));
    await new Promise((r) => setImmediate(r));
  }
}

/** Until the port was sent the empty STDIN record (the connection read the whole body), a bounded number of turns. */
async function bodyEnded(sent: Buffer[]): Promise<boolean> {
  const ended = () => sent.length > 0 && sent.at(-1)!.length === 8 && sent.at(-1)![1] === RecordType.STDIN;
  for (let i = 0; i < 10_000 && !ended(); i++) await new Promise((r) => setImmediate(r));
  return ended();
}

/** What a worker port was sent, parsed: record types in order, the params and the body. */
function received(sent: Buffer[]): { types: number[]; params: Buffer; body: Buffer } {
  const types: number[] = [];
  const params: Buffer[] = [];
  const body: Buffer[] = [];
  new RecordParser().push(Buffer.concat(sent), (r) => {
    types.push(r.type);
    if (r.type === RecordType.PARAMS) params.push(Buffer.from(r.content));
    if (r.type === RecordType.STDIN) body.push(Buffer.from(r.content));
  });
  return { types, params: Buffer.concat(params), body: Buffer.concat(body) };
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

describe('FcgiConnection', () => {
  it('serves many sequential requests on one keep-conn connection', async () => {
    const c = await client(await serve(new EchoUpstream()));
    for (let i = 1; i <= 20; i++) {
      const r = await c.request(1, cgiParams('GET', `/n${i}`));
      expect(r.body.toString()).toBe(`/n${i} 0`);
      expect(r.protocolStatus).toBe(ProtocolStatus.REQUEST_COMPLETE);
    }
    expect(c.isClosed).toBe(false);
  });

  it('describes a request in flight (method and path) for the status page, once someone observes requests', async () => {
    const sinks: ExchangeSink[] = [];
    const hold: Upstream = { begin: (sink) => (sinks.push(sink), new Exchange(sink, 0)) };
    const c = await client(await serve(hold, () => {}));
    const answer = c.request(1, cgiParams('POST', '/upload?token=x'));
    while (sinks.length === 0) await new Promise((r) => setImmediate(r)); // the request reaches the pool
    expect(sinks[0]!.describe?.()).toEqual({ method: 'POST', path: '/upload?token=x' });
    sinks[0]!.end(0);
    expect((await answer).protocolStatus).toBe(ProtocolStatus.REQUEST_COMPLETE);
  });

  it('logs the status of a CGI head that came in pieces', async () => {
    const seen: RequestRecord[] = [];
    const c = await client(await serve(new EchoUpstream(), (r) => seen.push(r)));
    expect((await c.request(1, cgiParams('GET', '/missing'))).body.toString()).toBe('/missing 0');
    expect((await c.request(1, cgiParams('GET', '/found'))).body.toString()).toBe('/found 0');
    expect(seen.map((r) => [r.path, r.status])).toEqual([['/missing', 404], ['/found', 200]]);
  });

  it("passes a worker's records on as they came, with the connection's request id (padding and all)", async () => {
    const seen: RequestRecord[] = [];
    // One read from a worker whose request id is 7: a padded STDOUT, the empty STDOUT, END_REQUEST.
    const answer = (head: string): Buffer[] => {
      const read = Buffer.concat([
        encodeWithPadding({ type: RecordType.STDOUT, requestId: 7, content: Buffer.from(`${head}\r\n\r\nhello`), padding: 5 }),
        encodeRecord(RecordType.STDOUT, 7),
        encodeEndRequest(7, 0, ProtocolStatus.REQUEST_COMPLETE),
      ]);
      const first = 8 + ((read[4]! << 8) | read[5]!) + read[6]!;
      return [read.subarray(0, first), read.subarray(first, first + 8), read.subarray(first + 8)];
    };
    const heads = ['Status: 404 Not Found\r\nContent-Type: text/plain', 'Content-Type: text/plain\r\nStatus: 201 Created', 'Content-Type: text/plain'];
    const up: Upstream = {
      begin: (sink) => {
        const ex = new Exchange(sink, 0);
        const [stdout, eos, end] = answer(heads[seen.length]!);
        queueMicrotask(() => {
          ex.assign({ pid: 1, send: () => undefined, grantWindow: () => undefined, abort: () => undefined }, 7, 1 << 20, 1 << 20);
          ex.onStdout(stdout!.subarray(8, stdout!.length - 5), stdout);
          ex.onStdout(eos!.subarray(8), eos);
          ex.finish(0, end);
        });
        return ex;
      },
    };
    const c = await client(await serve(up, (r) => seen.push(r)));
    for (const [i, status] of [404, 201, 200].entries()) {
      const r = await c.request(3 + i, cgiParams('GET', '/p'));
      expect([r.status, r.body.toString(), r.protocolStatus, r.appStatus]).toEqual([status, 'hello', ProtocolStatus.REQUEST_COMPLETE, 0]);
    }
    expect(seen.map((r) => r.status)).toEqual([404, 201, 200]);
    const got = c.records.filter((r) => r.type === RecordType.STDOUT || r.type === RecordType.END_REQUEST);
    expect(got.map((r) => r.requestId)).toEqual([3, 3, 3, 4, 4, 4, 5, 5, 5]);
    expect(got[0]!.frame[6]).toBe(5); // the worker's padding went through
  });

  it("hands the pool the client's BEGIN_REQUEST as received, once", async () => {
    const taken: Array<Buffer | null> = [];
    const up: Upstream = {
      begin: (sink) => {
        const ex = new Exchange(sink, 0);
        taken.push(sink.takeBeginFrame?.() ?? null, sink.takeBeginFrame?.() ?? null);
        queueMicrotask(() => {
          ex.onStdout(Buffer.from('Status: 200 OK\r\n\r\n'));
          ex.finish(0);
        });
        queueMicrotask(() => ex.assign({ pid: 1, send: () => undefined, grantWindow: () => undefined, abort: () => undefined }, 1, 1 << 20, 1 << 20));
        return ex;
      },
    };
    const c = await client(await serve(up));
    expect((await c.request(5, cgiParams('GET', '/'))).protocolStatus).toBe(ProtocolStatus.REQUEST_COMPLETE);
    // What FcgiClient sent (a keep-conn RESPONDER request 5), byte for byte.
    expect(taken[0]?.equals(encodeBeginRequest(5, Role.RESPONDER, FCGI_KEEP_CONN))).toBe(true);
    expect(taken[1]).toBeNull();
  });

  it("re-encodes a worker's END_REQUEST that is not a plain REQUEST_COMPLETE for the status it ends with", async () => {
    const up: Upstream = {
      begin: (sink) => {
        const ex = new Exchange(sink, 0);
        queueMicrotask(() => {
          ex.assign({ pid: 1, send: () => undefined, grantWindow: () => undefined, abort: () => undefined }, 9, 1 << 20, 1 << 20);
          ex.onStdout(Buffer.from('Status: 200 OK\r\n\r\nx'));
          ex.finish(1, encodeEndRequest(9, 1, ProtocolStatus.OVERLOADED));
        });
        return ex;
      },
    };
    const c = await client(await serve(up));
    const r = await c.request(2, cgiParams('GET', '/'));
    expect([r.body.toString(), r.appStatus, r.protocolStatus]).toEqual(['x', 1, ProtocolStatus.REQUEST_COMPLETE]);
  });

  it('takes a body whose records (with padding) arrive cut into small odd pieces', async () => {
    const c = await client(await serve(new EchoUpstream()));
    const done = c.begin(1, cgiParams('POST', '/cut'));
    const records = [60000, 1, 65535, 65535, 8930].map((n, i) => encodeWithPadding({ type: RecordType.STDIN, requestId: 1, content: Buffer.alloc(n, i + 1), padding: (i * 3) % 8 }));
    const wire = Buffer.concat([...records, encodeRecord(RecordType.STDIN, 1)]);
    for (let off = 0; off < wire.length; off += 7777) {
      c.write(wire.subarray(off, off + 7777));
      await new Promise((r) => setImmediate(r)); // separate reads on the server, most of the time
    }
    expect((await done).body.toString()).toBe('/cut 200001');
  });

  it('passes on, byte for byte, a body whose records each span two reads', async () => {
    const c = await client(await serve(new EchoUpstream()));
    const done = c.begin(1, cgiParams('POST', '/sum'));
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 9)) & 0xff;
    const records: Buffer[] = [];
    for (let off = 0, i = 0; off < body.length; i++) {
      const n = Math.min(32768 - (i % 5) * 1000, body.length - off);
      records.push(encodeWithPadding({ type: RecordType.STDIN, requestId: 1, content: body.subarray(off, off + n), padding: i % 8 }));
      off += n;
    }
    const wire = Buffer.concat([...records, encodeRecord(RecordType.STDIN, 1)]);
    for (let off = 0; off < wire.length; off += 20_000) {
      c.write(wire.subarray(off, off + 20_000)); // every record starts in one read and ends in the next
      await new Promise((r) => setImmediate(r));
    }
    expect((await done).body.toString()).toBe(`/sum 300000 ${createHash('sha1').update(body).digest('hex')}`);
  });

  it('reading into reused memory, never reads over what a worker has not taken yet', async () => {
    // A worker port that keeps the views it is sent (no copy) and says so until released: the
    // connection must not read into that memory again before then.
    const sent: Buffer[] = [];
    let released = false;
    const waiters: Array<() => void> = [];
    let exchange: Exchange | null = null;
    const up: Upstream = {
      begin(sink: ExchangeSink): Exchange {
        const ex = (exchange = new Exchange(sink, 0));
        const port = {
          pid: 1,
          send: (b: Buffer) => void sent.push(b),
          grantWindow: () => undefined,
          abort: () => undefined,
          settled: () => released,
          whenSettled: (cb: () => void) => void (released ? cb() : waiters.push(cb)),
        };
        queueMicrotask(() => {
          // As a worker takes a request: the client's BEGIN frame first, then the exchange.
          const begin = sink.takeBeginFrame?.() ?? null;
          if (begin !== null) port.send(begin);
          ex.assign(port, 1, 1 << 30, 1 << 20);
        });
        return ex;
      },
    };
    const c = await client(await serve(up, null, true));
    const done = c.begin(1, cgiParams('POST', '/held'));
    const { body, wire } = bodyWire(700_000, 32768, 13);
    await writeInPieces(c, wire, 50_000);
    // Until the empty STDIN record has reached the port (the connection read everything).
    expect(await bodyEnded(sent)).toBe(true);
    const all = received(sent).body;
    expect(all.length).toBe(body.length);
    expect(createHash('sha1').update(all).digest('hex')).toBe(createHash('sha1').update(body).digest('hex'));
    released = true;
    waiters.splice(0).forEach((cb) => cb());
    exchange!.onStdout(Buffer.from('Status: 200 OK\r\n\r\nok'));
    exchange!.finish(0);
    expect((await done).body.toString()).toBe('ok');
  });

  it('reading into reused memory, never reads over a request that waits for a worker', async () => {
    const sent: Buffer[] = [];
    const port = { pid: 1, send: (b: Buffer) => void sent.push(b), grantWindow: () => undefined, abort: () => undefined, settled: () => true, whenSettled: (cb: () => void) => cb() };
    const queue = new QueueUpstream();
    const c = await client(await serve(queue, null, true));
    const done = c.begin(1, cgiParams('POST', '/queued'));
    // A body under the bound at which a waiting request stops being read, in several reads:
    // records of 2,000 bytes in writes of 3,000, some whole in a read (held as views), some cut.
    const { body, wire } = bodyWire(20_000, 2000, 29);
    await writeInPieces(c, wire, 3000);
    for (let i = 0; i < 10_000 && queue.exchanges.length === 0; i++) await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r)); // let it read all there is
    const ex = queue.exchanges[0]!;
    const begin = ex.sink.takeBeginFrame?.() ?? null;
    if (begin !== null) port.send(Buffer.from(begin));
    ex.assign(port, 1, 1 << 30, 1 << 20);
    expect(await bodyEnded(sent)).toBe(true); // what was not read while it waited comes now
    const got = received(sent);
    expect(got.types[0]).toBe(RecordType.BEGIN_REQUEST);
    expect(got.params.equals(encodeParams(Object.entries(cgiParams('POST', '/queued'))))).toBe(true);
    expect(got.body.equals(body)).toBe(true);
    ex.onStdout(Buffer.from('Status: 200 OK\r\n\r\nok'));
    ex.finish(0);
    expect((await done).body.toString()).toBe('ok');
  });

  it('closes the connection after a request without FCGI_KEEP_CONN', async () => {
    const c = await client(await serve(new EchoUpstream()));
    const r = await c.request(1, cgiParams('GET', '/once'), undefined, { keepConn: false });
    expect(r.body.toString()).toBe('/once 0');
    await c.closed;
  });

  it('keeps interleaved requests apart', async () => {
    const c = await client(await serve(new EchoUpstream()));
    const a = c.begin(1, cgiParams('POST', '/a'));
    const b = c.begin(2, cgiParams('POST', '/b'));
    await c.sendBody(2, Buffer.alloc(5));
    await c.sendBody(1, Buffer.alloc(3));
    await c.sendBody(2, Buffer.alloc(5));
    c.endBody(2);
    c.endBody(1);
    expect((await a).body.toString()).toBe('/a 3');
    expect((await b).body.toString()).toBe('/b 10');
  });

  it('answers GET_VALUES with the values it knows', async () => {
    const c = await client(await serve(new EchoUpstream()));
    c.write(encodeRecord(RecordType.GET_VALUES, 0, encodeParams([['FCGI_MAX_CONNS', ''], ['FCGI_MPXS_CONNS', ''], ['FCGI_MAX_REQS', ''], ['NOPE', '']])));
    const rec = await waitRecord(c, RecordType.GET_VALUES_RESULT);
    const d = decodeParams(rec.content);
    if (!d.ok) throw new Error(d.message);
    expect(Object.fromEntries(d.pairs.map(([n, v]) => [n.toString(), v.toString()]))).toEqual({ FCGI_MAX_CONNS: '10', FCGI_MPXS_CONNS: '1', FCGI_MAX_REQS: '20' });
  });

  it('answers an unknown record type with UNKNOWN_TYPE and keeps serving', async () => {
    const c = await client(await serve(new EchoUpstream()));
    c.write(encodeRecord(0x20, 0, Buffer.from('x')));
    const rec = await waitRecord(c, RecordType.UNKNOWN_TYPE);
    expect(rec.content[0]).toBe(0x20);
    expect((await c.request(1, cgiParams('GET', '/after'))).body.toString()).toBe('/after 0');
  });

  it('answers a role other than RESPONDER with UNKNOWN_ROLE', async () => {
    const c = await client(await serve(new EchoUpstream()));
    const r = c.begin(1, cgiParams('GET', '/x'), { role: Role.AUTHORIZER });
    expect((await r).protocolStatus).toBe(ProtocolStatus.UNKNOWN_ROLE);
    expect((await c.request(2, cgiParams('GET', '/ok'))).body.toString()).toBe('/ok 0');
  });

  it('ends an aborted request with END_REQUEST', async () => {
    const up = new EchoUpstream();
    up.hold = true;
    const c = await client(await serve(up));
    const r = c.begin(1, cgiParams('GET', '/slow'));
    c.endBody(1);
    c.abort(1);
    const res = await r;
    expect(res.protocolStatus).toBe(ProtocolStatus.REQUEST_COMPLETE);
  });

  it('sends an error page when the pool fails the request', async () => {
    const c = await client(await serve(new EchoUpstream()));
    const r = await c.request(1, cgiParams('GET', '/fail'));
    expect(r.status).toBe(502);
    expect(r.body.toString()).toContain('CORRAL_WORKER_LOST');
  });

  it.each([
    ['a bad version byte', Buffer.from([9, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])],
    ['a BEGIN_REQUEST of the wrong size', encodeRecord(RecordType.BEGIN_REQUEST, 1, Buffer.alloc(3))],
    ['STDOUT sent by a client', encodeRecord(RecordType.STDOUT, 1, Buffer.from('x'))],
  ])('closes the connection on %s, and other connections keep working', async (_n, bytes) => {
    const addr = await serve(new EchoUpstream());
    const good = await client(addr);
    const bad = await client(addr);
    bad.write(bytes);
    await bad.closed;
    expect((await good.request(1, cgiParams('GET', '/still'))).body.toString()).toBe('/still 0');
  });

  it('answers 431 to a request whose params exceed maxParamsBytes, and serves the next one on the same connection', async () => {
    const c = await client(await serve(new EchoUpstream()));
    const r = await c.request(1, { ...cgiParams('GET', '/big'), BIG: 'x'.repeat(5000) });
    expect(r.status).toBe(431);
    expect(r.body.toString()).toContain('CORRAL_PARAMS_TOO_LARGE');
    expect((await c.request(1, cgiParams('GET', '/next'))).body.toString()).toBe('/next 0');
  });
});

function waitRecord(c: FcgiClient, type: number) {
  return c.waitForRecord((r) => r.type === type);
}
