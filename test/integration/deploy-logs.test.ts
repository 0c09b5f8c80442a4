/**
 * DEPLOY_FILE / DEPLOY_LOG and ERROR_LOG_DIR / WSGI_LOG with real workers (issue 6), through the
 * CLI and its environment variables, as Helicon Zoo users set them.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll } from '../helpers/corral.js';
import { fcgiGet } from '../helpers/fcgi-client.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'corral-deploy-'));
  dirs.push(d);
  return d;
}

afterEach(async () => {
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('DEPLOY_FILE', () => {
  it('runs exactly once per generation, before its workers, with its output in DEPLOY_LOG', async () => {
    const dir = tempDir();
    const log = join(dir, 'deploy.log');
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'deploy_app:application', '--listen', '127.0.0.1:0', '--workers', '2'], {
      env: { DEPLOY_FILE: 'deploy_step.py', DEPLOY_LOG: log, CORRAL_TEST_DEPLOY_DIR: dir, CORRAL_PASS_ENV: 'CORRAL_TEST_*' },
    });
    const addr = await c.fcgiAddress();
    await c.waitForMsg('app ready');
    // The step ran before the first worker started, once for two workers.
    const firstDeploy = c.logs.findIndex((l) => l.msg === 'deploy step done');
    const firstSpawn = c.logs.findIndex((l) => l.msg === 'worker spawned');
    expect(firstDeploy).toBeGreaterThanOrEqual(0);
    expect(firstDeploy).toBeLessThan(firstSpawn);
    expect((await fcgiGet(addr, '/deployed')).body.toString()).toBe('1');
    c.child.kill('SIGHUP');
    await c.waitForLog((l) => l.msg === 'reload done');
    expect((await fcgiGet(addr, '/deployed')).body.toString()).toBe('2');
    const text = readFileSync(log, 'utf8');
    expect(text.match(/migrating: step 1 of 1/g)).toHaveLength(2);
    expect(text).toMatch(/generation 1:/);
    expect(text).toMatch(/generation 2:/);
  });

  it('a failing deploy blocks the new generation and the old one keeps serving', async () => {
    const dir = tempDir();
    const failFlag = join(dir, 'fail-now');
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'deploy_app:application', '--listen', '127.0.0.1:0', '--workers', '1'], {
      env: { DEPLOY_FILE: 'deploy_step.py', DEPLOY_LOG: join(dir, 'deploy.log'), CORRAL_TEST_DEPLOY_DIR: dir, CORRAL_TEST_DEPLOY_FAIL: failFlag, CORRAL_PASS_ENV: 'CORRAL_TEST_*' },
    });
    const addr = await c.fcgiAddress();
    await c.waitForMsg('app ready');
    const before = (await fcgiGet(addr, '/')).body.toString();
    writeFileSync(failFlag, 'x');
    c.child.kill('SIGHUP');
    const failed = await c.waitForMsg('reload failed: deploy step failed; the old generation keeps serving');
    expect(String(failed.output)).toContain('migration failed');
    const after = await fcgiGet(addr, '/');
    expect(after.status).toBe(200);
    expect(after.body.toString()).toBe(before);
    expect(c.logs.filter((l) => l.msg === 'worker spawned')).toHaveLength(1);
  });
});

describe('ERROR_LOG_DIR and WSGI_LOG', () => {
  it('writes print() and wsgi.errors of the app to a file per app in ERROR_LOG_DIR', async () => {
    const dir = tempDir();
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'deploy_app:application', '--listen', '127.0.0.1:0', '--workers', '1'], {
      env: { ERROR_LOG_DIR: dir },
    });
    const addr = await c.fcgiAddress();
    const r = await fcgiGet(addr, '/print');
    expect(r.status).toBe(200);
    await c.stop();
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/deploy_app_application-\d{4}-\d{2}-\d{2}\.log$/);
    const text = readFileSync(join(dir, files[0]!), 'utf8');
    expect(text).toMatch(/printed by the app \d+/);
    expect(text).toMatch(/wsgi\.errors line \d+/);
    // Not in corral's own log as well.
    expect(c.logs.some((l) => l.msg === 'worker stderr' && String(l.line).includes('printed by the app'))).toBe(false);
  });

  it('writes to the single WSGI_LOG file (wfastcgi), and to the log when neither is set', async () => {
    const dir = tempDir();
    const file = join(dir, 'wsgi.log');
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'deploy_app:application', '--listen', '127.0.0.1:0', '--workers', '1'], { env: { WSGI_LOG: file } });
    expect((await fcgiGet(await c.fcgiAddress(), '/print')).status).toBe(200);
    await c.stop();
    expect(readFileSync(file, 'utf8')).toMatch(/wsgi\.errors line \d+/);

    const plain = startCorral(['serve', FIXTURES, '--wsgi-app', 'deploy_app:application', '--listen', '127.0.0.1:0', '--workers', '1']);
    expect((await fcgiGet(await plain.fcgiAddress(), '/print')).status).toBe(200);
    await plain.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).includes('wsgi.errors line'));
  });
});
