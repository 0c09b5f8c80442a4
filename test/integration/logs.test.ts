/** The service's log (issue 6): JSON lines only, one access line per request, configuration with sources. */
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll } from '../helpers/corral.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';

afterEach(() => stopAll());

describe('log lines', () => {
  it('are all JSON, with an access line per request and the effective configuration', async () => {
    // The proxy path on purpose: its access lines come in request order and carry queueMs (the time
    // in the service's queue). Direct workers' lines come from their batched REPORTs (no queue of
    // the service's own): test/e2e/direct.test.ts checks those.
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--listen', '127.0.0.1:0', '--workers', '2', '--data-plane', 'proxy'], {
      env: { CORRAL_THREADS: '2' },
    });
    const addr = await c.fcgiAddress();
    const client = await FcgiClient.connect(addr);
    const n = 25;
    try {
      for (let i = 0; i < n; i++) expect((await client.request(1, cgiParams('GET', `/pid?i=${i}`))).status).toBe(200);
      expect((await client.request(1, cgiParams('GET', '/nope-404'))).status).toBe(200);
    } finally {
      client.close();
    }
    const stopped = await c.stop();
    expect(stopped.code).toBe(0);
    expect(c.nonJson).toEqual([]);
    const access = c.logs.filter((l) => l.msg === 'request');
    expect(access).toHaveLength(n + 1);
    for (const [i, l] of access.slice(0, n).entries()) {
      expect(l).toMatchObject({ kind: 'access', method: 'GET', path: `/pid?i=${i}`, status: 200, app: 'worker_ok:application' });
      expect(typeof l.ms).toBe('number');
      expect(typeof l.bytes).toBe('number');
      expect(c.liveWorkerPids().concat(c.logs.filter((x) => x.msg === 'worker ready').map((x) => Number(x.pid)))).toContain(Number(l.pid));
      expect(typeof l.queueMs).toBe('number');
    }
    const start = c.logs.find((l) => l.msg === 'corral starting')!;
    expect((start.sources as Record<string, string>).threads).toBe('env');
    expect((start.sources as Record<string, string>).workers).toBe('flag');
    expect((start.sources as Record<string, string>).requestTimeout).toBe('default');
    expect(c.logs.find((l) => l.msg === 'app configuration')).toMatchObject({ minWorkers: 2, maxWorkers: 2 });
  });

  it('can be turned off per request with --access-log off', async () => {
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--listen', '127.0.0.1:0', '--access-log', 'off']);
    const addr = await c.fcgiAddress();
    const client = await FcgiClient.connect(addr);
    try {
      expect((await client.request(1, cgiParams('GET', '/'))).status).toBe(200);
    } finally {
      client.close();
    }
    await c.stop();
    expect(c.logs.filter((l) => l.msg === 'request')).toEqual([]);
  });
});

describe('--log-file', () => {
  it('writes the JSON log to a rotating file (pino-roll) instead of stdout', async () => {
    const { mkdtempSync, readdirSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'corral-logfile-'));
    try {
      const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--listen', '127.0.0.1:0', '--log-file', join(dir, 'corral.log')]);
      // Nothing on stdout to wait for: the service is up once it answers; stop it, then read the file.
      const deadline = Date.now() + 20_000;
      let lines: string[] = [];
      while (Date.now() < deadline) {
        const files = readdirSync(dir).filter((f) => f.startsWith('corral') && f.endsWith('.log'));
        lines = files.flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l));
        if (lines.some((l) => l.includes('"app ready"'))) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect((await c.stop()).code).toBe(0);
      expect(c.logs).toEqual([]);
      const files = readdirSync(dir);
      expect(files.some((f) => /^corral\.\d+\.log$/.test(f))).toBe(true);
      const all = files.flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l));
      for (const l of all) expect(() => JSON.parse(l)).not.toThrow();
      expect(all.some((l) => l.includes('"service stopped"'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
