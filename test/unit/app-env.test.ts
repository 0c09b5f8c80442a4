/**
 * wfastcgi's appSettings semantics, without processes: other keys become the app's environment
 * (never PYTHON* or CORRAL_*), appSettings win over what the relay carries, wfastcgi's default
 * restart regex, Python regex syntax, unknown %VAR% empty, and what the relay forwards.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { appSettings, envRefusal, expandVars, WFASTCGI_RESTART_REGEX, type AppEnvironment } from '../../src/config/app-settings.js';
import { loadSettings } from '../../src/config/load.js';
import { regex } from '../../src/config/kinds.js';
import { fromPythonRegex } from '../../src/config/py-regex.js';
import type { Settings } from '../../src/config/settings.js';
import { parseRestartRegex } from '../../src/watch/mask.js';
import { directArgs, spawnSpec } from '../../src/cli/app.js';
import type { App } from '../../src/cli/app.js';
import { withAppEnv } from '../../src/cli/worker-env.js';
import { AppRouter } from '../../src/cli/router.js';
import { settingsFromEnv } from '../../src/relay/inject.js';
import { RELAY_TOKEN_PARAM } from '../../src/relay/secret.js';
import { silentLogger } from '../../src/log/logger.js';
import type { Upstream } from '../../src/pool/pool.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), 'corral-appenv-')));
  dirs.push(d);
  return d;
}

function base(argv: string[] = []): Readonly<Settings> {
  return loadSettings({ argv, env: {}, cwd: '/srv', platform: 'linux' }).settings;
}
const layer = (origin: string, values: Record<string, string>): { origin: string; values: Map<string, string> } => ({ origin, values: new Map(Object.entries(values)) });

describe('appSettings keys that are not corral settings', () => {
  it('become the app\'s environment, except PYTHON*, CORRAL_*, service-wide settings and bad names (names and reasons only)', () => {
    const r = appSettings(base(), '/srv/site', [layer('web.config', {
      WSGI_HANDLER: 'django.core.wsgi.get_wsgi_application()', DJANGO_SETTINGS_MODULE: 'site.settings', SECRET_KEY: 's3cret',
      PYTHONHOME: '/py', PYTHONDONTWRITEBYTECODE: '1', CORRAL_TOKEN_X: 'x', CORRAL_PYTHON: '/usr/bin/python3', 'BAD NAME': 'v', _FCGI_X_PIPE_: 'p',
    })], 'linux');
    expect(r.problems).toEqual([]);
    expect(r.settings.wsgiApp).toBe('django.core.wsgi.get_wsgi_application()');
    expect(r.env.vars).toEqual({ DJANGO_SETTINGS_MODULE: 'site.settings', SECRET_KEY: 's3cret' });
    expect(r.env.exported).toEqual(['DJANGO_SETTINGS_MODULE', 'SECRET_KEY']);
    expect(r.env.ignored.map((i) => i.name)).toEqual(['PYTHONHOME', 'PYTHONDONTWRITEBYTECODE', 'CORRAL_TOKEN_X', 'CORRAL_PYTHON', 'BAD NAME', '_FCGI_X_PIPE_']);
    expect(JSON.stringify(r.env.ignored)).not.toMatch(/s3cret|\/py|usr\/bin/);
    expect(envRefusal('CORRAL_PYTHON', true)).toMatch(/service-wide/);
    expect(envRefusal('PYTHONPATH', false)).toMatch(/PYTHON\*/);
    expect(envRefusal('Django_Debug', false)).toBeNull();
  });

  it('later layers win; on Windows names fold case', () => {
    const r = appSettings(base(), 'C:\\site', [layer('IIS environment', { Db_Host: 'iis', ONLY_IIS: '1' }), layer('web.config', { DB_HOST: 'web' })], 'win32');
    expect(r.env.vars).toEqual({ DB_HOST: 'web', ONLY_IIS: '1' });
    const p = appSettings(base(), '/srv/a', [layer('IIS environment', { Db_Host: 'iis' }), layer('web.config', { DB_HOST: 'web' })], 'linux');
    expect(p.env.vars).toEqual({ Db_Host: 'iis', DB_HOST: 'web' });
  });

  it('expands %APPL_PHYSICAL_PATH% and turns unknown %VAR% into "" (wfastcgi), never the service\'s environment', () => {
    process.env.CORRAL_TEST_LEAK2 = 'leaked';
    try {
      const r = appSettings(base(), '/srv/a', [layer('web.config', { MEDIA: '%APPL_PHYSICAL_PATH%/media', X: 'a%CORRAL_TEST_LEAK2%b', PYTHONPATH: '%APPL_PHYSICAL_PATH%;%NOPE%' })], 'linux', { APPL_PHYSICAL_PATH: '/srv/a' });
      expect(r.env.vars).toEqual({ MEDIA: '/srv/a/media', X: 'ab' });
      expect(r.settings.pythonPath).toEqual(['/srv/a']);
    } finally {
      delete process.env.CORRAL_TEST_LEAK2;
    }
    expect(expandVars('%A%-%B%', 'linux', { A: '1' })).toBe('1-%B%');
    expect(expandVars('%A%-%B%', 'linux', { A: '1' }, 'empty')).toBe('1-');
    expect(expandVars('%appl_physical_path%|%B%', 'win32', {}, 'keep-service')).toBe('%appl_physical_path%|');
  });
});

describe('wfastcgi\'s default WSGI_RESTART_FILE_REGEX', () => {
  it('applies when a layer names WSGI_HANDLER and nothing sets a mask or regex', () => {
    expect(appSettings(base(), '/srv/a', [layer('web.config', { WSGI_HANDLER: 'app.application' })], 'linux').settings.restartFileRegex).toBe(WFASTCGI_RESTART_REGEX);
    expect(appSettings(base(), '/srv/a', [layer('web.config', { WSGI_APP: 'app:application' })], 'linux').settings.restartFileRegex).toBeNull();
    expect(appSettings(base(), '/srv/a', [layer('web.config', { WSGI_HANDLER: 'app.application', WSGI_RESTART_FILE_REGEX: '' })], 'linux').settings.restartFileRegex).toBeNull();
    const masked = appSettings(base(), '/srv/a', [layer('web.config', { WSGI_HANDLER: 'app.application', WATCH_FILE_CHANGES_MASK: '*.ini' })], 'linux').settings;
    expect([masked.restartFileRegex, masked.watchFileChangesMask]).toEqual([null, '*.ini']);
    expect(appSettings(base(['--watch', '*.py']), '/srv/a', [layer('web.config', { WSGI_HANDLER: 'app.application' })], 'linux').settings.restartFileRegex).toBeNull();
    const re = parseRestartRegex(WFASTCGI_RESTART_REGEX)!;
    expect([re('/srv/a/x.py', 'x.py'), re('/srv/a/web.config', 'web.config'), re('/srv/a/x.txt', 'x.txt')]).toEqual([true, true, false]);
  });
});

describe('Python regex syntax in WSGI_RESTART_FILE_REGEX', () => {
  it('translates named groups, backreferences and leading flags; refuses what would match differently', () => {
    expect(fromPythonRegex('(?P<ext>py|config)$')).toEqual({ ok: true, source: '(?<ext>py|config)$', flags: '' });
    expect(fromPythonRegex('(?P<c>a)(?P=c)')).toEqual({ ok: true, source: '(?<c>a)\\k<c>', flags: '' });
    expect(fromPythonRegex('(?i).*\\.PY$')).toEqual({ ok: true, source: '.*\\.PY$', flags: 'i' });
    expect(fromPythonRegex('[(?P<]x')).toEqual({ ok: true, source: '[(?P<]x', flags: '' });
    expect(fromPythonRegex('a(?#note)')).toMatchObject({ ok: false, reason: expect.stringMatching(/comments/) });
    expect(fromPythonRegex('a(?i:b)')).toMatchObject({ ok: false, reason: expect.stringMatching(/only at the start/) });
    expect(fromPythonRegex('x\\Z')).toMatchObject({ ok: false, reason: expect.stringMatching(/Python-only/) });
    expect(fromPythonRegex('(?x) a b')).toMatchObject({ ok: false });
    expect(fromPythonRegex('(')).toMatchObject({ ok: false, reason: expect.stringMatching(/does not compile/) });
  });

  it('is what the setting accepts and the watcher matches', () => {
    expect(regex().fromText('.*(?P<ext>\\.py)$', { baseDir: '/', platform: 'linux' }).ok).toBe(true);
    const bad = regex().fromText('a(?#x)', { baseDir: '/', platform: 'linux' });
    expect(bad.ok).toBe(false);
    const m = parseRestartRegex('(?i).*(?P<ext>\\.PY)$')!;
    expect(m('/srv/a/app.py', 'app.py')).toBe(true);
    expect(m('/srv/a/app.txt', 'app.txt')).toBe(false);
  });
});

describe('the worker\'s environment', () => {
  it('gets the app\'s variables over the inherited ones, corral\'s own staying', () => {
    const spec = spawnSpec(base(), false, { DJANGO_SETTINGS_MODULE: 'site.settings' });
    expect(spec.env.DJANGO_SETTINGS_MODULE).toBe('site.settings');
    expect(spec.env.PYTHONUNBUFFERED).toBe('1');
    expect(withAppEnv({ Path: 'C:\\a', X: '1' }, { PATH: 'C:\\b' }, 'win32')).toEqual({ PATH: 'C:\\b', X: '1' });
    expect(withAppEnv({ Path: '/a' }, { PATH: '/b' }, 'linux')).toEqual({ Path: '/a', PATH: '/b' });
  });
});

describe('where a worker logs the stack of a slow request (--stack-after)', () => {
  const after = (args: readonly string[]): string | undefined => {
    const i = args.lastIndexOf('--stack-after');
    return i < 0 ? undefined : args[i + 1]; // the last one counts (argparse)
  };
  it('proxy: slowLogAfter, and at the latest a second before requestTimeout kills the worker', () => {
    expect(after(spawnSpec(base(), false).args)).toBe('89');
    expect(after(spawnSpec(base(['--slow-log-after', '5']), false).args)).toBe('5');
    expect(after(spawnSpec(base(['--slow-log-after', '200']), false).args)).toBe('89');
    expect(after(spawnSpec(base(['--request-timeout', '1']), false).args)).toBe('0.5');
    expect(after(spawnSpec(base(['--request-timeout', '0']), false).args)).toBeUndefined();
    expect(after(spawnSpec(base(['--request-timeout', '0', '--slow-log-after', '3']), false).args)).toBe('3');
  });
  it('direct: only slowLogAfter (the worker logs a timed-out request\'s stack as it answers 504)', () => {
    const args = (argv: string[]): string[] => [...spawnSpec(base(argv), false).args, ...directArgs(base(argv))];
    expect(after(args([]))).toBe('0');
    expect(after(args(['--slow-log-after', '5']))).toBe('5');
  });
});

describe('what the relay forwards', () => {
  it('never a PYTHONPATH from the environment unless the site opts in; the PTVS proxy names too', () => {
    const env = { PYTHONPATH: '/opt/machine', WSGI_HANDLER: 'a.b', WSGI_ALT_VIRTUALENV_HANDLER: 'c.d', DJANGO_SETTINGS_MODULE: 'x' };
    expect(settingsFromEnv(env, 'linux')).toEqual([['WSGI_HANDLER', 'a.b'], ['WSGI_ALT_VIRTUALENV_HANDLER', 'c.d']]);
    expect(settingsFromEnv({ ...env, CORRAL_FORWARD_PYTHONPATH: 'yes' }, 'linux')).toContainEqual(['PYTHONPATH', '/opt/machine']);
    expect(settingsFromEnv({ ...env, CORRAL_FORWARD_PYTHONPATH: 'no' }, 'linux').map(([n]) => n)).not.toContain('PYTHONPATH');
  });
});

/** An allowed root with a relay secret file and an empty site folder under it. */
function site(): { top: string; siteDir: string; secret: string } {
  const top = tempDir();
  const siteDir = join(top, 'site');
  const secret = join(top, 'secret');
  writeFileSync(secret, 'k'.repeat(64), { mode: 0o600 });
  mkdirSync(siteDir);
  return { top, siteDir, secret };
}

describe('the router', () => {
  it('lets web.config appSettings win over the relay-carried settings and hands the app its environment', () => {
    const { top, siteDir, secret } = site();
    writeFileSync(join(siteDir, 'web.config'), '<configuration><appSettings><add key="WSGI_HANDLER" value="web.app" /><add key="DB" value="web" /></appSettings></configuration>');
    const made: Array<{ settings: Readonly<Settings>; env: AppEnvironment | null }> = [];
    const fake = (settings: Readonly<Settings>, env: AppEnvironment | null): App => {
      made.push({ settings, env });
      return { settings, start: () => undefined, pool: {} as Upstream } as unknown as App;
    };
    const router = new AppRouter(base(['--allowed-roots', top, '--relay-secret-file', secret]), [], fake, silentLogger(), { platform: 'linux' });
    try {
      router.route(new Map([
        [RELAY_TOKEN_PARAM, 'k'.repeat(64)], ['APPL_PHYSICAL_PATH', siteDir],
        ['CORRAL_SETTING_WSGI_APP', 'iis:app'], ['CORRAL_SETTING_DB', 'iis'], ['CORRAL_SETTING_ONLY_IIS', '1'],
      ]));
    } finally {
      router.close();
    }
    expect(made).toHaveLength(1);
    expect(made[0]!.settings.wsgiApp).toBe('web.app');
    expect(made[0]!.env?.vars).toEqual({ DB: 'web', ONLY_IIS: '1' });
  });

  it('runs an app whose WSGI_LOG is outside its roots, logging to the default place, unless logRoots allows the file', () => {
    const { top, siteDir, secret } = site();
    const logs = tempDir(); // C:\\Logs in Microsoft's wfastcgi examples
    writeFileSync(join(siteDir, 'web.config'), `<configuration><appSettings><add key="WSGI_HANDLER" value="app.application" /><add key="WSGI_LOG" value="${join(logs, 'wfastcgi.log')}" /></appSettings></configuration>`);
    const run = (extra: string[]): Readonly<Settings> | unknown => {
      const made: Array<Readonly<Settings>> = [];
      const fake = (settings: Readonly<Settings>): App => {
        made.push(settings);
        return { settings, start: () => undefined, pool: {} as Upstream } as unknown as App;
      };
      const router = new AppRouter(base(['--allowed-roots', top, '--relay-secret-file', secret, ...extra]), [], fake, silentLogger(), { platform: 'linux' });
      try {
        const r = router.route(new Map([[RELAY_TOKEN_PARAM, 'k'.repeat(64)], ['APPL_PHYSICAL_PATH', siteDir]]));
        return made[0] ?? r;
      } finally {
        router.close();
      }
    };
    expect(run([])).toMatchObject({ wsgiApp: 'app.application', wsgiLog: null });
    expect(run(['--log-roots', logs])).toMatchObject({ wsgiLog: realpathSync(join(logs)) === logs ? join(logs, 'wfastcgi.log') : expect.stringContaining('wfastcgi.log') });
  });

  it('refuses a WSGI_ALT_VIRTUALENV_ACTIVATE_THIS outside allowedRoots (it is code the worker runs)', () => {
    const { top, siteDir, secret } = site();
    const outside = join(tempDir(), 'activate_this.py');
    writeFileSync(join(siteDir, 'web.config'), `<configuration><appSettings><add key="WSGI_HANDLER" value="ptvs_virtualenv_proxy.get_virtualenv_handler()" /><add key="WSGI_ALT_VIRTUALENV_HANDLER" value="app.application" /><add key="WSGI_ALT_VIRTUALENV_ACTIVATE_THIS" value="${outside}" /></appSettings></configuration>`);
    let made = 0;
    const router = new AppRouter(base(['--allowed-roots', top, '--relay-secret-file', secret]), [], () => {
      made++;
      return {} as App;
    }, silentLogger(), { platform: 'linux' });
    try {
      const r = router.route(new Map([[RELAY_TOKEN_PARAM, 'k'.repeat(64)], ['APPL_PHYSICAL_PATH', siteDir]]));
      expect(r).toMatchObject({ code: 'CORRAL_ROOT_NOT_ALLOWED' });
    } finally {
      router.close();
    }
    expect(made).toBe(0);
  });
});
