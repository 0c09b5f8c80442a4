/**
 * `corral serve` started by IIS's HttpPlatformHandler (HTTP_PLATFORM_PORT) or the ASP.NET Core
 * Module out-of-process (ASPNETCORE_PORT, ASPNETCORE_TOKEN, ASPNETCORE_APPL_PATH): HTTP on the
 * loopback port the module chose, forwarded headers honoured from loopback, the pairing token
 * checked, the app mounted under the IIS application's path. Requests are sent from loopback
 * with the headers IIS adds, as the module would send them.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEBIAN_PYTHON, FIXTURES, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { freePort } from '../helpers/nginx.js';
import { loadSettings } from '../../src/config/load.js';
import { detectPlatform, platformSettings, type PlatformMode } from '../../src/cli/iis-platform.js';
import { forwardedClient, forwardedHost, forwardedProto, isLoopback, splitMount, tokenMatches } from '../../src/front/forwarded.js';

const dirs: string[] = [];

afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** What flask_reports_environ.py answers. */
interface Report {
  script_name: string;
  path_info: string;
  remote_addr: string;
  peer_addr: string | null;
  url_scheme: string;
  http_host: string;
  token_header: string | null;
  forwarded_for: string | null;
  url_for: string;
  url_for_external: string;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * An IIS site folder: the Flask fixture and a web.config whose appSettings name it. Only the
 * web.config says which callable to run, so a 200 also shows the appSettings were read.
 */
function siteDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'corral-hph-'));
  dirs.push(dir);
  copyFileSync(join(FIXTURES, 'flask_reports_environ.py'), join(dir, 'flask_reports_environ.py'));
  writeFileSync(
    join(dir, 'web.config'),
    `<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <appSettings>
    <add key="WSGI_HANDLER" value="flask_reports_environ.application" />
  </appSettings>
</configuration>
`,
  );
  return dir;
}

/** Starts corral the way the module would, with `env` as the module sets it; resolves once the app is ready. */
async function startedByIis(env: Record<string, string>, args: string[] = []): Promise<{ c: CorralProcess; dir: string }> {
  const dir = siteDir();
  const c = startCorral(['serve', dir, '--python', DEBIAN_PYTHON, '--workers', '1', ...args], {
    cwd: dir,
    // Any module variable of the test runner's own environment is cleared first.
    env: { HTTP_PLATFORM_PORT: '', ASPNETCORE_PORT: '', ASPNETCORE_TOKEN: '', ASPNETCORE_APPL_PATH: '', CORRAL_MOUNT: '', CORRAL_TRUST_FORWARDED: '', CORRAL_HTTP: '', CORRAL_LISTEN: '', ...env },
  });
  await c.waitForMsg('app ready', 60_000);
  return { c, dir };
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host: 'www.example.com', ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (t: string) => (body += t));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function report(a: Answer): Report {
  expect(a.status, a.body).toBe(200);
  return JSON.parse(a.body) as Report;
}

describe('HttpPlatformHandler (HTTP_PLATFORM_PORT)', () => {
  it('listens HTTP on 127.0.0.1:<port> only, reads web.config, trusts the forwarded headers and serves under --mount', async () => {
    const port = await freePort();
    const { c } = await startedByIis({ HTTP_PLATFORM_PORT: String(port) }, ['--mount', '/app']);
    const started = await c.waitForMsg(`started by IIS HttpPlatformHandler: HTTP on 127.0.0.1:${port}, no FastCGI listener`);
    expect(started).toMatchObject({ platform: 'HttpPlatformHandler', why: 'HTTP_PLATFORM_PORT is set and http is not', fastcgi: false, trustForwarded: true, mount: '/app', webConfigAppSettings: ['WSGI_HANDLER'] });
    expect((await c.httpAddress()).port).toBe(port);
    expect(c.logs.some((l) => l.msg === 'FastCGI front listening')).toBe(false);

    const r = report(await get(port, '/app/hello', { 'x-forwarded-for': '203.0.113.7:50123', 'x-forwarded-proto': 'https' }));
    expect(r).toMatchObject({
      script_name: '/app',
      path_info: '/hello',
      remote_addr: '203.0.113.7',
      peer_addr: '127.0.0.1',
      url_scheme: 'https',
      url_for: '/app/page',
      url_for_external: 'https://www.example.com/app/page',
    });
    // The mount itself, without a trailing slash, reaches the app (PATH_INFO empty): Flask redirects it to its root under the prefix.
    const bare = await get(port, '/app');
    expect(bare.status).toBe(308);
    expect(bare.headers.location).toMatch(/\/app\/$/);

    for (const outside of ['/', '/other', '/application']) {
      const a = await get(port, outside);
      expect(a.status, outside).toBe(404);
      expect(a.headers['x-corral-error']).toBe('CORRAL_OUTSIDE_MOUNT');
    }
  }, 120_000);

  it('ignores forwarded headers when trustForwarded is off', async () => {
    const port = await freePort();
    await startedByIis({ HTTP_PLATFORM_PORT: String(port) }, ['--trust-forwarded', 'false']);
    const r = report(await get(port, '/hello', { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' }));
    expect(r).toMatchObject({ script_name: '', path_info: '/hello', remote_addr: '127.0.0.1', peer_addr: null, url_scheme: 'http', http_host: 'www.example.com', forwarded_for: '203.0.113.7' });
  }, 120_000);
});

describe('ASP.NET Core Module out-of-process (ASPNETCORE_PORT, ASPNETCORE_TOKEN)', () => {
  const TOKEN = 'a1f4c0de-3e6b-4c1e-9f7a-2b6c0d9e8f11';

  it('requires the pairing token, hides it from the app, and mounts the app at ASPNETCORE_APPL_PATH', async () => {
    const port = await freePort();
    const { c } = await startedByIis({ ASPNETCORE_PORT: String(port), ASPNETCORE_TOKEN: TOKEN, ASPNETCORE_APPL_PATH: '/App/' });
    expect(await c.waitForMsg(`started by IIS AspNetCoreModule: HTTP on 127.0.0.1:${port}, no FastCGI listener`)).toMatchObject({ mount: '/App', pairingToken: true });

    const ok = report(await get(port, '/app/x', { 'ms-aspnetcore-token': TOKEN, 'x-forwarded-for': '[2001:db8::5]:443', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'site.example:8443' }));
    expect(ok).toMatchObject({
      // IIS matches application paths without regard to case; SCRIPT_NAME is the request's spelling.
      script_name: '/app',
      path_info: '/x',
      remote_addr: '2001:db8::5',
      url_scheme: 'https',
      http_host: 'site.example:8443',
      token_header: null,
      url_for_external: 'https://site.example:8443/app/page',
    });

    for (const headers of [{}, { 'ms-aspnetcore-token': 'wrong' }, { 'ms-aspnetcore-token': `${TOKEN}x` }]) {
      const a = await get(port, '/app/x', headers);
      expect(a.status, JSON.stringify(headers)).toBe(400);
      expect(a.headers['x-corral-error']).toBe('CORRAL_BAD_PAIRING_TOKEN');
    }
  }, 120_000);

  it('refuses a port variable that is not a port', async () => {
    const dir = siteDir();
    const c = startCorral(['serve', dir], { env: { ASPNETCORE_PORT: 'eighty', CORRAL_HTTP: '' } });
    expect((await c.exited).code).toBe(2);
    expect(c.stderr).toContain('ASPNETCORE_PORT="eighty" is not a TCP port');
  }, 30_000);
});

describe('forwarded header parsing', () => {
  it('takes the last hop, with or without a port, and refuses what is not an address', () => {
    expect(forwardedClient('10.0.0.1, 203.0.113.7:50123')).toEqual({ address: '203.0.113.7', port: '50123' });
    expect(forwardedClient('[::1]:8080')).toEqual({ address: '::1', port: '8080' });
    expect(forwardedClient('2001:db8::1')).toEqual({ address: '2001:db8::1', port: null });
    expect(forwardedClient('unknown')).toBeNull();
    expect(forwardedClient(undefined)).toBeNull();
    expect(forwardedProto('http, HTTPS')).toBe('https');
    expect(forwardedProto('ftp')).toBeNull();
    expect(forwardedHost('a.example, b.example:81')).toBe('b.example:81');
    expect(forwardedHost('bad host/x')).toBeNull();
  });

  it('knows loopback peers, mount prefixes and pairing tokens', () => {
    expect(['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1'].every(isLoopback)).toBe(true);
    expect(['10.0.0.1', '::ffff:10.0.0.1', '2001:db8::1', undefined].some(isLoopback)).toBe(false);
    expect(splitMount('/app/x', '/app')).toEqual({ scriptName: '/app', pathInfo: '/x' });
    expect(splitMount('/application', '/app')).toBeNull();
    expect(splitMount('/x', '')).toEqual({ scriptName: '', pathInfo: '/x' });
    expect(tokenMatches('t', 't')).toBe(true);
    expect(tokenMatches(['t'], 't')).toBe(false);
    expect(tokenMatches(undefined, 't')).toBe(false);
  });
});

describe('platform mode settings', () => {
  const load = (dir: string, env: Record<string, string>, argv: string[] = []) => loadSettings({ argv: [dir, ...argv], env, cwd: dir, platform: 'linux' });

  it('puts web.config appSettings above the config file and below the environment and flags', () => {
    const dir = siteDir();
    writeFileSync(join(dir, 'corral.json'), JSON.stringify({ wsgiApp: 'from_config:app', threads: 3 }));
    writeFileSync(
      join(dir, 'web.config'),
      '<configuration><appSettings><add key="WSGI_HANDLER" value="from_web:app"/><add key="CORRAL_THREADS" value="5"/><add key="PYTHONPATH" value="lib"/></appSettings></configuration>',
    );
    const env = { HTTP_PLATFORM_PORT: '8123', CORRAL_CONFIG: join(dir, 'corral.json') };
    const plain = load(dir, env);
    const mode = detectPlatform(env, plain) as PlatformMode;
    expect(mode).toMatchObject({ module: 'HttpPlatformHandler', port: 8123, pairingToken: null });
    const over = platformSettings(plain, mode, 'linux');
    expect(over.problems).toEqual([]);
    expect(over.settings).toMatchObject({ wsgiApp: 'from_web:app', threads: 5, pythonPath: [join(dir, 'lib')], http: { kind: 'tcp', host: '127.0.0.1', port: 8123 }, trustForwarded: true, mount: '' });

    const withEnv = load(dir, { ...env, WSGI_APP: 'from_env:app' }, ['--threads', '7']);
    const applied = platformSettings(withEnv, detectPlatform(env, withEnv) as PlatformMode, 'linux');
    expect(applied.settings).toMatchObject({ wsgiApp: 'from_env:app', threads: 7 });
    expect(applied.webConfig).toEqual(['PYTHONPATH']);
  });

  it('leaves an explicit http, trustForwarded or mount alone', () => {
    const dir = siteDir();
    expect(detectPlatform({ HTTP_PLATFORM_PORT: '8123' }, load(dir, {}, ['--http', '127.0.0.1:9999']))).toBeNull();
    const env = { ASPNETCORE_PORT: '8124', ASPNETCORE_TOKEN: 't', ASPNETCORE_APPL_PATH: '/app' };
    const loaded = load(dir, env, ['--trust-forwarded', 'off', '--mount', '/other']);
    const mode = detectPlatform(env, loaded) as PlatformMode;
    expect(mode).toMatchObject({ module: 'AspNetCoreModule', port: 8124, pairingToken: 't', applPath: '/app' });
    expect(platformSettings(loaded, mode, 'linux').settings).toMatchObject({ trustForwarded: false, mount: '/other' });
  });
});
