/**
 * A service that runs apps requests name (allowedRoots, as behind IIS) facing a hostile local
 * FastCGI client: no request-supplied value expands or echoes the service's environment, symlinks
 * out of the allowed roots run nothing, only a relay holding the secret chooses apps and settings,
 * and request-started apps are capped (maxApps, maxTotalWorkers, clamped workers) and reaped.
 */
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { FcgiClient, cgiParams, type FcgiResponse } from '../helpers/fcgi-client.js';

const SECRET = 'a1'.repeat(32);
/** A value only the service's environment holds. */
const SERVICE_SECRET = 'service-only-s3cr3t-4711';

const dirs: string[] = [];
function tempDir(): string {
  // Real path: on some systems the temp folder itself is behind a symlink.
  const d = realpathSync(mkdtempSync(join(tmpdir(), 'corral-sec-')));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** An app answering its name, sys.path and whether the relay token reached its environ; it leaves a marker when imported. */
function makeApp(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'wsgi.py'),
    `import os, sys\nopen(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imported.txt'), 'a').write('x')\n` +
      `def application(environ, start_response):\n` +
      `    body = '%s|%s|%s' % ('${name}', 'CORRAL_RELAY_TOKEN' in environ, ';'.join(sys.path))\n` +
      `    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [body.encode()]\n`,
  );
  return dir;
}

function secretFile(): string {
  const file = join(tempDir(), 'relay.secret');
  writeFileSync(file, `${SECRET}\n`, { mode: 0o600 });
  return file;
}

async function serve(allowed: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ c: CorralProcess; addr: { host: string; port: number } }> {
  const c = startCorral(['serve', '--listen', '127.0.0.1:0', '--allowed-roots', allowed, '--workers', '1', '--relay-secret-file', secretFile(), ...extra], { env });
  return { c, addr: await c.fcgiAddress() };
}

/** A request naming `physical`; `token` null sends none (a plain FastCGI client). */
async function get(addr: { host: string; port: number }, physical: string, extra: Record<string, string> = {}, token: string | null = SECRET): Promise<FcgiResponse> {
  const c = await FcgiClient.connect(addr);
  try {
    return await c.request(1, cgiParams('GET', '/', { APPL_PHYSICAL_PATH: physical, SERVER_SOFTWARE: 'Microsoft-IIS/10.0', ...(token === null ? {} : { CORRAL_RELAY_TOKEN: token }), ...extra }));
  } finally {
    c.close();
  }
}

const spawned = (c: CorralProcess): number => c.logs.filter((l) => l.msg === 'worker spawned').length;

describe('defect 6: no request-supplied value reads the service environment', () => {
  it('does not expand %VAR% from the service environment and echoes nothing back', async () => {
    const sites = tempDir();
    const app = makeApp(sites, 'site');
    const { c, addr } = await serve(sites, [], { CORRAL_TEST_SECRET: SERVICE_SECRET });
    // A number setting naming the secret: the old code expanded it and quoted it in the 500 page.
    const bad = await get(addr, app, { CORRAL_SETTING_CORRAL_WORKERS: '%CORRAL_TEST_SECRET%' });
    expect(bad.status).toBe(500);
    expect(bad.body.toString()).toContain('CORRAL_BAD_APP_SETTINGS');
    expect(bad.body.toString()).not.toContain(SERVICE_SECRET);
    expect(bad.body.toString()).not.toContain('%CORRAL_TEST_SECRET%');
    // A path setting naming it: an unknown name, so empty (as wfastcgi), never the secret's value.
    const path = await get(addr, app, { CORRAL_SETTING_PYTHONPATH: '%CORRAL_TEST_SECRET%;%APPL_PHYSICAL_PATH%/lib' });
    expect(path.status).toBe(200);
    expect(path.body.toString()).not.toContain(SERVICE_SECRET);
    expect(path.body.toString()).not.toContain('CORRAL_TEST_SECRET');
    // The documented name still expands.
    expect(path.body.toString()).toContain(join(app, 'lib'));
    // web.config values are no way around it either.
    const other = makeApp(sites, 'other');
    writeFileSync(join(other, 'web.config'), '<configuration><appSettings><add key="WSGI_APP" value="%CORRAL_TEST_SECRET%" /></appSettings></configuration>');
    const web = await get(addr, other);
    expect(web.status).toBe(500);
    expect(web.body.toString()).not.toContain(SERVICE_SECRET);
    expect(c.logs.map((l) => JSON.stringify(l)).join('\n')).not.toContain(SERVICE_SECRET);
  });
});

describe('defect 7: allowedRoots compares real paths', () => {
  it('runs nothing through a symlink out of the root, and still allows a symlinked root', async () => {
    const sites = tempDir();
    makeApp(sites, 'ok');
    const outside = makeApp(tempDir(), 'evil');
    symlinkSync(outside, join(sites, 'link'));
    symlinkSync(tempDir(), join(sites, 'libs'));
    const { c, addr } = await serve(sites);
    const viaLink = await get(addr, join(sites, 'link'));
    expect(viaLink.status).toBe(403);
    expect(viaLink.body.toString()).toContain('CORRAL_ROOT_NOT_ALLOWED');
    expect(viaLink.body.toString()).not.toContain(outside);
    const viaPath = await get(addr, join(sites, 'ok'), { CORRAL_SETTING_PYTHONPATH: join(sites, 'libs') });
    expect(viaPath.status).toBe(403);
    expect(existsSync(join(outside, 'imported.txt'))).toBe(false);
    expect(spawned(c)).toBe(0);
    // A log path through the link is not code: the app runs, the path is ignored (not written)
    // with a warning, and the lines go to the service log.
    const viaLog = await get(addr, join(sites, 'ok'), { CORRAL_SETTING_WSGI_LOG: join(sites, 'libs', 'not-yet', 'app.log') });
    expect(viaLog.status).toBe(200);
    expect(existsSync(join(sites, 'libs', 'not-yet'))).toBe(false);
    await c.waitForLog((l) => l.setting === 'WSGI_LOG' && /outside its directory, allowedRoots and logRoots/.test(String(l.msg)));

    // The allowed root itself behind a symlink: requests naming either path are served.
    const real = tempDir();
    const app = makeApp(real, 'site');
    const linked = join(tempDir(), 'sites-link');
    symlinkSync(real, linked);
    const { addr: addr2 } = await serve(linked);
    expect((await get(addr2, app)).status).toBe(200);
    const r = await get(addr2, join(linked, 'site'));
    expect(r.status).toBe(200);
    expect(r.body.toString()).toMatch(/^site\|False\|/);
  });
});

describe('defect 8: only an authenticated relay chooses apps and settings', () => {
  it('ignores and logs (once) app selection and settings from a client without the secret; strips the token', async () => {
    const sites = tempDir();
    const app = makeApp(sites, 'site');
    const { c, addr } = await serve(sites);
    for (const token of [null, null, 'wrong'.repeat(8)]) {
      const r = await get(addr, app, { CORRAL_SETTING_CORRAL_WORKERS: '200' }, token);
      expect(r.status).toBe(403);
      expect(r.body.toString()).toContain('CORRAL_ROOT_NOT_ALLOWED');
    }
    expect(existsSync(join(app, 'imported.txt'))).toBe(false);
    // With the secret: served, and the app never sees the token.
    const ok = await get(addr, app);
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toMatch(/^site\|False\|/);
    // Log lines arrive in order: once this one is in, the warnings before it are too.
    await c.waitForMsg('app started for a request');
    // One app started, by the request with the secret only.
    expect(c.logs.filter((l) => l.msg === 'app configuration')).toHaveLength(1);
    expect(c.logs.filter((l) => String(l.msg).startsWith('a request without the relay secret named an app'))).toHaveLength(1);
    expect(c.logs.filter((l) => String(l.msg).startsWith('a request without the relay secret carried CORRAL_SETTING_'))).toHaveLength(1);
    expect(c.logs.filter((l) => String(l.msg).startsWith('a request carried a wrong relay secret'))).toHaveLength(1);
  });

  it('caps request-started apps (maxApps), reaps idle ones (appIdleTimeout) and clamps workers', async () => {
    const sites = tempDir();
    const a = makeApp(sites, 'a');
    const b = makeApp(sites, 'b');
    const { c, addr } = await serve(sites, ['--max-apps', '1', '--app-idle-timeout', '1', '--max-total-workers', '2']);
    const ra = await get(addr, a, { CORRAL_SETTING_CORRAL_WORKERS: '50' });
    expect(ra.status).toBe(200);
    expect((await c.waitForMsg('app settings clamped')).asked).toMatchObject({ workers: 50 });
    const full = await get(addr, b);
    expect(full.status).toBe(503);
    expect(full.body.toString()).toContain('CORRAL_TOO_MANY_APPS');
    expect(existsSync(join(b, 'imported.txt'))).toBe(false);
    // Idle for appIdleTimeout: a is stopped and forgotten, b may start.
    await c.waitForMsg('idle app stopped and forgotten (appIdleTimeout)');
    await c.waitForLog(() => c.logs.filter((l) => l.msg === 'pool stopped').length >= 1);
    const rb = await get(addr, b);
    expect(rb.status).toBe(200);
    expect(rb.body.toString()).toMatch(/^b\|/);
  });

  it('refuses a new app that cannot get its minimum within maxTotalWorkers', async () => {
    const sites = tempDir();
    const a = makeApp(sites, 'a');
    const b = makeApp(sites, 'b');
    const { c, addr } = await serve(sites, ['--max-total-workers', '2', '--app-idle-timeout', '0']);
    expect((await get(addr, a, { CORRAL_SETTING_CORRAL_WORKERS: '2' })).status).toBe(200);
    await c.waitForLog(() => c.logs.filter((l) => l.msg === 'worker ready').length >= 2);
    const r = await get(addr, b);
    expect(r.status).toBe(503);
    expect(r.body.toString()).toContain('CORRAL_WORKER_LIMIT');
    expect(existsSync(join(b, 'imported.txt'))).toBe(false);
    expect(spawned(c)).toBe(2);
  });
});
