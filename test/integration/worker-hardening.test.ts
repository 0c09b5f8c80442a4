// The Python worker under bad input and a misbehaving app (issue 10): a malformed request costs
// only itself (stdio and standalone --listen mode), write() after the end raises, no byte beyond
// Content-Length, X-Original-URL only when trusted, and workers see only the environment passed.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';
import { begin, pairs, record, request, T } from '../helpers/rawfcgi.js';
import { Peer } from '../helpers/worker-peer.js';

const WORKER = path.join(ROOT, 'src/python/corral_worker.py');
const PYTHON = process.env.CORRAL_TEST_PYTHON ?? 'python3';

const started: ChildProcess[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const p of started.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await stopAll();
});

function params(uri: string, extra: Record<string, string> = {}): Record<string, string> {
  const [pathInfo = '/', query = ''] = uri.split('?');
  return {
    REQUEST_METHOD: 'GET', SCRIPT_NAME: '', PATH_INFO: pathInfo, QUERY_STRING: query, REQUEST_URI: uri,
    SERVER_NAME: 'localhost', SERVER_PORT: '80', SERVER_PROTOCOL: 'HTTP/1.1', ...extra,
  };
}

function spawnWorker(args: string[], app = 'misbehaving_app:application'): { peer: Peer; proc: ChildProcess; exited: Promise<number | null> } {
  const proc = spawn(PYTHON, [WORKER, '--root', FIXTURES, '--app', app, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  started.push(proc);
  const peer = new Peer(proc.stdin!, proc.stdout!);
  peer.autoCredit = true;
  proc.stderr!.setEncoding('utf8').on('data', (t: string) => { peer.stderr += t; peer.notify(); });
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => { peer.closed = true; peer.notify(); resolve(code); }));
  return { peer, proc, exited };
}

/** A worker in standalone --listen mode on a free port (`out`: its pipes, for stderr), and a connection to it. */
async function standalone(args: string[]): Promise<{ peer: Peer; out: Peer; port: number }> {
  const { peer: out } = spawnWorker(['--listen', '127.0.0.1:0', ...args]);
  const port = Number(await out.until(() => /listening on 127\.0\.0\.1:(\d+)/.exec(out.stderr)?.[1], 'the listening line'));
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const peer = new Peer(socket, socket);
  socket.on('close', () => { peer.closed = true; peer.notify(); });
  return { peer, out, port };
}

/** PARAMS whose second pair says its value is 100 bytes long, in a 20-byte record. */
function overrunParams(id: number): Buffer {
  return Buffer.concat([record(T.PARAMS, id, Buffer.concat([pairs({ REQUEST_METHOD: 'GET' }), Buffer.from([4, 100]), Buffer.from('PATHxx')])), record(T.PARAMS, id)]);
}

/**
 * Sends each kind of malformed request and checks that each is answered alone and the peer serves
 * on. `multiplexed`: the peer takes several requests at once (the service's pipe), so a request
 * stays open meanwhile; a socket of the worker's own loop serves one request at a time.
 */
async function malformedRequestsCostOnlyThemselves(peer: Peer, multiplexed = true): Promise<void> {
  // A request that stays open meanwhile (its body still to come): it must survive the others.
  if (multiplexed) peer.send(Buffer.concat([begin(9), record(T.PARAMS, 9, pairs(params('/upload', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: '5' }))), record(T.PARAMS, 9)]));

  peer.send(Buffer.concat([begin(1), overrunParams(1)]));
  const bad = await peer.response(1);
  expect(bad.status).toBe(400);
  expect(bad.end.content[4]).toBe(0); // REQUEST_COMPLETE

  peer.send(record(T.BEGIN, 2, Buffer.from([0, 1, 0]))); // 3 content bytes, not 8
  const end2 = await peer.until(() => peer.records.find((r) => r.type === T.END && r.id === 2), 'END of the bad BEGIN');
  expect(end2.content[4]).toBe(3); // FCGI_UNKNOWN_ROLE: it could not be understood

  peer.send(Buffer.concat([begin(3), record(T.PARAMS, 3, pairs(params('/pid')).subarray(0, 10)), record(T.STDIN, 3, Buffer.from('early'))]));
  expect((await peer.response(3)).status).toBe(400);

  // Records for ids never begun, and for the id just rejected: ignored.
  peer.send(Buffer.concat([record(T.STDIN, 77, Buffer.from('x')), record(T.PARAMS, 78, Buffer.from([1])), record(T.ABORT, 79), record(T.STDIN, 3, Buffer.from('late'))]));
  await peer.ping('after the bad requests');

  // The open request goes on, and a new one on the same channel is served.
  const from = peer.records.length;
  if (multiplexed) {
    peer.send(Buffer.concat([record(T.STDIN, 9, Buffer.from('hello')), record(T.STDIN, 9)]));
    expect((await peer.response(9, from)).body.toString()).toBe('got 5');
  }
  peer.send(request(4, params('/pid')));
  const ok = await peer.response(4, from);
  expect(ok.status).toBe(200);
}

describe('a malformed request costs only itself', () => {
  it.each([['--threads', '1'], ['--threads', '4']])('over stdio (%s %s): 400 or END_REQUEST for it, the worker serves on', async (...args) => {
    const w = spawnWorker(args);
    await w.peer.until(() => w.peer.records.find((r) => r.type === T.READY), 'READY');
    await malformedRequestsCostOnlyThemselves(w.peer);
    expect(w.proc.exitCode).toBeNull();
    expect(w.peer.stderr).toMatch(/bad request id 1 from the service: malformed PARAMS/);
    expect(w.peer.stderr).not.toContain('malformed record stream');
  });

  it('in standalone --listen mode: the connection and its other requests go on', async () => {
    const { peer, port } = await standalone(['--threads', '2']);
    // Standalone mode answers GET_VALUES, not PING: use a request as the barrier instead.
    peer.ping = async (): Promise<void> => {
      const from = peer.records.length;
      peer.send(request(50, params('/pid')));
      expect((await peer.response(50, from)).status).toBe(200);
    };
    await malformedRequestsCostOnlyThemselves(peer, false);
    // Too many params for one request (more than --max-params): 431 for it, then the connection
    // is closed (the rest of an oversized request is not read); the worker serves on.
    const big = Buffer.alloc(60_000, 0x41);
    const parts = [begin(6)];
    for (let i = 0; i < 20; i++) parts.push(record(T.PARAMS, 6, Buffer.concat([Buffer.from([1, 0x80, 0, 0xea, 0x60]), Buffer.from('X'), big])));
    peer.send(Buffer.concat(parts));
    expect((await peer.response(6)).status).toBe(431);
    await peer.until(() => (peer.closed ? true : undefined), 'the connection to close');
    const again = net.connect(port, '127.0.0.1');
    sockets.push(again);
    const next = new Peer(again, again);
    next.send(request(7, params('/pid')));
    expect((await next.response(7)).status).toBe(200);
  });

  it('in standalone --listen mode: one request at a time per connection; BEGINs for other ids meanwhile are refused (FCGI_CANT_MPX_CONN)', async () => {
    const { peer } = await standalone([]);
    const begins: Buffer[] = [];
    for (let id = 1; id <= 5; id++) begins.push(begin(id));
    peer.send(Buffer.concat(begins)); // request 1 never sends its params
    const refused = await peer.until(() => {
      const ends = peer.records.filter((r) => r.type === T.END);
      return ends.length === 4 ? ends : undefined;
    }, 'END of requests 2 to 5');
    expect(refused.map((r) => [r.id, r.content[4]])).toEqual([[2, 1], [3, 1], [4, 1], [5, 1]]); // FCGI_CANT_MPX_CONN
    peer.send(record(T.ABORT, 1)); // it ends: the connection takes a new request
    await peer.until(() => peer.records.find((r) => r.type === T.END && r.id === 1), 'END of request 1');
    const from = peer.records.length;
    peer.send(request(2000, params('/pid')));
    expect((await peer.response(2000, from)).status).toBe(200);
  });

  it('still exits 3 when its own pipe is corrupt (a bad version byte)', async () => {
    const w = spawnWorker([]);
    await w.peer.until(() => w.peer.records.find((r) => r.type === T.READY), 'READY');
    w.peer.send(Buffer.from([9, 1, 0, 1, 0, 8, 0, 0]));
    expect(await w.exited).toBe(3);
    expect(w.peer.stderr).toContain('bad FastCGI version byte 9');
  });
});

async function serve(extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ c: CorralProcess; client: FcgiClient }> {
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'misbehaving_app:application', '--listen', '127.0.0.1:0', ...extra], { env });
  const addr = await c.fcgiAddress();
  await c.waitForMsg('app ready');
  const client = await FcgiClient.connect(addr);
  return { c, client };
}

const stderrLine = (c: CorralProcess, re: RegExp): Promise<unknown> => c.waitForLog((l) => l.msg === 'worker stderr' && re.test(String(l.line)));

describe('malformed requests through the service', () => {
  it('20 requests with PARAMS running past their end lose no worker', async () => {
    const { c, client } = await serve(['--workers', '1', '--threads', '2']);
    const pid = (await client.request(1, cgiParams('GET', '/pid'))).body.toString();
    const addr = await c.fcgiAddress();
    for (let i = 0; i < 20; i++) {
      // Whether the front answers 400 itself or passes the request on (then the worker answers
      // 400), the connection ends or answers; no worker may exit.
      const socket = net.connect(addr.port, addr.host);
      sockets.push(socket);
      await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const peer = new Peer(socket, socket);
      socket.on('close', () => { peer.closed = true; peer.notify(); });
      socket.on('error', () => {});
      peer.send(Buffer.concat([begin(1), overrunParams(1), record(T.STDIN, 1)]));
      await peer.until(() => (peer.records.some((r) => r.type === T.END) ? true : undefined), 'an answer').catch(() => undefined);
      socket.destroy();
    }
    const after = await client.request(1, cgiParams('GET', '/pid'));
    expect(after.status).toBe(200);
    expect(after.body.toString()).toBe(pid);
    expect(c.logs.filter((l) => l.msg === 'worker ready')).toHaveLength(1);
    expect(c.logs.some((l) => 'code' in l && typeof l.msg === 'string' && l.msg.startsWith('worker'))).toBe(false);
  }, 60_000);
});

describe('write() after the response ended (through the service)', () => {
  it.each([['1'], ['3']])('raises in a later request and from a thread, small or large, and the worker serves on (--threads %s)', async (threads) => {
    // The proxy path on purpose: two requests at once on one FastCGI connection (request ids 1 and 2)
    // is the service's multiplexing; a direct worker serves one request per connection (FCGI_MPXS_CONNS 0).
    const { client } = await serve(['--workers', '1', '--threads', threads, '--data-plane', 'proxy']);
    expect((await client.request(1, cgiParams('GET', '/keep'))).body.toString()).toBe('kept');
    expect((await client.request(1, cgiParams('GET', '/late-write?n=10'))).body.toString()).toBe('raised ResponseEnded');
    expect((await client.request(1, cgiParams('GET', '/late-write?n=3000000'))).body.toString()).toBe('raised ResponseEnded');
    expect((await client.request(1, cgiParams('GET', '/thread-keep'))).body.toString()).toBe('started');
    const [other, released] = await Promise.all([client.request(2, cgiParams('GET', '/pid')), client.request(1, cgiParams('GET', '/thread-release'))]);
    expect(released.body.toString()).toBe('raised ResponseEnded');
    expect(other.status).toBe(200);
    const after = await client.request(1, cgiParams('GET', '/pid'));
    expect(after.status).toBe(200);
    expect(after.body.toString()).toBe(other.body.toString()); // the same worker, still serving
  }, 60_000);
});

describe('Content-Length (through the service)', () => {
  it('never sends more than the app declared, stops iterating, and says which app', async () => {
    const { c, client } = await serve(['--workers', '1']);
    const gen = await client.request(1, cgiParams('GET', '/overlong'));
    expect(gen.body.toString()).toBe('0123456789');
    await stderrLine(c, /overlong closed after 2 items/); // not iterated to the end
    await stderrLine(c, /app misbehaving_app:application sent more than its Content-Length 10/);
    const list = await client.request(1, cgiParams('GET', '/overlong?list=1'));
    expect(list.body.toString()).toBe('0123456789');
    expect((await client.request(1, cgiParams('GET', '/pid'))).status).toBe(200);
  });

  it('ends a response shorter than its Content-Length as failed: the HTTP client is not left waiting', async () => {
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'misbehaving_app:application', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--workers', '1']);
    const addr = await c.fcgiAddress();
    const web = await c.httpAddress();
    await c.waitForMsg('app ready');
    const client = await FcgiClient.connect(addr);
    const r = await client.request(1, cgiParams('GET', '/short'));
    expect(r.body.toString()).toBe('0123456789');
    expect(r.appStatus).toBe(1); // the front learns the body is cut short
    await stderrLine(c, /sent 10 bytes of its Content-Length 100/);
    // Over HTTP the connection ends instead of waiting for 90 more bytes. A kept-alive
    // connection, as browsers and curl use: with Connection: close its end would tell anyway.
    const agent = new http.Agent({ keepAlive: true });
    const outcome = await new Promise<string>((resolve) => {
      const req = http.get({ host: web.host, port: web.port, path: '/short', agent }, (res) => {
        res.on('data', () => {});
        res.on('aborted', () => resolve('aborted'));
        res.on('error', () => resolve('error'));
        res.on('end', () => resolve('end'));
      });
      req.on('error', () => resolve('error'));
    });
    expect(outcome).not.toBe('end'); // a complete-looking response would be a lie
    agent.destroy();
    client.close();
  });
});

describe('X-Original-URL', () => {
  // IIS authorized /env; the client's header claims /env/admin (a path a <location> rule may deny).
  const iis = { SERVER_SOFTWARE: 'Microsoft-IIS/10.0', URL: '/env', HTTP_X_ORIGINAL_URL: '/env/admin?x=1' };

  it('is ignored by default: the path is the one IIS authorized', async () => {
    const { client } = await serve(['--workers', '1']);
    const r = await client.request(1, cgiParams('GET', '/env', iis));
    const env = (JSON.parse(r.body.toString()) as { environ: Record<string, string> }).environ;
    expect(env.PATH_INFO).toBe('/env');
  });

  it('is honoured with --trust-x-original-url (and CORRAL_TRUST_X_ORIGINAL_URL)', async () => {
    for (const [extra, env] of [[['--trust-x-original-url', 'true'], {}], [[], { CORRAL_TRUST_X_ORIGINAL_URL: '1' }]] as const) {
      const { c, client } = await serve(['--workers', '1', ...extra], env);
      const r = await client.request(1, cgiParams('GET', '/env', iis));
      const got = (JSON.parse(r.body.toString()) as { environ: Record<string, string> }).environ;
      expect(got.PATH_INFO).toBe('/env/admin');
      expect(got.QUERY_STRING).toBe('x=1');
      client.close();
      await c.stop();
    }
  });
});

describe('the environment workers get', () => {
  const secrets = { CORRAL_TEST_SECRET: 'hunter2', MYAPP_DB_URL: 'postgres://x', MYAPP_KEY: 'k', OTHER_TOKEN: 't', http_proxy: 'http://proxy:3128', LC_TIME: 'C' };
  const osEnv = async (extra: string[]): Promise<{ os: Record<string, string>; environ: Record<string, string> }> => {
    const { c, client } = await serve(['--workers', '1', ...extra], secrets);
    const r = await client.request(1, cgiParams('GET', '/env'));
    client.close();
    await c.stop();
    return JSON.parse(r.body.toString()) as { os: Record<string, string>; environ: Record<string, string> };
  };

  it('holds the service\'s secrets back, passes the base list and what corral sets', async () => {
    const got = await osEnv([]);
    for (const k of ['CORRAL_TEST_SECRET', 'MYAPP_DB_URL', 'MYAPP_KEY', 'OTHER_TOKEN']) {
      expect(got.os).not.toHaveProperty(k);
      expect(got.environ).not.toHaveProperty(k);
    }
    expect(got.os.PATH).toContain('/usr/bin'); // pyenv's python puts its own dirs first
    expect(got.os.http_proxy).toBe('http://proxy:3128');
    expect(got.os.LC_TIME).toBe('C');
    expect(got.os.PYTHONUNBUFFERED).toBe('1');
  });

  it('passes what passEnv names (exact and PREFIX*), and everything with *', async () => {
    const named = await osEnv(['--pass-env', 'OTHER_TOKEN,MYAPP_*']);
    expect(named.os).toMatchObject({ OTHER_TOKEN: 't', MYAPP_DB_URL: 'postgres://x', MYAPP_KEY: 'k' });
    expect(named.os).not.toHaveProperty('CORRAL_TEST_SECRET');
    const all = await osEnv(['--pass-env', '*']);
    expect(all.os).toMatchObject(secrets);
  });
});
