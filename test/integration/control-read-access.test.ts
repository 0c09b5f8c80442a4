/**
 * Defect 11: status and metrics reads show app directories and tracebacks. With the real CLI and
 * an app that fails to import: a read without the token sees codes and figures only; with the
 * token (what `corral status` sends) everything; under `--control-read-access token` nothing.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runControlCommand, type ControlIo } from '../../src/cli/control-client.js';
import type { StatusDocument } from '../../src/control/snapshot.js';
import { FIXTURES, startCorral, stopAll } from '../helpers/corral.js';
import { httpRequest } from '../helpers/e2e.js';

const dirs: string[] = [];
afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function captureIo(env: NodeJS.ProcessEnv): ControlIo & { stdout: string; stderr: string } {
  const io = { env, stdout: '', stderr: '', out: (t: string) => void (io.stdout += t), err: (t: string) => void (io.stderr += t) };
  return io;
}

async function serveFailing(extra: string[] = []): Promise<{ base: string; bound: string; env: NodeJS.ProcessEnv; token: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-read-access-'));
  dirs.push(dir);
  const env = { ...process.env, CORRAL_CONTROL_TOKEN_FILE: join(dir, 'control.token') };
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'import_fails:application', '--workers', '1', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', ...extra], { env });
  const ready = await c.waitForMsg('control listener ready');
  await c.waitForMsg('pool failed: answering 503 and retrying slowly');
  const bound = String(ready.control);
  return { base: `http://${bound}`, bound, env, token: readFileSync(join(dir, 'control.token'), 'utf8').trim() };
}

describe('control read access', () => {
  it('local (default): no token, no roots, messages or tracebacks; the token shows them', async () => {
    const { base, bound, env, token } = await serveFailing();
    const full = JSON.parse((await httpRequest(`${base}/status.json`, { headers: { authorization: `Bearer ${token}` } })).body.toString()) as StatusDocument;
    expect(full.apps[0]!.root).toBe(FIXTURES);
    expect(full.apps[0]!.failure?.detail).toContain('Traceback');
    const message = full.apps[0]!.failure!.message;
    for (const path of ['/status.json', '/status', '/metrics', '/healthz']) {
      const r = await httpRequest(`${base}${path}`);
      expect([200, 503], path).toContain(r.status);
      const text = r.body.toString();
      expect(text, path).not.toContain(FIXTURES);
      expect(text, path).not.toContain('Traceback');
      expect(text, path).not.toContain(message);
    }
    const anon = JSON.parse((await httpRequest(`${base}/status.json`)).body.toString()) as StatusDocument;
    expect(anon.apps[0]!.failure?.code).toBe('CORRAL_APP_IMPORT_FAILED');
    // corral status reads the token file and shows everything.
    const io = captureIo(env);
    expect(await runControlCommand('status', ['--control', bound], io)).toBe(0);
    expect(io.stdout).toContain(FIXTURES);
    expect(io.stdout).toContain(message);
  });

  it('token: every read but /healthz needs the token', async () => {
    const { base, token } = await serveFailing(['--control-read-access', 'token']);
    for (const path of ['/status.json', '/status', '/metrics']) {
      expect((await httpRequest(`${base}${path}`)).status, path).toBe(401);
      expect((await httpRequest(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } })).status, path).toBe(200);
    }
    expect((await httpRequest(`${base}/healthz`)).status).toBe(503);
  });
});
