/**
 * The real `node dist/cli/main.js migrate-webconfig`: the new file on stdout and the changes on
 * stderr; a site folder as PATH; --write with web.config.bak (refused when one exists, unless
 * --force); exit 2 with file and line on a malformed file, and on a usage error.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/corral.js';

const ZOO = fileURLToPath(new URL('../fixtures/webconfig/helicon-zoo-django.config', import.meta.url));
const MIGRATED = readFileSync(new URL('../fixtures/webconfig/helicon-zoo-django.migrated.config', import.meta.url), 'utf8');

function runCli(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'migrate-webconfig', ...args], { cwd, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const dirs: string[] = [];
function site(): string {
  const dir = mkdtempSync(join(tmpdir(), 'corral-migrate-'));
  dirs.push(dir);
  copyFileSync(ZOO, join(dir, 'web.config'));
  return dir;
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('corral migrate-webconfig', () => {
  it('prints the new file to stdout and the changes to stderr; ./web.config by default; the file is left alone', async () => {
    const dir = site();
    const r = await runCli([], dir);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(MIGRATED);
    expect(r.stderr).toContain('web.config: written for heliconZoo; 11 change(s)');
    expect(r.stderr).toContain('  changed: WSGI_APP: moved from <heliconZoo> environmentVariables to <appSettings>');
    expect(r.stderr).toContain('  warning: VIRTUAL_ENV: ');
    expect(r.stderr).toContain("appcmd.exe set config -section:system.webServer/fastCgi /+\"[fullPath='C:\\Program Files\\nodejs\\node.exe'");
    expect(readFileSync(join(dir, 'web.config'), 'utf8')).toBe(readFileSync(ZOO, 'utf8'));
    expect(existsSync(join(dir, 'web.config.bak'))).toBe(false);
  });

  it('--write saves web.config.bak, refuses to overwrite it without --force, and writes nothing when nothing changes', async () => {
    const dir = site();
    const first = await runCli([dir, '--write']);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe('');
    expect(readFileSync(join(dir, 'web.config'), 'utf8')).toBe(MIGRATED);
    expect(readFileSync(join(dir, 'web.config.bak'), 'utf8')).toBe(readFileSync(ZOO, 'utf8'));

    copyFileSync(ZOO, join(dir, 'web.config'));
    const again = await runCli([dir, '--write']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('web.config.bak exists: move it away or add --force to overwrite it; nothing written');
    expect(readFileSync(join(dir, 'web.config'), 'utf8')).toBe(readFileSync(ZOO, 'utf8'));

    writeFileSync(join(dir, 'web.config.bak'), 'older backup');
    const forced = await runCli([join(dir, 'web.config'), '--write', '--force']);
    expect(forced.code).toBe(0);
    expect(readFileSync(join(dir, 'web.config.bak'), 'utf8')).toBe(readFileSync(ZOO, 'utf8'));

    const none = await runCli([dir, '--write', '--force']);
    expect(none.code).toBe(0);
    expect(none.stderr).toContain('no changes');
    expect(none.stderr).toContain('nothing written');
    expect(readFileSync(join(dir, 'web.config.bak'), 'utf8')).toBe(readFileSync(ZOO, 'utf8'));
  });

  it('exits 2 with file and line on a malformed web.config, and on a usage error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-migrate-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'web.config'), '<configuration>\n  <appSettings>\n    <add key="A" value="1">\n  </appSettings>\n</configuration>\n');
    const bad = await runCli([dir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(new RegExp(`^corral migrate-webconfig: ${join(dir, 'web.config').replace(/[.\\]/g, '\\$&')}:4:`));
    expect(bad.stdout).toBe('');

    const usage = await runCli(['--bogus']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('unknown option --bogus');
    expect(usage.stderr).toContain('Usage: corral migrate-webconfig');

    const missing = await runCli([join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file or folder');
  });
});
