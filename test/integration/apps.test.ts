/**
 * Several apps in one service: the config file's `apps` with their own addresses, and apps that
 * requests name by APPL_PHYSICAL_PATH under `allowedRoots` (how IIS sites reach one service
 * through `corral relay`), with web.config `<appSettings>` and CORRAL_SETTING_* params.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, startCorral, stopAll } from '../helpers/corral.js';
import { FcgiClient, cgiParams, fcgiGet } from '../helpers/fcgi-client.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'corral-apps-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** An app dir whose wsgi.py answers NAME and its pid, and writes a marker file when imported. */
function makeApp(parent: string, name: string, callable = 'application'): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'wsgi.py'),
    `import os\nopen(os.path.join(os.path.dirname(__file__), 'imported.txt'), 'a').write('x')\n` +
      `def ${callable}(environ, start_response):\n` +
      `    body = ('${name} %d %s %s' % (os.getpid(), environ.get('SCRIPT_NAME'), environ.get('PATH_INFO'))).encode()\n` +
      `    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [body]\n`,
  );
  return dir;
}

/** The relay secret as the relay sends it, and the service flag naming its file (mode 600). */
const SECRET = 'f'.repeat(64);
function secretArgs(): string[] {
  const file = join(tempDir(), 'relay.secret');
  writeFileSync(file, `${SECRET}\n`, { mode: 0o600 });
  return ['--relay-secret-file', file];
}

/** A request as `corral relay` sends it: IIS's params plus the relay secret. */
async function iisGet(addr: { host: string; port: number }, physical: string, uri: string, extra: Record<string, string> = {}) {
  const c = await FcgiClient.connect(addr);
  try {
    return await c.request(1, cgiParams('GET', uri, { APPL_PHYSICAL_PATH: physical, SERVER_SOFTWARE: 'Microsoft-IIS/10.0', CORRAL_RELAY_TOKEN: SECRET, ...extra }));
  } finally {
    c.close();
  }
}

describe('apps in the config file', () => {
  it('serves each app on its own addresses', async () => {
    const dir = tempDir();
    const shop = makeApp(dir, 'shop');
    const blog = makeApp(dir, 'blog');
    const config = join(dir, 'corral.json');
    writeFileSync(config, JSON.stringify({ workers: 1, apps: [{ root: shop, listen: ['127.0.0.1:0'] }, { root: blog, listen: ['127.0.0.1:0'], threads: 2 }] }));
    const c = startCorral(['serve', '--config', config]);
    await c.waitForLog(() => c.logs.filter((l) => l.msg === 'FastCGI front listening').length === 2);
    const fronts = c.logs.filter((l) => l.msg === 'FastCGI front listening');
    const addrOf = (app: number) => {
      const [host, port] = String(fronts[app]!.listen).split(':');
      return { host: host!, port: Number(port) };
    };
    expect((await fcgiGet(addrOf(0), '/')).body.toString()).toMatch(/^shop \d+/);
    expect((await fcgiGet(addrOf(1), '/')).body.toString()).toMatch(/^blog \d+/);
  });
});

describe('apps named by requests (IIS through the relay)', () => {
  it('starts a pool per site under allowedRoots, with IIS paths, web.config and relay settings', async () => {
    const sites = tempDir();
    const a = makeApp(sites, 'site-a');
    const b = makeApp(sites, 'site-b', 'app');
    writeFileSync(join(b, 'web.config'), '<?xml version="1.0"?>\n<configuration><appSettings>\n  <add key="WSGI_HANDLER" value="wsgi.app" />\n</appSettings></configuration>\n');
    const c = startCorral(['serve', '--listen', '127.0.0.1:0', '--allowed-roots', sites, '--workers', '1', ...secretArgs()]);
    const addr = await c.fcgiAddress();
    const ra = await iisGet(addr, `${a}/`, '/myapp/hello', { APPL_MD_PATH: '/LM/W3SVC/1/ROOT/myapp', URL: '/myapp/hello', PATH_INFO: '/myapp/hello' });
    expect(ra.status).toBe(200);
    expect(ra.body.toString()).toMatch(/^site-a \d+ \/myapp \/hello$/);
    // site-b's callable is named by its web.config (wfastcgi's WSGI_HANDLER).
    const rb = await iisGet(addr, b, '/x');
    expect(rb.body.toString()).toMatch(/^site-b \d+/);
    // The relay's CORRAL_SETTING_* params override; a different setting set is a different pool.
    const rc = await iisGet(addr, a, '/', { CORRAL_SETTING_WSGI_APP: 'wsgi:application', CORRAL_SETTING_CORRAL_THREADS: '2' });
    expect(rc.status).toBe(200);
    const pid = (r: { body: Buffer }) => r.body.toString().split(' ')[1];
    expect(pid(rc)).not.toBe(pid(ra));
    expect(c.logs.filter((l) => l.msg === 'app started for a request')).toHaveLength(3);
    // The same site again reuses its pool.
    expect(pid(await iisGet(addr, a, '/'))).toBe(pid(ra));
  });

  it('runs no Python code for a root outside allowedRoots', async () => {
    const allowed = tempDir();
    makeApp(allowed, 'ok');
    const outside = makeApp(tempDir(), 'evil');
    const c = startCorral(['serve', '--listen', '127.0.0.1:0', '--allowed-roots', allowed, ...secretArgs()]);
    const addr = await c.fcgiAddress();
    const r = await iisGet(addr, outside, '/');
    expect(r.status).toBe(403);
    expect(r.body.toString()).toContain('CORRAL_ROOT_NOT_ALLOWED');
    expect(existsSync(join(outside, 'imported.txt'))).toBe(false);
    expect(c.logs.some((l) => l.msg === 'worker spawned')).toBe(false);
    // A relative escape is no way around it either.
    const sneaky = await iisGet(addr, join(allowed, '..', outside.split('/').slice(-2).join('/')), '/');
    expect(sneaky.status).toBe(403);
    // Nor is a PYTHONPATH or a DEPLOY_FILE that points outside.
    const viaPath = await iisGet(addr, join(allowed, 'ok'), '/', { CORRAL_SETTING_PYTHONPATH: outside });
    expect(viaPath.status).toBe(403);
    writeFileSync(join(outside, 'deploy.py'), `open(${JSON.stringify(join(outside, 'deployed.txt'))}, 'w').write('ran')\n`);
    const viaDeploy = await iisGet(addr, join(allowed, 'ok'), '/', { CORRAL_SETTING_DEPLOY_FILE: join(outside, 'deploy.py') });
    expect(viaDeploy.status).toBe(403);
    const viaRelative = await iisGet(addr, join(allowed, 'ok'), '/', { CORRAL_SETTING_DEPLOY_FILE: `../../${outside.split('/').slice(-2).join('/')}/deploy.py` });
    expect(viaRelative.status).toBe(403);
    expect(existsSync(join(outside, 'deployed.txt'))).toBe(false);
  });

  it('a service started with only --allowed-roots has no app of its own', async () => {
    const allowed = tempDir();
    const c = startCorral(['serve', '--listen', '127.0.0.1:0', '--allowed-roots', allowed], { cwd: ROOT });
    const addr = await c.fcgiAddress();
    const r = await fcgiGet(addr, '/');
    expect(r.status).toBe(404);
    expect(r.body.toString()).toContain('CORRAL_NO_APP');
    expect(c.logs.some((l) => l.msg === 'worker spawned')).toBe(false);
  });
});
