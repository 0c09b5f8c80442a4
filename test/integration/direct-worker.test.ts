// The Python worker in direct mode (--direct-fd): it accepts FastCGI connections itself on a socket
// the service bound (bindShared), while its stdin/stdout carry only the control channel (READY,
// PING/PONG, REPORT, stdin EOF = drain). See src/fcgi/PROTOCOL.md, "Direct mode".
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseReport, type FinishedRequest } from '../../src/pool/report.js';
import { bindShared, type SharedListener } from '../../src/pool/shared-listener.js';
import { FIXTURES, ROOT, splitHostPort } from '../helpers/corral.js';
import { cgiParams, FcgiClient, header, type FcgiResponse } from '../helpers/fcgi-client.js';
import { begin, decodePairs, pairs, record, T } from '../helpers/rawfcgi.js';
import { ProcessPeer } from '../helpers/worker-peer.js';

const WORKER = path.join(ROOT, 'src/python/corral_worker.py');
const PYTHON = process.env.CORRAL_TEST_PYTHON ?? 'python3';
const REPORT = 0xc5;
const CANT_MPX_CONN = 1;

interface Report {
  busy: number;
  conns: number;
  served: number;
  queue: number | null;
  current: Array<{ method: string; path: string; age_ms: number }>;
  access: unknown[][];
}

/** A direct-mode worker: `records` are its control channel's. */
class DirectWorker extends ProcessPeer {
  reports(): Report[] {
    return this.records.filter((r) => r.type === REPORT).map((r) => JSON.parse(r.content.toString('utf8')) as Report);
  }

  /** Resolves with the first REPORT (past or future) that satisfies pred. */
  report(pred: (r: Report) => boolean, what: string): Promise<Report> {
    return this.until(() => this.reports().find(pred), what);
  }

  /** Every access entry reported so far, as the service reads them. */
  access(): FinishedRequest[] {
    return this.records.filter((r) => r.type === REPORT).flatMap((r) => parseReport(r.content)?.access ?? []);
  }

  /** Closes stdin: the drain signal. */
  drain(): void {
    this.proc.stdin!.end();
  }
}

const started: ChildProcess[] = [];
const listeners: SharedListener[] = [];
const clients: FcgiClient[] = [];
const sockets: net.Socket[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of sockets.splice(0)) s.destroy();
  for (const p of started.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const l of listeners.splice(0)) l.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function share(): Promise<{ listener: SharedListener; addr: { host: string; port: number } }> {
  const listener = await bindShared({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  listeners.push(listener);
  return { listener, addr: splitHostPort(listener.bound) };
}

async function spawnDirect(listener: SharedListener, args: string[] = [], app = 'hello_app:application'): Promise<DirectWorker> {
  const proc = spawn(PYTHON, [WORKER, '--root', FIXTURES, '--app', app, '--direct-fd', '3', ...args], {
    stdio: ['pipe', 'pipe', 'pipe', listener.fd],
  });
  started.push(proc);
  const worker = new DirectWorker(proc);
  await worker.ready();
  return worker;
}

async function connect(addr: { host: string; port: number }): Promise<FcgiClient> {
  const c = await FcgiClient.connect(addr);
  clients.push(c);
  return c;
}

/** A raw connection that records what it receives and whether it closed. */
async function rawConnect(addr: { host: string; port: number }): Promise<{ socket: net.Socket; data: () => Buffer; closed: Promise<void> }> {
  const socket = net.connect(addr.port, addr.host);
  sockets.push(socket);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const chunks: Buffer[] = [];
  socket.on('data', (b: Buffer) => chunks.push(b));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  return { socket, data: () => Buffer.concat(chunks), closed };
}

const get = (c: FcgiClient, id: number, uri: string): Promise<FcgiResponse> => c.request(id, cgiParams('GET', uri));

describe.each([
  { mode: 'inline (--threads 1)', args: [] as string[], inline: true },
  { mode: 'app threads (--threads 2)', args: ['--threads', '2'], inline: false },
])('direct-mode worker, $mode', ({ args, inline }) => {
  it('says direct in READY and serves GETs and a 1 MiB POST echo on one kept connection', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, args);
    const ready = await w.ready();
    expect(ready).toMatchObject({ direct: true, listen: listener.bound, inline, protocol: 1 });
    const c = await connect(addr);
    for (const id of [1, 2, 3]) {
      const r = await get(c, id, '/');
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('Hello, world');
    }
    const body = randomBytes(1 << 20);
    const r = await c.request(4, cgiParams('POST', '/sha256', { CONTENT_LENGTH: String(body.length) }), body);
    expect(r.body.toString()).toBe(`${createHash('sha256').update(body).digest('hex')} ${body.length}`);
    const echo = await c.request(5, cgiParams('POST', '/echo', { CONTENT_LENGTH: String(body.length) }), body);
    expect(echo.body.equals(body)).toBe(true);
    expect(c.isClosed).toBe(false);
    // The access entries of all five, with the response bytes (CGI head included).
    const entries = (await w.report((rep) => rep.served === 5, 'a REPORT with 5 served')) && w.access();
    expect(entries.map((e) => [e.method, e.path, e.status])).toEqual([
      ['GET', '/', 200], ['GET', '/', 200], ['GET', '/', 200], ['POST', '/sha256', 200], ['POST', '/echo', 200],
    ]);
    expect(entries[4]!.bytes).toBeGreaterThan(body.length);
    expect(entries.every((e) => e.ms > 0 && e.error === null)).toBe(true);
  });

  it('answers PING while a request sleeps, and REPORTs it as busy with its age', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, args, 'misbehaving_app:application');
    const c = await connect(addr);
    const slow = get(c, 1, '/sleep?s=1.5');
    await w.until(() => (w.stderr.includes('sleep start') ? true : undefined), 'the sleep to start');
    await w.ping('while-sleeping');
    const busy = await w.report((r) => r.busy === 1 && r.current.length === 1, 'a busy REPORT');
    expect(busy.current[0]).toMatchObject({ method: 'GET', path: '/sleep?s=1.5' });
    expect(busy.conns).toBe(1);
    expect((await slow).status).toBe(200);
    await w.report((r) => r.busy === 0 && r.access.some((e) => e[1] === '/sleep?s=1.5'), 'the access entry');
  });
});

describe('direct-mode worker', () => {
  it('serves on a unix socket too (READY names its path, no listen queue figure)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'corral-direct-'));
    dirs.push(dir);
    const sock = path.join(dir, 'fcgi.sock');
    const listener = await bindShared({ kind: 'unix', path: sock });
    listeners.push(listener);
    const w = await spawnDirect(listener);
    expect((await w.ready()).listen).toBe(sock);
    const c = await FcgiClient.connect({ path: sock });
    clients.push(c);
    expect((await get(c, 1, '/')).body.toString()).toBe('Hello, world');
    expect((await w.report((r) => r.served === 1, 'a REPORT with one served')).queue).toBeNull();
  });

  it('two workers on one socket both serve', async () => {
    const { listener, addr } = await share();
    const workers = [await spawnDirect(listener, [], 'misbehaving_app:application'), await spawnDirect(listener, [], 'misbehaving_app:application')];
    const pids = new Set<string>();
    // Connections held open at once: a worker serving one kept connection inline leaves the
    // queue to the other while it reads.
    for (let round = 0; round < 20 && pids.size < 2; round++) {
      const conns = await Promise.all(Array.from({ length: 8 }, () => connect(addr)));
      const answers = await Promise.all(conns.map((c) => get(c, 1, '/sleep?s=0.05')));
      for (const a of answers) pids.add(a.body.toString());
      for (const c of conns) c.close();
    }
    expect(pids).toEqual(new Set(workers.map((w) => String(w.proc.pid))));
  });

  it('drains at stdin EOF: a kept connection serves what comes on it, then closes after that response; a running request completes and then its connection closes; exit 0', async () => {
    const { listener, addr } = await share();
    // Two threads: the loop goes on reading while the slow request runs on the pool.
    const w = await spawnDirect(listener, ['--threads', '2', '--eof-grace', '30'], 'misbehaving_app:application');
    const idle = await connect(addr);
    expect((await get(idle, 1, '/pid')).status).toBe(200);
    const quiet = await connect(addr);
    expect((await get(quiet, 1, '/pid')).status).toBe(200);
    const busy = await connect(addr);
    const slow = get(busy, 1, '/sleep?s=3');
    await w.until(() => (w.stderr.includes('sleep start') ? true : undefined), 'the sleep to start');
    w.drain();
    // nginx may have sent its next request on a kept connection as the drain began: it is served
    // (not reset), and the connection closes right after that response.
    expect((await get(idle, 2, '/pid')).status).toBe(200);
    await idle.closed;
    // A kept connection with nothing more to say closes after a quiet second (DRAIN_IDLE).
    await quiet.closed;
    expect(busy.isClosed).toBe(false);
    const late = await rawConnect(addr); // queued on the shared socket: this worker must not take it
    late.socket.write(Buffer.concat([begin(1, false), record(T.PARAMS, 1, pairs(cgiParams('GET', '/pid'))), record(T.PARAMS, 1), record(T.STDIN, 1)]));
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(answer.appStatus).toBe(0);
    await busy.closed;
    expect(await w.exited).toBe(0);
    expect(late.data().length).toBe(0);
    const last = w.reports().at(-1)!;
    expect(last).toMatchObject({ busy: 0, conns: 0 });
    expect(w.access().map((e) => e.path)).toEqual(['/pid', '/pid', '/pid', '/sleep?s=3']);
  });

  it('exits 0 after --eof-grace when a request is still running at the drain', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, ['--eof-grace', '0.5'], 'misbehaving_app:application');
    const c = await connect(addr);
    const answer = get(c, 1, '/sleep?s=60').catch((e: Error) => e);
    await w.until(() => (w.stderr.includes('sleep start') ? true : undefined), 'the sleep to start');
    w.drain();
    expect(await w.exited).toBe(0);
    expect(w.stderr).toMatch(/still running 0.5s after the stop/);
    expect(await answer).toBeInstanceOf(Error); // the connection closed without an answer
  });

  it('--request-timeout: 504 with X-Corral-Error on the connection, then exit 5', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, ['--request-timeout', '0.5'], 'misbehaving_app:application');
    const c = await connect(addr);
    const r = await get(c, 7, '/sleep?s=30');
    expect(r.status).toBe(504);
    expect(header(r, 'X-Corral-Error')).toEqual(['CORRAL_REQUEST_TIMEOUT']);
    expect(r.body.toString()).toContain('CORRAL_REQUEST_TIMEOUT');
    expect(await w.exited).toBe(5);
    expect(w.stderr).toMatch(/--request-timeout/);
    expect(w.access().at(-1)).toMatchObject({ path: '/sleep?s=30', status: 504, error: 'CORRAL_REQUEST_TIMEOUT' });
  });

  it('malformed bytes close only their connection', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener);
    const good = await connect(addr);
    expect((await get(good, 1, '/')).status).toBe(200);
    const bad = await rawConnect(addr);
    bad.socket.write(Buffer.from([9, 1, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    await bad.closed;
    expect((await get(good, 2, '/')).status).toBe(200);
    expect(w.stderr).toContain('bad FastCGI version byte 9');
    expect(w.proc.exitCode).toBeNull();
  });

  it('closes a connection whose params do not complete within --params-timeout', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, ['--params-timeout', '0.3']);
    const half = await rawConnect(addr);
    half.socket.write(Buffer.concat([begin(1), record(T.PARAMS, 1, pairs({ REQUEST_METHOD: 'GET' }))]));
    await half.closed;
    expect(half.data().length).toBe(0);
    await w.until(() => (/params did not complete/.test(w.stderr) ? true : undefined), 'the log line');
    const c = await connect(addr);
    expect((await get(c, 1, '/')).status).toBe(200);
  });

  it('answers 413 over --max-body-size without calling the app, and 431 over --max-params (then closes)', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, ['--max-body-size', '1000', '--max-params', '2000']);
    const c = await connect(addr);
    const big = Buffer.alloc(5000, 0x61);
    const r = await c.request(1, cgiParams('POST', '/sha256', { CONTENT_LENGTH: String(big.length) }), big);
    expect(r.status).toBe(413);
    expect((await c.request(2, cgiParams('POST', '/sha256', { CONTENT_LENGTH: '3' }), Buffer.from('abc'))).body.toString())
      .toBe(`${createHash('sha256').update('abc').digest('hex')} 3`);
    const r431 = await get(c, 3, `/?${'q'.repeat(3000)}`);
    expect(r431.status).toBe(431);
    await c.closed;
    await w.until(() => (w.access().length === 3 ? true : undefined), 'three access entries');
    expect(w.access().map((e) => e.status)).toEqual([413, 200, 431]);
  });

  it('aborts a request whose body grows past --max-body-size without a CONTENT_LENGTH, and closes its connection', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, ['--max-body-size', '1000']);
    const c = await connect(addr);
    const answer = c.request(1, cgiParams('POST', '/sha256'), Buffer.alloc(5000, 0x62)).catch((e: Error) => e);
    await c.closed;
    const r = await answer;
    // Either no answer at all or END_REQUEST without a response: never the app's digest.
    if (!(r instanceof Error)) expect(r.body.length).toBe(0);
    expect(w.stderr).toContain('grew past --max-body-size 1000');
  });

  it('closes a kept connection idle for --idle-timeout', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, ['--idle-timeout', '0.5']);
    const c = await connect(addr);
    expect((await get(c, 1, '/')).status).toBe(200);
    await c.closed;
    await w.report((r) => r.conns === 0 && r.served === 1, 'a REPORT without the connection');
  });

  it('accepts no more than --max-connections at once; the next one is served once one closes', async () => {
    const { listener, addr } = await share();
    const w = await spawnDirect(listener, ['--max-connections', '1']);
    const first = await connect(addr);
    expect((await get(first, 1, '/')).status).toBe(200);
    const second = await connect(addr); // the kernel completes it; the worker does not accept it yet
    const answer = get(second, 1, '/');
    await w.report((r) => r.served === 1 && r.conns === 1, 'a REPORT with one connection');
    let answered = false;
    void answer.then(() => { answered = true; });
    await w.ping('barrier'); // the worker is alive and has had the second connection's bytes for a while
    expect(answered).toBe(false);
    first.close();
    expect((await answer).status).toBe(200);
  });

  it('answers GET_VALUES (no multiplexing) and refuses a second request id on a busy connection (CANT_MPX_CONN)', async () => {
    const { listener, addr } = await share();
    await spawnDirect(listener, ['--max-connections', '7'], 'misbehaving_app:application');
    const c = await connect(addr);
    c.write(record(T.GET_VALUES, 0, pairs({ FCGI_MAX_CONNS: '', FCGI_MAX_REQS: '', FCGI_MPXS_CONNS: '' })));
    const values = decodePairs((await c.waitForRecord((r) => r.type === T.GET_VALUES_RESULT)).content);
    expect(values).toEqual({ FCGI_MAX_CONNS: '7', FCGI_MAX_REQS: '7', FCGI_MPXS_CONNS: '0' });
    // In one segment: an inline worker reads nothing while its app runs.
    c.socket.cork();
    const first = get(c, 1, '/sleep?s=0.5');
    const second = c.begin(2, cgiParams('GET', '/pid'));
    c.socket.uncork();
    const refused = await second;
    expect(refused.protocolStatus).toBe(CANT_MPX_CONN);
    expect((await first).status).toBe(200);
    expect((await get(c, 3, '/pid')).status).toBe(200);
  });

  it('hands a kept connection to the worker named in CORRAL_HANDOFF at its drain: the client goes on at that worker, never closed', async () => {
    const { listener, addr } = await share();
    const dir = mkdtempSync(path.join(tmpdir(), 'corral-handoff-test-'));
    dirs.push(dir);
    const a = await spawnDirect(listener, ['--handoff-dir', dir], 'misbehaving_app:application');
    const kept = await connect(addr); // only A accepts yet
    expect((await get(kept, 1, '/pid')).body.toString()).toBe(String(a.proc.pid));
    const b = await spawnDirect(listener, ['--handoff-dir', dir], 'misbehaving_app:application');
    const target = (await b.ready()).handoff;
    expect(target).toBe(path.join(dir, String(b.proc.pid)));
    a.send(record(0xc6, 0, Buffer.from(String(target))));
    a.drain();
    expect(await a.exited).toBe(0);
    expect(a.stderr).toContain('drained: 1 kept connection(s) handed to a live worker, 0 closed');
    for (let id = 2; id < 5; id++) expect((await get(kept, id, '/pid')).body.toString()).toBe(String(b.proc.pid));
    // B drains without a target: as before, it closes the connection after a quiet second.
    b.drain();
    await kept.closed;
    expect(await b.exited).toBe(0);
    expect(b.stderr).toContain('drained: 0 kept connection(s) handed to a live worker, 1 closed');
  });
});
