/**
 * wfastcgi-style sites through the IIS emulator, relay and an auto-started service: Microsoft's
 * Django web.config (WSGI_HANDLER as a factory call, PYTHONPATH, DJANGO_SETTINGS_MODULE and a
 * SECRET_KEY in <appSettings>) puts its keys in the app's os.environ as wfastcgi does; appSettings
 * win over the IIS environment; a machine-wide PYTHONPATH no longer refuses the site; and a PTVS
 * web.config with ptvs_virtualenv_proxy runs activate_this.py, then the real handler.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, FIXTURES } from '../helpers/corral.js';
import { startIis, type IisEmulator } from './emulator.js';
import { childrenOf, serveProcesses, terminate, waitUntil } from './procs.js';

const RELAY_CMD = [process.execPath, CLI, 'relay'];
const dirs: string[] = [];
const emulators: IisEmulator[] = [];
const autoStarted: string[] = [];

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.stop()));
  for (const sock of autoStarted.splice(0)) {
    const services = serveProcesses(sock);
    const workers = services.flatMap(childrenOf);
    await terminate(services);
    await terminate(workers);
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A site folder holding the environ fixture and the given web.config, and a socket path beside it. */
function site(webConfig: string): { dir: string; sock: string; log: string } {
  const top = realpathSync(mkdtempSync(join(tmpdir(), 'corral-wfastcgi-')));
  dirs.push(top);
  const dir = join(top, 'DjangoSite');
  mkdirSync(dir);
  copyFileSync(join(FIXTURES, 'environ_keys_app.py'), join(dir, 'environ_keys_app.py'));
  writeFileSync(join(dir, 'web.config'), webConfig);
  const sock = join(top, 'corral.sock');
  autoStarted.push(sock);
  return { dir, sock, log: join(top, 'relay.log') };
}

function webConfig(settings: Record<string, string>): string {
  const adds = Object.entries(settings).map(([k, v]) => `    <add key="${k}" value="${v}" />`).join('\n');
  return `<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <appSettings>
${adds}
  </appSettings>
  <system.webServer>
    <handlers>
      <add name="Python FastCGI" path="*" verb="*" modules="FastCgiModule" scriptProcessor="C:\\Python\\python.exe|C:\\Python\\Lib\\site-packages\\wfastcgi.py" resourceType="Unspecified" requireAccess="Script" />
    </handlers>
  </system.webServer>
</configuration>
`;
}

async function iis(appPhysicalPath: string, env: Record<string, string>): Promise<IisEmulator> {
  const e = await startIis({ relayCmd: RELAY_CMD, appPhysicalPath, maxInstances: 1, env });
  emulators.push(e);
  return e;
}

function relayEnv(sock: string, log: string): Record<string, string> {
  return { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_WORKERS: '1', CORRAL_LOG_FILE: join(sock, '..', 'service.log') };
}

/** The auto-started service's log lines, once one matches `pred` (pino-roll writes them in the background). */
async function serviceLog(sock: string, pred: (l: Record<string, unknown>) => boolean): Promise<Array<Record<string, unknown>>> {
  const dir = join(sock, '..');
  const read = (): Array<Record<string, unknown>> =>
    readdirSync(dir)
      .filter((f) => /^service\.\d+\.log$/.test(f))
      .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l.trim() !== ''))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  await waitUntil(() => read().some(pred), 15_000, 'a service log line');
  return read();
}

describe('a wfastcgi web.config as Microsoft documents it for Django', () => {
  it('puts the other appSettings keys in os.environ, lets appSettings win over the IIS environment, and logs names only', async () => {
    const secretValue = 'django-insecure-7f3a9c';
    const { dir, sock, log } = site(webConfig({
      PYTHONPATH: '%APPL_PHYSICAL_PATH%',
      WSGI_HANDLER: 'environ_keys_app.get_wsgi_application()',
      DJANGO_SETTINGS_MODULE: 'DjangoSite.settings',
      SECRET_KEY: secretValue,
      EMPTY_ONE: '%NOT_SET_ANYWHERE%',
      PYTHONHOME: 'C:\\elsewhere',
      CORRAL_PASS_ENV: '*',
    }));
    // The IIS environment names another app and carries a machine-wide PYTHONPATH outside allowedRoots:
    // the first loses to web.config, the second is not forwarded at all (it used to refuse the site).
    const e = await iis(dir, { ...relayEnv(sock, log), WSGI_APP: 'nope_app:application', PYTHONPATH: '/opt/machine-wide/lib' });
    const r = await e.request({ url: '/' });
    expect(r.status).toBe(200);
    const environ = JSON.parse(r.body.toString('utf8')) as Record<string, string>;
    expect(environ.DJANGO_SETTINGS_MODULE).toBe('DjangoSite.settings');
    expect(environ.SECRET_KEY).toBe(secretValue);
    expect(environ.EMPTY_ONE).toBe(''); // unknown %VAR%: empty, as wfastcgi
    expect(environ.PYTHONHOME).toBeUndefined();
    expect(environ.PYTHONUNBUFFERED).toBe('1');
    expect(environ.CORRAL_PASS_ENV).toBeUndefined();
    expect(Object.keys(environ).filter((k) => k.startsWith('CORRAL_'))).toEqual([]);

    const lines = await serviceLog(sock, (l) => l.msg === 'app environment from its settings (names only)');
    const line = lines.find((l) => l.msg === 'app environment from its settings (names only)')!;
    expect(line.exported).toEqual(expect.arrayContaining(['DJANGO_SETTINGS_MODULE', 'SECRET_KEY', 'EMPTY_ONE']));
    const ignored = line.ignored as Array<{ name: string; reason: string }>;
    expect(ignored.map((i) => i.name).sort()).toEqual(['CORRAL_PASS_ENV', 'PYTHONHOME']);
    expect(ignored.every((i) => i.reason.length > 0)).toBe(true);
    expect(lines.filter((l) => l.msg === 'app environment from its settings (names only)')).toHaveLength(1);
    // Values never reach the service log.
    expect(JSON.stringify(lines)).not.toContain(secretValue);
    // wfastcgi's default restart regex applies to a site written for it.
    const config = lines.find((l) => l.msg === 'app configuration' && (l.settings as { root?: string } | undefined)?.root === dir);
    expect((config?.settings as { restartFileRegex?: string }).restartFileRegex).toBe('.*((\\.py)|(\\.config))$');
  });

  it('runs a PTVS virtualenv-proxy web.config: activate_this.py first, then WSGI_ALT_VIRTUALENV_HANDLER', async () => {
    const { dir, sock, log } = site(webConfig({
      WSGI_HANDLER: 'ptvs_virtualenv_proxy.get_virtualenv_handler()',
      WSGI_ALT_VIRTUALENV_HANDLER: 'environ_keys_app.application',
      WSGI_ALT_VIRTUALENV_ACTIVATE_THIS: 'env\\Scripts\\activate_this.py'.replace(/\\/g, '/'),
    }));
    mkdirSync(join(dir, 'env', 'Scripts'), { recursive: true });
    writeFileSync(join(dir, 'env', 'Scripts', 'activate_this.py'), 'import os\nos.environ["ACTIVATED_BY"] = __file__\n');
    const e = await iis(dir, relayEnv(sock, log));
    const r = await e.request({ url: '/' });
    expect(r.status).toBe(200);
    const environ = JSON.parse(r.body.toString('utf8')) as Record<string, string>;
    expect(environ.ACTIVATED_BY).toBe('env/Scripts/activate_this.py');
    expect(environ.WSGI_ALT_VIRTUALENV_HANDLER).toBe('environ_keys_app.application');
  });
});
