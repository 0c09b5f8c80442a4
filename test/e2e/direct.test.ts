/**
 * The direct data plane end to end: `corral serve --data-plane direct` with real Python workers
 * accepting FastCGI on the socket the service bound, behind a real nginx with upstream keepalive
 * and `fastcgi_keep_conn on`. The guarantees of the proxy path, checked again here: rolling reloads
 * under load with zero failed requests, requestTimeout answered 504 and the worker replaced, a crash
 * costing only its own requests, scaling from the workers' reports, access lines and status from
 * their batches, malformed input costing only its connection, and clear start-up errors.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DEBIAN_PYTHON, FIXTURES, alive, showLogOnFailure as showLog, startCorral, stopAll, type CorralProcess, type LogLine } from '../helpers/corral.js';

/** The log of a failed test, without the access lines. */
const showLogOnFailure = (c: CorralProcess): void => showLog(c, (l) => l.msg !== 'request');
import { httpRequest, workersReady } from '../helpers/e2e.js';
import { FcgiClient, cgiParams, fcgiGet } from '../helpers/fcgi-client.js';
import { freePort, startNginx, stopAllNginx } from '../helpers/nginx.js';
import { AppDir, Load, keepAliveLoad } from '../helpers/reload.js';

const apps: AppDir[] = [];
const loads: Load[] = [];
const agents: http.Agent[] = [];
const clients: FcgiClient[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  await Promise.all(loads.splice(0).map((l) => l.stop()));
  for (const a of agents.splice(0)) a.destroy();
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.close();
  await stopAllNginx();
  await stopAll();
  for (const a of apps.splice(0)) a.remove();
});

/** `corral serve --data-plane direct` on the fixtures' worker_ok app. */
async function serveDirect(extra: string[] = [], workers = 2): Promise<{ c: CorralProcess; addr: { host: string; port: number } }> {
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--listen', '127.0.0.1:0', '--python', DEBIAN_PYTHON, '--data-plane', 'direct', '--workers', String(workers), '--threads', '1', ...extra]);
  showLogOnFailure(c);
  const addr = await c.fcgiAddress();
  await workersReady(c, workers);
  return { c, addr };
}

/** A GET on `client`'s kept connection, or on a fresh one (fcgiGet) without it. */
async function get(addr: { host: string; port: number }, path: string, client?: FcgiClient): Promise<{ status: number; body: string; headers: Record<string, string> }> {
  const r = client ? await client.request(1, cgiParams('GET', path)) : await fcgiGet(addr, path);
  return { status: r.status, body: r.body.toString('utf8'), headers: Object.fromEntries(r.headers.map(([n, v]) => [n.toLowerCase(), v])) };
}

const exitsOf = (c: CorralProcess, re: RegExp): LogLine[] => c.logs.filter((l) => typeof l.msg === 'string' && re.test(l.msg));

describe('direct data plane', () => {
  it('the workers answer on the service\'s socket, on kept connections; access lines and status come from their reports', async () => {
    const { c, addr } = await serveDirect(['--control', '127.0.0.1:0']);
    expect(c.logs.some((l) => l.msg === 'data plane: direct (the workers accept connections)')).toBe(true);
    const workerPids = new Set(c.liveWorkerPids());
    const client = await FcgiClient.connect(addr);
    clients.push(client);
    const seen = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const r = await get(addr, '/pid', client);
      expect(r.status).toBe(200);
      seen.add(Number(r.body));
    }
    // One kept connection is one worker's.
    expect(seen.size).toBe(1);
    expect(workerPids.has([...seen][0]!)).toBe(true);
    // Fresh connections spread over the workers (whichever accepts first).
    for (let i = 0; i < 40 && seen.size < 2; i++) seen.add(Number((await get(addr, '/pid')).body));
    expect(seen).toEqual(workerPids);
    // The access log: one line per request, from the workers' batched reports.
    await c.waitForLog(() => c.logs.filter((l) => l.msg === 'request' && l.path === '/pid').length >= 6, 5_000);
    const line = c.logs.find((l) => l.msg === 'request' && l.path === '/pid')!;
    expect(line).toMatchObject({ method: 'GET', status: 200, app: 'worker_ok:application' });
    expect(workerPids.has(Number(line.pid))).toBe(true);
    // The status page shows a running request with its age.
    const control = String((await c.waitForMsg('control listener ready')).control ?? '');
    const slow = get(addr, '/sleep?s=1.5');
    await c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start'));
    let current: unknown[] = [];
    for (let i = 0; i < 50 && current.length === 0; i++) {
      const doc = JSON.parse((await httpRequest(`http://${control}/status.json`)).body.toString('utf8')) as { apps: Array<{ workers: Array<{ current: unknown[] }> }> };
      current = doc.apps[0]!.workers.flatMap((w) => w.current);
      if (current.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    // Read without the control token: the path is hidden, the method and age are not.
    expect(current).toEqual([{ method: 'GET', path: null, ageSeconds: expect.any(Number) as number }]);
    expect((await slow).status).toBe(200);
  });

  it('20 rolling reloads through nginx with keepalive while 4 clients loop: zero failed requests', async () => {
    const app = new AppDir('v1');
    apps.push(app);
    const c = startCorral(['serve', app.dir, '--listen', '127.0.0.1:0', '--data-plane', 'direct', '--workers', '2', '--access-log', 'off']);
    showLogOnFailure(c);
    const fcgi = await c.fcgiAddress();
    await workersReady(c, 2);
    const nginx = await startNginx({ upstream: fcgi, keepalive: 8, keepConn: true });
    const { load, agents: clientAgents } = keepAliveLoad(`${nginx.url}/`, 4);
    agents.push(...clientAgents);
    loads.push(load);
    load.known.add('v1');
    load.start();
    await load.more(50);
    for (let i = 0; i < 20; i++) {
      const done = c.logs.filter((l) => l.msg === 'reload done').length;
      c.child.kill('SIGHUP');
      await c.waitForLog(() => c.logs.filter((l) => l.msg === 'reload done').length > done, 20_000);
      await load.more(20);
    }
    await load.stop();
    const failed = load.failures();
    expect(failed.slice(0, 5), `${failed.length} of ${load.samples.length} requests failed`).toEqual([]);
    expect(load.samples.length).toBeGreaterThan(400);
    // Every old worker drained and exited on its own (stdin EOF), none was killed.
    await c.waitForLog(() => c.logs.filter((l) => l.msg === 'worker stopped').length >= 40, 30_000);
    expect(exitsOf(c, /^worker killed|did not stop in time|exited unexpectedly/)).toEqual([]);
  }, 180_000);

  it('requestTimeout: the client gets 504 CORRAL_REQUEST_TIMEOUT, the worker is replaced, the others serve on', async () => {
    const { c, addr } = await serveDirect(['--request-timeout', '1']);
    const slow = get(addr, '/sleep?s=30');
    await c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start'));
    const during = await get(addr, '/pid');
    expect(during.status).toBe(200);
    const r = await slow;
    expect(r.status).toBe(504);
    expect(r.headers['x-corral-error']).toBe('CORRAL_REQUEST_TIMEOUT');
    await c.waitForLog((l) => l.msg === 'worker answered 504 to a request that ran over requestTimeout and exited; it is replaced');
    // The log says where the request was stuck: the app's frame, as a traceback (PHP-FPM's slowlog).
    const stderr = c.logs.filter((l) => l.msg === 'worker stderr').map((l) => String(l.line));
    const at = stderr.findIndex((l) => /^corral_worker: request GET \/sleep\?s=30 ran longer than --request-timeout 1s: answered 504; exiting \(code 5\)\. Where it was:$/.test(l));
    expect(at, stderr.join('\n')).toBeGreaterThanOrEqual(0);
    const stack = stderr.slice(at + 1, at + 50);
    expect(stack[0]).toBe('Traceback (most recent call last):');
    expect(stack.some((l) => /worker_ok\.py", line \d+, in application$/.test(l))).toBe(true);
    expect(stack).toContain('RequestTimeout: GET /sleep?s=30 ran longer than --request-timeout 1s');
    await c.waitForLog(() => c.liveWorkerPids().length === 2, 20_000);
    expect((await get(addr, '/pid')).status).toBe(200);
    expect(c.child.exitCode).toBeNull();
  });

  it('slowLogAfter: a request still running that long leaves its stack in the log, once, and goes on', async () => {
    const { c, addr } = await serveDirect(['--slow-log-after', '1']);
    const r = await get(addr, '/sleep?s=2.5');
    expect(r.status).toBe(200);
    const stderr = c.logs.filter((l) => l.msg === 'worker stderr').map((l) => String(l.line));
    const heads = stderr.filter((l) => l === 'corral_worker: request GET /sleep?s=2.5 still running after 1s. Where it is:');
    expect(heads, stderr.join('\n')).toHaveLength(1);
    const stack = stderr.slice(stderr.indexOf(heads[0]!) + 1, stderr.indexOf(heads[0]!) + 50);
    expect(stack[0]).toBe('Traceback (most recent call last):');
    expect(stack.some((l) => /worker_ok\.py", line \d+, in application$/.test(l))).toBe(true);
    expect(stack).toContain('SlowRequest: GET /sleep?s=2.5 still running after 1s');
    expect(exitsOf(c, /^worker killed|did not stop in time|exited unexpectedly|worker answered 504|worker stopped/)).toEqual([]); // it goes on
  });

  it('a worker killed mid-request costs only that request; its replacement serves', async () => {
    const { c, addr } = await serveDirect();
    const slow = get(addr, '/sleep?s=30').catch((err: Error) => ({ status: -1, body: err.message, headers: {} }));
    const started = await c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start'));
    const victim = Number(String(started.line).split(' ')[2]);
    const other = c.liveWorkerPids().find((p) => p !== victim)!;
    process.kill(victim, 'SIGKILL');
    const lost = await slow;
    expect(lost.status).not.toBe(200);
    for (let i = 0; i < 10; i++) expect((await get(addr, '/pid')).status).toBe(200);
    await c.waitForLog(() => c.liveWorkerPids().length === 2 && !c.liveWorkerPids().includes(victim), 20_000);
    expect(alive(other)).toBe(true);
  });

  it('scales up from the listen queue while every worker is busy, and back down when idle', async () => {
    const { c, addr } = await serveDirect(['--min-workers', '1', '--max-workers', '3', '--idle-timeout', '2'], 1);
    const slow = Array.from({ length: 4 }, () => get(addr, '/sleep?s=2'));
    await c.waitForLog((l) => l.msg === 'scaling up: every worker busy and connections wait', 15_000);
    for (const r of await Promise.all(slow)) expect(r.status).toBe(200);
    await c.waitForLog((l) => l.msg === 'scaling down: idle worker stopped', 20_000);
  });

  it('malformed bytes cost only their own connection', async () => {
    const { c, addr } = await serveDirect();
    const keep = await FcgiClient.connect(addr);
    clients.push(keep);
    expect((await get(addr, '/pid', keep)).status).toBe(200);
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(addr, () => s.end(Buffer.from('\x07\x01\x00\x01\x00\x08\x00\x00garbage!garbage!')));
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.resume();
      });
    }
    expect((await get(addr, '/pid', keep)).status).toBe(200);
    expect((await get(addr, '/pid')).status).toBe(200);
    expect(exitsOf(c, /^worker (exited|killed|was killed)/)).toEqual([]);
  });

  it('binds before it spawns: a port in use stops the start with the address named, and no worker starts', async () => {
    const server = net.createServer();
    servers.push(server);
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--listen', `127.0.0.1:${port}`, '--python', DEBIAN_PYTHON, '--data-plane', 'direct']);
    const exit = await c.exited;
    expect(exit.code).toBe(1);
    expect(c.logs.some((l) => l.msg === 'cannot start' && String(l.err).includes(`127.0.0.1:${port}`) && String(l.err).includes('EADDRINUSE'))).toBe(true);
    expect(c.logs.some((l) => l.msg === 'worker spawned')).toBe(false);
  });

  it('refuses direct where it cannot apply, saying why', async () => {
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--http', '127.0.0.1:0', '--python', DEBIAN_PYTHON, '--data-plane', 'direct']);
    const exit = await c.exited;
    expect(exit.code).toBe(2);
    expect(c.stderr).toMatch(/dataPlane direct cannot apply: the HTTP front is the service's own/);
  });
});

describe('start-up on the proxy path', () => {
  it('binds before it spawns there too, and says on stderr that the port is in use', async () => {
    const server = net.createServer();
    servers.push(server);
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--http', `127.0.0.1:${port}`, '--python', DEBIAN_PYTHON]);
    expect((await c.exited).code).toBe(1);
    expect(c.stderr).toContain(`cannot listen (HTTP) on 127.0.0.1:${port}: EADDRINUSE: in use by another process; choose another address with --http`);
    expect(c.logs.some((l) => l.msg === 'worker spawned')).toBe(false);
  });
});
