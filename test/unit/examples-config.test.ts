/**
 * Issue 12: each example under examples/ ships its settings twice, corral.json for
 * `corral serve examples/NAME` and web.config for IIS. They must say the same thing.
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appSettings } from '../../src/config/app-settings.js';
import { loadSettings } from '../../src/config/load.js';
import { readAppSettings } from '../../src/config/webconfig.js';

const EXAMPLES = join(import.meta.dirname, '../../examples');
const FRAMEWORKS = ['flask', 'django', 'webpy', 'bottle', 'cherrypy', 'falcon'];
const COMPARED = ['wsgiApp', 'workers', 'threads', 'deployFile', 'pythonPath'] as const;

/** wfastcgi's dotted `wsgi.application` is `wsgi:application`. */
const same = (v: unknown): unknown => (typeof v === 'string' && /^[\w.]+\.\w+$/.test(v) && !v.includes(':') ? v.replace(/\.(\w+)$/, ':$1') : v);

describe('examples: corral.json and web.config', () => {
  it('every framework has its folder', () => {
    const folders = readdirSync(EXAMPLES);
    for (const f of FRAMEWORKS) expect(folders).toContain(f);
  });

  it.each(FRAMEWORKS)('%s: `corral serve` reads its corral.json, and its web.config gives the same settings', (name) => {
    const dir = join(EXAMPLES, name);
    const served = loadSettings({ argv: [dir], env: {}, cwd: tmpdir(), platform: 'linux' });
    expect(served.sources.wsgiApp).toBe('config');
    const defaults = loadSettings({ argv: [tmpdir()], env: {}, cwd: tmpdir(), platform: 'linux' }).settings;
    const iis = appSettings(defaults, dir, [{ origin: join(dir, 'web.config'), values: readAppSettings(dir) }], 'linux', { APPL_PHYSICAL_PATH: dir });
    expect(iis.problems).toEqual([]);
    for (const key of COMPARED) expect(same(iis.settings[key]), key).toEqual(same(served.settings[key]));
    if (name === 'django') expect(iis.env.vars).toEqual({ DJANGO_SETTINGS_MODULE: 'mysite.settings' });
    else expect(iis.env.vars).toEqual({});
  });
});
