/**
 * Issue 5 end to end: a rolling reload under load through a real nginx. nginx (fastcgi_pass,
 * keep-conn, upstream keepalive) -> `corral serve --watch *.py` with 2 Python workers; 4 HTTP
 * clients with keep-alive loop requests through nginx while wsgi.py is edited 3 times. Every
 * answer is a 200 with a known version, each edit is served, nginx logs no upstream error.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startCorral } from '../helpers/corral.js';
import { workersReady } from '../helpers/e2e.js';
import { startNginx } from '../helpers/nginx.js';
import { AppDir, LoadTestKit, keepAliveLoad, latencies, median } from '../helpers/reload.js';

const kit = new LoadTestKit();
const { apps, loads, agents } = kit;

afterEach(() => kit.cleanup());

describe('reload under load through nginx', () => {
  it('3 edits while 4 HTTP clients go through nginx: each edit served, zero failed requests, no nginx errors', async () => {
    const app = new AppDir('v1');
    apps.push(app);
    // The default (direct) data plane: a draining worker hands nginx's kept connections to a live
    // worker instead of closing them (handoff.py), so nginx logs no upstream error.
    const corral = startCorral(['serve', app.dir, '--listen', '127.0.0.1:0', '--workers', '2', '--watch', '*.py'], {
      env: { PYTHONDONTWRITEBYTECODE: undefined },
    });
    const fcgi = await corral.fcgiAddress();
    await workersReady(corral, 2);
    await corral.waitForMsg('watching files');
    const nginx = await startNginx({ upstream: fcgi });

    // One keep-alive connection per client, as browsers and load balancers hold them.
    const { load, agents: clientAgents } = keepAliveLoad(`${nginx.url}/`, 4);
    agents.push(...clientAgents);
    loads.push(load);
    load.known.add('v1');
    const began = performance.now();
    load.start();
    // On the direct plane the workers accept nginx's connections themselves, and nginx reuses the
    // ones it keeps: all 4 may be one worker's (a busy machine), and a drain hands them on as they
    // are. So each version is checked by who answers, not by how many workers do.
    let previous = await load.pidsOf('v1', 1);
    await load.more(100);

    const times: number[] = [];
    for (const version of ['v2', 'v3', 'v4']) {
      const reloads = corral.logs.filter((l) => l.msg === 'reload done').length;
      load.known.add(version);
      const t0 = performance.now();
      app.write(version);
      const first = await load.served(version, t0);
      times.push(first.at - t0);
      await corral.waitForLog((l) => l.msg === 'reload done' && corral.logs.filter((x) => x.msg === 'reload done').length > reloads);
      // New workers answer through nginx; none of them served the previous version.
      const pids = await load.pidsOf(version, 1);
      for (const p of pids) expect(previous.has(p)).toBe(false);
      previous = pids;
      // Keep the load going between edits, so the old generation drains under traffic.
      await load.more(500);
    }
    await load.stop();
    const seconds = (performance.now() - began) / 1000;

    const lat = latencies(load.samples);
    console.log(
      `reload through nginx: ${load.samples.length} requests in ${seconds.toFixed(1)} s, edit -> served median ${Math.round(median(times))} ms ` +
        `(${times.map(Math.round).join(', ')} ms); latency median ${lat.median} ms, p99 ${lat.p99} ms, max ${lat.max} ms`,
    );
    expect(lat.max).toBeLessThan(1_000);
    const failed = load.failures();
    expect(failed.slice(0, 5), `${failed.length} of ${load.samples.length} requests failed`).toEqual([]);
    // The 3 s figure of issue 5 is checked (and its median reported) by test/integration/reload.test.ts;
    // here, with nginx and 4 HTTP clients on 2 cores beside other test files, it is about 2 s and
    // has reached 3.2 s: this bound only catches an edit that is never served.
    for (const t of times) expect(t).toBeLessThan(10_000);
    // The last answers are the last edit's.
    expect(load.samples.slice(-8).map((s) => s.version)).toEqual(Array(8).fill('v4'));
    expect(corral.logs.filter((l) => l.msg === 'reload: starting a new generation')).toHaveLength(3);
    expect(nginx.errors()).toEqual([]);
  });
});
