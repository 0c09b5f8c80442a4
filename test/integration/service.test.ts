/**
 * The corral CLI with real Python workers, talked to over FastCGI and HTTP: the pool, flow
 * control, errors and every listener kind (TCP, unix socket, inherited fd 0, connected stdin).
 * Every request of the FastCGI part runs through wsgiref.validate (validated_app.py).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, FIXTURES, ROOT, alive, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { freePort } from '../helpers/nginx.js';
import { FcgiClient, cgiParams, fcgiGet, header } from '../helpers/fcgi-client.js';
import { RecordParser } from '../../src/fcgi/parser.js';
import { encodeBeginRequest, encodeRecord, decodeEndRequest } from '../../src/fcgi/records.js';
import { encodeParams } from '../../src/fcgi/params.js';
import { FCGI_KEEP_CONN, RecordType, Role } from '../../src/fcgi/constants.js';

const tmpDirs: string[] = [];
afterEach(async () => {
  await stopAll();
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * The proxy path on purpose: these tests check the service's own request path (its queue, requests
 * multiplexed on one connection, credit windows towards a slow reader, 502 CORRAL_WORKER_LOST, 503
 * from the failed pool). The direct path's counterparts: test/e2e/direct.test.ts,
 * test/e2e/direct-answer.test.ts, test/integration/direct-worker.test.ts. (The unix-socket test
 * below runs on the default plane, direct.)
 */
async function serveFixture(app: string, extra: string[] = []): Promise<{ c: CorralProcess; addr: { host: string; port: number } }> {
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', app, '--listen', '127.0.0.1:0', '--data-plane', 'proxy', ...extra]);
  const addr = await c.fcgiAddress();
  return { c, addr };
}

describe('serve over FastCGI (TCP)', () => {
  it('serves a validated app: GET, POST echo, HEAD, cookies, errors, then keeps serving', async () => {
    const { c, addr } = await serveFixture('validated_app:application', ['--workers', '2', '--threads', '2']);
    await c.waitForMsg('app ready');
    const client = await FcgiClient.connect(addr);
    try {
      const get = await client.request(1, cgiParams('GET', '/'));
      expect(get.status).toBe(200);
      const body = Buffer.alloc(200_000, 7);
      const post = await client.request(1, cgiParams('POST', '/echo', { CONTENT_LENGTH: String(body.length), CONTENT_TYPE: 'application/octet-stream' }), body);
      expect(post.status).toBe(200);
      expect(post.body.equals(body)).toBe(true);
      const head = await client.request(1, cgiParams('HEAD', '/'));
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      const cookies = await client.request(1, cgiParams('GET', '/cookies'));
      expect(header(cookies, 'Set-Cookie')).toHaveLength(2);
      const boom = await client.request(1, cgiParams('GET', '/raise'));
      expect(boom.status).toBe(500);
      const after = await client.request(1, cgiParams('GET', '/'));
      expect(after.status).toBe(200);
    } finally {
      client.close();
    }
  });

  it('answers queued requests once workers are READY, spreading them over the pool', async () => {
    const { c, addr } = await serveFixture('worker_ok:application', ['--workers', '2', '--threads', '1']);
    const replies = await Promise.all(Array.from({ length: 6 }, () => fcgiGet(addr, '/sleep?s=0.3')));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    const pids = new Set(replies.map((r) => Number(r.body.toString())));
    expect(pids.size).toBe(2);
    expect(c.liveWorkerPids().sort()).toEqual([...pids].sort());
  });

  it('streams a response larger than the window to a slow reader with bounded buffering', async () => {
    const { addr } = await serveFixture('hello_app:application', ['--workers', '1']);
    const n = 8 * 1024 * 1024;
    const client = await FcgiClient.connect(addr);
    try {
      const r = await client.request(1, cgiParams('GET', `/stream?n=${n}`));
      expect(r.status).toBe(200);
      expect(r.body.length).toBe(n);
    } finally {
      client.close();
    }
  });

  it('a killed worker fails only its own request with 502 and is replaced', async () => {
    const { c, addr } = await serveFixture('worker_ok:application', ['--workers', '2', '--threads', '1']);
    await c.waitForLog(() => c.liveWorkerPids().length === 2);
    const slow = fcgiGet(addr, '/sleep?s=30');
    // The other worker answers quick requests meanwhile; the one that does not is busy with `slow`.
    const quick = Number((await fcgiGet(addr, '/pid')).body.toString());
    const busy = c.liveWorkerPids().find((p) => p !== quick)!;
    process.kill(busy, 'SIGKILL');
    const r = await slow;
    expect(r.status).toBe(502);
    expect(r.body.toString()).toContain('CORRAL_WORKER_LOST');
    await c.waitForLog((l) => l.msg === 'worker ready' && Number(l.pid) !== busy && Number(l.pid) !== quick);
    expect((await fcgiGet(addr, '/')).status).toBe(200);
    expect(c.liveWorkerPids()).toHaveLength(2);
  });

  it('an app that fails to import gives 503 with its code (the log names the module), and the service stays up', async () => {
    const { c, addr } = await serveFixture('import_fails:application', ['--workers', '2']);
    await c.waitForMsg('pool failed: answering 503 and retrying slowly');
    const r = await fcgiGet(addr, '/');
    expect(r.status).toBe(503);
    // serve: the client gets the code only; the log names the module.
    expect(r.body.toString()).toContain('CORRAL_APP_IMPORT_FAILED');
    expect(r.body.toString()).not.toContain('import_fails');
    expect(r.body.toString()).not.toContain('Traceback');
    expect(JSON.stringify(c.logs)).toContain('import_fails');
    const spawned = c.logs.filter((l) => l.msg === 'worker spawned').length;
    expect(spawned).toBeLessThanOrEqual(2);
    expect(c.child.exitCode).toBeNull();
  });

  it('stops on SIGTERM after the request in flight, exit 0, no worker left', async () => {
    const { c, addr } = await serveFixture('worker_ok:application', ['--workers', '2']);
    await c.waitForLog(() => c.liveWorkerPids().length === 2);
    const pids = c.liveWorkerPids();
    const client = await FcgiClient.connect(addr);
    const slow = client.request(1, cgiParams('GET', '/sleep?s=1'));
    // Once the app runs the request, the stop must let it finish.
    await c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start'));
    const exit = c.stop('SIGTERM');
    expect((await slow).status).toBe(200);
    expect((await exit).code).toBe(0);
    for (const p of pids) expect(alive(p)).toBe(false);
  });

  it('bad settings exit non-zero naming the setting', async () => {
    const c = startCorral(['serve', FIXTURES, '--workers', 'lots']);
    const { code } = await c.exited;
    expect(code).not.toBe(0);
    expect(c.stderr).toContain('workers');
    expect(c.stderr).toContain('lots');
  });
});

describe('other listeners', () => {
  it('listens on a unix socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-'));
    tmpDirs.push(dir);
    const path = join(dir, 'corral.sock');
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', path]);
    await c.waitForMsg('FastCGI front listening');
    const get = async (): Promise<number> => {
      const client = await FcgiClient.connect({ path });
      try {
        return (await client.request(1, cgiParams('GET', '/'))).status;
      } finally {
        client.close();
      }
    };
    expect(await get()).toBe(200);

    // A second service on the same path must not take over a live socket: it fails, the first serves on.
    const second = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', path]);
    const { code } = await second.exited;
    expect(code).not.toBe(0);
    expect(`${second.stderr}${JSON.stringify(second.logs)}`).toContain('EADDRINUSE');
    expect(await get()).toBe(200);

    // A socket file left by a killed service is stale: the next service removes it and listens.
    c.child.kill('SIGKILL');
    await c.exited;
    const third = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', path]);
    await third.waitForMsg('FastCGI front listening');
    expect(await get()).toBe(200);
  });

  it('serves the HTTP front', async () => {
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--http', '127.0.0.1:0']);
    const { port } = await c.httpAddress();
    const body = Buffer.alloc(300_000, 3);
    const res = await httpRequest(port, 'POST', '/sha256', body);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toContain(createHash('sha256').update(body).digest('hex'));
    const cookies = await httpRequest(port, 'GET', '/cookies');
    expect(cookies.headers['set-cookie']).toHaveLength(2);
    const err = await httpRequest(port, 'GET', '/raise');
    expect(err.status).toBe(500);
  });

  it('accepts an inherited listening socket on fd 0 (spawn-fcgi style)', async () => {
    const port = await freePort();
    // spawn-fcgi binds the socket and execs corral with it as fd 0, as mod_fcgid and the FastCGI spec do.
    const child = spawn('spawn-fcgi', ['-n', '-a', '127.0.0.1', '-p', String(port), '--', process.execPath, CLI, 'serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', 'fd:0'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', () => {
          if (out.includes('"app ready"')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      expect((await fcgiGet({ host: '127.0.0.1', port }, '/')).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });

  it('serves an already-connected stream on stdin (IIS style) and stops when it closes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-'));
    tmpDirs.push(dir);
    const path = join(dir, 'pair.sock');
    // A connected socket pair: our end is `ours`, the other end becomes the child's stdin.
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(path, () => r()));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const ours = net.connect(path);
    const theirs = await accepted;
    server.close();
    const child = spawn(process.execPath, [CLI, 'serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', 'stdin'], {
      cwd: ROOT,
      stdio: [theirs, 'pipe', 'pipe'],
    });
    theirs.destroy();
    try {
      const parser = new RecordParser();
      const out: Buffer[] = [];
      const ended = new Promise<number>((resolve) =>
        ours.on('data', (chunk: Buffer) =>
          parser.push(chunk, (r) => {
            if (r.type === RecordType.STDOUT) out.push(Buffer.from(r.content));
            if (r.type === RecordType.END_REQUEST) resolve(decodeEndRequest(r.content)!.protocolStatus);
          }),
        ),
      );
      const params = encodeParams(Object.entries(cgiParams('GET', '/')));
      ours.write(Buffer.concat([encodeBeginRequest(1, Role.RESPONDER, FCGI_KEEP_CONN), encodeRecord(RecordType.PARAMS, 1, params), encodeRecord(RecordType.PARAMS, 1), encodeRecord(RecordType.STDIN, 1)]));
      expect(await ended).toBe(0);
      expect(Buffer.concat(out).toString()).toContain('Status: 200');
      const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      ours.end();
      expect(await exit).toBe(0);
    } finally {
      ours.destroy();
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

function httpRequest(port: number, method: string, path: string, body?: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

