/**
 * The control listener against a fake service: the status.json shape, the HTML page (escaped),
 * Prometheus text that parses, the token on writes, /healthz while draining, app selection for
 * reload, the address rules, and the CLI's exit codes and messages.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAddress } from '../../src/config/address.js';
import { controlAddress, controlAddressProblem, isLoopbackHost } from '../../src/config/control-address.js';
import { CorralError } from '../../src/errors.js';
import { silentLogger } from '../../src/log/logger.js';
import { AppStats } from '../../src/monitor/app-stats.js';
import { AppNames } from '../../src/cli/app-names.js';
import { renderStatusTable } from '../../src/cli/status-table.js';
import type { PoolState, WorkerStatus } from '../../src/pool/pool.js';
import { PromMetrics, restartReason } from '../../src/control/metrics.js';
import { redact, selectApps, snapshot, STATUS_SCHEMA, type StatusDocument } from '../../src/control/snapshot.js';
import { esc, renderStatusPage } from '../../src/control/status-page.js';
import { MAX_CONNECTIONS, startControlServer, type ControlServer } from '../../src/control/server.js';
import type { ControlApp, ControlPool, ControlTarget } from '../../src/control/target.js';
import { checkBearer, readTokenFile, tokenPath, writeTokenFile } from '../../src/control/token.js';
import { runControlCommand, type ControlIo } from '../../src/cli/control-client.js';
import { httpRequest } from '../helpers/e2e.js';
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js';

// ---- a fake service

class FakeApp implements ControlApp {
  state: PoolState = 'running';
  servingGeneration = 1;
  queued = 0;
  failure: CorralError | null = null;
  lastReloadError: CorralError | null = null;
  workers: WorkerStatus[] = [];
  queueHighWater = 0;
  maxWorkersReached = 0;
  longestWaitMs = 0;
  stats: AppStats | null = null;
  reloads = 0;
  /** What the next reload resolves with; `hold` keeps it pending until released. */
  nextReload: CorralError | null = null;
  hold: Promise<void> | null = null;
  readonly settings: { root: string; wsgiApp: string; threads: number; workers: number; minWorkers: number | null; maxWorkers: number | null; queueLength: number };

  constructor(root: string, wsgiApp: string, threads = 2) {
    this.settings = { root, wsgiApp, threads, workers: 2, minWorkers: null, maxWorkers: 4, queueLength: 100 };
  }

  get name(): string {
    return this.settings.wsgiApp;
  }

  /** The fake is its own pool. */
  get pool(): ControlPool {
    return this;
  }

  status(): WorkerStatus[] {
    return this.workers.map((w) => ({ ...w }));
  }

  async reload(): Promise<Error | null> {
    this.reloads++;
    await this.hold;
    if (this.nextReload) {
      this.lastReloadError = this.nextReload;
      return this.nextReload;
    }
    this.servingGeneration++;
    for (const w of this.workers) w.generation = this.servingGeneration;
    return null;
  }
}

function worker(pid: number, over: Partial<WorkerStatus> = {}): WorkerStatus {
  return { pid, generation: 1, state: 'ready', inflight: 0, requests: 0, uptimeMs: 65_000, cpu: 1.25, cpuSeconds: 4.5, rssBytes: 30 * 1048576, recycle: null, running: [], ...over };
}

class FakeTarget implements ControlTarget {
  apps: FakeApp[] = [];
  draining = false;
  stops = 0;
  async stop(): Promise<void> {
    this.stops++;
    this.draining = true;
  }
}

function twoApps(): FakeTarget {
  const t = new FakeTarget();
  const a = new FakeApp('/srv/shop', 'shop.wsgi:application');
  a.workers = [worker(101, { requests: 7, inflight: 1 }), worker(102, { requests: 5 })];
  a.queued = 3;
  const b = new FakeApp('/srv/blog', 'wsgi:application', 1);
  b.state = 'failed';
  b.failure = new CorralError('CORRAL_APP_IMPORT_FAILED', 'app wsgi:application: import failed: ModuleNotFoundError: No module named <flask>', {
    detail: 'Traceback (most recent call last):\n  File "/srv/blog/wsgi.py", line 1\nModuleNotFoundError: No module named <flask>',
  });
  b.workers = [worker(201, { state: 'starting', generation: 3, cpu: null, rssBytes: null })];
  b.servingGeneration = 3;
  t.apps = [a, b];
  return t;
}

const facts = { version: '9.9.9', startedAt: new Date('2025-01-01T00:00:00Z') };

// ---- the document and its renderings

describe('status document', () => {
  it('has the documented shape, with totals and errors', () => {
    const doc = snapshot(twoApps(), facts, new Date('2025-01-01T01:00:00Z'));
    expect(doc.schema).toBe(STATUS_SCHEMA);
    expect(doc.service).toMatchObject({ version: '9.9.9', pid: process.pid, uptimeSeconds: 3600, draining: false, startedAt: '2025-01-01T00:00:00.000Z' });
    expect(doc.apps).toHaveLength(2);
    const [shop, blog] = doc.apps;
    expect(shop).toEqual({
      name: 'shop.wsgi:application',
      root: '/srv/shop',
      wsgiApp: 'shop.wsgi:application',
      state: 'running',
      servingGeneration: 1,
      queued: 3,
      queueHighWater: 0,
      longestWaitSeconds: 0,
      maxWorkersReached: 0,
      limits: { minWorkers: 2, maxWorkers: 4, threadsPerWorker: 2, queueLength: 100 },
      totals: { workers: 2, ready: 2, inflight: 1, threads: 4, requests: 12, rssBytes: 60 * 1048576 },
      workers: [
        { pid: 101, generation: 1, state: 'ready', requests: 7, inflight: 1, cpuPercent: 1.3, cpuSeconds: 4.5, rssBytes: 30 * 1048576, uptimeSeconds: 65, recycle: null, current: [] },
        { pid: 102, generation: 1, state: 'ready', requests: 5, inflight: 0, cpuPercent: 1.3, cpuSeconds: 4.5, rssBytes: 30 * 1048576, uptimeSeconds: 65, recycle: null, current: [] },
      ],
      traffic: null,
      recentErrors: [],
      recentExits: [],
      recentReloads: [],
      failure: null,
      lastReloadError: null,
      answerer: null,
    });
    expect(blog!.failure).toEqual({ code: 'CORRAL_APP_IMPORT_FAILED', message: expect.stringContaining('No module named') as string, detail: expect.stringContaining('Traceback') as string });
    expect(blog!.workers[0]).toMatchObject({ cpuPercent: null, rssBytes: null, state: 'starting' });
    // JSON round trip: nothing in it is lost (no Dates, no undefined).
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc);
  });

  it('shows the requests a direct worker reports running, with their age; without the token, not their paths', () => {
    const t = twoApps();
    t.apps[0]!.pool.workers[0] = worker(101, { inflight: 1, running: [{ method: 'POST', path: '/upload/<x>', ageMs: 1_250 }] });
    const doc = snapshot(t, facts);
    expect(doc.apps[0]!.workers[0]!.current).toEqual([{ method: 'POST', path: '/upload/<x>', ageSeconds: 1.3 }]);
    expect(renderStatusPage(doc, 5)).toContain('POST /upload/&#60;x&#62; 1.3 s');
    const hidden = redact(doc);
    expect(hidden.apps[0]!.workers[0]!.current).toEqual([{ method: 'POST', path: null, ageSeconds: 1.3 }]);
    expect(renderStatusPage(hidden, 5)).not.toContain('/upload/');
  });

  it('carries the last minute of traffic, lifetime counts and recent errors; page, table and redaction show them', () => {
    const t = twoApps();
    let now = Date.parse('2025-01-01T00:59:30Z');
    const stats = new AppStats(() => now);
    t.apps[0]!.stats = stats;
    t.apps[0]!.queueHighWater = 7;
    t.apps[0]!.maxWorkersReached = 2;
    t.apps[0]!.longestWaitMs = 1_250;
    const rec = { app: 'shop.wsgi:application', method: 'GET', bytes: 1, pid: 101, queueMs: 0, error: null };
    for (let i = 0; i < 30; i++) stats.request({ ...rec, path: '/ok', status: 200, durationMs: 8 });
    stats.stderr(101, 'Traceback (most recent call last):');
    stats.stderr(101, 'KeyError: <b>');
    for (let i = 0; i < 10; i++) stats.request({ ...rec, path: '/cart?session=s3cret', status: 500, durationMs: 40 });
    stats.reload('SIGHUP', 2, null);
    now += 500;
    const doc = snapshot(t, facts, new Date(now));
    const shop = doc.apps[0]!;
    expect(shop).toMatchObject({ queueHighWater: 7, maxWorkersReached: 2, longestWaitSeconds: 1.3 });
    expect(shop.totals.requests).toBe(40); // the app's count, not the live workers' 12
    expect(shop.traffic).toMatchObject({ requests: 40, byClass: { '2xx': 30, '5xx': 10 }, errorRate: 0.25, slow: 0 });
    expect(shop.traffic!.latencyMs.p50).toBeGreaterThan(5); // within the (5, 10] ms bucket the 8 ms requests fell in
    expect(shop.traffic!.latencyMs.p50).toBeLessThanOrEqual(10);
    expect(shop.traffic!.series).toHaveLength(60);
    expect(shop.recentErrors[0]).toMatchObject({ status: 500, path: '/cart', exception: 'KeyError: <b>', pid: 101 });
    expect(shop.recentReloads[0]).toMatchObject({ ok: true, generation: 2, reason: 'SIGHUP' });
    expect(JSON.stringify(doc)).not.toContain('s3cret');

    const html = renderStatusPage(doc);
    expect(html).toContain('data-error-rate="0.25"');
    expect(html).toContain('25 % errors');
    expect(html).toMatch(/<td>10×<\/td><td>500<\/td><td class="path">GET \/cart<\/td>/);
    expect(html).toContain('KeyError: &#60;b&#62;');
    expect(html).toContain('<svg class="chart"');
    expect(html).not.toMatch(/<(?:script|img|link)\b/);
    const text = renderStatusTable(doc);
    expect(text).toMatch(/5xx 25 %\s+p50 \S+ ms/);
    expect(text).toContain('queue 3/100 (high 7, oldest 1.3 s, max workers reached 2x)');
    expect(text).toMatch(/10x\s+500\s+GET \/cart\s+101\s+KeyError: <b>/);

    const hidden = redact(doc);
    expect(hidden.apps[0]!.recentErrors[0]).toMatchObject({ path: null, exception: null, status: 500 });
    const hiddenHtml = renderStatusPage(hidden);
    expect(hiddenHtml).toContain('25 % errors');
    expect(hiddenHtml).not.toContain('/cart');
    expect(hiddenHtml).not.toContain('KeyError');
  });

  it('names apps uniquely when two share a callable, and the same way every time', () => {
    const names = new AppNames();
    expect(names.take({ root: '/sites/a', wsgiApp: 'wsgi:application' })).toBe('wsgi:application');
    expect(names.take({ root: '/sites/b/', wsgiApp: 'wsgi:application' })).toBe('wsgi:application@b');
    expect(names.take({ root: '/other/b', wsgiApp: 'wsgi:application' })).toBe('wsgi:application@b#2');
    expect(names.take({ root: '/sites/b/', wsgiApp: 'wsgi:application' })).toBe('wsgi:application@b');
    expect(names.take({ root: '/sites/a', wsgiApp: 'wsgi:application' })).toBe('wsgi:application');
    expect(names.take({ root: '/sites/c', wsgiApp: 'c:app' })).toBe('c:app');
  });

  it('selects apps for reload by WSGI callable, root or directory name', () => {
    const t = twoApps();
    expect(selectApps(t.apps, null)).toHaveLength(2);
    expect(selectApps(t.apps, 'wsgi:application').map((a) => a.settings.root)).toEqual(['/srv/blog']);
    expect(selectApps(t.apps, '/srv/shop/').map((a) => a.settings.root)).toEqual(['/srv/shop']);
    expect(selectApps(t.apps, 'shop').map((a) => a.settings.root)).toEqual(['/srv/shop']);
    expect(selectApps(t.apps, 'nope')).toEqual([]);
  });

  it('renders an HTML page with every app, worker and error, all escaped', () => {
    const t = twoApps();
    t.apps[0]!.settings.root = '/srv/<script>alert(1)</script>';
    const html = renderStatusPage(snapshot(t, facts), 5);
    expect(html).toContain('<meta http-equiv="refresh" content="5">');
    expect(html).not.toContain('<script>');
    expect(html).toContain('/srv/&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(html).toContain('No module named &#60;flask&#62;');
    for (const pid of [101, 102, 201]) expect(html).toContain(`data-pid="${pid}"`);
    expect(html).toContain('data-app="shop.wsgi:application"');
    expect(html).toMatch(/<details class="error" open><summary>Pool failed: /);
    expect(html).not.toMatch(/<(?:script|img|link)\b/);
    expect(esc(`a&b"c'd`)).toBe('a&#38;b&#34;c&#39;d');
  });
});

describe('metrics', () => {
  it('writes Prometheus text that parses, with corral_ families and gauges from the snapshot', async () => {
    const m = new PromMetrics();
    m.requestDone('shop.wsgi:application', 200, 0.012);
    m.requestDone('shop.wsgi:application', 200, 0.4);
    m.requestDone('shop.wsgi:application', 503, 0.001);
    m.workerExit('shop.wsgi:application', 'served maxRequests (1000)');
    m.workerExit('shop.wsgi:application', 'request ran over requestTimeout (90 s)');
    m.workerExit('shop.wsgi:application', 'signal SIGSEGV');
    m.workerExit('shop.wsgi:application', 'idle above minWorkers');
    m.requestDone('shop.wsgi:application', 503, 0.002, 'CORRAL_QUEUE_FULL');
    m.requestDone('wsgi:application', 503, 1.5, 'CORRAL_APP_IMPORT_FAILED');
    const text = await m.text(snapshot(twoApps(), facts));
    const f = parsePrometheus(text);
    for (const name of ['corral_requests_total', 'corral_request_duration_seconds', 'corral_queue_length', 'corral_workers', 'corral_worker_restarts_total', 'corral_worker_exits_total', 'corral_workers_rss_bytes', 'corral_workers_cpu_seconds_total', 'corral_busy_threads', 'corral_error_responses_total', 'corral_build_info', 'corral_max_workers_reached_total', 'corral_queue_high_water', 'corral_slow_requests_total']) {
      expect(f.get(name), name).toBeDefined();
      expect(f.get(name)!.help.length, `${name} has help`).toBeGreaterThan(10);
    }
    expect([...f.keys()].every((n) => n.startsWith('corral_'))).toBe(true);
    expect(f.get('corral_request_duration_seconds')!.type).toBe('histogram');
    const app = 'shop.wsgi:application';
    expect(sampleValue(f, 'corral_requests_total', { app, status: '200' })).toBe(2);
    expect(sampleValue(f, 'corral_requests_total', { app, status: '503' })).toBe(2);
    expect(sampleValue(f, 'corral_request_duration_seconds', { app }, 'corral_request_duration_seconds_count')).toBe(4);
    // 503s say why: the queue was full, or the app does not import.
    expect(sampleValue(f, 'corral_error_responses_total', { app, code: 'CORRAL_QUEUE_FULL', status: '503' })).toBe(1);
    expect(sampleValue(f, 'corral_error_responses_total', { app: 'wsgi:application', code: 'CORRAL_APP_IMPORT_FAILED' })).toBe(1);
    expect(sampleValue(f, 'corral_slow_requests_total', { app: 'wsgi:application' })).toBe(1);
    // Every exit is an exit; scaling down is no restart.
    expect(sampleValue(f, 'corral_worker_exits_total', { app, reason: 'idle' })).toBe(1);
    expect(sampleValue(f, 'corral_worker_restarts_total', { app, reason: 'idle' })).toBeUndefined();
    expect(f.get('corral_worker_exits_total')!.samples.reduce((n, x) => n + x.value, 0)).toBe(4);
    expect(sampleValue(f, 'corral_build_info', { version: '9.9.9', node: process.version })).toBe(1);
    expect(sampleValue(f, 'corral_busy_threads', { app })).toBe(1);
    expect(sampleValue(f, 'corral_threads', { app })).toBe(4);
    expect(f.get('corral_workers_cpu_seconds_total')!.type).toBe('counter');
    expect(sampleValue(f, 'corral_workers_cpu_seconds_total', { app })).toBe(9);
    // Node's own process metrics, prefixed.
    expect(f.get('corral_process_cpu_seconds_total')?.type).toBe('counter');
    expect(f.get('corral_nodejs_eventloop_lag_seconds')).toBeDefined();
    // No series per pid: a recycled worker must not start a new one.
    expect(text).not.toMatch(/pid="/);
    expect(sampleValue(f, 'corral_request_duration_seconds', { app, le: '0.025' }, 'corral_request_duration_seconds_bucket')).toBe(3);
    expect(sampleValue(f, 'corral_worker_restarts_total', { app, reason: 'max_requests' })).toBe(1);
    expect(sampleValue(f, 'corral_worker_restarts_total', { app, reason: 'request_timeout' })).toBe(1);
    expect(sampleValue(f, 'corral_worker_restarts_total', { app, reason: 'signal_SIGSEGV' })).toBe(1);
    expect(sampleValue(f, 'corral_queue_length', { app })).toBe(3);
    expect(sampleValue(f, 'corral_workers', { app, state: 'ready' })).toBe(2);
    expect(sampleValue(f, 'corral_workers', { app, state: 'draining' })).toBe(0);
    expect(sampleValue(f, 'corral_workers', { app: 'wsgi:application', state: 'starting' })).toBe(1);
    expect(sampleValue(f, 'corral_workers_rss_bytes', { app })).toBe(60 * 1048576);
    expect(sampleValue(f, 'corral_pool_state', { app: 'wsgi:application', state: 'failed' })).toBe(1);
    // Gauges are re-read at each scrape; the CPU counter keeps what an exited worker used and adds what the new one uses.
    const t = twoApps();
    t.apps[0]!.workers.pop();
    t.apps[0]!.workers.push(worker(103, { cpuSeconds: 0.5 }));
    t.apps[0]!.workers[0]!.cpuSeconds = 6;
    const again = parsePrometheus(await m.text(snapshot(t, facts)));
    expect(sampleValue(again, 'corral_workers', { app, state: 'ready' })).toBe(2);
    expect(sampleValue(again, 'corral_workers_cpu_seconds_total', { app })).toBe(4.5 + 6 + 0.5);
  });

  it('turns exit reasons into a small set of labels', () => {
    const cases: Array<[string, string]> = [
      ['served maxRequests (1000)', 'max_requests'],
      ['RSS 600 MB over maxMemoryMB (512)', 'memory'],
      ['request ran over requestTimeout (90 s)', 'request_timeout'],
      ['no READY within startupTimeout (60 s)', 'startup_timeout'],
      ['did not exit within gracefulTimeout (30 s) after stdin closed', 'grace_timeout'],
      ['killed after grace period', 'grace_timeout'],
      ['no PONG within 30 s (worker stuck)', 'unresponsive'],
      ['superseded by a newer reload', 'reload'],
      ['generation failed to boot', 'reload'],
      ['pool failed', 'pool_failed'],
      ['service stop took longer than gracefulTimeout (30 s)', 'grace_timeout'],
      ['stopped', 'stopped'],
      ['app import failed', 'import_failed'],
      ['exited before ready', 'boot_failed'],
      ['killed', 'killed'],
      ['signal SIGSEGV', 'signal_SIGSEGV'],
      ['exit code 1', 'crash'],
      ['something new', 'other'],
    ];
    for (const [text, label] of cases) expect(restartReason(text), text).toBe(label);
  });
});

// ---- addresses and the token

describe('control address and token', () => {
  it('accepts loopback TCP, unix sockets and pipes; refuses other hosts', () => {
    for (const ok of ['127.0.0.1:9001', '[::1]:9001', 'localhost:9001', '9001', 'unix:/run/corral.sock', '\\\\.\\pipe\\corral-control']) {
      expect(controlAddressProblem(parseAddress(ok)), ok).toBeNull();
    }
    for (const bad of [':9001', '0.0.0.0:9001', '10.0.0.5:9001', 'example.com:9001', 'fd:0']) {
      expect(controlAddressProblem(parseAddress(bad)), bad).toMatch(/loopback|cannot be used/);
    }
    expect(isLoopbackHost('127.3.2.1')).toBe(true);
    expect(isLoopbackHost('[::ffff:127.0.0.1]')).toBe(true);
    const kind = controlAddress();
    const refused = kind.fromText('0.0.0.0:9001', { baseDir: '/', platform: 'linux' });
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.issues[0]!.reason).toContain('not a loopback address');
    expect(kind.fromJson('127.0.0.1:9001', { baseDir: '/', platform: 'linux' })).toEqual({ ok: true, value: { kind: 'tcp', host: '127.0.0.1', port: 9001 } });
  });

  it('derives the same token file for every loopback spelling of a port, and honours the override', () => {
    const p = tokenPath(parseAddress('127.0.0.1:9001'), {});
    expect(p).toBe(join(tmpdir(), 'corral-control-tcp-9001.token'));
    expect(tokenPath(parseAddress('localhost:9001'), {})).toBe(p);
    expect(tokenPath(parseAddress('[::1]:9001'), {})).toBe(p);
    const sock = tokenPath(parseAddress('unix:/run/corral/ctl.sock'), {});
    expect(sock).toMatch(/corral-control-unix-ctl\.sock-[0-9a-f]{12}\.token$/);
    expect(tokenPath(parseAddress('unix:/other/ctl.sock'), {})).not.toBe(sock);
    expect(tokenPath(parseAddress('9001'), { CORRAL_CONTROL_TOKEN_FILE: '/x/t' })).toBe('/x/t');
  });

  it('writes the token readable only by its owner, and checks bearer headers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-token-unit-'));
    try {
      const file = join(dir, 'sub', 't.token');
      const token = 'ab'.repeat(32);
      writeTokenFile(file, token);
      if (process.platform !== 'win32') expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readTokenFile(file)).toBe(token);
      writeTokenFile(file, 'cd'.repeat(32)); // a restart replaces it
      expect(readTokenFile(file)).toBe('cd'.repeat(32));
      writeFileSync(file, 'garbage');
      expect(() => readTokenFile(file)).toThrow(/does not hold a token/);
      expect(() => readTokenFile(join(dir, 'missing'))).toThrow(/cannot read the control token from .*missing: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const token = 'ef'.repeat(32);
    expect(checkBearer(`Bearer ${token}`, token)).toBeNull();
    expect(checkBearer(`bearer  ${token} `, token)).toBeNull();
    expect(checkBearer(undefined, token)).toMatch(/missing/);
    expect(checkBearer(`Basic ${token}`, token)).toMatch(/not "Bearer/);
    expect(checkBearer('Bearer short', token)).toBe('wrong token');
    expect(checkBearer(`Bearer ${'00'.repeat(32)}`, token)).toBe('wrong token');
  });
});

// ---- the server over HTTP

describe('control server', () => {
  let dir: string;
  let server: ControlServer | null = null;
  let target: FakeTarget;
  let env: NodeJS.ProcessEnv;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'corral-control-unit-'));
    env = { CORRAL_CONTROL_TOKEN_FILE: join(dir, 'control.token') };
    target = twoApps();
    server = await startControlServer({ address: parseAddress('127.0.0.1:0'), target, log: silentLogger(), version: '9.9.9', env });
  });
  afterEach(async () => {
    await server?.close();
    server = null;
    rmSync(dir, { recursive: true, force: true });
  });

  const url = (path: string): string => `http://${server!.bound}${path}`;
  const token = (): string => readFileSync(server!.tokenFile, 'utf8').trim();

  it('serves status.json, the page and metrics with the right types', async () => {
    const json = await httpRequest(url('/status.json'));
    expect(json.status).toBe(200);
    expect(json.headers['content-type']).toMatch(/^application\/json/);
    expect(json.headers['cache-control']).toBe('no-store');
    const doc = JSON.parse(json.body.toString()) as StatusDocument;
    expect(doc.apps.map((a) => a.workers.map((w) => w.pid))).toEqual([[101, 102], [201]]);
    const page = await httpRequest(url('/status?refresh=2'));
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.body.toString()).toContain('data-pid="101"');
    const metrics = await httpRequest(url('/metrics'));
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(parsePrometheus(metrics.body.toString()).has('corral_workers')).toBe(true);
    expect((await httpRequest(url('/'))).status).toBe(302);
    expect((await httpRequest(url('/nope'))).status).toBe(404);
    const wrongMethod = await httpRequest(url('/status'), { method: 'POST' });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.allow).toBe('GET, HEAD');
    expect((await httpRequest(url('/reload'))).status).toBe(405);
  });

  it('answers /healthz 200, then 503 while draining; 503 when every app failed', async () => {
    const ok = await httpRequest(url('/healthz'));
    expect([ok.status, ok.body.toString()]).toEqual([200, 'ok\n']);
    target.draining = true;
    const draining = await httpRequest(url('/healthz'));
    expect([draining.status, draining.body.toString()]).toEqual([503, 'draining\n']);
    target.draining = false;
    target.apps[0]!.state = 'failed';
    const failed = await httpRequest(url('/healthz'));
    expect(failed.status).toBe(503);
    // Without the token, codes only (messages may quote paths); with it, the messages.
    expect(failed.body.toString()).toMatch(/^failed: .*CORRAL_APP_IMPORT_FAILED/);
    expect(failed.body.toString()).not.toContain('No module named');
    const full = await httpRequest(url('/healthz'), { headers: { authorization: `Bearer ${token()}` } });
    expect(full.body.toString()).toMatch(/^failed: .*No module named/);
  });

  it('local read access (default): reads without the token hide roots, error messages and tracebacks', async () => {
    target.apps[0]!.lastReloadError = new CorralError('CORRAL_DEPLOY_FAILED', 'deploy script /srv/shop/deploy.py failed', { detail: 'Traceback in /srv/shop' });
    const anon = await httpRequest(url('/status.json'));
    expect(anon.status).toBe(200);
    const text = anon.body.toString();
    expect(text).not.toContain('/srv/');
    expect(text).not.toContain('Traceback');
    expect(text).not.toContain('No module named');
    const doc = JSON.parse(text) as StatusDocument;
    expect(doc.redacted).toBe(true);
    expect(doc.apps.map((a) => a.root)).toEqual([null, null]);
    expect(doc.apps[1]!.failure).toEqual({ code: 'CORRAL_APP_IMPORT_FAILED', message: expect.stringContaining('control token') as string, detail: null });
    expect(doc.apps[0]!.lastReloadError?.code).toBe('CORRAL_DEPLOY_FAILED');
    expect(doc.apps[0]!.workers.map((w) => w.pid)).toEqual([101, 102]);
    const page = (await httpRequest(url('/status'))).body.toString();
    expect(page).not.toContain('/srv/');
    expect(page).not.toContain('Traceback');
    expect(page).toContain('carried no control token');
    const metrics = await httpRequest(url('/metrics'));
    expect(metrics.status).toBe(200);
    expect(metrics.body.toString()).not.toContain('/srv/');
    // With the token: everything.
    const auth = { authorization: `Bearer ${token()}` };
    const full = JSON.parse((await httpRequest(url('/status.json'), { headers: auth })).body.toString()) as StatusDocument;
    expect(full.redacted).toBe(false);
    expect(full.apps.map((a) => a.root)).toEqual(['/srv/shop', '/srv/blog']);
    expect(full.apps[1]!.failure?.detail).toContain('Traceback');
    expect((await httpRequest(url('/status'), { headers: auth })).body.toString()).toContain('Traceback');
    // A browser gives it as ?token=, and the page keeps it in its links.
    const viaQuery = (await httpRequest(url(`/status?token=${token()}`))).body.toString();
    expect(viaQuery).toContain('/srv/shop');
    expect(viaQuery).toContain(`href="?refresh=5&#38;token=${token()}"`);
    expect(viaQuery).toContain(`href="status.json?token=${token()}"`);
    expect(JSON.parse((await httpRequest(url(`/status.json?token=${token()}`))).body.toString()).redacted).toBe(false);
    expect((await httpRequest(url(`/status.json?token=${'0'.repeat(64)}`))).status).toBe(401);
    // A wrong token is refused, not quietly redacted.
    expect((await httpRequest(url('/status.json'), { headers: { authorization: `Bearer ${'0'.repeat(64)}` } })).status).toBe(401);
  });

  it('token read access: every read but /healthz needs the token; corral status sends it', async () => {
    const env2 = { CORRAL_CONTROL_TOKEN_FILE: join(dir, 'strict.token') };
    const strict = await startControlServer({ address: parseAddress('127.0.0.1:0'), target, log: silentLogger(), version: '9.9.9', env: env2, readAccess: 'token' });
    try {
      const u = (path: string): string => `http://${strict.bound}${path}`;
      for (const path of ['/status', '/status.json', '/metrics']) {
        const r = await httpRequest(u(path));
        expect(r.status, path).toBe(401);
        expect(r.headers['www-authenticate']).toContain('Bearer');
      }
      expect((await httpRequest(u('/healthz'))).status).toBe(200);
      const auth = { authorization: `Bearer ${readFileSync(strict.tokenFile, 'utf8').trim()}` };
      for (const path of ['/status', '/status.json', '/metrics']) expect((await httpRequest(u(path), { headers: auth })).status, path).toBe(200);
      const io = captureIo(env2);
      expect(await runControlCommand('status', ['--control', strict.bound], io)).toBe(0);
      expect(io.stdout).toContain('app shop.wsgi:application  /srv/shop');
      const noToken = captureIo({ CORRAL_CONTROL_TOKEN_FILE: join(dir, 'absent.token') });
      expect(await runControlCommand('status', ['--control', strict.bound], noToken)).toBe(4);
      expect(noToken.stderr).toContain('reads status only with its token');
    } finally {
      await strict.close();
    }
  });

  it('corral status without a readable token shows the redacted status', async () => {
    const io = captureIo({ CORRAL_CONTROL_TOKEN_FILE: join(dir, 'absent.token') });
    expect(await runControlCommand('status', ['--control', server!.bound], io)).toBe(0);
    expect(io.stdout).toContain('app shop.wsgi:application  (directory hidden: no control token)');
    expect(io.stdout).not.toContain('/srv/');
  });

  it('refuses writes without the token, naming the token file', async () => {
    const none = await httpRequest(url('/reload'), { method: 'POST' });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toContain('Bearer');
    expect(JSON.parse(none.body.toString())).toMatchObject({ ok: false, message: expect.stringContaining(server!.tokenFile) as string });
    const wrong = await httpRequest(url('/stop'), { method: 'POST', headers: { authorization: `Bearer ${'0'.repeat(64)}` } });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.body.toString()).message).toMatch(/^wrong token/);
    expect(target.stops).toBe(0);
    expect(target.apps.every((a) => a.reloads === 0)).toBe(true);
  });

  it('reloads one app or all, and answers with the boot error', async () => {
    const auth = { authorization: `Bearer ${token()}` };
    const one = await httpRequest(url('/reload?app=shop'), { method: 'POST', headers: auth });
    expect(one.status).toBe(200);
    expect(JSON.parse(one.body.toString())).toMatchObject({ ok: true, apps: [{ name: 'shop.wsgi:application', generation: 2, error: null }] });
    expect(target.apps.map((a) => a.reloads)).toEqual([1, 0]);
    const byBody = await httpRequest(url('/reload'), { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: Buffer.from('{"app":"/srv/blog"}') });
    expect(byBody.status).toBe(200);
    expect(target.apps.map((a) => a.reloads)).toEqual([1, 1]);
    target.apps[0]!.nextReload = new CorralError('CORRAL_APP_IMPORT_FAILED', 'app shop: import failed: SyntaxError', { detail: 'Traceback ...' });
    const all = await httpRequest(url('/reload'), { method: 'POST', headers: auth });
    expect(all.status).toBe(500);
    const answer = JSON.parse(all.body.toString());
    expect(answer.ok).toBe(false);
    expect(answer.message).toContain('SyntaxError');
    expect(answer.apps[0].error).toEqual({ code: 'CORRAL_APP_IMPORT_FAILED', message: 'app shop: import failed: SyntaxError', detail: 'Traceback ...' });
    expect(answer.apps[1].error).toBeNull();
    const badBody = await httpRequest(url('/reload'), { method: 'POST', headers: auth, body: Buffer.from('{"app": ') });
    expect(badBody.status).toBe(400);
    expect(JSON.parse(badBody.body.toString()).message).toMatch(/^the body is not valid JSON/);
    const unknown = await httpRequest(url('/reload?app=nope'), { method: 'POST', headers: auth });
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body.toString()).message).toContain('no app named "nope"; running: shop.wsgi:application (/srv/shop)');
  });

  it('answers a stop with 202, then stops the service', async () => {
    const r = await httpRequest(url('/stop'), { method: 'POST', headers: { authorization: `Bearer ${token()}` } });
    expect(r.status).toBe(202);
    expect(target.stops).toBe(1);
    expect((await httpRequest(url('/healthz'))).status).toBe(503);
  });

  it('answers a pending reload with 503 when the listener closes, and removes its token file', async () => {
    let release!: () => void;
    target.apps[0]!.hold = new Promise((r) => (release = r));
    const pending = httpRequest(url('/reload?app=shop'), { method: 'POST', headers: { authorization: `Bearer ${token()}` } });
    await new Promise<void>((resolve) => {
      const check = (): void => (target.apps[0]!.reloads > 0 ? resolve() : void setImmediate(check));
      check();
    });
    const file = server!.tokenFile;
    await server!.close();
    server = null;
    const r = await pending;
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body.toString()).message).toMatch(/stopped before this call finished/);
    expect(existsSync(file)).toBe(false);
    release();
  });

  it('closes connections past its limit, and answers again once they are gone', async () => {
    const [host, port] = [server!.bound.replace(/:\d+$/, ''), Number(server!.bound.replace(/^.*:/, ''))];
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) {
        const s = net.connect(port, host);
        held.push(s);
        await new Promise((r) => s.once('connect', r));
      }
      const extra = net.connect(port, host);
      held.push(extra);
      await new Promise<void>((resolve) => extra.once('close', () => resolve()));
    } finally {
      for (const s of held) s.destroy();
    }
    await expect.poll(async () => (await httpRequest(url('/healthz')).catch(() => ({ status: 0 }))).status, { timeout: 10_000 }).toBe(200);
  });

  it('refuses requests addressed to a non-loopback Host (DNS rebinding)', async () => {
    const r = await httpRequest(url('/status.json'), { headers: { host: 'evil.example:80' } });
    expect(r.status).toBe(403);
    expect((await httpRequest(url('/status.json'), { headers: { host: `localhost:1234` } })).status).toBe(200);
  });

  it('refuses to start on a non-loopback address', async () => {
    await expect(startControlServer({ address: parseAddress('0.0.0.0:0'), target, log: silentLogger(), version: 'x', env })).rejects.toThrow(/not a loopback address/);
  });

  it.skipIf(process.platform === 'win32')('listens on a unix socket, refuses a second service on it, and the CLI reaches it', async () => {
    const sock = join(dir, 'ctl.sock');
    const env2 = { CORRAL_CONTROL_TOKEN_FILE: join(dir, 'unix.token') };
    const s = await startControlServer({ address: parseAddress(`unix:${sock}`), target, log: silentLogger(), version: '9.9.9', env: env2 });
    try {
      await expect(startControlServer({ address: parseAddress(`unix:${sock}`), target, log: silentLogger(), version: 'x', env: env2 })).rejects.toThrow(/another process answers there/);
      const io = captureIo(env2);
      expect(await runControlCommand('status', ['--control', `unix:${sock}`], io)).toBe(0);
      expect(io.stdout).toContain('101');
      expect(await runControlCommand('reload', ['blog', '--control', `unix:${sock}`], io)).toBe(0);
      expect(io.stdout).toContain('reloaded wsgi:application (/srv/blog): generation 4 serving');
    } finally {
      await s.close();
    }
    expect(existsSync(sock)).toBe(false);
  });

  // ---- the CLI against this server

  it('corral status prints the apps and workers, or JSON', async () => {
    const io = captureIo(env);
    expect(await runControlCommand('status', ['--control', server!.bound], io)).toBe(0);
    expect(io.stdout).toMatch(/^corral 9\.9\.9 {2}pid \d+/);
    expect(io.stdout).toContain('app shop.wsgi:application  /srv/shop');
    expect(io.stdout).toContain('state running  generation 1  queue 3/100 (high 0, oldest 0 s)  workers 2 ready of 2 (min 2, max 4)  busy threads 1/4');
    expect(io.stdout).toMatch(/PID\s+GEN\s+STATE\s+REQUESTS/);
    expect(io.stdout).toMatch(/101\s+1\s+ready\s+7\s+1\/2\s+1\.3\s+4\.5\s+30\.0\s+1 min/);
    expect(io.stdout).toContain('FAILED: app wsgi:application: import failed');
    const json = captureIo({ ...env, CORRAL_CONTROL: server!.bound });
    expect(await runControlCommand('status', ['--json'], json)).toBe(0);
    expect((JSON.parse(json.stdout) as StatusDocument).apps).toHaveLength(2);
  });

  it('corral reload and stop use the token file; a failed reload exits 1 with the error', async () => {
    const io = captureIo(env);
    expect(await runControlCommand('reload', ['--control', server!.bound], io)).toBe(0);
    expect(io.stdout).toContain('reloaded shop.wsgi:application (/srv/shop): generation 2 serving');
    target.apps[1]!.nextReload = new CorralError('CORRAL_APP_IMPORT_FAILED', 'app blog: import failed: SyntaxError: invalid syntax', { detail: 'Traceback (most recent call last):\n  File "wsgi.py", line 4' });
    const failed = captureIo(env);
    expect(await runControlCommand('reload', ['wsgi:application', `--control=${server!.bound}`], failed)).toBe(1);
    expect(failed.stderr).toContain('reload of wsgi:application (/srv/blog) failed: app blog: import failed: SyntaxError');
    expect(failed.stderr).toContain('File "wsgi.py", line 4');
    const unknown = captureIo(env);
    expect(await runControlCommand('reload', ['nope', '--control', server!.bound], unknown)).toBe(1);
    expect(unknown.stderr).toMatch(/the service answered 404: no app named "nope"/);
    const stop = captureIo(env);
    expect(await runControlCommand('stop', ['--no-wait', '--control', server!.bound], stop)).toBe(0);
    expect(target.stops).toBe(1);
  });

  it('exit 4 naming the token file when it is missing or refused', async () => {
    const missing = captureIo({ CORRAL_CONTROL_TOKEN_FILE: join(dir, 'nope.token') });
    expect(await runControlCommand('reload', ['--control', server!.bound], missing)).toBe(4);
    expect(missing.stderr).toContain(`cannot read the control token from ${join(dir, 'nope.token')}: ENOENT`);
    const other = join(dir, 'other.token');
    writeFileSync(other, `${'1'.repeat(64)}\n`);
    const wrong = captureIo({ CORRAL_CONTROL_TOKEN_FILE: other });
    expect(await runControlCommand('stop', ['--control', server!.bound], wrong)).toBe(4);
    expect(wrong.stderr).toContain(`the service refused the token read from ${other}: wrong token`);
    expect(target.stops).toBe(0);
  });

  it('exit 3 when nothing answers, 2 on bad usage', async () => {
    const bound = server!.bound;
    await server!.close();
    server = null;
    const io = captureIo(env);
    expect(await runControlCommand('status', ['--control', bound], io)).toBe(3);
    expect(io.stderr).toBe(`corral status: no corral service answers at ${bound} (is it running with --control ${bound}?)\n`);
    const sock = captureIo(env);
    expect(await runControlCommand('status', ['--control', join(dir, 'none.sock')], sock)).toBe(3);
    expect(await runControlCommand('status', ['--control', '0.0.0.0:9001'], sock)).toBe(2);
    expect(sock.stderr).toContain('not a loopback address');
    expect(await runControlCommand('status', ['--bogus'], sock)).toBe(2);
    expect(await runControlCommand('stop', ['extra'], sock)).toBe(2);
    expect(sock.stderr).toContain('unexpected argument "extra"');
  });
});

function captureIo(env: NodeJS.ProcessEnv): ControlIo & { stdout: string; stderr: string } {
  const io = {
    env,
    stdout: '',
    stderr: '',
    out: (t: string) => void (io.stdout += t),
    err: (t: string) => void (io.stderr += t),
  };
  return io;
}
