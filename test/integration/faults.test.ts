// Faults through the real service (issue 10): a worker killed mid-request, a worker writing
// garbage on its protocol pipe or closing it while alive, and clients leaving mid-upload and
// mid-download. Each costs only the requests it touches; the service keeps serving.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll, type CorralProcess, type LogLine } from '../helpers/corral.js';
import { FcgiClient, cgiParams, header, type FcgiResponse } from '../helpers/fcgi-client.js';

afterEach(async () => {
  await stopAll();
});

// A request timeout far beyond the test timeouts: a request left hanging fails the test.
// The proxy path on purpose: these faults are a worker breaking its pipe protocol with the service
// (garbage, a closed pipe, output past its response window) and the 502 CORRAL_WORKER_LOST the
// service gives for them; a direct worker's requests never cross that pipe (its crash is checked in
// test/e2e/direct.test.ts).
const SERVE = ['--wsgi-app', 'misbehaving_app:application', '--request-timeout', '600', '--data-plane', 'proxy'];

async function serve(extra: string[]): Promise<{ c: CorralProcess; client: FcgiClient }> {
  const c = startCorral(['serve', FIXTURES, ...SERVE, '--listen', '127.0.0.1:0', ...extra]);
  const addr = await c.fcgiAddress();
  await c.waitForMsg('app ready');
  const client = await FcgiClient.connect(addr);
  return { c, client };
}

const stderrLine = (c: CorralProcess, re: RegExp, timeoutMs?: number): Promise<LogLine> =>
  c.waitForLog((l) => l.msg === 'worker stderr' && re.test(String(l.line)), timeoutMs);

const readyPids = (c: CorralProcess): number[] => c.logs.filter((l) => l.msg === 'worker ready').map((l) => Number(l.pid));

/** The pids of the first two workers, once both said READY ('app ready' comes with the first). */
async function bothReady(c: CorralProcess): Promise<number[]> {
  let seen = 0;
  await c.waitForLog((l) => l.msg === 'worker ready' && ++seen === 2);
  return readyPids(c);
}

/** Waits for a worker that said READY after the ones in `before`. */
const replacement = (c: CorralProcess, before: number[]): Promise<LogLine> =>
  c.waitForLog((l) => l.msg === 'worker ready' && !before.includes(Number(l.pid)));

/** Asserts that a request failed because its worker went away. */
function expectLost(r: FcgiResponse): void {
  expect([502, 503]).toContain(r.status);
  expect(header(r, 'X-Corral-Error')).toEqual(['CORRAL_WORKER_LOST']);
}

/**
 * Two workers with one thread: `/sleep` occupies one, then `path` goes to the other. The request
 * to `path` fails with CORRAL_WORKER_LOST, the sleeping one is served, the worker is replaced.
 */
async function onlyItsRequestsFail(path: string, cause: RegExp, failed: (r: FcgiResponse) => void = expectLost): Promise<CorralProcess> {
  const { c, client } = await serve(['--workers', '2', '--threads', '1']);
  const before = await bothReady(c);
  const sleeping = client.request(1, cgiParams('GET', '/sleep?s=3'));
  const sleeper = Number(String((await stderrLine(c, /^sleep start \d+/)).line).split(' ')[2]);
  const bad = await client.request(2, cgiParams('GET', path));
  failed(bad);
  await c.waitForLog((l) => l.level === 'error' && cause.test(String(l.msg)));
  const ok = await sleeping;
  expect(ok.status).toBe(200);
  expect(ok.body.toString()).toBe(String(sleeper));
  const fresh = Number((await replacement(c, before)).pid);
  // The service serves on, on both the old and the new worker.
  const pids = new Set<string>();
  const [a, b] = await Promise.all([client.request(3, cgiParams('GET', '/sleep?s=0.5')), client.request(4, cgiParams('GET', '/sleep?s=0.5'))]);
  for (const r of [a, b]) {
    expect(r.status).toBe(200);
    pids.add(r.body.toString());
  }
  expect(pids).toEqual(new Set([String(sleeper), String(fresh)]));
  expect(c.child.exitCode).toBeNull();
  client.close();
  return c;
}

describe('a worker that fails mid-request', () => {
  it('killed: its request gets CORRAL_WORKER_LOST, the others are served, it is replaced', async () => {
    const { c, client } = await serve(['--workers', '2', '--threads', '2']);
    const before = await bothReady(c);
    const victim = client.request(1, cgiParams('GET', '/sleep?s=60'));
    const pid = Number(String((await stderrLine(c, /^sleep start \d+/)).line).split(' ')[2]);
    const others = await Promise.all([2, 3, 4].map((id) => client.request(id, cgiParams('GET', '/pid'))));
    process.kill(pid, 'SIGKILL');
    expectLost(await victim);
    for (const r of others) expect(r.status).toBe(200);
    await replacement(c, before);
    const after = await Promise.all([5, 6, 7].map((id) => client.request(id, cgiParams('GET', '/pid'))));
    for (const r of after) {
      expect(r.status).toBe(200);
      expect(r.body.toString()).not.toBe(String(pid));
    }
    client.close();
  }, 60_000);

  it('writing garbage on its protocol pipe: logged, killed and replaced; only its requests fail', async () => {
    const c = await onlyItsRequestsFail('/garbage', /worker broke the protocol/);
    const line = c.logs.find((l) => /worker broke the protocol/.test(String(l.msg)));
    expect(line).toMatchObject({ app: 'misbehaving_app:application', inflight: 1 });
    expect(typeof line?.pid).toBe('number');
  }, 60_000);

  it('closing its protocol pipe while it lives on: killed and replaced, not waited for until the request timeout', async () => {
    const c = await onlyItsRequestsFail('/close-stdout', /worker closed its protocol pipe while running/);
    expect(c.logs.find((l) => /worker closed its protocol pipe/.test(String(l.msg)))).toMatchObject({ app: 'misbehaving_app:application', inflight: 1 });
  }, 60_000);
});

describe('a worker that ignores its response window', () => {
  it('is killed and replaced once it sends past it; only its request fails', async () => {
    const { c, client } = await serve(['--workers', '2', '--threads', '1']);
    const before = await bothReady(c);
    const sleeping = client.request(1, cgiParams('GET', '/sleep?s=3'));
    await stderrLine(c, /^sleep start \d+/);
    // A client that reads nothing: no credit comes back once the buffers on the way are full.
    const still = await FcgiClient.connect(await c.fcgiAddress());
    still.socket.pause();
    const flooded = still.request(1, cgiParams('GET', '/flood'));
    await c.waitForLog((l) => l.level === 'error' && /worker sent more than its response window/.test(String(l.msg)));
    still.socket.resume();
    const r = await flooded;
    expect(r.appStatus).not.toBe(0); // its response had begun (the flood itself): it ends cut short
    expect((await sleeping).status).toBe(200);
    await replacement(c, before);
    expect((await client.request(2, cgiParams('GET', '/pid'))).status).toBe(200);
    expect(c.child.exitCode).toBeNull();
    still.close();
    client.close();
  }, 60_000);
});

describe('a client that leaves mid-request (HTTP front, one worker with one thread)', () => {
  async function serveHttp(): Promise<{ c: CorralProcess; web: { host: string; port: number } }> {
    const c = startCorral(['serve', FIXTURES, ...SERVE, '--http', '127.0.0.1:0', '--workers', '1', '--threads', '1']);
    const web = await c.httpAddress();
    await c.waitForMsg('app ready');
    return { c, web };
  }

  function get(web: { host: string; port: number }, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      http.get({ ...web, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      }).on('error', reject);
    });
  }

  it('mid-upload: the app\'s read raises, the thread is freed for the next request', async () => {
    const { c, web } = await serveHttp();
    const req = http.request({ ...web, path: '/upload', method: 'POST', agent: false, headers: { 'Content-Length': String(20 << 20) } });
    req.on('error', () => {});
    req.write(Buffer.alloc(256 * 1024, 1));
    await stderrLine(c, /^upload start$/);
    req.destroy();
    await stderrLine(c, /^upload read raised ClientDisconnected after \d+ bytes$/);
    const next = await get(web, '/pid');
    expect(next.status).toBe(200);
    expect(c.logs.some((l) => l.msg === 'worker stderr' && /^upload read ended/.test(String(l.line)))).toBe(false);
  }, 60_000);

  it('a response the front cannot pass on fails alone (502): the service keeps serving', async () => {
    const { c, web } = await serveHttp();
    const bad = await get(web, '/bad-status');
    expect(bad.status).toBe(502);
    const next = await get(web, '/pid');
    expect(next.status).toBe(200);
    expect(c.child.exitCode).toBeNull();
  }, 60_000);

  it('mid-download: the app\'s output stops (its generator is closed), the thread is freed', async () => {
    const { c, web } = await serveHttp();
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ ...web, path: '/download', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    });
    await stderrLine(c, /^download stopped after \d+ chunks$/);
    const next = await get(web, '/pid');
    expect(next.status).toBe(200);
  }, 60_000);
});
