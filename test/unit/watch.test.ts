import { describe, expect, it } from 'vitest';
import { changeFilter, globToRegExp, isIgnored, parseMask, parseRestartRegex, relativeTo } from '../../src/watch/mask.js';
import { Debouncer, type TimerApi } from '../../src/watch/debounce.js';

describe('WATCH_FILE_CHANGES_MASK (Helicon Zoo / iisnode form)', () => {
  const table: Array<[string, string, boolean]> = [
    ['*.py', 'app.py', true],
    ['*.py', 'pkg/sub/views.py', true],
    ['*.py', 'app.pyc', false],
    ['*.py', 'notes.txt', false],
    ['*.py;*.ini', 'settings.ini', true],
    ['*.py, *.ini', 'settings.ini', true],
    ['*.py|*.cfg', 'setup.cfg', true],
    ['*.py;config/*.json', 'config/app.json', true],
    ['*.py;config/*.json', 'other/app.json', false],
    ['*.py;config/*.json', 'app.json', false],
    ['web.config', 'web.config', true],
    ['web.config', 'sub/web.config', true],
    ['app?.py', 'app1.py', true],
    ['app?.py', 'app12.py', false],
    ['[ab].py', 'a.py', true],
    ['[!ab].py', 'a.py', false],
    ['src/**/*.py', 'src/a/b/c.py', true],
    ['src/**/*.py', 'src/c.py', true],
    ['./templates/*.html', 'templates/index.html', true],
  ];
  for (const [mask, path, want] of table) {
    it(`${JSON.stringify(mask)} ${want ? 'matches' : 'does not match'} ${path}`, () => {
      expect(parseMask(mask, 'linux')!(path)).toBe(want);
    });
  }
  it('is empty for a blank mask', () => {
    expect(parseMask(' ; ', 'linux')).toBeNull();
  });
  it('is case-insensitive on Windows only', () => {
    expect(parseMask('*.PY', 'win32')!('App.py')).toBe(true);
    expect(parseMask('*.PY', 'linux')!('App.py')).toBe(false);
  });
  it('accepts Windows separators in patterns', () => {
    expect(parseMask('config\\*.json', 'win32')!('config/app.json')).toBe(true);
  });
  it('escapes regex characters in patterns', () => {
    expect(globToRegExp('a+b(1).py', false).test('a+b(1).py')).toBe(true);
    expect(globToRegExp('a.py', false).test('axpy')).toBe(false);
  });
});

describe('WSGI_RESTART_FILE_REGEX (wfastcgi form)', () => {
  const wfastcgiDefault = '.*((\\.py)|(\\.config))$';
  it('matches like re.match, anchored at the start', () => {
    const r = parseRestartRegex(wfastcgiDefault)!;
    expect(r('/srv/app/views.py', 'views.py')).toBe(true);
    expect(r('C:\\inetpub\\app\\web.config', 'web.config')).toBe(true);
    expect(r('/srv/app/readme.txt', 'readme.txt')).toBe(false);
    const anchored = parseRestartRegex('views')!;
    expect(anchored('/srv/app/views.py', 'views.py')).toBe(true);
    expect(anchored('/srv/app/myviews.py', 'myviews.py')).toBe(false);
  });
  it('is off when empty', () => {
    expect(parseRestartRegex('')).toBeNull();
  });
});

describe('changeFilter', () => {
  const f = changeFilter('/srv/app', { mask: '*.py', regex: null }, 'linux')!;
  it('matches files under the root', () => {
    expect(f('/srv/app/wsgi.py')).toBe(true);
    expect(f('/srv/app/pkg/models.py')).toBe(true);
  });
  it('ignores caches, VCS, virtualenvs and node_modules', () => {
    for (const p of ['/srv/app/__pycache__/x.py', '/srv/app/.git/hooks/x.py', '/srv/app/venv/lib/x.py', '/srv/app/.venv/x.py', '/srv/app/node_modules/a/x.py'])
      expect(f(p)).toBe(false);
  });
  it('ignores editor temp and swap files', () => {
    for (const p of ['/srv/app/.wsgi.py.swp', '/srv/app/wsgi.py~', '/srv/app/.#wsgi.py', '/srv/app/#wsgi.py#', '/srv/app/4913', '/srv/app/wsgi.py___jb_tmp___'])
      expect(f(p)).toBe(false);
  });
  it('ignores paths outside the root', () => {
    expect(f('/srv/other/wsgi.py')).toBe(false);
    expect(f('/srv/application/wsgi.py')).toBe(false);
  });
  it('combines mask and regex', () => {
    const g = changeFilter('/srv/app', { mask: '*.ini', regex: '.*\\.cfg$' }, 'linux')!;
    expect(g('/srv/app/a.ini')).toBe(true);
    expect(g('/srv/app/a.cfg')).toBe(true);
    expect(g('/srv/app/a.py')).toBe(false);
  });
  it('is null when nothing is configured', () => {
    expect(changeFilter('/srv/app', { mask: null, regex: null })).toBeNull();
  });
  it('works with Windows paths', () => {
    expect(relativeTo('C:\\inetpub\\wwwroot\\app\\', 'c:\\inetpub\\wwwroot\\app\\pkg\\views.py')).toBe('pkg/views.py');
    const w = changeFilter('C:\\inetpub\\app', { mask: '*.py', regex: null }, 'win32')!;
    expect(w('C:\\inetpub\\app\\Views.PY')).toBe(true);
    expect(w('C:\\inetpub\\app\\__pycache__\\v.py')).toBe(false);
    expect(isIgnored('pkg/views.py')).toBe(false);
  });
});

class FakeTimers implements TimerApi {
  t = 0;
  timers = new Map<number, { at: number; cb: () => void }>();
  next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(cb: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, cb });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].cb();
    }
    this.t = end;
  }
}

describe('Debouncer', () => {
  it('turns a burst of saves into one reload with every path', () => {
    const clock = new FakeTimers();
    const fired: string[][] = [];
    const d = new Debouncer(200, 2000, (p) => fired.push(p), clock);
    for (let i = 0; i < 10; i++) {
      d.trigger(i % 2 ? 'a.py' : 'b.py');
      clock.advance(50);
    }
    expect(fired).toEqual([]);
    clock.advance(200);
    expect(fired).toEqual([['b.py', 'a.py']]);
  });
  it('fires after maxWait even if events keep coming', () => {
    const clock = new FakeTimers();
    let n = 0;
    const d = new Debouncer(200, 1000, () => n++, clock);
    for (let i = 0; i < 30; i++) {
      d.trigger('x.py');
      clock.advance(100);
    }
    expect(n).toBe(3);
  });
  it('separate bursts fire separately', () => {
    const clock = new FakeTimers();
    let n = 0;
    const d = new Debouncer(100, 1000, () => n++, clock);
    d.trigger('a');
    clock.advance(500);
    d.trigger('a');
    clock.advance(500);
    expect(n).toBe(2);
  });
  it('cancel drops pending changes', () => {
    const clock = new FakeTimers();
    let n = 0;
    const d = new Debouncer(100, 1000, () => n++, clock);
    d.trigger('a');
    d.cancel();
    clock.advance(1000);
    expect(n).toBe(0);
  });
});
