/**
 * The HTTP front under a buggy app and a greedy client: a response head Node's http layer refuses
 * costs that request a 502 (not the service), bodies over maxBodySize get 413, and serve-mode
 * error pages tell the client the code only.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';

afterEach(stopAll);

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, method: string, path: string, body?: Buffer | Buffer[], headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('latin1') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (Array.isArray(body)) {
      for (const b of body) req.write(b);
      req.end();
    } else req.end(body);
  });
}

async function start(args: string[] = []): Promise<{ c: CorralProcess; port: number }> {
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'bad_response_app:application', '--http', '127.0.0.1:0', '--workers', '1', ...args]);
  const { port } = await c.httpAddress();
  await c.waitForMsg('app ready');
  return { c, port };
}

describe('HTTP front: a response head Node refuses', () => {
  it.each([
    ['/status-099', '099 X'],
    ['/status-000', '000 X'],
    ['/status-101', '101 Switching'],
    ['/status-600', '600 Beyond'],
    ['/reason-01', 'A\\x01B'],
    ['/reason-7f', 'A\\x7fB'],
    ['/value-01', 'a\\x01b'],
    ['/value-7f', 'a\\x7fb'],
    ['/value-00', 'a\\x00b'],
    ['/name-space', 'Bad Name'],
    ['/name-paren', 'X(y)'],
    ['/length-twice', 'Content-Length: 3'],
    ['/length-bad', 'Content-Length: two'],
  ])('%s gets 502 CORRAL_BAD_RESPONSE; the service keeps serving', async (path, shown) => {
    const { c, port } = await start();
    const bad = await request(port, 'GET', path);
    expect(bad.status).toBe(502);
    expect(bad.headers['x-corral-error']).toBe('CORRAL_BAD_RESPONSE');
    const line = await c.waitForLog((l) => l.msg === 'app sent a response head the HTTP front cannot pass on' && l.path === path);
    expect(line.level).toBe('warn');
    expect(line.app).toBe('bad_response_app:application');
    expect(String(line.bytes)).toContain(shown);
    // The same service, the same worker: the next request is served.
    const good = await request(port, 'GET', '/');
    expect(good.status).toBe(200);
    expect(good.body).toBe('ok');
    expect(c.child.exitCode).toBeNull();
  });

  it('drops hop-by-hop headers an app sends and frames the body itself', async () => {
    const { port } = await start();
    const r = await request(port, 'GET', '/te-and-length');
    expect(r.status).toBe(200);
    expect(r.body).toBe('fine!');
    expect(r.headers['content-length']).toBe('5');
    expect(r.headers['transfer-encoding']).toBeUndefined();
  });
});

describe('HTTP front: maxBodySize', () => {
  it('answers 413 to a Content-Length over the limit before the app runs', async () => {
    const { c, port } = await start(['--max-body-size', '1000']);
    const r = await request(port, 'POST', '/sha256', Buffer.alloc(1001, 1));
    expect(r.status).toBe(413);
    expect(r.headers['x-corral-error']).toBe('CORRAL_BODY_TOO_LARGE');
    await c.waitForMsg('request body larger than maxBodySize: 413, the app does not run');
    const ok = await request(port, 'POST', '/sha256', Buffer.alloc(1000, 1));
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/ 1000$/);
  });

  it('refuses an Expect: 100-continue body over the limit without asking for it', async () => {
    const { port } = await start(['--max-body-size', '1000']);
    const s = net.connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    let answer = '';
    const got = new Promise<void>((resolve) => s.on('data', (d: Buffer) => ((answer += d.toString()), answer.includes('\r\n\r\n') && resolve())));
    s.write('POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n');
    await got;
    s.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).not.toContain('100 Continue');
  });

  it('cuts off a chunked body that grows past the limit, once logged', async () => {
    const { c, port } = await start(['--max-body-size', '100000']);
    const parts = Array.from({ length: 20 }, () => Buffer.alloc(10_000, 2));
    let r: Reply | null = null;
    try {
      r = await request(port, 'POST', '/sha256', parts, { 'transfer-encoding': 'chunked' });
    } catch {
      // The front may close the connection before the client finished sending: also a refusal.
    }
    if (r) {
      expect(r.status).toBe(413);
      expect(r.headers['x-corral-error']).toBe('CORRAL_BODY_TOO_LARGE');
    }
    await c.waitForMsg('request body grew past maxBodySize: request aborted');
    expect(c.logs.filter((l) => l.msg === 'request body grew past maxBodySize: request aborted')).toHaveLength(1);
    const ok = await request(port, 'POST', '/sha256', [Buffer.alloc(50_000, 1), Buffer.alloc(50_000, 1)], { 'transfer-encoding': 'chunked' });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/ 100000$/);
  });

  it('0 means no limit', async () => {
    const { port } = await start(['--max-body-size', '0']);
    const ok = await request(port, 'POST', '/sha256', Buffer.alloc(200_000, 1));
    expect(ok.status).toBe(200);
  });
});

describe('HTTP front: server limits from the settings', () => {
  it('closes connections past maxConnections and logs it once', async () => {
    const { c, port } = await start(['--max-connections', '2']);
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const s = net.connect(port, '127.0.0.1');
        await new Promise((r) => s.once('connect', r));
        held.push(s);
      }
      const third = net.connect(port, '127.0.0.1');
      held.push(third);
      await new Promise<void>((resolve) => third.once('close', () => resolve()));
      await c.waitForMsg('HTTP front at maxConnections: new connections are closed');
    } finally {
      for (const s of held) s.destroy();
    }
    // Once the held connections are gone, requests are served again, and that is said once.
    await c.waitForMsg('HTTP front below maxConnections again');
    await expect.poll(async () => (await request(port, 'GET', '/').catch(() => ({ status: 0 }))).status, { timeout: 20_000 }).toBe(200);
    expect(c.logs.filter((l) => l.msg === 'HTTP front at maxConnections: new connections are closed')).toHaveLength(1);
  });

  it('closes a connection whose headers do not arrive within paramsTimeout (slowloris)', async () => {
    const { port } = await start(['--params-timeout', '1']);
    const s = net.connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString()));
    await new Promise<void>((resolve) => s.once('close', () => resolve()));
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect((await request(port, 'GET', '/')).status).toBe(200);
  });

  it('aborts a request whose body stalls for bodyTimeout', async () => {
    const { c, port } = await start(['--body-timeout', '1']);
    const s = net.connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.write('POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some');
    await new Promise<void>((resolve) => s.once('close', () => resolve()));
    await c.waitForMsg('request body sent nothing for bodyTimeout: request aborted, connection closed');
    expect((await request(port, 'GET', '/')).status).toBe(200);
  });
});

describe('HTTP front: error pages', () => {
  it('serve: the status, the code and a generic sentence only; the details go to the log', async () => {
    const { c, port } = await start();
    const r = await request(port, 'GET', '/status-099');
    expect(r.status).toBe(502);
    expect(r.body).toContain('CORRAL_BAD_RESPONSE');
    expect(r.body).not.toContain('099');
    expect(r.body).not.toContain('CGI');
    const detail = await c.waitForLog((l) => l.msg === 'request failed' && l.code === 'CORRAL_BAD_RESPONSE');
    expect(String(detail.err)).toContain('099');
  });

  it('dev: the detailed page', async () => {
    const c = startCorral(['dev', FIXTURES, '--wsgi-app', 'bad_response_app:application', '--http', '127.0.0.1:0', '--workers', '1'], { env: { NO_COLOR: '1' } });
    const port = await devPort(c);
    const r = await request(port, 'GET', '/status-099');
    expect(r.status).toBe(502);
    expect(r.body).toContain('099');
  });
});

/** corral dev prints its banner (with the HTTP front's URL) on stderr. */
async function devPort(c: CorralProcess): Promise<number> {
  await expect.poll(() => /serving\s+http:\/\/127\.0\.0\.1:(\d+)\//.test(c.stderr), { timeout: 30_000 }).toBe(true);
  return Number(/serving\s+http:\/\/127\.0\.0\.1:(\d+)\//.exec(c.stderr)![1]);
}
