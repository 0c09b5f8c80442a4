/**
 * `corral migrate-webconfig`'s rewrite: a Helicon Zoo web.config (comments, another section, a
 * static folder's <location>), Microsoft's wfastcgi Django web.config, and corral's own template
 * (no change). Every setting survives (the merged settings before and after are the same) and
 * everything the rewrite does not touch stays byte for byte.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { migrateWebConfig } from '../../src/config/webconfig-migrate.js';
import { mergedSettings, parseWebConfig, WebConfigError } from '../../src/config/webconfig.js';

const FIX = new URL('../fixtures/webconfig/', import.meta.url);
const read = (name: string): string => readFileSync(new URL(name, FIX), 'utf8');
const settingsOf = (xml: string): [string, string][] => [...mergedSettings(parseWebConfig(xml))].sort(([a], [b]) => a.localeCompare(b));

describe('migrate-webconfig: Helicon Zoo', () => {
  const zoo = read('helicon-zoo-django.config');
  const r = migrateWebConfig(zoo, 'web.config');

  it('gives the reviewed corral form, byte for byte', () => {
    expect(r.text).toBe(read('helicon-zoo-django.migrated.config'));
    expect(r.from).toEqual(['heliconZoo']);
  });

  it('keeps every setting: Zoo variables become appSettings keys of the same names and values', () => {
    expect(settingsOf(r.text)).toEqual(settingsOf(zoo));
    expect(parseWebConfig(r.text).zoo.size).toBe(0);
    expect(r.text).not.toMatch(/heliconZoo/i);
  });

  it('keeps comments and other sections, and points the static folder\'s <remove> at corral', () => {
    for (const kept of ['<!-- Helicon Zoo: Django on Python 2.7 -->', '<!-- the WSGI entry point -->', '<!-- keep this -->', '<clientCache cacheControlMode="UseMaxAge" cacheControlMaxAge="1.00:00:00" />'])
      expect(r.text).toContain(kept);
    expect(r.text.match(/<add name="corral"/g)).toHaveLength(1);
    expect(r.text).toContain('responseBufferLimit="0"');
    expect(r.text.match(/<remove name="corral" \/>/g)).toHaveLength(1);
    expect(r.text).not.toContain('django.project');
  });

  it('lists each change, and warns about VIRTUAL_ENV instead of dropping it', () => {
    expect(r.changes.slice(0, 5)).toEqual(['WSGI_APP', 'PYTHONPATH', 'DJANGO_SETTINGS_MODULE', 'VIRTUAL_ENV', 'DEPLOY_FILE'].map((k) => `${k}: moved from <heliconZoo> environmentVariables to <appSettings>`));
    expect(r.changes).toContain('removed <heliconZoo> (line 4): IIS without Zoo\'s schema answers 500.19 on it');
    expect(r.changes.some((c) => c.startsWith('replaced Zoo handler "django.project.x86" (line 18)'))).toBe(true);
    expect(r.warnings.some((w) => w.startsWith('VIRTUAL_ENV: corral runs the interpreter the service is given'))).toBe(true);
    expect(r.notes).toEqual(['DJANGO_SETTINGS_MODULE: not a corral setting; corral passes it to the app\'s os.environ, as wfastcgi does']);
    expect(r.appcmd.join('\n')).toContain("/+\"[fullPath='C:\\Program Files\\nodejs\\node.exe',arguments='C:\\corral\\dist\\cli\\main.js relay',protocol='NamedPipe'");
  });

  it('adds to an existing <appSettings>, where appSettings win over Zoo as corral reads them (with a warning)', () => {
    const xml = `<configuration>\r\n  <appSettings>\r\n    <add key="WSGI_APP" value="site.wsgi:app" />\r\n  </appSettings>\r\n  <system.webServer>\r\n    <heliconZoo>\r\n      <application name="python.project">\r\n        <environmentVariables>\r\n          <add name="WSGI_APP" value="old:app" />\r\n          <add name="ERROR_LOG_DIR" value="logs" />\r\n          <add name="GONE" value="x" />\r\n          <remove name="GONE" />\r\n        </environmentVariables>\r\n      </application>\r\n    </heliconZoo>\r\n  </system.webServer>\r\n</configuration>\r\n`;
    const m = migrateWebConfig(xml, 'web.config');
    expect(m.text).toBe(`<configuration>\r\n  <appSettings>\r\n    <add key="WSGI_APP" value="site.wsgi:app" />\r\n    <add key="ERROR_LOG_DIR" value="logs" />\r\n  </appSettings>\r\n  <system.webServer>\r\n  </system.webServer>\r\n</configuration>\r\n`);
    expect(settingsOf(m.text)).toEqual(settingsOf(xml));
    expect(m.warnings[0]).toBe('WSGI_APP: <appSettings> has "site.wsgi:app", Zoo had "old:app"; kept the appSettings value (it is the one corral reads)');
    expect(m.changes).toContain('Zoo\'s <remove name="GONE"/> (line 12): applied, not copied');
  });

  it('carries comments along and warns about what it cannot carry over, never dropping it silently', () => {
    const xml = `<configuration>\n  <heliconZoo>\n    <!-- zoo note -->\n    <application name="p">\n      <environmentVariables>\n        <add name="WSGI_APP" value="a:b" />\n      </environmentVariables>\n      <virtualEnv path="x" />\n    </application>\n  </heliconZoo>\n</configuration>\n`;
    const m = migrateWebConfig(xml, 'web.config');
    expect(m.text).toBe(`<configuration>\n  <appSettings>\n    <!-- zoo note -->\n    <add key="WSGI_APP" value="a:b" />\n  </appSettings>\n</configuration>\n`);
    expect(m.warnings).toEqual(['<virtualEnv> (line 8) in Zoo application "p": corral has no such setting; not carried over']);
  });
});

describe('migrate-webconfig: wfastcgi', () => {
  const wf = read('wfastcgi-django.config');
  const r = migrateWebConfig(wf, 'web.config');

  it('keeps <appSettings> as they are and replaces only the wfastcgi handler', () => {
    const handler = /<add name="Python FastCGI"[\s\S]*?\/>/.exec(wf)![0];
    expect(r.text).toBe(wf.replace(handler, '<add name="corral" path="*" verb="*" modules="FastCgiModule"\n           scriptProcessor="C:\\Program Files\\nodejs\\node.exe|C:\\corral\\dist\\cli\\main.js relay"\n           resourceType="Unspecified" requireAccess="Script" responseBufferLimit="0" />'));
    expect(settingsOf(r.text)).toEqual(settingsOf(wf));
    expect(r.from).toEqual(['wfastcgi']);
  });

  it('prints appcmd to register corral and to remove wfastcgi\'s <fastCgi> application, leaving applicationHost.config alone', () => {
    expect(r.appcmd.some((l) => l.includes("/-\"[fullPath='C:\\Python36-32\\python.exe',arguments='C:\\Python36-32\\Lib\\site-packages\\wfastcgi.py']\" /commit:apphost"))).toBe(true);
    expect(r.notes).toEqual(['DJANGO_SETTINGS_MODULE: not a corral setting; corral passes it to the app\'s os.environ, as wfastcgi does']);
  });

  it('accepts WSGI_HANDLER with a call in the middle (a.f().g), as wfastcgi does, and warns about one corral would refuse', () => {
    const withHandler = (h: string): string => wf.replace('django.core.wsgi.get_wsgi_application()', h);
    expect(migrateWebConfig(withHandler('pkg.mod.factory().app'), 'web.config').warnings).toEqual([]);
    expect(migrateWebConfig(withHandler('pkg.mod:factory().app'), 'web.config').warnings).toEqual([]);
    expect(migrateWebConfig(withHandler('mod.make()()'), 'web.config').warnings).toEqual([
      'WSGI_HANDLER="mod.make()()" is not a WSGI app reference corral accepts (module:callable, module.callable, module.factory().attr)',
    ]);
  });

  it('takes node.exe and corral from the options, escaped for XML', () => {
    const m = migrateWebConfig(wf, 'web.config', { node: 'D:\\node & co\\node.exe', corral: 'D:\\corral\\dist\\cli\\main.js' });
    expect(m.text).toContain('scriptProcessor="D:\\node &amp; co\\node.exe|D:\\corral\\dist\\cli\\main.js relay"');
  });
});

describe('migrate-webconfig: other files', () => {
  it('changes nothing in a web.config that is corral\'s already', () => {
    const own = readFileSync(new URL('../../config/iis/web.config', import.meta.url), 'utf8');
    const r = migrateWebConfig(own, 'web.config');
    expect(r.text).toBe(own);
    expect(r.changes).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.appcmd).toEqual([]);
  });

  it('refuses a malformed file with its name and line', () => {
    expect(() => migrateWebConfig('<configuration>\n  <appSettings>\n</configuration>\n', 'C:\\site\\web.config')).toThrow(WebConfigError);
    expect(() => migrateWebConfig('<configuration>\n  <appSettings>\n</configuration>\n', 'C:\\site\\web.config')).toThrow(/^C:\\site\\web\.config:3/);
  });
});
