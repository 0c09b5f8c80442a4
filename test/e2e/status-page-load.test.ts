/**
 * Issue 14, the status page under load: `corral serve --control` with real workers, clients
 * hammering a good route and one failing route (/raise) and one slow request in flight. In
 * headless Chromium the page shows the error rate, the failing path with its exception line,
 * the current request of the busy worker and the chart, under the strict CSP with no violation;
 * a screenshot is kept in test/artifacts/status-page-under-load.png. Then a reload: the request
 * count goes on from where it was (it used to restart from the new workers' counts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { snapshot, type StatusDocument } from '../../src/control/snapshot.js';
import { renderStatusPage } from '../../src/control/status-page.js';
import type { ControlApp } from '../../src/control/target.js';
import { AppStats } from '../../src/monitor/app-stats.js';
import { readTokenFile } from '../../src/control/token.js';
import { CHROMIUM, closeBrowser, newPage, screenshot } from '../helpers/browser.js';
import { FIXTURES, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { httpRequest } from '../helpers/e2e.js';
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js';

const APP = 'hello_app:application';
const tmp: string[] = [];
const stops: Array<() => Promise<void>> = [];

afterEach(async () => {
  await Promise.all(stops.splice(0).map((s) => s()));
  await stopAll();
  for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(closeBrowser);

interface Running {
  c: CorralProcess;
  control: string;
  base: string;
  token: string;
}

async function serve(): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-status-page-'));
  tmp.push(dir);
  const tokenFile = join(dir, 'control.token');
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', APP, '--workers', '3', '--http', '127.0.0.1:0', '--control', '127.0.0.1:0', '--access-log', 'false'], {
    env: { CORRAL_CONTROL_TOKEN_FILE: tokenFile },
  });
  const control = String((await c.waitForMsg('control listener ready')).control);
  const h = await c.httpAddress();
  await c.waitForLog(() => c.liveWorkerPids().length === 3);
  return { c, control, base: `http://${h.host}:${h.port}`, token: readTokenFile(tokenFile) };
}

/** Clients in a loop until stopped; resolves each request's status into `statuses`. */
function hammer(url: string, clients: number, statuses: number[]): () => Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  let stopping = false;
  const loops = Array.from({ length: clients }, async () => {
    while (!stopping) {
      try {
        statuses.push((await httpRequest(url, { agent, timeoutMs: 10_000 })).status);
      } catch {
        statuses.push(0);
      }
    }
  });
  return async () => {
    stopping = true;
    await Promise.all(loops);
    agent.destroy();
  };
}

async function statusJson(r: Running): Promise<StatusDocument> {
  const a = await httpRequest(`http://${r.control}/status.json`, { headers: { authorization: `Bearer ${r.token}` } });
  expect(a.status).toBe(200);
  return JSON.parse(a.body.toString()) as StatusDocument;
}

describe.skipIf(CHROMIUM === null)('status page under load', () => {
  it('shows the error rate, the failing path with its exception, the current request and the chart; counts survive a reload', async () => {
    const r = await serve();
    const good: number[] = [];
    const bad: number[] = [];
    stops.push(hammer(`${r.base}/?page=1`, 3, good), hammer(`${r.base}/raise?secret=hidden`, 1, bad));
    // One slow request in flight while the page is read: a worker's current request.
    const slow = httpRequest(`${r.base}/sleep?s=20`, { timeoutMs: 60_000 });
    const until = async (cond: (d: StatusDocument) => boolean, what: string): Promise<StatusDocument> => {
      for (let i = 0; i < 300; i++) {
        const d = await statusJson(r);
        if (cond(d)) return d;
        await new Promise((res) => setTimeout(res, 50)); // polling the service's own figures, not a timed wait
      }
      throw new Error(`status never showed ${what}`);
    };
    const doc = await until(
      (d) => (d.apps[0]?.traffic?.byClass['5xx'] ?? 0) >= 10 && (d.apps[0]?.traffic?.byClass['2xx'] ?? 0) >= 50 && d.apps[0]!.workers.some((w) => w.current.some((c) => c.path === '/sleep')),
      'errors, successes and the slow request',
    );
    const app = doc.apps[0]!;
    expect(app.traffic!.errorRate).toBeGreaterThan(0);
    expect(app.traffic!.errorRate).toBeLessThan(1);
    expect(app.traffic!.latencyMs.p50).not.toBeNull();
    expect(app.recentErrors[0]).toMatchObject({ status: 500, method: 'GET', path: '/raise', code: null, exception: 'RuntimeError: boom before start_response' });
    // Query strings never reach the status: they may carry tokens.
    expect(JSON.stringify(doc)).not.toContain('secret=hidden');

    const page = await newPage(1280, 900);
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    const answer = await page.goto(`http://${r.control}/status?token=${encodeURIComponent(r.token)}&refresh=5`);
    expect(answer?.headers()['content-security-policy']).toContain("default-src 'none'");
    const section = page.locator(`section.app[data-app="${APP}"]`);
    await expect.poll(() => section.locator('[data-error-rate]').count()).toBe(1);
    expect(await section.locator('[data-error-rate]').innerText()).toMatch(/^\d+(\.\d)? % errors$/);
    expect(await section.locator('dl.figures').innerText()).toMatch(/5XX ERRORS\s+\d/i);
    const errors = section.locator('table.errors');
    expect(await errors.locator('td.path').first().innerText()).toBe('GET /raise');
    expect(await errors.locator('td.exc').first().innerText()).toBe('RuntimeError: boom before start_response');
    expect(await section.locator('table.workers td.current').allInnerTexts()).toEqual(expect.arrayContaining([expect.stringMatching(/^GET \/sleep \d+(\.\d)? s/)]));
    expect(await section.locator('svg.chart rect').count()).toBeGreaterThan(0);
    expect(await page.locator('script').count()).toBe(0);
    await screenshot(page, 'status-page-under-load');
    expect(violations).toEqual([]);

    // Without the token: the figures stay, the paths and exception lines go.
    const open = await (await newPage()).goto(`http://${r.control}/status`);
    const html = (await open!.text());
    expect(html).toContain('data-error-rate');
    expect(html).not.toContain('/raise');
    expect(html).not.toContain('RuntimeError');

    await Promise.all(stops.splice(0).map((s) => s()));
    expect((await slow).status).toBe(200);
    // Each request is counted as its response closes on the service's side, a moment after the client has it.
    const before = good.length + bad.length + 1;
    const counted = await until((d) => d.apps[0]!.totals.requests === before, `${before} requests counted`);
    expect(counted.apps[0]!.traffic!.slow).toBeGreaterThanOrEqual(1);
    const metrics = parsePrometheus((await httpRequest(`http://${r.control}/metrics`)).body.toString());
    expect(sampleValue(metrics, 'corral_requests_total', { app: APP, status: '500' })).toBe(bad.length);

    const reload = await httpRequest(`http://${r.control}/reload`, { method: 'POST', headers: { authorization: `Bearer ${r.token}` }, timeoutMs: 60_000 });
    expect(reload.status).toBe(200);
    expect((await httpRequest(`${r.base}/`)).status).toBe(200);
    const after = await until((d) => d.apps[0]!.totals.requests === before + 1, 'the request after the reload counted on top');
    expect(after.apps[0]!.servingGeneration).toBe(2);
    // The new generation's workers served one request between them; the app's count did not start over with them.
    const fresh = after.apps[0]!.workers.filter((w) => w.generation === 2);
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.reduce((n, w) => n + w.requests, 0)).toBe(1);
    expect(after.apps[0]!.recentReloads[0]).toMatchObject({ ok: true, generation: 2, code: null });
  });

  it('stays compact with 50 workers: one short row each', async () => {
    const stats = new AppStats();
    for (let i = 0; i < 500; i++) stats.request({ app: 'big', method: 'GET', path: `/item/${i % 7}`, status: i % 50 === 0 ? 500 : 200, bytes: 1, durationMs: 5 + (i % 40), pid: 1000 + (i % 50), queueMs: 0, error: null });
    const workers = Array.from({ length: 50 }, (_, i) => ({
      pid: 1000 + i, generation: 1, state: 'ready', inflight: i % 3 === 0 ? 1 : 0, requests: 10 * i, uptimeMs: 3_600_000, cpu: 2.5, cpuSeconds: 12.5, rssBytes: 40 * 1048576, recycle: null,
      running: i % 3 === 0 ? [{ method: 'GET', path: `/item/${i}`, ageMs: 120 }] : [],
    }));
    const app: ControlApp = {
      name: 'big.wsgi:application',
      settings: { root: '/srv/big', wsgiApp: 'big.wsgi:application', threads: 1, workers: 50, minWorkers: 50, maxWorkers: 50, queueLength: 1000 },
      pool: { state: 'running', servingGeneration: 1, queued: 0, failure: null, lastReloadError: null, queueHighWater: 4, maxWorkersReached: 1, longestWaitMs: 0, status: () => workers },
      stats,
      reload: async () => null,
    };
    const html = renderStatusPage(snapshot({ apps: [app], draining: false, stop: async () => {} }, { version: 'test', startedAt: new Date(Date.now() - 3_600_000) }));
    const page = await newPage(1280, 900);
    await page.setContent(html);
    const rows = page.locator('table.workers tbody tr');
    expect(await rows.count()).toBe(50);
    const box = (await page.locator('table.workers').boundingBox())!;
    // Each worker a single line (no wrapping), so 50 fit in about two screens.
    expect(box.height / 51).toBeLessThan(30);
    await screenshot(page, 'status-page-50-workers');
  });
});
