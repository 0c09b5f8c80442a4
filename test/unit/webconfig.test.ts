/**
 * web.config as IIS reads it for the app's own folder: root <appSettings> and <location path=".">
 * blocks merged in document order with add/remove/clear, Helicon Zoo's environmentVariables under
 * appSettings, XML escapes and CDATA, and a malformed file named with its line.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseWebConfig, readAppSettings, readWebConfig, webConfigStamp, WebConfigError } from '../../src/config/webconfig.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function site(xml: string, name = 'web.config'): string {
  const d = mkdtempSync(join(tmpdir(), 'corral-webconfig-'));
  dirs.push(d);
  writeFileSync(join(d, name), xml);
  return d;
}

const app = (web: ReturnType<typeof parseWebConfig>): Array<[string, string]> => [...web.appSettings];

describe('parseWebConfig', () => {
  it('merges the root <appSettings> and <location path="."> / path="" / no path in document order; other paths are skipped', () => {
    const web = parseWebConfig(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <location path="." inheritInChildApplications="false">
    <appSettings><add key="WSGI_HANDLER" value="first.app" /><add key="A" value="loc" /></appSettings>
  </location>
  <appSettings>
    <add key="PYTHONPATH" value="C:\\site" />
    <add key="A" value="root" />
  </appSettings>
  <location path="admin"><appSettings><add key="A" value="admin only" /></appSettings></location>
  <location path=""><appSettings><add key="WSGI_HANDLER" value="django.core.wsgi.get_wsgi_application()" /></appSettings></location>
  <location><appSettings><add key="B" value="b" /></appSettings></location>
</configuration>`);
    expect(app(web)).toEqual([['PYTHONPATH', 'C:\\site'], ['A', 'root'], ['WSGI_HANDLER', 'django.core.wsgi.get_wsgi_application()'], ['B', 'b']]);
  });

  it('honours <remove> and <clear/> where they stand', () => {
    const web = parseWebConfig(`<configuration>
  <appSettings><add key="A" value="1"/><add key="B" value="2"/><add key="C" value="3"/><remove key="B"/></appSettings>
  <location path="."><appSettings><clear/><add key="D" value="4"/></appSettings></location>
  <location path="."><appSettings><add key="E" value="5"/><remove key="D"/><remove key="nope"/></appSettings></location>
</configuration>`);
    expect(app(web)).toEqual([['E', '5']]);
    const before = parseWebConfig('<configuration><appSettings><add key="A" value="1"/><add key="B" value="2"/><remove key="B"/><add key="A" value="again"/></appSettings></configuration>');
    expect(app(before)).toEqual([['A', 'again']]);
  });

  it('keeps a raw > in a value, decodes entities and character references, ignores comments and CDATA', () => {
    const web = parseWebConfig(`\uFEFF<?xml version="1.0"?>
<!-- <appSettings><add key="COMMENTED" value="x"/></appSettings> -->
<configuration>
  <system.webServer><handlers><![CDATA[ <appSettings><add key="CDATA" value="x"/></appSettings> ]]></handlers></system.webServer>
  <appSettings>
    <add key="GT" value="a>b" />
    <add key="ENT" value="&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#233;" />
    <add key='SINGLE' value='say "hi" > there' />
    <!-- <add key="INNER" value="x" /> -->
    <add key="EMPTY" />
  </appSettings>
</configuration>`);
    expect(app(web)).toEqual([['GT', 'a>b'], ['ENT', '&<>"\'ABé'], ['SINGLE', 'say "hi" > there'], ['EMPTY', '']]);
  });

  it('reads Helicon Zoo\'s <environmentVariables>; appSettings win where both name a key', () => {
    const d = site(`<configuration>
  <heliconZoo>
    <application name="python.project">
      <environmentVariables>
        <add name="WSGI_APP" value="zoo.wsgi:app" />
        <add name="PYTHONPATH" value="%APPL_PHYSICAL_PATH%\\lib" />
        <add name="DEPLOY_FILE" value="deploy.py" />
      </environmentVariables>
    </application>
  </heliconZoo>
  <appSettings><add key="WSGI_APP" value="site.wsgi:application" /></appSettings>
</configuration>`);
    const web = readWebConfig(d);
    expect([...web.zoo]).toEqual([['WSGI_APP', 'zoo.wsgi:app'], ['PYTHONPATH', '%APPL_PHYSICAL_PATH%\\lib'], ['DEPLOY_FILE', 'deploy.py']]);
    expect(Object.fromEntries(readAppSettings(d))).toEqual({ WSGI_APP: 'site.wsgi:application', PYTHONPATH: '%APPL_PHYSICAL_PATH%\\lib', DEPLOY_FILE: 'deploy.py' });
  });

  it('refuses malformed XML with the file and line, and a DOCTYPE', () => {
    const bad = '<configuration>\n  <appSettings>\n    <add key="A" value="1">\n  </appSettings>\n</configuration>';
    expect(() => parseWebConfig(bad, 'C:\\site\\web.config')).toThrow(WebConfigError);
    try {
      parseWebConfig(bad, 'C:\\site\\web.config');
    } catch (err) {
      const e = err as WebConfigError;
      expect(e.file).toBe('C:\\site\\web.config');
      expect(e.line).toBe(4);
      expect(e.message).toMatch(/^C:\\site\\web\.config:4:\d+: .*closing tag/);
    }
    expect(() => parseWebConfig('<configuration><appSettings><add key="A" value="1"/></appSettings>')).toThrow(WebConfigError);
    expect(() => parseWebConfig('<!DOCTYPE c [<!ENTITY e "boom">]>\n<configuration><appSettings><add key="A" value="&e;"/></appSettings></configuration>')).toThrow(/DOCTYPE/);
    expect(() => parseWebConfig('<appSettings><add key="A" value="1"/></appSettings>')).toThrow(/<configuration>/);
  });

  it('finds Web.config in any usual case; no file is no settings; the stamp changes with the file', () => {
    const d = site('<configuration><appSettings><add key="A" value="1"/></appSettings></configuration>', 'Web.config');
    expect(Object.fromEntries(readAppSettings(d))).toEqual({ A: '1' });
    const before = webConfigStamp(d);
    writeFileSync(join(d, 'Web.config'), '<configuration><appSettings><add key="A" value="22"/></appSettings></configuration>');
    expect(webConfigStamp(d)).not.toBe(before);
    const empty = mkdtempSync(join(tmpdir(), 'corral-webconfig-'));
    dirs.push(empty);
    expect(readWebConfig(empty)).toEqual({ file: null, appSettings: new Map(), zoo: new Map() });
  });
});
