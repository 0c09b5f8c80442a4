/** `corral serve|dev|check --help` (src/config/help.ts) and `corral status|reload|stop --help`: grouped, with each command's defaults and exit codes. */
import { describe, expect, it } from 'vitest';
import { HELP_GROUPS, renderHelp } from '../../src/config/help.js';
import { DEV_DEFAULTS } from '../../src/config/dev-defaults.js';
import { SETTING_ROWS } from '../../src/config/settings.js';
import { controlHelp } from '../../src/cli/control-client.js';
import { devSettings } from '../../src/cli/serve.js';
import { loadSettings } from '../../src/config/load.js';

/** The help entry of one flag: its line and the indented lines under it. */
function entryOf(help: string, flag: string): string {
  const lines = help.split('\n');
  const at = lines.findIndex((l) => new RegExp(`^ {2}(-\\w, )?${flag}[ ,]`).test(l));
  expect(at, flag).toBeGreaterThanOrEqual(0);
  const rest = lines.slice(at + 1);
  const end = rest.findIndex((l) => !l.startsWith(' '.repeat(28)));
  return [lines[at], ...rest.slice(0, end)].join(' ').replace(/\s+/g, ' ');
}

describe('option groups', () => {
  it('hold every setting but the positional exactly once', () => {
    const grouped = HELP_GROUPS.flatMap((g) => g.keys);
    const options = SETTING_ROWS.filter((r) => r.cli !== 'positional').map((r) => r.key);
    expect([...grouped].sort()).toEqual([...options].sort());
    expect(new Set(grouped).size).toBe(grouped.length);
  });
  it('appear as headings in order, with --reload under Reload', () => {
    const help = renderHelp('serve');
    const at = HELP_GROUPS.map((g) => help.indexOf(`\n${g.title}:\n`));
    expect(at.every((i) => i > 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(help.indexOf('  --reload ')).toBeGreaterThan(help.indexOf('\nReload:\n'));
    expect(help.indexOf('  --reload ')).toBeLessThan(help.indexOf('\nLogs:\n'));
    expect(help.split('\n').every((line) => line.length <= 80)).toBe(true);
  });
});

describe('defaults per command', () => {
  it("dev shows dev's defaults (and what overrides them); serve shows serve's", () => {
    const dev = renderHelp('dev');
    const serve = renderHelp('serve');
    expect(entryOf(dev, '--workers')).toContain('default: 1 in dev]');
    expect(entryOf(serve, '--workers')).toContain('default: 2]');
    expect(entryOf(dev, '--threads')).toContain('default: 4 in dev]');
    expect(entryOf(dev, '--http')).toContain('default: 127.0.0.1:8000 in dev unless --listen is given]');
    expect(entryOf(serve, '--http')).toContain('default: none]');
    expect(entryOf(dev, '--watch')).toContain('default: *.py in dev unless --restart-regex is given]');
    expect(dev).toMatch(/^Usage: corral dev /);
  });
  it('the dev defaults shown are the ones devSettings applies', () => {
    const loaded = loadSettings({ argv: [], env: {}, cwd: process.cwd(), platform: 'linux' });
    const dev = devSettings(loaded);
    expect(dev.workers).toBe(Number(DEV_DEFAULTS.workers!.text));
    expect(dev.threads).toBe(Number(DEV_DEFAULTS.threads!.text));
    expect(dev.watchFileChangesMask).toBe(DEV_DEFAULTS.watchFileChangesMask!.text);
    expect(dev.http).toMatchObject({ kind: 'tcp', host: '127.0.0.1', port: 8000 });
    // What the user gave wins, and so does a setting that takes the dev default's place.
    const given = devSettings(loadSettings({ argv: ['--listen', '127.0.0.1:9000', '--threads', '2', '--restart-regex', '.*\\.py$'], env: {}, cwd: process.cwd(), platform: 'linux' }));
    expect(given.http).toBeNull();
    expect(given.threads).toBe(2);
    expect(given.watchFileChangesMask).toBeNull();
  });
  it('each command ends with its exit codes', () => {
    const flat = (t: string): string => t.replace(/\s+/g, ' ');
    expect(renderHelp('serve')).toMatch(/\n\nExit codes: [^]*\n$/);
    expect(flat(renderHelp('serve'))).toMatch(/Exit codes: 0 stopped by a signal or corral stop; 1 could not start \(an address in use\); 2 invalid settings; with --fail-fast, 3 the first workers could not boot and 4 the app failed to import\. $/);
    expect(renderHelp('check')).toMatch(/--no-import[^]*Exit codes: 0 all good/);
  });
});

describe('control commands', () => {
  it('document their options, the address default and the exit codes', () => {
    expect(controlHelp('status')).toMatch(/^Usage: corral status \[--control ADDR\] \[--json\]\n[^]*--json {11}print the service's \/status\.json/);
    expect(controlHelp('stop')).toMatch(/--no-wait {8}return once the service accepted the stop request/);
    expect(controlHelp('reload')).toMatch(/^Usage: corral reload \[APP\] \[--control ADDR\]/);
    for (const c of ['status', 'reload', 'stop'] as const) {
      const help = controlHelp(c);
      expect(help).toContain('ADDR defaults to CORRAL_CONTROL, then 127.0.0.1:9001');
      expect(help).toMatch(/Exit codes: 0 done; 1 [^]*2 bad usage; 3 nothing answers at ADDR; 4 the token/);
      expect(help.split('\n').filter((line) => line.length > 80)).toEqual([]);
    }
  });
});
