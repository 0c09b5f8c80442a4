/** src/front/static-files.ts: which file a path names, and what stays out of reach; the setting's parsing. */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { staticMapping } from '../../src/config/kinds.js';
import { contentType, etagOf, staticTarget, staticTargetOf, type StaticMapping } from '../../src/front/static-files.js';
import { loadSettings } from '../../src/config/load.js';

let top: string;
let m: StaticMapping;
beforeEach(() => {
  top = realpathSync(mkdtempSync(join(tmpdir(), 'corral-static-')));
  mkdirSync(join(top, 'static', 'css'), { recursive: true });
  writeFileSync(join(top, 'static', 'css', 'site.css'), 'body{}');
  writeFileSync(join(top, 'static', 'café.txt'), 'accent');
  writeFileSync(join(top, 'secret.txt'), 'outside');
  symlinkSync(join(top, 'secret.txt'), join(top, 'static', 'link-out.txt'));
  symlinkSync(join(top, 'static', 'css', 'site.css'), join(top, 'static', 'link-in.css'));
  m = { url: '/static', dir: join(top, 'static') };
});
afterEach(() => rmSync(top, { recursive: true, force: true }));

describe('staticTarget', () => {
  it('names files under the directory, and leaves other paths to the app', () => {
    expect(staticTarget('/static/css/site.css', m)).toMatchObject({ kind: 'file', file: join(top, 'static', 'css', 'site.css'), size: 6 });
    expect(staticTarget('/static/café.txt', m)).toMatchObject({ kind: 'file', size: 6 });
    expect(staticTarget('/static/link-in.css', m)).toMatchObject({ kind: 'file', file: join(top, 'static', 'css', 'site.css') });
    expect(staticTarget('/', m)).toEqual({ kind: 'not-static' });
    expect(staticTarget('/staticfiles/x', m)).toEqual({ kind: 'not-static' });
    expect(staticTarget('/api/static/x', m)).toEqual({ kind: 'not-static' });
  });

  it('finds nothing outside the directory: .., backslashes, a NUL, a symlink out, a directory, a missing file', () => {
    for (const p of [
      '/static/../secret.txt', '/static/css/../../secret.txt', '/static/..', '/static/..\\secret.txt', '/static/css\\..\\..\\secret.txt',
      '/static/secret.txt\0.css', '/static/link-out.txt', '/static/css', '/static', '/static/', '/static/nope.css',
    ]) expect(staticTarget(p, m), p).toEqual({ kind: 'missing' });
    expect(staticTarget('/static/x', { url: '/static', dir: join(top, 'not-made-yet') })).toEqual({ kind: 'missing' });
  });

  it('types files by extension', () => {
    expect(contentType('a/site.CSS')).toBe('text/css; charset=utf-8');
    expect(contentType('x.woff2')).toBe('font/woff2');
    expect(contentType('README')).toBe('application/octet-stream');
  });
});

describe('staticTargetOf and etagOf', () => {
  it('picks the longest URL path that covers the request, whatever the order given', () => {
    mkdirSync(join(top, 'media'));
    writeFileSync(join(top, 'media', 'site.css'), 'media');
    const media = { url: '/static/css', dir: join(top, 'media') };
    expect(staticTargetOf('/static/css/site.css', [m, media])).toMatchObject({ kind: 'file', file: join(top, 'media', 'site.css') });
    expect(staticTargetOf('/static/css/site.css', [media, m])).toMatchObject({ kind: 'file', file: join(top, 'media', 'site.css') });
    expect(staticTargetOf('/static/café.txt', [media, m])).toMatchObject({ kind: 'file', size: 6 });
    expect(staticTargetOf('/app', [media, m])).toEqual({ kind: 'not-static' });
    expect(staticTargetOf('/static/x', [])).toEqual({ kind: 'not-static' });
  });
  it('makes a weak tag that changes with size or whole-second mtime', () => {
    const t = new Date(1_700_000_000_500);
    expect(etagOf(6, t)).toBe('W/"6-6553f100"');
    expect(etagOf(7, t)).not.toBe(etagOf(6, t));
    expect(etagOf(6, new Date(1_700_000_001_000))).not.toBe(etagOf(6, t));
  });
});

describe('the static setting (URL=DIR)', () => {
  it('is repeatable on the command line, comma-separated in CORRAL_STATIC, a list in the config file; --dev-static is its old name', () => {
    const load = (argv: string[], env: Record<string, string> = {}) => loadSettings({ argv, env, cwd: top, platform: 'linux' }).settings.static;
    expect(load(['--static', '/static/=static', '--static', '/media=m'])).toEqual([{ url: '/static', dir: join(top, 'static') }, { url: '/media', dir: join(top, 'm') }]);
    expect(load(['--dev-static', '/static=static'])).toEqual([{ url: '/static', dir: join(top, 'static') }]);
    expect(load([], { CORRAL_STATIC: '/a=x,/b=y' })).toEqual([{ url: '/a', dir: join(top, 'x') }, { url: '/b', dir: join(top, 'y') }]);
    writeFileSync(join(top, 'c.json'), JSON.stringify({ static: ['/s=static'] }));
    expect(load(['--config', join(top, 'c.json')])).toEqual([{ url: '/s', dir: join(top, 'static') }]);
    expect(load([])).toEqual([]);
  });
  const ctx = { baseDir: '/srv/app', platform: 'linux' as const };
  it('takes a URL path and a directory relative to the base, which need not exist yet', () => {
    expect(staticMapping().fromText('/static=static', ctx)).toEqual({ ok: true, value: { url: '/static', dir: '/srv/app/static' } });
    expect(staticMapping().fromText('/assets/=/var/www/assets', ctx)).toEqual({ ok: true, value: { url: '/assets', dir: '/var/www/assets' } });
    expect(staticMapping().fromJson('/static=static', ctx)).toMatchObject({ ok: true });
  });
  it('refuses what is not URL=DIR', () => {
    for (const bad of ['static', 'static=static', '/=static', '/static=', '/st atic=x']) expect(staticMapping().fromText(bad, ctx).ok, bad).toBe(false);
    expect(staticMapping().fromJson(3, ctx).ok).toBe(false);
  });
});
