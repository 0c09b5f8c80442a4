/**
 * Issue 6, control listener with a real Service and real Python workers (worker_ok.py and a
 * reloadable app): status.json lists the worker pids and request counts; /metrics parses with
 * corral_ metrics; `corral status` shows the pids; a reload over the API replaces every worker
 * with no failed request under load; a stop over the API ends the service with no worker left;
 * and the listener answers at once while every worker thread is busy.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runControlCommand, type ControlIo } from '../../src/cli/control-client.js';
import type { StatusDocument } from '../../src/control/snapshot.js';
import { CLI, FIXTURES, ROOT, alive, startCorral, stopAll } from '../helpers/corral.js';
import { controlCall, readyWorkers, startTestService, stopServices, type TestService } from '../helpers/control.js';
import { httpRequest } from '../helpers/e2e.js';
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js';
import { AppDir, Load } from '../helpers/reload.js';

const apps: AppDir[] = [];
const loads: Load[] = [];
const agents: http.Agent[] = [];
const tmp: string[] = [];

afterEach(async () => {
  await Promise.all(loads.splice(0).map((l) => l.stop()));
  for (const a of agents.splice(0)) a.destroy();
  await stopServices();
  await stopAll();
  for (const a of apps.splice(0)) a.remove();
  for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function status(t: TestService): Promise<StatusDocument> {
  // With the token, as `corral status` reads it: roots and errors are shown only then.
  const r = await controlCall(t, 'GET', '/status.json', { token: true });
  expect(r.status).toBe(200);
  return JSON.parse(r.body.toString()) as StatusDocument;
}

function captureIo(env: NodeJS.ProcessEnv): ControlIo & { stdout: string; stderr: string } {
  const io = { env, stdout: '', stderr: '', out: (t: string) => void (io.stdout += t), err: (t: string) => void (io.stderr += t) };
  return io;
}

/** Whether the built CLI has the control commands and `serve --control` (the lead wires them). */
function built(file: string, text: string): boolean {
  try {
    return readFileSync(file, 'utf8').includes(text);
  } catch {
    return false;
  }
}
const cliHasStatus = built(CLI, 'control-client');
const serveHasControl = cliHasStatus && built(join(ROOT, 'dist', 'config', 'settings.js'), "key: 'control'");

/** Runs the built `corral ARGS`; resolves with its exit code and output. */
function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('control listener with real workers', () => {
  it('status.json lists the worker pids and their request counts; /metrics has corral_ metrics', async () => {
    const t = await startTestService([FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2', '--threads', '1'], { waitWorkers: 2 });
    const served = new Map<number, number>();
    for (let i = 0; i < 10; i++) {
      const r = await httpRequest(`${t.httpUrl}/pid`);
      expect(r.status).toBe(200);
      const pid = Number(r.body.toString());
      served.set(pid, (served.get(pid) ?? 0) + 1);
    }
    const doc = await status(t);
    expect(doc.service.draining).toBe(false);
    expect(doc.apps).toHaveLength(1);
    const app = doc.apps[0]!;
    expect(app).toMatchObject({ name: 'worker_ok:application', root: FIXTURES, state: 'running', servingGeneration: 1, queued: 0 });
    const pids = t.service.pool.workers.map((w) => w.pid).sort();
    expect(app.workers.map((w) => w.pid).sort()).toEqual(pids);
    for (const w of app.workers) {
      expect(w.state).toBe('ready');
      expect(w.requests).toBe(served.get(w.pid) ?? 0);
      expect(alive(w.pid)).toBe(true);
    }
    expect(app.totals.requests).toBe(10);

    // RSS and CPU come from the sampler (about once a second): wait for samples taken after the boot
    // (one taken just after the spawn sees the process before Python has loaded: some 100 KB).
    let families = parsePrometheus((await controlCall(t, 'GET', '/metrics')).body.toString());
    const deadline = Date.now() + 10_000;
    const booted = (): boolean => (sampleValue(families, 'corral_workers_rss_bytes', { app: 'worker_ok:application' }) ?? 0) > 2_000_000 && (sampleValue(families, 'corral_workers_cpu_seconds_total', { app: 'worker_ok:application' }) ?? 0) > 0;
    while (!booted() && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      families = parsePrometheus((await controlCall(t, 'GET', '/metrics')).body.toString());
    }
    for (const name of ['corral_requests_total', 'corral_request_duration_seconds', 'corral_queue_length', 'corral_workers', 'corral_worker_restarts_total', 'corral_worker_exits_total', 'corral_workers_rss_bytes', 'corral_workers_cpu_seconds_total', 'corral_busy_threads', 'corral_build_info']) {
      expect(families.has(name), name).toBe(true);
    }
    const label = { app: 'worker_ok:application' };
    expect(sampleValue(families, 'corral_workers', { ...label, state: 'ready' })).toBe(2);
    expect(sampleValue(families, 'corral_queue_length', label)).toBe(0);
    expect(sampleValue(families, 'corral_workers_rss_bytes', label)).toBeGreaterThan(2_000_000);
    // Seconds of CPU, not a percent: a booted Python used some, and less than it has lived.
    const cpu = sampleValue(families, 'corral_workers_cpu_seconds_total', label)!;
    expect(cpu).toBeGreaterThan(0);
    expect(cpu).toBeLessThan(2 * (Math.max(...app.workers.map((w) => w.uptimeSeconds)) + 5));
    expect(sampleValue(families, 'corral_busy_threads', label)).toBe(0);

    // The page a person reads has the same pids.
    const page = (await controlCall(t, 'GET', '/status')).body.toString();
    for (const pid of pids) expect(page).toContain(`data-pid="${pid}"`);
  });

  it('`corral status` shows the pids (in-process now; the built CLI once main.ts dispatches it)', async () => {
    const t = await startTestService([FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2'], { waitWorkers: 2 });
    const pids = t.service.pool.workers.map((w) => w.pid);
    const io = captureIo(t.env);
    expect(await runControlCommand('status', ['--control', t.control.bound], io)).toBe(0);
    expect(io.stderr).toBe('');
    expect(io.stdout).toContain('app worker_ok:application');
    for (const pid of pids) expect(io.stdout).toMatch(new RegExp(`^\\s+${pid}\\s+1\\s+ready\\s`, 'm'));
    if (cliHasStatus) {
      const out = await runCli(['status', '--control', t.control.bound], t.env);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      for (const pid of pids) expect(out.stdout).toContain(String(pid));
    }
  });

  it('a reload over the API replaces every worker with no failed request under load', async () => {
    const app = new AppDir('A');
    apps.push(app);
    const t = await startTestService([app.dir, '--workers', '2', '--threads', '2'], { waitWorkers: 2 });
    const before = t.service.pool.workers.map((w) => w.pid);
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 4 });
    agents.push(keepAlive);
    const load = new Load(4, async () => {
      const r = await httpRequest(`${t.httpUrl}/`, { agent: keepAlive });
      return { status: r.status, body: r.body.toString() };
    });
    loads.push(load);
    load.known.add('A');
    load.start();
    await load.pidsOf('A', 2);

    load.known.add('B');
    app.write('B');
    const since = performance.now();
    const r = await controlCall(t, 'POST', '/reload', { token: true });
    expect(r.status).toBe(200);
    const answer = JSON.parse(r.body.toString()) as { ok: boolean; apps: Array<{ generation: number; error: unknown }> };
    expect(answer).toMatchObject({ ok: true, apps: [{ generation: 2, error: null }] });
    // The answer comes once the new generation serves: the next answers are all B.
    await load.served('B', since);
    // The old workers drain and exit.
    await t.logs.until(() => t.service.pool.workers.every((w) => w.generation === 2) && readyWorkers(t) === 2, 'old generation gone');
    const after = (await status(t)).apps[0]!.workers;
    expect(after.map((w) => w.generation)).toEqual([2, 2]);
    expect(after.some((w) => before.includes(w.pid))).toBe(false);
    for (const pid of before) expect(alive(pid)).toBe(false);

    // The CLI does the same with the token file.
    load.known.add('C');
    app.write('C');
    const io = captureIo(t.env);
    expect(await runControlCommand('reload', ['--control', t.control.bound], io)).toBe(0);
    expect(io.stdout).toBe(`reloaded wsgi:application (${app.dir}): generation 3 serving\n`);
    await load.served('C', performance.now());
    await load.more(20);
    await load.stop();
    const failures = load.samples.filter((s) => s.failure !== null);
    expect(failures, JSON.stringify(failures.slice(0, 3))).toEqual([]);
    expect(load.samples.length).toBeGreaterThan(40);
  });

  it('a stop over the API answers 202, finishes in-flight requests, and leaves no worker', async () => {
    const t = await startTestService([FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2'], { waitWorkers: 2 });
    const pids = t.service.pool.workers.map((w) => w.pid);
    const slow = httpRequest(`${t.httpUrl}/sleep?s=1`);
    await t.logs.until(() => t.logs.lines.some((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start')), 'slow request running');
    const r = await controlCall(t, 'POST', '/stop', { token: true });
    expect(r.status).toBe(202);
    // Draining: load balancers are told at once, while the slow request still runs.
    expect((await controlCall(t, 'GET', '/healthz')).status).toBe(503);
    expect((await slow).status).toBe(200);
    await t.service.stopped;
    for (const pid of pids) expect(alive(pid), `worker ${pid}`).toBe(false);
    expect(t.service.pool.state).toBe('stopped');
  });

  it('answers at once while every worker thread is busy and requests queue', async () => {
    const t = await startTestService([FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2', '--threads', '1'], { waitWorkers: 2 });
    const slow = Array.from({ length: 4 }, () => httpRequest(`${t.httpUrl}/sleep?s=2`));
    await t.logs.until(() => t.logs.lines.filter((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start')).length >= 2, 'both workers busy');
    await t.logs.until(() => t.service.pool.queued === 2, 'two requests queued');
    const started = performance.now();
    const [json, page, metrics, health] = await Promise.all([
      controlCall(t, 'GET', '/status.json', { timeoutMs: 2_000 }),
      controlCall(t, 'GET', '/status', { timeoutMs: 2_000 }),
      controlCall(t, 'GET', '/metrics', { timeoutMs: 2_000 }),
      controlCall(t, 'GET', '/healthz', { timeoutMs: 2_000 }),
    ]);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(1_000);
    expect([json.status, page.status, metrics.status, health.status]).toEqual([200, 200, 200, 200]);
    const app = (JSON.parse(json.body.toString()) as StatusDocument).apps[0]!;
    expect(app.queued).toBe(2);
    expect(app.totals.inflight).toBe(2);
    expect(app.workers.map((w) => w.inflight)).toEqual([1, 1]);
    expect(sampleValue(parsePrometheus(metrics.body.toString()), 'corral_queue_length', { app: 'worker_ok:application' })).toBe(2);
    expect((await Promise.all(slow)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
  });
});

// Black-box: the built CLI, `corral serve --control` and the commands. Skipped until main.ts and the
// settings table have the wiring (see the control listener's hand-over notes).
describe.skipIf(!serveHasControl)('corral serve --control with corral status, reload and stop', () => {
  it('status shows the pids, /metrics counts the requests, reload replaces the workers, stop ends the service with exit 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-cli-token-'));
    tmp.push(dir);
    const env = { ...process.env, CORRAL_CONTROL_TOKEN_FILE: join(dir, 'control.token') };
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2', '--http', '127.0.0.1:0', '--control', '127.0.0.1:0'], { env });
    const control = String((await c.waitForMsg('control listener ready')).control);
    const http0 = await c.httpAddress();
    await c.waitForLog(() => c.liveWorkerPids().length === 2);
    for (let i = 0; i < 5; i++) expect((await httpRequest(`http://${http0.host}:${http0.port}/`)).status).toBe(200);
    const pids = c.liveWorkerPids();

    const st = await runCli(['status', '--control', control], env);
    expect([st.code, st.stderr]).toEqual([0, '']);
    for (const pid of pids) expect(st.stdout).toMatch(new RegExp(`^\\s+${pid}\\s+1\\s+ready\\s`, 'm'));
    const metrics = parsePrometheus((await httpRequest(`http://${control}/metrics`)).body.toString());
    expect(sampleValue(metrics, 'corral_requests_total', { app: 'worker_ok:application', status: '200' })).toBe(5);

    const rl = await runCli(['reload', '--control', control], env);
    expect([rl.code, rl.stderr]).toEqual([0, '']);
    expect(rl.stdout).toContain('generation 2 serving');
    await c.waitForLog(() => pids.every((pid) => !c.liveWorkerPids().includes(pid)) && c.liveWorkerPids().length === 2);
    const fresh = c.liveWorkerPids();

    const sp = await runCli(['stop', '--control', control], env);
    expect([sp.code, sp.stderr]).toEqual([0, '']);
    expect(sp.stdout).toContain('stopped');
    expect((await c.exited).code).toBe(0);
    for (const pid of [...pids, ...fresh]) expect(alive(pid), `worker ${pid}`).toBe(false);
    expect((await runCli(['status', '--control', control], env)).code).toBe(3);
  });
});
