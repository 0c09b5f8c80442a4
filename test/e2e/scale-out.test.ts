/**
 * Scale-out (docs/scale-out.md): two corral services behind one nginx upstream, on loopback.
 * One is drained: its /healthz turns 503, its in-flight request finishes with 200, traffic moves
 * to the other, and no client request fails.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { startNginx, stopAllNginx } from '../helpers/nginx.js';
import { httpRequest } from '../helpers/e2e.js';
import { fcgiGet } from '../helpers/fcgi-client.js';

afterEach(async () => {
  await stopAllNginx();
  await stopAll();
});

async function corralHost(): Promise<{ c: CorralProcess; fcgi: { host: string; port: number }; control: string }> {
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--workers', '1', '--threads', '2']);
  const fcgi = await c.fcgiAddress();
  const control = String((await c.waitForMsg('control listener ready')).control);
  await c.waitForMsg('app ready');
  return { c, fcgi, control };
}

describe('two corral hosts behind one nginx upstream', () => {
  it('drains one with no failed request: healthz 503, in-flight finishes, traffic moves', async () => {
    const a = await corralHost();
    const b = await corralHost();
    const nginx = await startNginx({ upstream: a.fcgi, moreUpstreams: [b.fcgi], keepalive: 8 });
    const pidOf = async (h: { fcgi: { host: string; port: number } }) => Number((await fcgiGet(h.fcgi, '/pid')).body.toString());
    const pidA = await pidOf(a);
    const pidB = await pidOf(b);

    // Clients loop through nginx until told to stop; every answer is recorded.
    const answers: Array<{ status: number; pid: number; at: number }> = [];
    let running = true;
    const client = async (): Promise<void> => {
      while (running) {
        const r = await httpRequest(`http://127.0.0.1:${nginx.port}/pid`, { timeoutMs: 10_000 });
        answers.push({ status: r.status, pid: Number(r.body.toString()), at: performance.now() });
      }
    };
    const clients = Array.from({ length: 4 }, () => client());
    const until = async (pred: () => boolean, what: string, ms = 10_000): Promise<void> => {
      const deadline = performance.now() + ms;
      while (!pred()) {
        if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setImmediate(r));
      }
    };
    try {
      await until(() => answers.some((x) => x.pid === pidA) && answers.some((x) => x.pid === pidB), 'both hosts to serve');
      expect((await httpRequest(`http://${a.control}/healthz`)).status).toBe(200);

      // A request in flight on host A when it is asked to stop.
      const inflight = fcgiGet(a.fcgi, '/sleep?s=1.5');
      await a.c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start'));
      a.c.child.kill('SIGTERM');
      await a.c.waitForMsg('service stopping');
      const health = await httpRequest(`http://${a.control}/healthz`);
      expect(health.status).toBe(503);

      const slow = await inflight;
      expect(slow.status).toBe(200);
      expect(Number(slow.body.toString())).toBe(pidA);
      expect((await a.c.exited).code).toBe(0);

      // Traffic goes on, all to host B.
      const after = answers.length;
      await until(() => answers.length > after + 50, 'traffic after the drain');
    } finally {
      running = false;
      await Promise.all(clients);
    }
    expect(answers.filter((x) => x.status !== 200)).toEqual([]);
    const late = answers.filter((x) => x.at > answers[answers.length - 40]!.at);
    expect(late.every((x) => x.pid === pidB)).toBe(true);
    expect(nginx.errors().filter((l) => !/upstream prematurely closed|Connection refused|connect\(\) failed/.test(l))).toEqual([]);
  });
});
