/**
 * End to end: a real nginx (`fastcgi_pass`, keep-conn, upstream keepalive) in front of the real
 * `corral serve` CLI with real Python workers, plus corral's FastCGI port used directly with the
 * test client for what nginx never does (interleaved requests on one connection).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEBIAN_PYTHON, FIXTURES, ROOT, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { cgiParams, FcgiClient } from '../helpers/fcgi-client.js';
import { startNginx, stopAllNginx, type NginxProcess } from '../helpers/nginx.js';
import { fcgiStreamed, httpRequest, sampleRss, sha256OfRepeated, streamedRequest, tcpConnections, workersReady } from '../helpers/e2e.js';

const MiB = 1024 * 1024;
const BIG = 256 * MiB;
/** The service's memory bound while 256 MiB go through it (issue 3). */
const RSS_LIMIT_KB = (200 * 1000 * 1000) / 1024;

/** Reads `bytes` of a response, then closes the connection; resolves with the bytes read. */
function downloadThenHangUp(url: string, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n >= bytes) {
          req.destroy();
          resolve(n);
        }
      });
      res.on('end', () => resolve(n));
      res.on('error', () => undefined);
    });
    req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
  });
}

async function startApp(args: string[], workers: number): Promise<{ corral: CorralProcess; fcgi: { host: string; port: number } }> {
  const corral = startCorral(['serve', ...args, '--listen', '127.0.0.1:0', '--workers', String(workers)]);
  const fcgi = await corral.fcgiAddress();
  await workersReady(corral, workers);
  return { corral, fcgi };
}

describe('fixtures app: nginx -> corral -> Python workers', () => {
  let corral: CorralProcess;
  let fcgi: { host: string; port: number };
  /** nginx as usually configured (buffered both ways). */
  let nginx: NginxProcess;
  /** nginx that streams both ways (request and response buffering off), so 256 MiB never touch its disk. */
  let streaming: NginxProcess;

  beforeAll(async () => {
    // 256 MiB bodies are over the default maxBodySize (IIS's 30,000,000 bytes). The proxy path on
    // purpose: these tests bound the service's memory while bodies stream through it (IIS's path);
    // on the direct path bodies never cross the service.
    ({ corral, fcgi } = await startApp([FIXTURES, '--wsgi-app', 'hello_app:application', '--threads', '2', '--max-body-size', '0', '--data-plane', 'proxy'], 2));
    [nginx, streaming] = await Promise.all([
      startNginx({ upstream: fcgi }),
      startNginx({ upstream: fcgi, requestBuffering: false, buffering: false }),
    ]);
  });

  afterAll(async () => {
    await stopAllNginx();
    await stopAll();
  });

  // nginx is not full duplex towards its upstream: once the response has started it stops
  // reading the client's body (seen with request/response buffering on and off: an echo of 16 MiB
  // hangs in nginx with its client socket's receive queue full and nothing queued towards corral).
  // So through nginx the upload goes to /sha256, which reads everything before answering, and
  // the byte-for-byte 256 MiB echo runs on corral's FastCGI port, where both directions stream at once.
  it("through nginx: a 256 MiB upload arrives whole (the app's sha256 is the one sent), service RSS under 200 MB", async () => {
    const rss = sampleRss(corral.child.pid!);
    const r = await streamedRequest(`${streaming.url}/sha256`, { bodyBytes: BIG, timeoutMs: 30_000 });
    const mem = rss.stop();
    expect(r.status, r.head).toBe(200);
    expect(r.head).toBe(`${r.sentSha256} ${BIG}`);
    expect(mem.samples, JSON.stringify(mem)).toBeGreaterThan(5);
    expect(mem.maxRssKb, JSON.stringify(mem)).toBeLessThan(RSS_LIMIT_KB);
    expect(streaming.errors()).toEqual([]);
  });

  it('through nginx: a 256 MiB streamed download arrives whole, service RSS under 200 MB', async () => {
    const rss = sampleRss(corral.child.pid!);
    const r = await streamedRequest(`${streaming.url}/stream?n=${BIG}`, { timeoutMs: 30_000 });
    const mem = rss.stop();
    expect(r.status, r.head).toBe(200);
    expect(r.receivedBytes).toBe(BIG);
    expect(r.receivedSha256).toBe(sha256OfRepeated('x', BIG));
    expect(mem.maxRssKb, JSON.stringify(mem)).toBeLessThan(RSS_LIMIT_KB);
    expect(streaming.errors()).toEqual([]);
  });

  it('echoes a 256 MiB upload byte for byte on one FastCGI connection, both directions at once, service RSS under 200 MB', async () => {
    const pid = corral.child.pid!;
    const rss = sampleRss(pid);
    const r = await fcgiStreamed(fcgi, cgiParams('POST', '/echo', { CONTENT_LENGTH: String(BIG), CONTENT_TYPE: 'application/octet-stream' }), BIG, 30_000);
    const mem = rss.stop();
    expect(r.status, r.head).toBe(200);
    expect(r.sentBytes).toBe(BIG);
    expect(r.receivedBytes).toBe(BIG);
    expect(r.receivedSha256).toBe(r.sentSha256);
    expect(mem.maxRssKb, JSON.stringify(mem)).toBeLessThan(RSS_LIMIT_KB);
    // VmHWM is the peak over the service's whole life (all three 256 MiB transfers above included),
    // so nothing between two samples escaped.
    expect(mem.hwmKb, JSON.stringify(mem)).toBeLessThan(RSS_LIMIT_KB);
  });

  it('serves 50 sequential requests on one client keep-alive connection and one upstream FastCGI connection', async () => {
    // A fresh nginx: its first request opens the one upstream connection the other 49 must reuse.
    const own = await startNginx({ upstream: fcgi, keepalive: 8 });
    const before = tcpConnections(fcgi.port);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    try {
      for (let i = 0; i < 50; i++) {
        const r = await httpRequest(`${own.url}/env?i=${i}`, { agent });
        expect(r.status).toBe(200);
        expect(JSON.parse(r.body.toString()).QUERY_STRING).toBe(`i=${i}`);
        ports.add(r.localPort);
      }
    } finally {
      agent.destroy();
    }
    expect(ports.size).toBe(1);
    const opened = [...tcpConnections(fcgi.port)].filter((c) => !before.has(c));
    expect(opened, 'nginx -> corral connections opened for 50 requests').toHaveLength(1);
    expect(own.errors()).toEqual([]);
  });

  it('serves 50 sequential requests on one FastCGI keep-conn connection (test client, direct)', async () => {
    const before = tcpConnections(fcgi.port);
    const client = await FcgiClient.connect(fcgi);
    try {
      for (let i = 0; i < 50; i++) {
        const r = await client.request(1, cgiParams('GET', `/env?i=${i}`), undefined, { keepConn: true });
        expect(r.status).toBe(200);
        expect(JSON.parse(r.body.toString()).QUERY_STRING).toBe(`i=${i}`);
        expect(r.protocolStatus).toBe(0);
      }
      expect(client.isClosed).toBe(false);
    } finally {
      client.close();
    }
    const opened = [...tcpConnections(fcgi.port)].filter((c) => !before.has(c));
    expect(opened).toHaveLength(1);
  });

  it('answers 3 interleaved requests on one FastCGI connection, bodies sent interleaved', async () => {
    // The proxy path on purpose: multiplexing is the service's (a direct worker says FCGI_MPXS_CONNS 0).
    const proxied = await startApp([FIXTURES, '--wsgi-app', 'hello_app:application', '--threads', '3', '--max-body-size', '0', '--data-plane', 'proxy'], 1);
    const client = await FcgiClient.connect(proxied.fcgi);
    try {
      const ids = [1, 2, 3];
      const parts = ids.map(() => [randomBytes(100_000), randomBytes(70_000), randomBytes(1)]);
      const answers = ids.map((id, k) =>
        client.begin(id, cgiParams('POST', '/echo', { CONTENT_LENGTH: String(parts[k]!.reduce((n, p) => n + p.length, 0)), CONTENT_TYPE: 'application/octet-stream' })),
      );
      for (let p = 0; p < 3; p++) for (const [k, id] of ids.entries()) await client.sendBody(id, parts[k]![p]!);
      for (const id of [2, 3, 1]) client.endBody(id);
      const results = await Promise.all(answers);
      for (const [k, r] of results.entries()) {
        expect(r.status).toBe(200);
        expect(r.body.equals(Buffer.concat(parts[k]!))).toBe(true);
      }
      // The connection stays usable for the next request.
      expect(client.isClosed).toBe(false);
      const r4 = await client.request(4, cgiParams('GET', '/'));
      expect(r4.body.toString()).toBe('Hello, world');
    } finally {
      client.close();
    }
  });

  it('keeps both Set-Cookie headers through nginx', async () => {
    const r = await httpRequest(`${nginx.url}/cookies`);
    expect(r.status).toBe(200);
    expect(r.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
  });

  it('answers 500 when the app raises, and the next request is 200', async () => {
    const bad = await httpRequest(`${nginx.url}/raise`);
    expect(bad.status).toBe(500);
    const good = await httpRequest(`${nginx.url}/`);
    expect(good.status).toBe(200);
    expect(good.body.toString()).toBe('Hello, world');
    // After an exception once the response started, the service keeps serving too.
    const late = await httpRequest(`${nginx.url}/raise_after`);
    expect(late.status).toBe(200);
    expect(late.body.toString()).toContain('first chunk');
    const again = await httpRequest(`${nginx.url}/`);
    expect(again.status).toBe(200);
  });

  it('frees the worker threads of clients that hang up mid-download', async () => {
    // 2 workers x 2 threads: if an abandoned download kept its thread, 5 of them would leave
    // no thread for the 4 requests after, and those would time out in the queue.
    for (let i = 0; i < 5; i++) expect(await downloadThenHangUp(`${streaming.url}/stream?n=${BIG}`, 4 * MiB)).toBeGreaterThanOrEqual(4 * MiB);
    const after = await Promise.all([1, 2, 3, 4].map(() => httpRequest(`${nginx.url}/sleep?s=0.2`, { timeoutMs: 10_000 })));
    expect(after.map((r) => r.status)).toEqual([200, 200, 200, 200]);
  });
});

describe('examples/hello behind nginx', () => {
  afterAll(async () => {
    await stopAllNginx();
    await stopAll();
  });

  it('serves the hello page with nginx as SERVER_SOFTWARE and the path as PATH_INFO', async () => {
    const { fcgi } = await startApp([join(ROOT, 'examples/hello')], 1);
    const nginx = await startNginx({ upstream: fcgi });
    const r = await httpRequest(`${nginx.url}/some/path?x=1`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    const page = r.body.toString();
    expect(page).toContain('Hello from wsgi-corral');
    expect(page).toContain('<code>/some/path</code>');
    expect(page).toMatch(/<code>nginx\/[\d.]+<\/code>/);
  });
});

describe('examples/flask behind nginx (Debian python3-flask)', () => {
  afterAll(async () => {
    await stopAllNginx();
    await stopAll();
  });

  it('serves the index, the JSON echo (GET and POST) and two cookies', async () => {
    const { fcgi } = await startApp([join(ROOT, 'examples/flask'), '--python', DEBIAN_PYTHON], 1);
    const nginx = await startNginx({ upstream: fcgi });
    const index = await httpRequest(`${nginx.url}/`);
    expect(index.status).toBe(200);
    expect(index.body.toString()).toContain('Hello from Flask on wsgi-corral');

    const get = await httpRequest(`${nginx.url}/api/echo?x=1`);
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body.toString())).toEqual({ method: 'GET', path: '/api/echo', script_root: '', args: { x: '1' }, body_length: 0 });

    const post = await httpRequest(`${nginx.url}/api/echo`, { method: 'POST', body: Buffer.alloc(300_000, 'b'), headers: { 'content-type': 'application/octet-stream' } });
    expect(post.status).toBe(200);
    expect(JSON.parse(post.body.toString())).toMatchObject({ method: 'POST', body_length: 300_000 });

    const cookies = await httpRequest(`${nginx.url}/api/cookies`);
    expect(cookies.status).toBe(200);
    expect(cookies.body.toString()).toBe('two cookies');
    expect(cookies.headers['set-cookie']).toHaveLength(2);
    expect(cookies.headers['set-cookie']!.map((c) => c.split(';')[0])).toEqual(['a=1', 'b=2']);

    const missing = await httpRequest(`${nginx.url}/nope`);
    expect(missing.status).toBe(404);
  });
});
