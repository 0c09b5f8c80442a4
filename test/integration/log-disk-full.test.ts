/**
 * Faults: disk full for log files. The service's own log (--log-file) and the workers' stderr
 * files (WSGI_LOG, ERROR_LOG_DIR) on a full disk: requests keep being served, the service does not
 * crash, and it says once that the log cannot be written (on stderr when its own log file fails).
 * A full disk is a 64 KiB tmpfs filled up (needs root to mount) or /dev/full.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, FIXTURES, ROOT, startCorral, stopAll } from '../helpers/corral.js';
import { freePort } from '../helpers/nginx.js';

const mounts: string[] = [];

/** A directory on a 64 KiB tmpfs with no space left, or null when tmpfs cannot be mounted here. */
function fullTmpfs(): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'corral-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  mounts.push(dir);
  try {
    for (let i = 0; ; i++) writeFileSync(join(dir, `fill-${i}`), Buffer.alloc(16 * 1024));
  } catch {
    /* ENOSPC: full */
  }
  return dir;
}

const canMount = ((): boolean => {
  const d = fullTmpfs();
  return d !== null;
})();
const hasDevFull = existsSync('/dev/full');

afterEach(async () => {
  await stopAll();
  for (const d of mounts.splice(0)) {
    try {
      execFileSync('umount', [d], { stdio: 'ignore' });
    } catch {
      /* not mounted */
    }
    rmSync(d, { recursive: true, force: true });
  }
});

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
  });
}

describe('disk full for log files', () => {
  it.skipIf(!canMount)('--log-file on a full disk: the service serves on, says so once on stderr, logs there', async () => {
    const dir = fullTmpfs()!;
    const port = await freePort();
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '1', '--http', `127.0.0.1:${port}`, '--log-file', join(dir, 'corral.log')]);
    // The log goes to the (full) file, so wait on answers, not on log lines.
    await expect.poll(() => get(port, '/'), { timeout: 30_000, interval: 200 }).toBe(200);
    for (let i = 0; i < 20; i++) expect(await get(port, '/')).toBe(200);
    await expect.poll(() => c.stderr.includes('cannot write the log file'), { timeout: 20_000 }).toBe(true);
    expect(c.stderr.split('cannot write the log file').length - 1).toBe(1);
    expect(c.stderr).toContain('ENOSPC');
    expect(c.child.exitCode).toBeNull();
    // From then on the log lines go to stderr.
    await expect.poll(() => c.stderr.includes('"msg":"request"'), { timeout: 20_000 }).toBe(true);
    const { code } = await c.stop();
    expect(code).toBe(0);
  });

  it.skipIf(!hasDevFull)('WSGI_LOG on a full disk (/dev/full): requests are served, the failure is logged once, the lines go to the log', async () => {
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '1', '--http', '127.0.0.1:0'], { env: { WSGI_LOG: '/dev/full' } });
    const { port } = await c.httpAddress();
    await c.waitForMsg('app ready');
    for (let i = 0; i < 5; i++) expect(await get(port, '/print')).toBe(200);
    const warn = await c.waitForMsg('cannot write worker stderr to its file; logging it here until it works again');
    expect(String(warn.err)).toContain('ENOSPC');
    await c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).includes('WRITTEN-TO-WSGI-ERRORS'));
    expect(c.logs.filter((l) => l.msg === warn.msg)).toHaveLength(1);
    expect(await get(port, '/')).toBe(200);
    expect(c.child.exitCode).toBeNull();
  });

  it.skipIf(!canMount)('ERROR_LOG_DIR on a full disk: requests are served, the failure is logged once', async () => {
    const dir = fullTmpfs()!;
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '1', '--http', '127.0.0.1:0'], { env: { ERROR_LOG_DIR: join(dir, 'logs') } });
    const { port } = await c.httpAddress();
    await c.waitForMsg('app ready');
    for (let i = 0; i < 5; i++) expect(await get(port, '/print')).toBe(200);
    const warn = await c.waitForMsg('cannot write worker stderr to its file; logging it here until it works again');
    expect(String(warn.err)).toMatch(/ENOSPC/);
    expect(c.logs.filter((l) => l.msg === warn.msg)).toHaveLength(1);
    expect(await get(port, '/')).toBe(200);
    expect(c.child.exitCode).toBeNull();
  });

  it.skipIf(!hasDevFull)('the log on stdout, and stdout a full disk (/dev/full): requests are served, said once on stderr', async () => {
    const port = await freePort();
    const full = openSync('/dev/full', 'w');
    const child = spawn(process.execPath, [CLI, 'serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '1', '--http', `127.0.0.1:${port}`], {
      cwd: ROOT,
      stdio: ['ignore', full, 'pipe'],
    });
    closeSync(full);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await expect.poll(() => get(port, '/'), { timeout: 30_000, interval: 200 }).toBe(200);
      for (let i = 0; i < 20; i++) expect(await get(port, '/')).toBe(200);
      await expect.poll(() => stderr.includes('cannot write the log'), { timeout: 20_000 }).toBe(true);
      expect(stderr.split('cannot write the log').length - 1).toBe(1);
      expect(stderr).toContain('ENOSPC');
      expect(child.exitCode).toBeNull();
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });
});
