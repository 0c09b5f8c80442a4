/**
 * The FastCGI front as a trust boundary: what a client sends is checked before any of it reaches
 * a pool, a bad client costs only its own connection or request, and every phase is timed and
 * every buffer bounded. Driven over real sockets against fake pools (no Python).
 */
import net from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FcgiConnection, type ConnectionOptions } from '../../src/front/fcgi-connection.js';
import { HeldBudget } from '../../src/front/held-budget.js';
import type { Upstream } from '../../src/pool/pool.js';
import { ProtocolStatus, RecordType } from '../../src/fcgi/constants.js';
import { encodeParams } from '../../src/fcgi/params.js';
import { encodeBeginRequest, encodeRecord } from '../../src/fcgi/records.js';
import { silentLogger } from '../../src/log/logger.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';
import { EchoUpstream, QueueUpstream } from '../helpers/fake-upstream.js';

let server: net.Server | null = null;
const clients: FcgiClient[] = [];
const connections: FcgiConnection[] = [];

async function serve(up: Upstream, opts: Partial<ConnectionOptions> = {}, log = silentLogger()): Promise<{ host: string; port: number }> {
  const o: ConnectionOptions = { maxParamsBytes: 4096, maxConns: 10, maxReqs: 20, devErrors: false, ...opts };
  server = net.createServer({ allowHalfOpen: true }, (s) => connections.push(new FcgiConnection(s, { needsParams: false, route: () => up }, o, log)));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  return { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
}

async function client(addr: { host: string; port: number }): Promise<FcgiClient> {
  const c = await FcgiClient.connect(addr);
  clients.push(c);
  return c;
}

/** BEGIN_REQUEST and the given PARAMS content, without the empty PARAMS record that ends them. */
function halfRequest(id: number, paramsContent: Buffer = encodeParams(Object.entries(cgiParams('GET', '/half')))): Buffer {
  return Buffer.concat([encodeBeginRequest(id, 1, 1), encodeRecord(RecordType.PARAMS, id, paramsContent)]);
}

/** Resolves when `cond` holds, checking after each turn of the event loop (bounded by the test timeout). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  connections.splice(0);
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

describe('FastCGI front: framing is checked before forwarding', () => {
  it('closes a connection whose params lengths run past their end; the pool never sees the request', async () => {
    const up = new EchoUpstream();
    const addr = await serve(up);
    const good = await client(addr);
    for (let i = 0; i < 20; i++) {
      const bad = await client(addr);
      // A 20-byte PARAMS record claiming a 100-byte name.
      bad.write(Buffer.concat([halfRequest(1, Buffer.from([100, 1, 0x41, 0x42])), encodeRecord(RecordType.PARAMS, 1)]));
      await bad.closed;
    }
    expect(up.exchanges).toHaveLength(0);
    expect((await good.request(1, cgiParams('GET', '/still'))).body.toString()).toBe('/still 0');
  });

  it.each([
    ['STDIN before the end of the params', (id: number) => Buffer.concat([halfRequest(id), encodeRecord(RecordType.STDIN, id, Buffer.from('x'))])],
    ['PARAMS after the end of the params', (id: number) => Buffer.concat([halfRequest(id), encodeRecord(RecordType.PARAMS, id), encodeRecord(RecordType.PARAMS, id, Buffer.from([1, 1, 65, 66]))])],
    ['STDIN after the end of the body', (id: number) => Buffer.concat([halfRequest(id), encodeRecord(RecordType.PARAMS, id), encodeRecord(RecordType.STDIN, id), encodeRecord(RecordType.STDIN, id, Buffer.from('x'))])],
    ['a second BEGIN_REQUEST for an open id', (id: number) => Buffer.concat([halfRequest(id), encodeBeginRequest(id, 1, 1)])],
  ])('closes the connection on %s', async (_name, bytes) => {
    const up = new QueueUpstream();
    const addr = await serve(up);
    const bad = await client(addr);
    bad.write(bytes(3));
    await bad.closed;
    expect(up.waiting).toBe(0);
  });

  it('hands a request to the pool only once its params are complete', async () => {
    const up = new QueueUpstream();
    const c = await client(await serve(up));
    c.write(Buffer.concat([halfRequest(1), halfRequest(2)]));
    // Nothing reaches the pool while params are open; completing one hands over exactly that one.
    await until(() => connections[0]?.active === 2);
    expect(up.exchanges).toHaveLength(0);
    c.write(encodeRecord(RecordType.PARAMS, 2));
    await until(() => up.exchanges.length === 1);
  });

  it('answers FCGI_OVERLOADED past maxConnectionRequests and keeps serving the open ones', async () => {
    const c = await client(await serve(new EchoUpstream(), { maxReqs: 2 }));
    const a = c.begin(1, cgiParams('GET', '/a'));
    const b = c.begin(2, cgiParams('GET', '/b'));
    const third = await c.begin(3, cgiParams('GET', '/c'));
    expect(third.protocolStatus).toBe(ProtocolStatus.OVERLOADED);
    c.endBody(1);
    c.endBody(2);
    expect((await a).body.toString()).toBe('/a 0');
    expect((await b).body.toString()).toBe('/b 0');
    expect((await c.request(3, cgiParams('GET', '/again'))).body.toString()).toBe('/again 0');
  });
});

describe('FastCGI front: a client that leaves costs nothing', () => {
  it('ends half-sent requests when the client shuts down its side, and frees queued ones when it closes', async () => {
    const up = new QueueUpstream();
    const addr = await serve(up);
    const c = await client(addr);
    // One complete request, one whose body has not ended (both in the pool's queue), three
    // without the end of their params.
    const end = (id: number): Buffer => encodeRecord(RecordType.PARAMS, id);
    c.write(Buffer.concat([halfRequest(1), end(1), encodeRecord(RecordType.STDIN, 1), halfRequest(2), end(2), halfRequest(3), halfRequest(4), halfRequest(5)]));
    await until(() => up.exchanges.length === 2 && connections[0]!.active === 5);
    c.socket.end(); // half-close: the client may still read the answer to its complete request
    await until(() => connections[0]!.active === 1);
    expect(up.waiting).toBe(1);
    expect(up.exchanges[1]!.aborted).toBe(true);
    // After a FIN nothing tells a departed client from one waiting for its answer until the answer
    // is written; the service stopping the connection frees the last one.
    connections[0]!.destroy();
    expect(up.waiting).toBe(0);
  });

  it('frees every request of a client that closes with half-sent ones, and the pool serves others at once', async () => {
    const up = new QueueUpstream();
    const addr = await serve(up);
    const c = await client(addr);
    c.write(Buffer.concat([halfRequest(1), halfRequest(2), halfRequest(3)]));
    await until(() => connections[0]?.active === 3);
    expect(up.exchanges).toHaveLength(0);
    c.close();
    await until(() => connections[0]!.active === 0);
  });
});

describe('FastCGI front: timeouts', () => {
  it('closes a connection whose params do not complete within paramsTimeout', async () => {
    const up = new QueueUpstream();
    const c = await client(await serve(up, { paramsTimeoutMs: 150 }));
    c.write(halfRequest(1));
    await c.closed;
    expect(up.exchanges).toHaveLength(0);
  });

  it('closes a connection that sends half a record header and nothing more', async () => {
    const c = await client(await serve(new QueueUpstream(), { paramsTimeoutMs: 150 }));
    c.write(Buffer.from([1, 1, 0]));
    await c.closed;
  });

  it('aborts a request whose body stalls for bodyTimeout and closes its connection', async () => {
    const up = new QueueUpstream();
    const c = await client(await serve(up, { bodyTimeoutMs: 150 }));
    c.write(Buffer.concat([halfRequest(1), encodeRecord(RecordType.PARAMS, 1), encodeRecord(RecordType.STDIN, 1, Buffer.from('part'))]));
    await c.closed;
    expect(up.exchanges).toHaveLength(1);
    expect(up.exchanges[0]!.aborted).toBe(true);
  });

  it('closes a connection idle for connectionIdleTimeout, not one that is serving', async () => {
    const addr = await serve(new EchoUpstream(), { idleTimeoutMs: 200 });
    const c = await client(addr);
    expect((await c.request(1, cgiParams('GET', '/one'))).body.toString()).toBe('/one 0');
    await c.closed;
    const silent = await client(addr);
    await silent.closed;
  });
});

describe('FastCGI front: bounded memory', () => {
  it('answers 413 to a CONTENT_LENGTH over maxBodySize before the pool sees it', async () => {
    const up = new EchoUpstream();
    const c = await client(await serve(up, { maxBodySize: 1000 }));
    const r = await c.request(1, cgiParams('POST', '/up', { CONTENT_LENGTH: '1001' }));
    expect(r.status).toBe(413);
    expect(up.exchanges).toHaveLength(0);
    expect((await c.request(1, cgiParams('POST', '/up', { CONTENT_LENGTH: '1000' }), Buffer.alloc(1000))).body.toString()).toBe('/up 1000');
  });

  it('answers 413 and aborts when a body grows past maxBodySize', async () => {
    const up = new QueueUpstream();
    const c = await client(await serve(up, { maxBodySize: 1000 }));
    const r = c.begin(1, cgiParams('POST', '/chunked'));
    await c.sendBody(1, Buffer.alloc(1500));
    expect((await r).status).toBe(413);
    expect(up.exchanges[0]!.aborted).toBe(true);
  });

  it('closes a connection that holds more than maxConnectionBuffer, and gives the budget back', async () => {
    const up = new QueueUpstream();
    const budget = new HeldBudget(1 << 30);
    const addr = await serve(up, { maxConnectionBuffer: 64 * 1024, maxParamsBytes: 1 << 20, budget });
    const bad = await client(addr);
    // Requests whose params never end, each 16 KiB: the fifth crosses 64 KiB.
    const big = encodeParams([['X', 'y'.repeat(16 * 1024)]]);
    for (let id = 1; id <= 8; id++) bad.write(halfRequest(id, big));
    await bad.closed;
    await until(() => budget.held === 0);
  });

  it('refuses new requests with 503 while all connections together hold more than maxBufferedBytes', async () => {
    const up = new QueueUpstream();
    const budget = new HeldBudget(40 * 1024);
    const addr = await serve(up, { maxParamsBytes: 1 << 20, budget });
    const a = await client(addr);
    const big = encodeParams([['X', 'y'.repeat(30 * 1024)]]);
    a.write(halfRequest(1, big));
    await until(() => budget.held > 30 * 1024);
    const b = await client(addr);
    b.write(halfRequest(1, big)); // crosses the budget: this connection is dropped
    await b.closed;
    expect(a.isClosed).toBe(false);
    a.close();
    await until(() => budget.held === 0);
  });
});

describe('FastCGI front: what the client is not told is in the log', () => {
  it('answers a pool failure with the code only and logs the message', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const c = await client(await serve(new EchoUpstream(), {}, log));
    const r = await c.request(1, cgiParams('GET', '/fail'));
    expect(r.status).toBe(502);
    expect(r.body.toString()).toContain('CORRAL_WORKER_LOST');
    expect(r.body.toString()).not.toContain('worker 1 exited');
    expect(lines.find((l) => l.msg === 'request failed')).toMatchObject({ code: 'CORRAL_WORKER_LOST', err: 'worker 1 exited' });
  });
});
