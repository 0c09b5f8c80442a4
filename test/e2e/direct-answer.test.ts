/**
 * The direct data plane while the app has no ready worker because its pool failed: the answerer
 * (src/pool/answerer.ts, src/python/corral_wsgi/answer.py) accepts on the shared socket and answers
 * every request at once with the page the proxy path gives (503, X-Corral-Error, Retry-After), HEAD
 * without a body, with access lines; it is no worker of the app (health and status stay failed);
 * when a generation becomes ready it drains like an old one, and no request is lost. Also: the
 * default data plane is direct where it can apply.
 */
import { rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEBIAN_PYTHON, FIXTURES, alive, showLogOnFailure, startCorral, type CorralProcess } from '../helpers/corral.js';
import { httpRequest, workersReady } from '../helpers/e2e.js';
import { FcgiClient, cgiParams, fcgiGet, header } from '../helpers/fcgi-client.js';
import { startNginx } from '../helpers/nginx.js';
import { AppDir, LoadTestKit, keepAliveLoad } from '../helpers/reload.js';

const kit = new LoadTestKit();
const { apps, loads, agents } = kit;
const dirs: string[] = [];

afterEach(async () => {
  await kit.cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** `corral serve` of an app dir whose wsgi.py does not compile, on `plane`, with a control listener. */
async function brokenApp(plane: 'direct' | 'proxy'): Promise<{ app: AppDir; c: CorralProcess; addr: { host: string; port: number } }> {
  const app = new AppDir('v1');
  apps.push(app);
  app.writeBroken('v1');
  const c = startCorral(['serve', app.dir, '--listen', '127.0.0.1:0', '--workers', '2', '--watch', '*.py', '--python', DEBIAN_PYTHON, '--data-plane', plane, '--control', '127.0.0.1:0']);
  showLogOnFailure(c);
  const addr = await c.fcgiAddress();
  await c.waitForMsg(plane === 'direct' ? 'answerer ready' : 'pool failed: answering 503 and retrying slowly');
  return { app, c, addr };
}

const withoutRetryAfter = (hs: Array<[string, string]>): Array<[string, string]> => hs.filter(([n]) => n.toLowerCase() !== 'retry-after');

describe('direct data plane: a failed app is answered', () => {
  it('an import failure is answered at once with the proxy path\'s page, HEAD without body; health stays failed; a fix heals it with no request lost', async () => {
    const [direct, proxy] = await Promise.all([brokenApp('direct'), brokenApp('proxy')]);
    const { c, app } = direct;
    const answerer = Number((await c.waitForMsg('answerer ready')).pid);
    expect(alive(answerer)).toBe(true);

    const d = await fcgiGet(direct.addr, '/x?y=1');
    const p = await fcgiGet(proxy.addr, '/x?y=1');
    expect(d.status).toBe(503);
    expect(header(d, 'x-corral-error')).toEqual(['CORRAL_APP_IMPORT_FAILED']);
    expect(Number(header(d, 'retry-after')[0])).toBeGreaterThan(0);
    expect(Number(header(p, 'retry-after')[0])).toBeGreaterThan(0);
    // One renderer: the same head lines, in the same order, and the same body (the retry delay may
    // have grown by one attempt between the two services).
    expect(withoutRetryAfter(d.headers)).toEqual(withoutRetryAfter(p.headers));
    expect(d.body.toString()).toBe(p.body.toString());
    expect(d.body.toString()).toContain('CORRAL_APP_IMPORT_FAILED');

    const head = await FcgiClient.connect(direct.addr);
    const h = await head.request(1, cgiParams('HEAD', '/x'), undefined, { keepConn: false }).finally(() => head.close());
    expect(h.status).toBe(503);
    expect(h.body.length).toBe(0);
    expect(header(h, 'content-length')).toEqual(header(d, 'content-length'));

    // Its access lines, from its REPORTs.
    await c.waitForLog((l) => l.msg === 'request' && l.method === 'HEAD' && l.status === 503 && Number(l.pid) === answerer);
    // It is no worker of the app: health and status say failed, and list no worker with its pid.
    const control = String((await c.waitForMsg('control listener ready')).control ?? '');
    const health = await httpRequest(`http://${control}/healthz`);
    expect(health.status).toBe(503);
    type Doc = { apps: Array<{ state: string; workers: Array<{ pid: number }>; answerer: { pid: number; state: string; code: string } | null }> };
    const status = async (): Promise<Doc> => JSON.parse((await httpRequest(`http://${control}/status.json`)).body.toString('utf8')) as Doc;
    const doc = await status();
    expect(doc.apps[0]!.state).toBe('failed');
    expect(doc.apps[0]!.workers.map((w) => w.pid)).not.toContain(answerer);
    // ...but the status page shows it apart, with the page it answers.
    expect(doc.apps[0]!.answerer).toMatchObject({ pid: answerer, state: 'ready', code: 'CORRAL_APP_IMPORT_FAILED' });
    expect((await httpRequest(`http://${control}/status`)).body.toString('utf8')).toContain(`the answerer, pid ${answerer}`);

    // The fix, under load through nginx with kept upstream connections: answers go from the 503 page
    // to the new version, and none fails otherwise.
    const nginx = await startNginx({ upstream: direct.addr, keepalive: 8, keepConn: true });
    const { load, agents: clientAgents } = keepAliveLoad(`${nginx.url}/`, 4);
    agents.push(...clientAgents);
    loads.push(load);
    load.known.add('v2');
    load.start();
    await load.more(40);
    const since = performance.now();
    app.write('v2');
    await load.served('v2', since, 30_000);
    const exited = await c.waitForLog((l) => l.msg === 'answerer exited', 20_000);
    expect(exited).toMatchObject({ code: 0, pid: answerer });
    // nginx's kept connections to the answerer went to the healed worker, not closed under nginx.
    const drained = c.logs.map((l) => (l.msg === 'answerer stderr' ? /drained: (\d+) kept connection\(s\) handed to a live worker, (\d+) closed/.exec(String(l.line)) : null)).find((m) => m !== null);
    expect(drained, 'the answerer\'s drain line').toBeTruthy();
    expect(Number(drained![1])).toBeGreaterThan(0);
    await load.more(40);
    await load.stop();
    const failed = load.failures();
    const other = failed.filter((s) => !(s.status === 503 && (s.failure ?? '').includes('CORRAL_APP_IMPORT_FAILED')));
    expect(other.slice(0, 5), `${other.length} of ${load.samples.length} requests failed otherwise`).toEqual([]);
    expect(failed.length).toBeGreaterThan(0);
    expect(load.samples.at(-1)!.version).toBe('v2');
    expect(c.logs.some((l) => l.msg === 'answerer did not exit after its drain; killing it')).toBe(false);
    expect((await httpRequest(`http://${control}/healthz`)).status).toBe(200);
    expect((await status()).apps[0]!.answerer).toBeNull();
    expect(nginx.errorLog().split('\n').filter((l) => /upstream|prematurely|reset by peer/i.test(l))).toEqual([]);
  }, 120_000);

  it('a failed DEPLOY_FILE is answered 503 CORRAL_DEPLOY_FAILED; once it passes, the app serves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-answer-deploy-'));
    dirs.push(dir);
    const failFlag = join(dir, 'fail-now');
    writeFileSync(failFlag, 'x');
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'deploy_app:application', '--listen', '127.0.0.1:0', '--workers', '1', '--python', DEBIAN_PYTHON], {
      env: { DEPLOY_FILE: 'deploy_step.py', DEPLOY_LOG: join(dir, 'deploy.log'), CORRAL_TEST_DEPLOY_DIR: dir, CORRAL_TEST_DEPLOY_FAIL: failFlag, CORRAL_PASS_ENV: 'CORRAL_TEST_*' },
    });
    showLogOnFailure(c);
    const addr = await c.fcgiAddress();
    // No --data-plane: direct is the default here.
    expect(c.logs.some((l) => l.msg === 'data plane: direct (the workers accept connections)')).toBe(true);
    await c.waitForMsg('answerer ready');
    const r = await fcgiGet(addr, '/');
    expect(r.status).toBe(503);
    expect(header(r, 'x-corral-error')).toEqual(['CORRAL_DEPLOY_FAILED']);
    expect(c.logs.some((l) => l.msg === 'worker spawned')).toBe(false);
    rmSync(failFlag);
    c.child.kill('SIGHUP');
    await workersReady(c, 1);
    await c.waitForMsg('answerer exited');
    const ok = await fcgiGet(addr, '/deployed');
    expect(ok.status).toBe(200);
  }, 60_000);
});

describe('direct data plane: while the workers start', () => {
  it('connections wait in the listen queue from the service\'s start and are served once a worker is ready, none refused', async () => {
    const app = new AppDir('v1');
    apps.push(app);
    app.write('v1', 2); // its import takes 2 s
    const c = startCorral(['serve', app.dir, '--listen', '127.0.0.1:0', '--workers', '1', '--python', DEBIAN_PYTHON]);
    showLogOnFailure(c);
    const addr = await c.fcgiAddress();
    const early = Array.from({ length: 3 }, () => fcgiGet(addr, '/'));
    expect(c.logs.some((l) => l.msg === 'worker ready')).toBe(false);
    for (const r of await Promise.all(early)) {
      expect(r.status).toBe(200);
      expect(r.body.toString()).toMatch(/^v1 \d+$/);
    }
  });
});

describe('the default data plane', () => {
  it('is direct for one app on a TCP listener and proxy with the HTTP front, each saying why', async () => {
    const direct = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--listen', '127.0.0.1:0', '--python', DEBIAN_PYTHON, '--workers', '1']);
    const proxy = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--http', '127.0.0.1:0', '--python', DEBIAN_PYTHON, '--workers', '1']);
    await Promise.all([direct.waitForMsg('worker ready'), proxy.waitForMsg('worker ready')]);
    expect(direct.logs.some((l) => l.msg === 'data plane: direct (the workers accept connections)')).toBe(true);
    expect(proxy.logs.find((l) => l.msg === 'data plane: proxy (the service accepts connections)')).toMatchObject({ dataPlane: 'proxy', why: 'the HTTP front is the service\'s own' });
  });
});
