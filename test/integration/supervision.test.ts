/**
 * The supervisor with real Python workers, black-box through the corral CLI (issue 4, "Must hold
 * with real workers"): crash replacement under load, request and startup timeouts, recycling by
 * request count and by memory, import failures without a spawn loop, scaling up and down, the
 * bounded queue, and every way the service stops (SIGTERM, SIGKILL, the stop ladder's kill).
 *
 * Tests wait on events (log lines, answers, exits); the only waits on the clock are where the
 * behaviour is time (idle timeout, the failed pool's slow retry, spawns per 10 s).
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, onTestFailed } from 'vitest';
import { FIXTURES, alive, startCorral, stopAll, type CorralProcess, type LogLine } from '../helpers/corral.js';
import { FcgiClient, cgiParams, fcgiGet, header, type FcgiResponse } from '../helpers/fcgi-client.js';

type Addr = { host: string; port: number };

const started: CorralProcess[] = [];

afterEach(async () => {
  await stopAll();
  // Belt and braces: no worker we ever saw may outlive its test, whatever the service did.
  for (const c of started.splice(0))
    for (const pid of spawnedPids(c))
      if (!gone(pid))
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* exited meanwhile */
        }
});

/**
 * The proxy path on purpose: these tests read the supervisor's guarantees where the service sees
 * each request (502 CORRAL_WORKER_LOST for a lost request, the service's 504, its queue's 503,
 * workers exiting with the service at once). The same guarantees on the direct path are in
 * test/e2e/direct.test.ts, test/e2e/direct-answer.test.ts and test/unit/pool.test.ts.
 */
async function serve(app: string, extra: string[] = []): Promise<{ c: CorralProcess; addr: Addr }> {
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', app, '--listen', '127.0.0.1:0', '--data-plane', 'proxy', ...extra]);
  started.push(c);
  onTestFailed(() => {
    console.log(`corral ${app} ${extra.join(' ')}: log without worker stderr:\n${c.logs.filter((l) => l.msg !== 'worker stderr' && l.msg !== 'corral starting').map((l) => JSON.stringify(l)).join('\n')}`);
  });
  return { c, addr: await c.fcgiAddress() };
}

/** Pids of every worker the service started (from 'worker spawned'). */
function spawnedPids(c: CorralProcess): number[] {
  return c.logs.filter((l) => l.msg === 'worker spawned').map((l) => Number(l.pid));
}

/** Waits until `n` workers are READY and alive, by the log. */
function readyWorkers(c: CorralProcess, n: number): Promise<LogLine> {
  return c.waitForLog(() => c.liveWorkerPids().length === n);
}

function reasonOf(l: LogLine): string {
  return String(l.reason ?? '');
}

function isKill(l: LogLine): boolean {
  return typeof l.msg === 'string' && l.msg.startsWith('worker killed');
}

/**
 * True when the process is gone. Orphaned workers are reparented to pid 1, which in a container
 * may never reap them: a zombie has exited, so it counts as gone.
 */
function gone(pid: number): boolean {
  if (!alive(pid)) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return !alive(pid);
  }
}

/** Polls `pred` until it holds; rejects after `timeoutMs`. */
async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/** The pid a worker_ok /pid or /sleep answer names. */
function pidOf(r: FcgiResponse): number {
  return Number(/(\d+)/.exec(r.body.toString())?.[1]);
}

describe('crash restart', () => {
  it('kill -9 of a worker under load fails only its in-flight requests, and a replacement is READY within 2 s', async () => {
    const threads = 2;
    const { c, addr } = await serve('worker_ok:application', ['--workers', '2', '--threads', String(threads)]);
    await readyWorkers(c, 2);
    const original = c.liveWorkerPids();

    const results: Array<{ status: number; pid: number | null; error?: string }> = [];
    let running = true;
    const oks = (): number => results.filter((r) => r.status === 200).length;
    const client = async (): Promise<void> => {
      while (running) {
        try {
          const r = await fcgiGet(addr, '/sleep?s=0.05');
          results.push({ status: r.status, pid: r.status === 200 ? pidOf(r) : null });
        } catch (err) {
          results.push({ status: 0, pid: null, error: String(err) });
        }
      }
    };
    const clients = Array.from({ length: 4 }, () => client());
    try {
      await until(() => oks() >= 20, 10_000, '20 answers before the kill');
      const victim = original[0]!;
      const killedAt = performance.now();
      process.kill(victim, 'SIGKILL');
      const ready = await c.waitForLog((l) => l.msg === 'worker ready' && !original.includes(Number(l.pid)), 5_000);
      const replacementMs = performance.now() - killedAt;
      const replacement = Number(ready.pid);
      expect(replacementMs).toBeLessThan(2_000);
      // Load goes on: the replacement takes its share.
      await until(() => results.some((r) => r.pid === replacement) && oks() >= 60, 10_000, 'answers from the replacement');
    } finally {
      running = false;
      await Promise.all(clients);
    }
    const failures = results.filter((r) => r.status !== 200);
    expect(failures.length, JSON.stringify(failures)).toBeLessThanOrEqual(threads);
    for (const f of failures) expect(f.status).toBe(502);
    const exit = c.logs.find((l) => Number(l.pid) === original[0] && 'code' in l)!;
    expect(exit.signal).toBe('SIGKILL');
    expect(Number(exit.lost)).toBe(failures.length);
    expect(c.liveWorkerPids()).toHaveLength(2);
  });

  it('a worker that kills itself after READY fails only its own request with 502 and is replaced', async () => {
    const { c, addr } = await serve('worker_crashes_after_ready:application', ['--workers', '1']);
    await readyWorkers(c, 1);
    const [first] = c.liveWorkerPids();
    const r = await fcgiGet(addr, '/crash');
    expect(r.status).toBe(502);
    expect(r.body.toString()).toContain('CORRAL_WORKER_LOST');
    await c.waitForLog((l) => l.msg === 'worker ready' && Number(l.pid) !== first, 5_000);
    const after = await fcgiGet(addr, '/');
    expect(after.status).toBe(200);
    expect(pidOf(after)).not.toBe(first);
  });
});

describe('timeouts', () => {
  it('a request over --request-timeout 2 gets 504 within 3 s, and its worker is replaced', async () => {
    const { c, addr } = await serve('worker_hangs:application', ['--workers', '1', '--request-timeout', '2']);
    await readyWorkers(c, 1);
    const [first] = c.liveWorkerPids();
    const t0 = performance.now();
    const r = await fcgiGet(addr, '/hang');
    const took = performance.now() - t0;
    expect(r.status).toBe(504);
    expect(header(r, 'X-Corral-Error')).toEqual(['CORRAL_REQUEST_TIMEOUT']);
    expect(took).toBeGreaterThanOrEqual(1_900);
    expect(took).toBeLessThan(3_000);
    const killed = await c.waitForLog((l) => isKill(l) && Number(l.pid) === first, 5_000);
    expect(reasonOf(killed)).toContain('requestTimeout');
    // A second before the kill the worker said where the request was stuck: the app's frame.
    const stderr = c.logs.filter((l) => l.msg === 'worker stderr' && Number(l.pid) === first).map((l) => String(l.line));
    const at = stderr.indexOf('corral_worker: request GET /hang still running after 1s. Where it is:');
    expect(at, stderr.join('\n')).toBeGreaterThanOrEqual(0);
    const stack = stderr.slice(at + 1, at + 50);
    expect(stack[0]).toBe('Traceback (most recent call last):');
    expect(stack.some((l) => /worker_hangs\.py", line \d+, in application$/.test(l))).toBe(true);
    expect(stack).toContain('SlowRequest: GET /hang still running after 1s');
    await c.waitForLog((l) => l.msg === 'worker ready' && Number(l.pid) !== first, 5_000);
    const after = await fcgiGet(addr, '/');
    expect(after.status).toBe(200);
    expect(pidOf(after)).not.toBe(first);
    expect(gone(first!)).toBe(true);
  });

  it('a worker with no READY within --startup-timeout 2 is killed, the app answers 503, and there is no spawn loop', async () => {
    const { c, addr } = await serve('worker_boots_slowly:application', ['--workers', '1', '--startup-timeout', '2', '--graceful-timeout', '2']);
    const spawned = await c.waitForMsg('worker spawned');
    const killed = await c.waitForLog(isKill, 5_000);
    expect(reasonOf(killed)).toContain('startupTimeout');
    expect(Number(killed.pid)).toBe(Number(spawned.pid));
    const uptime = Number(killed.uptimeMs);
    expect(uptime).toBeGreaterThanOrEqual(2_000);
    expect(uptime).toBeLessThan(3_000);
    const failed = await c.waitForMsg('pool failed: answering 503 and retrying slowly', 2_000);
    const r = await fcgiGet(addr, '/');
    expect(r.status).toBe(503);
    // serve: the client gets the code only; the log has the reason.
    expect(r.body.toString()).toMatch(/CORRAL_[A-Z_]+: /);
    expect(r.body.toString()).not.toContain('startupTimeout');
    expect(String(failed.err)).toContain('startupTimeout');
    // One attempt so far: the killed worker's exit is a boot failure, so no replacement races it.
    expect(spawnedPids(c)).toHaveLength(1);
    expect(c.logs.filter(isKill)).toHaveLength(1);
    // The next attempt comes on the slow schedule (5 s), not at once.
    const failedTime = Date.parse(String(failed.time));
    const retry = await c.waitForLog((l) => l.msg === 'worker spawned' && Date.parse(String(l.time)) > failedTime + 100, 10_000);
    expect(Date.parse(String(retry.time)) - failedTime).toBeGreaterThan(4_000);
    expect(c.logs.some((l) => l.msg === 'retrying failed pool')).toBe(true);
    expect(c.child.exitCode).toBeNull();
  });
});

describe('recycling', () => {
  it('150 requests with --max-requests 25 and 2 workers use more than 4 distinct pids, none failing', async () => {
    const { c, addr } = await serve('worker_ok:application', ['--workers', '2', '--max-requests', '25']);
    await readyWorkers(c, 2);
    // Requests take 50 ms of app time, like real pages. Instant ones outrun a Python start-up
    // (~0.3 s here): the old workers keep serving until their replacements are READY ("no request
    // waits"), and all 150 can be done before the first replacement is (see the next test).
    const statuses: number[] = [];
    const pids = new Set<number>();
    let next = 0;
    const client = async (): Promise<void> => {
      while (next < 150) {
        next++;
        const r = await fcgiGet(addr, '/sleep?s=0.05');
        statuses.push(r.status);
        if (r.status === 200) pids.add(pidOf(r));
      }
    };
    await Promise.all(Array.from({ length: 2 }, () => client()));
    expect(statuses).toHaveLength(150);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(pids.size).toBeGreaterThan(4);
    const recycles = c.logs.filter((l) => l.msg === 'recycling worker: its replacement starts first');
    expect(recycles.length).toBeGreaterThanOrEqual(3);
    for (const l of recycles) expect(reasonOf(l)).toBe('served maxRequests (25)');
  });

  it('a worker past its --max-requests gets no new request while another worker has a free thread', async () => {
    const { c, addr } = await serve('worker_ok:application', ['--workers', '2', '--max-requests', '25']);
    await readyWorkers(c, 2);
    const served = new Map<number, number>();
    const recyclingPid = (): number | null => {
      const l = c.logs.find((x) => x.msg === 'recycling worker: its replacement starts first');
      return l ? Number(l.pid) : null;
    };
    let recycled: number | null = null;
    const afterBudget: number[] = [];
    for (let i = 0; i < 28; i++) {
      const r = await fcgiGet(addr, '/pid');
      expect(r.status).toBe(200);
      const pid = pidOf(r);
      served.set(pid, (served.get(pid) ?? 0) + 1);
      if (recycled !== null) afterBudget.push(pid);
      recycled ??= recyclingPid();
    }
    expect(recycled).not.toBeNull();
    // The other worker is idle: it, not the one over its budget, should take the next requests.
    expect(afterBudget.length).toBeGreaterThan(0);
    expect(afterBudget, `answers after ${recycled} hit its budget; requests per pid: ${JSON.stringify([...served])}`).not.toContain(recycled);
  });

  it('a worker leaking 60 MB per request with --max-memory-mb 150 is recycled without a failed request', async () => {
    const { c, addr } = await serve('worker_leaks_memory:application', ['--workers', '1', '--max-memory-mb', '150']);
    await readyWorkers(c, 1);
    const [first] = c.liveWorkerPids();
    // Leak until the worker is over the limit (about 3 requests), then let the monitor see it.
    for (let i = 0; i < 6; i++) {
      const r = await fcgiGet(addr, '/leak');
      expect(r.status).toBe(200);
      const [pid, rss] = r.body.toString().split(' ').map(Number);
      expect(pid).toBe(first);
      if (rss! > 160 * 1024 * 1024) break;
    }
    const recycling = await c.waitForLog((l) => l.msg === 'recycling worker: its replacement starts first' && Number(l.pid) === first, 5_000);
    expect(reasonOf(recycling)).toContain('maxMemoryMB');
    // Requests go on without a failure; a new worker takes over.
    const statuses: number[] = [];
    let servedBy = first;
    const end = performance.now() + 10_000;
    while (servedBy === first && performance.now() < end) {
      const r = await fcgiGet(addr, '/');
      statuses.push(r.status);
      servedBy = Number(r.body.toString().split(' ')[0]);
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(servedBy).not.toBe(first);
    const stopped = await c.waitForLog((l) => Number(l.pid) === first && 'code' in l, 5_000);
    expect(stopped.msg).toBe('worker stopped');
    expect(Number(stopped.lost)).toBe(0);
  });
});

describe('boot failures', () => {
  it('an app that fails to import: at most 4 spawns in 10 s, a 5xx with its code (the log names the module), a live service', async () => {
    const t0 = performance.now();
    const { c, addr } = await serve('worker_import_fails:application', ['--workers', '2']);
    await c.waitForMsg('pool failed: answering 503 and retrying slowly', 5_000);
    const r = await fcgiGet(addr, '/');
    expect(r.status).toBeGreaterThanOrEqual(500);
    expect(r.status).toBeLessThan(600);
    // serve: the client gets the code only; the log names the module.
    expect(r.body.toString()).toContain('CORRAL_APP_IMPORT_FAILED');
    expect(r.body.toString()).not.toContain('corral_missing_dependency');
    expect(JSON.stringify(c.logs)).toContain('corral_missing_dependency');
    // The behaviour under test is a rate: look at what 10 s bring.
    await sleep(10_000 - (performance.now() - t0));
    expect(spawnedPids(c).length).toBeLessThanOrEqual(4);
    expect(c.logs.filter((l) => l.msg === 'pool failed: answering 503 and retrying slowly')).toHaveLength(1);
    expect(c.child.exitCode).toBeNull();
    const again = await fcgiGet(addr, '/');
    expect(again.status).toBeGreaterThanOrEqual(500);
    expect(again.body.toString()).toContain('CORRAL_APP_IMPORT_FAILED');
  });
});

describe('scaling and the queue', () => {
  it('4 concurrent slow requests grow the pool from 1 to 4 workers; --idle-timeout 3 shrinks it back to 1', async () => {
    const { c, addr } = await serve('worker_ok:application', ['--min-workers', '1', '--max-workers', '4', '--threads', '1', '--idle-timeout', '3']);
    await readyWorkers(c, 1);
    // Each worker's idle time starts when it answered (wall clock, to compare with log times).
    const answeredAt = new Map<number, number>();
    const replies = await Promise.all(
      Array.from({ length: 4 }, async () => {
        // Long enough for three Python boots side by side on a loaded CI machine.
        const r = await fcgiGet(addr, '/sleep?s=4');
        answeredAt.set(pidOf(r), Date.now());
        return r;
      }),
    );
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(new Set(replies.map(pidOf)).size).toBe(4);
    // Three requests waited: three workers were added (booting side by side, in one or more steps).
    const ups = c.logs.filter((l) => l.msg === 'scaling up: all threads busy');
    expect(ups.reduce((n, l) => n + Number(l.step), 0)).toBe(3);
    expect(Number(ups.at(-1)!.target)).toBe(4);
    // Idle for 3 s: the three extra workers are stopped, one scaling-down line each, none early.
    const downs = (): LogLine[] => c.logs.filter((l) => l.msg === 'scaling down: idle worker stopped');
    await c.waitForLog(() => downs().length === 3, 8_000);
    for (const l of downs()) {
      expect(Number(l.idleMs)).toBeGreaterThanOrEqual(3_000);
      expect(Date.parse(String(l.time)) - answeredAt.get(Number(l.pid))!).toBeGreaterThan(2_900);
    }
    await c.waitForLog(() => c.liveWorkerPids().length === 1, 5_000);
    expect(spawnedPids(c)).toHaveLength(4);
    const after = await fcgiGet(addr, '/pid');
    expect(after.status).toBe(200);
    expect(c.liveWorkerPids()).toEqual([pidOf(after)]);
  });

  it('--workers 1 --threads 1 --queue-length 2: of 7 concurrent slow requests 3 get 200 and 4 get a fast 503 with Retry-After', async () => {
    const { c, addr } = await serve('worker_ok:application', ['--workers', '1', '--threads', '1', '--queue-length', '2']);
    await readyWorkers(c, 1);
    const timed = async (): Promise<{ r: FcgiResponse; ms: number }> => {
      const t0 = performance.now();
      const r = await fcgiGet(addr, '/sleep?s=1');
      return { r, ms: performance.now() - t0 };
    };
    const all = await Promise.all(Array.from({ length: 7 }, () => timed()));
    const ok = all.filter((x) => x.r.status === 200);
    const busy = all.filter((x) => x.r.status === 503);
    expect(ok).toHaveLength(3);
    expect(busy).toHaveLength(4);
    for (const { r, ms } of busy) {
      expect(ms).toBeLessThan(500);
      expect(header(r, 'Retry-After')).toHaveLength(1);
      expect(Number(header(r, 'Retry-After')[0])).toBeGreaterThan(0);
      expect(header(r, 'X-Corral-Error')).toEqual(['CORRAL_QUEUE_FULL']);
    }
    // The queued ones waited for the one thread, one after another.
    expect(Math.max(...ok.map((x) => x.ms))).toBeGreaterThan(2_900);
  });
});

describe('stopping', () => {
  it('SIGTERM during a request lets it finish with 200, then exits 0 with no worker left', async () => {
    const { c, addr } = await serve('worker_ok:application', ['--workers', '2', '--threads', '2']);
    await readyWorkers(c, 2);
    const pids = c.liveWorkerPids();
    const client = await FcgiClient.connect(addr);
    try {
      const slow = client.request(1, cgiParams('GET', '/sleep?s=1'));
      await c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start'));
      const exit = c.stop('SIGTERM');
      const r = await slow;
      expect(r.status).toBe(200);
      expect(pids).toContain(pidOf(r));
      expect(await exit).toEqual({ code: 0, signal: null });
    } finally {
      client.close();
    }
    expect(c.logs.some((l) => l.msg === 'pool stopped')).toBe(true);
    expect(c.logs.filter(isKill)).toEqual([]);
    for (const p of spawnedPids(c)) expect(alive(p)).toBe(false);
  });

  it('SIGTERM while a worker boots: it is stopped without errors, exit 0, no worker left', async () => {
    const { c } = await serve('worker_ok:application', ['--workers', '1']);
    const spawned = await c.waitForMsg('worker spawned');
    const exit = c.stop('SIGTERM');
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(gone(Number(spawned.pid))).toBe(true);
    // Stopping a worker that had not said READY yet is no protocol violation, nor a slow stop.
    expect(c.logs.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
    expect(c.logs.filter(isKill)).toEqual([]);
  });

  it('SIGKILL of the service leaves no worker after 3 s, even one with a request in flight', async () => {
    const { c, addr } = await serve('worker_ok:application', ['--workers', '2', '--threads', '1']);
    await readyWorkers(c, 2);
    const pids = c.liveWorkerPids();
    const client = await FcgiClient.connect(addr);
    const slow = client.request(1, cgiParams('GET', '/sleep?s=30')).catch((e: Error) => e);
    try {
      const started = await c.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).startsWith('sleep start'));
      expect(pids).toContain(Number(started.pid));
      const killedAt = performance.now();
      expect(await c.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
      await until(() => pids.every(gone), 3_000 - (performance.now() - killedAt), 'every worker to exit');
      expect(await slow).toBeInstanceOf(Error); // its connection died with the service
    } finally {
      client.close();
    }
  });

  it('stop ladder: a worker that ignores stdin EOF is killed --graceful-timeout 2 s after it, and the service exits 0', async () => {
    const { c, addr } = await serve('worker_ignores_stdin_eof:application', ['--workers', '1', '--graceful-timeout', '2']);
    await readyWorkers(c, 1);
    const [pid] = c.liveWorkerPids();
    expect((await fcgiGet(addr, '/')).status).toBe(200);
    const t0 = performance.now();
    const exit = c.stop('SIGTERM');
    const killed = await c.waitForLog(isKill, 6_000);
    const took = performance.now() - t0;
    expect(Number(killed.pid)).toBe(pid);
    expect(killed.signal).toBe('SIGKILL');
    expect(reasonOf(killed)).toContain('gracefulTimeout');
    expect(took).toBeGreaterThanOrEqual(1_900);
    expect(took).toBeLessThan(3_500);
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(alive(pid!)).toBe(false);
  });
});
