/** src/config/app-layout.ts: finding an app's module from the files, and Django's startproject layout. */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { detectDefaultApp, djangoLayout, findModule, topModule } from '../../src/config/app-layout.js';

let top: string;
beforeEach(() => {
  top = realpathSync(mkdtempSync(join(tmpdir(), 'corral-layout-')));
});
afterEach(() => rmSync(top, { recursive: true, force: true }));

const file = (rel: string, text = ''): void => {
  mkdirSync(join(top, rel, '..'), { recursive: true });
  writeFileSync(join(top, rel), text);
};

describe('topModule', () => {
  it('is the first name of every spec form', () => {
    expect(topModule('mysite.wsgi:application')).toBe('mysite');
    expect(topModule('wsgi:application')).toBe('wsgi');
    expect(topModule('app.application')).toBe('app');
    expect(topModule('pkg.mod:factory().app')).toBe('pkg');
  });
});

describe('findModule', () => {
  it('looks as Python does: a package or a module in the first directory that has one, namespace directories last', () => {
    file('a/ns/x.txt');
    file('b/ns.py');
    file('b/pkg/__init__.py');
    file('a/pkg.py');
    expect(findModule('ns', [join(top, 'a'), join(top, 'b')])).toBe(join(top, 'b', 'ns.py'));
    expect(findModule('pkg', [join(top, 'a'), join(top, 'b')])).toBe(join(top, 'a', 'pkg.py'));
    expect(findModule('ns', [join(top, 'a')])).toBe(join(top, 'a', 'ns'));
    expect(findModule('nothing', [join(top, 'a'), join(top, 'missing')])).toBeNull();
  });
  it('takes a file where a directory was expected as "not here" (ENOTDIR), not as an error', () => {
    file('imported');
    // A plain file named like the module but without .py is not a module.
    expect(findModule('imported', [top])).toBeNull();
    expect(djangoLayout(top)).toBeNull();
  });
});

describe("Django's layout", () => {
  it('is found when exactly one subdirectory has a wsgi.py', () => {
    file('mysite/manage.py');
    file('mysite/mysite/__init__.py');
    file('mysite/mysite/wsgi.py');
    expect(djangoLayout(join(top, 'mysite'))).toBe('mysite.wsgi:application');
    expect(detectDefaultApp(join(top, 'mysite'), 'wsgi:application')).toBe('mysite.wsgi:application');
  });
  it('is not guessed when the default is there, when two candidates exist, or for a name Python cannot import', () => {
    file('a/wsgi.py');
    file('a/proj/wsgi.py');
    expect(detectDefaultApp(join(top, 'a'), 'wsgi:application')).toBeNull();
    file('b/one/wsgi.py');
    file('b/two/wsgi.py');
    expect(djangoLayout(join(top, 'b'))).toBeNull();
    file('c/my-site/wsgi.py');
    expect(djangoLayout(join(top, 'c'))).toBeNull();
    expect(djangoLayout(join(top, 'missing'))).toBeNull();
  });
});
