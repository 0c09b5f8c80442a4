/**
 * The supervisor driven with a fake clock, fake workers and a fake sampler: no processes, no
 * sleeps. Every test runs its pool to `stopped` in afterEach and checks two invariants on the
 * way: nothing was dispatched to a worker that was not READY or had no free thread, and no
 * illegal pool state change was attempted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { CorralError } from '../../src/errors.js';
import type { Logger } from '../../src/log/logger.js';
import type { Clock, Timer } from '../../src/pool/clock.js';
import type { Exchange, ExchangeSink } from '../../src/pool/exchange.js';
import type { FatalInfo, ReadyInfo, WorkerEvents, WorkerHandle, WorkerState } from '../../src/pool/handle.js';
import { Pool, type PoolDeps, type PoolOptions, type Usage } from '../../src/pool/pool.js';
import { WorkerBudget } from '../../src/pool/budget.js';
import type { DirectReport, RunningRequest } from '../../src/pool/report.js';

// ---- fakes

/** Lets every queued microtask (the pool's ticks, sampler promises) run; not a sleep. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** mulberry32: a small seeded generator, so jitter is the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FakeTimer {
  ms: number;
  due: number;
  cb: () => void;
  cancelled: boolean;
}

/** A clock that moves only when the test says so; `every()` timers fire as time passes. */
class FakeClock implements Clock {
  t = 0;
  readonly timers: FakeTimer[] = [];

  now(): number {
    return this.t;
  }

  every(ms: number, cb: () => void): Timer {
    const timer: FakeTimer = { ms, due: this.t + ms, cb, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }

  /** Moves time forward by `ms`, firing timers at their due times, letting microtasks run after each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const next = this.timers.filter((x) => !x.cancelled && x.due <= end).sort((x, y) => x.due - y.due)[0];
      if (!next) break;
      this.t = next.due;
      next.due += next.ms;
      next.cb();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

type Call = 'dispatch' | 'drain' | 'closeStdin' | 'kill' | 'ping';

/** A worker as the pool sees it, made to say READY, finish requests, answer PONG or exit on cue. */
class FakeWorker implements WorkerHandle {
  readonly pid: number;
  readonly generation: number;
  readonly log: Logger;
  readonly calls: Call[] = [];
  state: WorkerState = 'starting';
  info: ReadyInfo | null = null;
  fatal: FatalInfo | null = null;
  spawnError: Error | null = null;
  lastStderr = '';
  requests = 0;
  readonly #events: WorkerEvents;
  readonly #violations: string[];
  readonly #inflight = new Map<number, Exchange>();
  #nextId = 1;
  /** A direct worker's last report. */
  #report: DirectReport | null = null;

  constructor(pid: number, generation: number, events: WorkerEvents, log: Logger, violations: string[]) {
    this.pid = pid;
    this.generation = generation;
    this.#events = events;
    this.log = log.child({ pid, gen: generation });
    this.#violations = violations;
  }

  get capacity(): number {
    return this.info?.threads ?? 0;
  }
  get inflight(): number {
    return this.#inflight.size;
  }
  get busy(): number {
    return this.#report ? this.#report.busy : this.#inflight.size;
  }
  get running(): readonly RunningRequest[] {
    return this.#report?.current ?? [];
  }
  get exchanges(): Iterable<Exchange> {
    return this.#inflight.values();
  }
  count(call: Call): number {
    return this.calls.filter((c) => c === call).length;
  }

  // ---- WorkerHandle

  dispatch(ex: Exchange): void {
    this.calls.push('dispatch');
    if (this.state !== 'ready') this.#violations.push(`dispatch to worker ${this.pid} in state ${this.state}`);
    // A request goes to a free thread, or ahead (one at most) of a busy worker's threads.
    if (ex.ahead !== this.inflight >= this.capacity || this.inflight >= this.capacity + 1)
      this.#violations.push(`dispatch to worker ${this.pid} with ${this.inflight} in flight (ahead: ${ex.ahead})`);
    const id = this.#nextId++;
    this.#inflight.set(id, ex);
    ex.assign(this, id, 65536, 65536);
  }
  drain(): void {
    this.calls.push('drain');
    if (this.state === 'starting' || this.state === 'ready') this.state = 'draining';
  }
  /** The handoff socket each closeStdin named (direct mode: where its kept connections go). */
  readonly handoffs: Array<string | undefined> = [];
  closeStdin(handoffTo?: string): void {
    this.calls.push('closeStdin');
    this.handoffs.push(handoffTo);
    if (this.state !== 'exited') this.state = 'stopping';
  }
  kill(): void {
    this.calls.push('kill');
  }
  ping(): void {
    this.calls.push('ping');
  }
  forgetExchanges(): Exchange[] {
    const all = [...this.#inflight.values()];
    this.#inflight.clear();
    return all;
  }
  send(): void {}
  grantWindow(): void {}
  abort(): void {}

  // ---- cues from the test

  /** Says CORRAL_READY. Like the real Worker, a READY after drain/kill is not passed on. */
  ready(threads = 1): void {
    if (this.state !== 'starting') return;
    this.info = { pid: this.pid, python: '3.12.0', app: 'app:application', threads, window: 65536, handoff: `/h/${this.pid}` };
    this.state = 'ready';
    this.#events.ready(this);
  }

  /** Ends a request (the oldest if none given) like END_REQUEST does: finish, then `idle`. */
  finish(ex?: Exchange, appStatus = 0): void {
    const entry = [...this.#inflight].find(([, e]) => ex === undefined || e === ex);
    if (!entry) throw new Error(`no such request in flight on worker ${this.pid}`);
    this.#inflight.delete(entry[0]);
    this.requests++;
    entry[1].finish(appStatus);
    this.#events.idle(this, entry[1]);
  }

  pong(): void {
    this.#events.pong(this);
  }

  /** Sends a direct worker's CORRAL_REPORT (the real Worker takes `served` as its request count). */
  report(r: Partial<DirectReport>): void {
    const full: DirectReport = { busy: 0, conns: 0, served: this.requests, queue: null, current: [], access: [], accessDropped: 0, ...r };
    this.#report = full;
    this.requests = full.served;
    this.#events.report?.(this, full);
  }

  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.state === 'exited') throw new Error(`worker ${this.pid} exited twice`);
    this.state = 'exited';
    this.#events.exit(this, code, signal);
  }

  /** Says CORRAL_FATAL and exits with the worker's "app import failed" code. */
  failImport(error: string, traceback: string, devtrace?: unknown): void {
    this.fatal = { kind: 'import', error, traceback, file: 'app.py', line: 1, ...(devtrace !== undefined ? { devtrace } : {}) };
    this.lastStderr = traceback;
    this.exit(4);
  }
}

/** A response sink that remembers how the request ended. */
class Sink implements ExchangeSink {
  ended: number | null = null;
  failed: CorralError | null = null;
  stdout(): void {}
  end(appStatus: number): void {
    this.ended = appStatus;
  }
  fail(error: CorralError): void {
    this.failed = error;
  }
  pauseInput(): void {}
  resumeInput(): void {}
}

interface Req {
  ex: Exchange;
  sink: Sink;
}

type LogLine = Record<string, unknown> & { msg: string; level: number };

const BASE: PoolOptions = {
  app: 'myapp',
  minWorkers: 1,
  maxWorkers: 1,
  requestTimeoutMs: 0,
  startupTimeoutMs: 30_000,
  idleTimeoutMs: 0,
  maxRequests: 0,
  maxRequestsJitter: 0,
  maxMemoryMB: 0,
  queueLength: 10,
  queueTimeoutMs: 0,
  gracefulTimeoutMs: 5_000,
  failedRetryMs: 1_000,
  rapidFailsPerMinute: 5,
  // Pings are off in practice unless a test turns them on: fakes answer only when told.
  pingIntervalMs: 3_600_000,
  pingTimeoutMs: 10_000,
  monitorIntervalMs: 0,
  tickMs: 100,
  keepOldOnFailedReload: true,
};

const TRACEBACK = 'Traceback (most recent call last):\n  File "app.py", line 1, in <module>\n    import missing\nModuleNotFoundError: No module named \'missing\'';
const IMPORT_ERROR = "ModuleNotFoundError: No module named 'missing'";

/** A pool wired to fakes, with its logs in memory. */
class Harness {
  readonly clock = new FakeClock();
  readonly logs: LogLine[] = [];
  readonly spawned: FakeWorker[] = [];
  readonly violations: string[] = [];
  /** RSS the fake sampler reports, by pid. */
  readonly rss = new Map<number, number>();
  readonly sampled: number[][] = [];
  readonly pool: Pool;
  /** Called for each new worker (e.g. to make it fail to import). */
  onSpawn: ((w: FakeWorker) => void) | null = null;
  #nextPid = 1001;

  constructor(opts: Partial<PoolOptions>, random: () => number = seeded(42), extra: Partial<PoolDeps> = {}) {
    const logs = this.logs;
    const log = pino({ level: 'trace', base: null }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
    this.pool = new Pool(
      { ...BASE, ...opts },
      {
        spawn: (gen, events) => {
          const w = new FakeWorker(this.#nextPid++, gen, events, this.pool.log, this.violations);
          this.spawned.push(w);
          const hook = this.onSpawn;
          if (hook) queueMicrotask(() => hook(w));
          return w;
        },
        clock: this.clock,
        random,
        sample: (pids) => {
          this.sampled.push(pids);
          const out = new Map<number, Usage>();
          for (const pid of pids) {
            const memory = this.rss.get(pid);
            if (memory !== undefined) out.set(pid, { cpu: 12.5, memory });
          }
          return Promise.resolve(out);
        },
        ...extra,
      },
      log,
    );
  }

  async start(): Promise<this> {
    this.pool.start();
    await flush();
    return this;
  }

  request(): Req {
    const sink = new Sink();
    return { ex: this.pool.begin(sink), sink };
  }

  /** Workers that have not exited. */
  live(): FakeWorker[] {
    return this.spawned.filter((w) => w.state !== 'exited');
  }

  /** Workers in a given state. */
  inState(state: WorkerState): FakeWorker[] {
    return this.spawned.filter((w) => w.state === state);
  }

  /** Worker number `i` in spawn order (throws instead of returning undefined). */
  w(i: number): FakeWorker {
    const w = this.spawned[i];
    if (!w) throw new Error(`only ${this.spawned.length} workers were spawned, not ${i + 1}`);
    return w;
  }

  logsMatching(msg: RegExp): LogLine[] {
    return this.logs.filter((l) => msg.test(l.msg));
  }

  /** Stops the pool, making every worker exit, and checks the invariants. */
  async dispose(): Promise<void> {
    this.onSpawn = null;
    let stopped = false;
    const done = this.pool.stop().then(() => void (stopped = true));
    for (let i = 0; i < 20 && !stopped; i++) {
      for (const w of this.live()) w.exit(0);
      await flush();
    }
    await done;
    expect(this.pool.state).toBe('stopped');
    expect(this.violations).toEqual([]);
    expect(this.logsMatching(/illegal pool state/)).toEqual([]);
  }
}

const harnesses: Harness[] = [];

async function setup(opts: Partial<PoolOptions> = {}, random?: () => number, extra: Partial<PoolDeps> = {}): Promise<Harness> {
  const h = new Harness(opts, random, extra);
  harnesses.push(h);
  return h.start();
}

/** A pool with `n` workers READY (`threads` each). */
async function running(opts: Partial<PoolOptions> = {}, threads = 1): Promise<Harness> {
  const h = await setup(opts);
  for (const w of h.inState('starting')) w.ready(threads);
  await flush();
  expect(h.pool.state).toBe('running');
  return h;
}

const pids = (ws: FakeWorker[]): number[] => ws.map((w) => w.pid);

afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.dispose();
});

// ---- behaviour

describe('READY before traffic', () => {
  it('queues requests while the worker boots and dispatches them on READY', async () => {
    const h = await setup({ minWorkers: 1, maxWorkers: 1 });
    expect(h.spawned).toHaveLength(1);
    const w = h.w(0);
    const r1 = h.request();
    const r2 = h.request();
    await h.clock.advance(1_000);
    expect(w.count('dispatch')).toBe(0);
    expect(h.pool.queued).toBe(2);
    expect(h.pool.state).toBe('starting');

    let ready: CorralError | null | undefined;
    void h.pool.whenReady().then((v) => (ready = v));
    w.ready(2);
    await flush();
    expect(ready).toBeNull();
    expect(h.pool.state).toBe('running');
    expect(w.count('dispatch')).toBe(2);
    expect(h.pool.queued).toBe(0);
    expect(r1.ex.state).toBe('assigned');

    w.finish(r1.ex);
    w.finish(r2.ex, 0);
    expect(r1.sink.ended).toBe(0);
    expect(r2.sink.failed).toBeNull();
    const readyLog = h.logsMatching(/^worker ready$/)[0];
    expect(readyLog).toMatchObject({ app: 'myapp', pid: w.pid, gen: 1, threads: 2, bootMs: 1000 });
  });

  it('logs every worker line with app, pid and gen', async () => {
    const h = await running({ minWorkers: 2, maxWorkers: 2 });
    h.w(0).exit(1);
    await flush();
    const workerLines = h.logs.filter((l) => /^worker /.test(l.msg));
    expect(workerLines.length).toBeGreaterThan(3);
    for (const l of workerLines) expect(l).toMatchObject({ app: 'myapp', pid: expect.any(Number), gen: 1 });
  });
});

describe('dispatch', () => {
  it('sends each request to the least-loaded READY worker', async () => {
    const h = await running({ minWorkers: 2, maxWorkers: 2 }, 4);
    const [a, b] = [h.w(0), h.w(1)];
    const reqs = [h.request(), h.request(), h.request()];
    expect([a.inflight, b.inflight]).toEqual([2, 1]);
    a.finish(reqs[0]!.ex);
    a.finish(reqs[2]!.ex);
    expect([a.inflight, b.inflight]).toEqual([0, 1]);
    h.request();
    expect([a.inflight, b.inflight]).toEqual([1, 1]);
    h.request();
    h.request();
    expect(a.inflight + b.inflight).toBe(4);
    expect(Math.abs(a.inflight - b.inflight)).toBe(0);
  });

  it('serves a queued request as soon as a thread frees up', async () => {
    const h = await running({ queueLength: 5 });
    const r1 = h.request();
    const r2 = h.request();
    expect(h.pool.queued).toBe(1);
    h.w(0).finish(r1.ex);
    expect(r2.ex.state).toBe('assigned');
    expect(h.pool.queued).toBe(0);
  });
});

describe('queue', () => {
  it('answers CORRAL_QUEUE_FULL with Retry-After beyond queueLength, and serves the queued ones', async () => {
    const h = await running({ queueLength: 2 });
    const w = h.w(0);
    const served = [h.request(), h.request(), h.request()];
    const rejected = [h.request(), h.request()];
    await flush();
    for (const r of rejected) {
      expect(r.sink.failed?.code).toBe('CORRAL_QUEUE_FULL');
      expect(r.sink.failed?.status).toBe(503);
      expect(r.sink.failed?.retryAfter).toBeGreaterThan(0);
      expect(r.sink.failed?.message).toContain('queueLength 2');
    }
    expect(h.logsMatching(/queue full/)).toHaveLength(1); // warned once, not per request
    // For the status page: the most that waited at once, and how long the oldest has waited.
    expect(h.pool.queueHighWater).toBe(2);
    await h.clock.advance(300);
    expect(h.pool.longestWaitMs).toBeGreaterThanOrEqual(300);
    for (const r of served) {
      expect(r.sink.failed).toBeNull();
      w.finish(r.ex);
      expect(r.sink.ended).toBe(0);
    }
    expect(h.logsMatching(/condition cleared/)).toHaveLength(1);
  });

  it('does not count requests whose client gave up while queued', async () => {
    const h = await running({ queueLength: 1 });
    h.request();
    const gaveUp = h.request();
    gaveUp.ex.abort();
    expect(gaveUp.sink.ended).not.toBeNull();
    const next = h.request();
    await flush();
    expect(next.sink.failed).toBeNull();
    h.w(0).finish();
    expect(next.ex.state).toBe('assigned');
  });

  it('fails a request that waited queueTimeout with CORRAL_QUEUE_TIMEOUT', async () => {
    const h = await running({ queueTimeoutMs: 2_000 });
    h.request();
    await h.clock.advance(1_000);
    const late = h.request();
    await h.clock.advance(900);
    expect(late.sink.failed).toBeNull();
    await h.clock.advance(1_200);
    expect(late.sink.failed?.code).toBe('CORRAL_QUEUE_TIMEOUT');
    expect(late.sink.failed?.status).toBe(503);
    expect(late.sink.failed?.message).toContain('2 s');
    expect(h.pool.queued).toBe(0);
  });
});

describe('crash of a serving worker', () => {
  it('fails only its in-flight requests with CORRAL_WORKER_LOST, at once, and replaces it at once', async () => {
    const h = await running({ minWorkers: 2, maxWorkers: 2 }, 2);
    const [a, b] = [h.w(0), h.w(1)];
    const reqs = [h.request(), h.request(), h.request()];
    const onA = reqs.filter((r) => [...a.exchanges].includes(r.ex));
    const onB = reqs.find((r) => [...b.exchanges].includes(r.ex))!;
    expect(onA).toHaveLength(2);
    expect(b.inflight).toBe(1);

    a.exit(1);
    await flush();
    for (const r of onA) {
      expect(r.sink.failed?.code).toBe('CORRAL_WORKER_LOST');
      expect(r.sink.failed?.status).toBe(502);
      expect(r.sink.failed?.message).toContain(String(a.pid));
    }
    expect(onB.sink.failed).toBeNull();
    expect(h.spawned).toHaveLength(3);
    expect(h.pool.state).toBe('running');
    expect(h.logsMatching(/exited unexpectedly.*possible request loss/)[0]).toMatchObject({ pid: a.pid, code: 1, reason: 'exit code 1', lost: 2 });

    b.finish(onB.ex);
    expect(onB.sink.ended).toBe(0);
  });

  it('says "possibly out of memory" for a SIGKILL nobody asked for', async () => {
    const h = await running();
    h.request();
    h.w(0).exit(null, 'SIGKILL');
    await flush();
    const line = h.logsMatching(/SIGKILL/)[0];
    expect(line?.msg).toMatch(/possibly out of memory; 1 request\(s\) lost/);
    expect(line?.level).toBe(50);
  });

  it('backs off exponentially on repeated crashes and forgets after a stable run', async () => {
    const h = await running({ rapidFailsPerMinute: 100 });
    const crashAndWaitForSpawn = async (): Promise<number> => {
      const before = h.spawned.length;
      h.live()[0]!.exit(1);
      await flush();
      const t0 = h.clock.now();
      while (h.spawned.length === before) await h.clock.advance(10);
      return h.clock.now() - t0;
    };
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      delays.push(await crashAndWaitForSpawn());
      h.live()[0]!.ready();
      await flush();
    }
    // At once, then 100, 200, 400, 800 ms (the tick is 100 ms, so up to one tick late).
    expect(delays[0]).toBe(0);
    for (const [i, want] of [100, 200, 400, 800].entries()) {
      expect(delays[i + 1]).toBeGreaterThanOrEqual(want);
      expect(delays[i + 1]).toBeLessThanOrEqual(want + 100);
    }
    expect(h.spawned.length).toBe(6);
    // A worker that served for longer than 30 s resets the backoff.
    await h.clock.advance(31_000);
    expect(await crashAndWaitForSpawn()).toBe(0);
  });
});

describe('boot and import failures', () => {
  it("keeps the worker's devtrace facts on the failure it answers with (the dev page renders them)", async () => {
    const h = await setup({ failedRetryMs: 1_000 });
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK, { version: 1, exceptions: [{ type: 'SyntaxError', message: 'bad', via: null, frames: [], syntax: null }], request: null, python: '', cut: [] });
    await flush();
    expect(h.pool.state).toBe('failed');
    expect(h.pool.failure?.retryAfter).toBeGreaterThan(0);
    expect(h.pool.failure?.trace?.exceptions[0]?.type).toBe('SyntaxError');
  });

  it('goes failed on an import failure, answers CORRAL_APP_IMPORT_FAILED naming the error, logs the traceback once', async () => {
    const h = await setup({ failedRetryMs: 1_000 });
    const queued = h.request();
    let boot: CorralError | null | undefined;
    void h.pool.whenReady().then((v) => (boot = v));
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();

    expect(h.pool.state).toBe('failed');
    expect(boot?.code).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(queued.sink.failed?.code).toBe('CORRAL_APP_IMPORT_FAILED');
    const r = h.request();
    await flush();
    expect(r.sink.failed?.code).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(r.sink.failed?.status).toBe(503);
    expect(r.sink.failed?.message).toContain(IMPORT_ERROR);
    expect(r.sink.failed?.message).toContain('myapp');
    expect(r.sink.failed?.detail).toBe(TRACEBACK);
    expect(h.pool.failure?.code).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(h.pool.failure?.retryAfter).toBeGreaterThan(0);

    // Later retries fail the same way: the traceback is not logged again.
    h.onSpawn = (w) => w.failImport(IMPORT_ERROR, TRACEBACK);
    await h.clock.advance(30_000);
    expect(h.spawned.length).toBeGreaterThan(2);
    expect(h.logs.filter((l) => l.traceback === TRACEBACK)).toHaveLength(1);
    expect(h.logsMatching(/pool failed/)).toHaveLength(1);
    expect(h.pool.state).toBe('failed');
  });

  it('does not respawn in a loop: a handful of spawns in 10 s, then ever slower retries', async () => {
    // The service's own retry settings.
    const h = new Harness({ failedRetryMs: 5_000, tickMs: 250 });
    harnesses.push(h);
    const spawnTimes: number[] = [];
    h.onSpawn = (w) => {
      spawnTimes.push(h.clock.now());
      w.failImport(IMPORT_ERROR, TRACEBACK);
    };
    await h.start();
    await h.clock.advance(10_000);
    expect(spawnTimes.length).toBeGreaterThanOrEqual(2); // it does retry
    expect(spawnTimes.length).toBeLessThanOrEqual(5);
    await h.clock.advance(10 * 60_000);
    const gaps = spawnTimes.slice(1).map((t, i) => t - spawnTimes[i]!);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(gaps[i - 1]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(5_000);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(60_000 + 250);
    expect(gaps.at(-1)).toBeGreaterThanOrEqual(60_000);
    expect(spawnTimes.length).toBeLessThan(20);
  });

  it('retries a failed pool at once on reload() and resolves when it is READY', async () => {
    const h = await setup({ failedRetryMs: 60_000 });
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    expect(h.pool.state).toBe('failed');
    let result: CorralError | null | undefined;
    void h.pool.reload('files changed').then((v) => (result = v));
    await flush();
    expect(h.spawned).toHaveLength(2);
    const fresh = h.w(1);
    expect(fresh.generation).toBeGreaterThan(1);
    fresh.ready();
    await flush();
    expect(result).toBeNull();
    expect(h.pool.state).toBe('running');
    expect(h.pool.failure).toBeNull();
    const r = h.request();
    expect(fresh.inflight).toBe(1);
    fresh.finish(r.ex);
    expect(r.sink.ended).toBe(0);
  });

  it('on reload() of a failed pool, drops a retry still booting the old code', async () => {
    const h = await setup({ failedRetryMs: 1_000 });
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    await h.clock.advance(1_100); // the slow retry starts
    expect(h.spawned).toHaveLength(2);
    const oldRetry = h.w(1);
    let result: CorralError | null | undefined;
    void h.pool.reload('files changed').then((v) => (result = v));
    await flush();
    expect(h.spawned).toHaveLength(3);
    const fresh = h.w(2);
    // The retry of the old code must not settle the reload nor linger.
    expect(oldRetry.count('kill') + oldRetry.count('closeStdin')).toBeGreaterThan(0);
    oldRetry.failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    expect(result).toBeUndefined();
    fresh.ready();
    await flush();
    expect(result).toBeNull();
    expect(h.pool.state).toBe('running');
    expect(pids(h.live())).toEqual(pids([fresh]));
  });

  it('logs the traceback again when a reload fails with a different error', async () => {
    const h = await setup({ failedRetryMs: 60_000 });
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    const other = 'SyntaxError: invalid syntax (app.py, line 7)';
    const otherTb = `Traceback (most recent call last):\n  File "app.py", line 7\n${other}`;
    const result = h.pool.reload('files changed');
    await flush();
    h.w(1).failImport(other, otherTb);
    expect((await result)?.message).toContain(other);
    expect(h.pool.failure?.message).toContain(other);
    expect(h.logs.filter((l) => l.traceback === TRACEBACK)).toHaveLength(1);
    expect(h.logs.filter((l) => l.traceback === otherTb)).toHaveLength(1);
  });

  it('recovers by itself when a slow retry boots', async () => {
    const h = await setup({ minWorkers: 2, maxWorkers: 2, failedRetryMs: 1_000 });
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    expect(h.pool.state).toBe('failed');
    expect(h.w(1).count('kill')).toBe(1); // the other booting worker is stopped, not left to fail too
    h.w(1).exit(null, 'SIGKILL');
    await flush();
    expect(h.spawned).toHaveLength(2);
    await h.clock.advance(1_100);
    expect(h.spawned).toHaveLength(3);
    h.w(2).ready();
    await flush();
    expect(h.pool.state).toBe('running');
    expect(h.logsMatching(/pool recovered/)).toHaveLength(1);
    expect(h.live()).toHaveLength(2); // back to minWorkers
  });

  it('treats no READY within startupTimeout as a boot failure: killed, pool failed, retried slowly', async () => {
    const h = await setup({ startupTimeoutMs: 2_000, failedRetryMs: 3_000 });
    const w = h.w(0);
    await h.clock.advance(1_900);
    expect(w.count('kill')).toBe(0);
    await h.clock.advance(200);
    expect(w.count('kill')).toBe(1);
    await h.clock.advance(500);
    expect(h.spawned).toHaveLength(1); // a boot failure: no replacement while it is being killed
    w.exit(null, 'SIGKILL');
    await flush();
    expect(h.pool.state).toBe('failed');
    expect(h.pool.failure?.code).toBe('CORRAL_WORKER_BOOT_FAILED');
    expect(h.pool.failure?.message).toContain('startupTimeout (2 s)');
    expect(h.logsMatching(/worker killed: no READY within startupTimeout/)).toHaveLength(1);
    await h.clock.advance(2_900);
    expect(h.spawned).toHaveLength(1);
    await h.clock.advance(200);
    expect(h.spawned).toHaveLength(2);
  });

  it('retries a worker that timed out booting slowly, not at once, while others serve', async () => {
    const h = await running({ minWorkers: 1, maxWorkers: 2, startupTimeoutMs: 2_000, failedRetryMs: 5_000 });
    h.request();
    h.request();
    await flush();
    const slow = h.w(1);
    await h.clock.advance(2_100);
    expect(slow.count('kill')).toBe(1);
    expect(h.spawned).toHaveLength(2);
    slow.exit(null, 'SIGKILL');
    await h.clock.advance(4_800);
    expect(h.spawned).toHaveLength(2);
    expect(h.pool.state).toBe('running');
    await h.clock.advance(300);
    expect(h.spawned).toHaveLength(3);
  });

  it('reports a worker that dies during boot with its last stderr line', async () => {
    const h = await setup();
    const w = h.w(0);
    w.lastStderr = 'corral_worker: --root /nope: no such directory';
    w.exit(3);
    await flush();
    expect(h.pool.state).toBe('failed');
    expect(h.pool.failure?.code).toBe('CORRAL_WORKER_BOOT_FAILED');
    expect(h.pool.failure?.message).toContain('--root /nope: no such directory');
  });

  it('keeps serving when one worker fails to boot while others serve, retrying it slowly', async () => {
    const h = await running({ minWorkers: 1, maxWorkers: 2, failedRetryMs: 5_000 });
    h.request();
    h.request(); // all busy: scale up
    await flush();
    expect(h.spawned).toHaveLength(2);
    h.w(1).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    expect(h.pool.state).toBe('running');
    await h.clock.advance(4_000);
    expect(h.spawned).toHaveLength(2);
    await h.clock.advance(1_500);
    expect(h.spawned).toHaveLength(3);
  });
});

describe('rapid-fail protection', () => {
  it('takes the pool offline with CORRAL_RAPID_FAIL after more than rapidFailsPerMinute crashes in a minute', async () => {
    const h = await running({ rapidFailsPerMinute: 3, failedRetryMs: 10_000 });
    for (let i = 0; i < 3; i++) {
      h.live()[0]!.exit(1);
      await flush();
      while (h.inState('starting').length === 0) await h.clock.advance(50);
      h.inState('starting')[0]!.ready();
      await flush();
      expect(h.pool.state).toBe('running');
    }
    const spawns = h.spawned.length;
    h.live()[0]!.exit(1);
    await flush();
    expect(h.pool.state).toBe('failed');
    expect(h.pool.failure?.code).toBe('CORRAL_RAPID_FAIL');
    const r = h.request();
    await flush();
    expect(r.sink.failed?.code).toBe('CORRAL_RAPID_FAIL');
    expect(r.sink.failed?.message).toContain('rapidFailsPerMinute');
    await h.clock.advance(9_000);
    expect(h.spawned.length).toBe(spawns);
    await h.clock.advance(1_200);
    expect(h.spawned.length).toBe(spawns + 1);
    h.inState('starting')[0]!.ready();
    await flush();
    expect(h.pool.state).toBe('running');
  });

  it('replaces workers killed from outside (SIGKILL, SIGTERM) at once and never takes the pool offline for them', async () => {
    const h = await running({ rapidFailsPerMinute: 2 });
    for (let i = 0; i < 10; i++) {
      const spawns = h.spawned.length;
      h.live()[0]!.exit(null, i % 2 === 0 ? 'SIGKILL' : 'SIGTERM');
      await flush();
      await h.clock.advance(1);
      expect(h.spawned.length).toBe(spawns + 1); // no backoff
      h.inState('starting')[0]!.ready();
      await flush();
      expect(h.pool.state).toBe('running');
    }
  });

  it('does not count crashes more than a minute apart, nor workers it killed itself', async () => {
    const h = await running({ rapidFailsPerMinute: 1, requestTimeoutMs: 1_000 });
    for (let i = 0; i < 3; i++) {
      h.live()[0]!.exit(1);
      await flush();
      h.inState('starting')[0]!.ready();
      await h.clock.advance(61_000);
    }
    expect(h.pool.state).toBe('running');
    for (let i = 0; i < 3; i++) {
      h.request();
      await h.clock.advance(1_200);
      const timedOut = h.spawned.find((w) => w.count('kill') > 0 && w.state !== 'exited')!;
      timedOut.exit(null, 'SIGKILL');
      await flush();
      h.inState('starting')[0]!.ready();
      await flush();
    }
    expect(h.pool.state).toBe('running');
  });
});

describe('timeouts', () => {
  it('fails a request over requestTimeout with CORRAL_REQUEST_TIMEOUT, kills its worker and replaces it', async () => {
    const h = await running({ minWorkers: 2, maxWorkers: 2, requestTimeoutMs: 1_000 });
    const [a, b] = [h.w(0), h.w(1)];
    const slow = h.request();
    await h.clock.advance(500);
    const other = h.request();
    expect(b.inflight).toBe(1);
    await h.clock.advance(400);
    expect(slow.sink.failed).toBeNull();
    await h.clock.advance(200);
    expect(slow.sink.failed?.code).toBe('CORRAL_REQUEST_TIMEOUT');
    expect(slow.sink.failed?.status).toBe(504);
    expect(a.count('kill')).toBe(1);
    expect(h.spawned).toHaveLength(3); // the replacement starts at once
    expect(other.sink.failed).toBeNull();
    a.exit(null, 'SIGKILL');
    await flush();
    expect(h.logsMatching(/worker killed: request ran over requestTimeout \(1 s\)/)[0]).toMatchObject({ pid: a.pid, signal: 'SIGKILL' });
    expect(slow.sink.failed?.code).toBe('CORRAL_REQUEST_TIMEOUT'); // not overwritten by the exit
    b.finish(other.ex);
    expect(other.sink.ended).toBe(0);
    expect(h.pool.state).toBe('running');
  });

  it('pings idle workers and keeps those that answer', async () => {
    const h = await running({ pingIntervalMs: 1_000, pingTimeoutMs: 500 });
    const w = h.w(0);
    await h.clock.advance(900);
    expect(w.count('ping')).toBe(0);
    await h.clock.advance(200);
    expect(w.count('ping')).toBe(1);
    w.pong();
    await flush();
    for (let i = 2; i <= 5; i++) {
      await h.clock.advance(1_100);
      expect(w.count('ping')).toBe(i);
      w.pong();
      await flush();
    }
    await flush();
    expect(w.count('kill')).toBe(0);
  });

  it('does not ping a busy worker', async () => {
    const h = await running({ pingIntervalMs: 1_000, pingTimeoutMs: 500 });
    h.request();
    await h.clock.advance(5_000);
    expect(h.w(0).count('ping')).toBe(0);
    expect(h.w(0).count('kill')).toBe(0);
  });

  it('kills and replaces a worker that does not answer PONG within pingTimeout', async () => {
    const h = await running({ pingIntervalMs: 1_000, pingTimeoutMs: 500 });
    const w = h.w(0);
    await h.clock.advance(1_100);
    expect(w.count('ping')).toBe(1);
    await h.clock.advance(400);
    expect(w.count('kill')).toBe(0);
    await h.clock.advance(200);
    expect(w.count('kill')).toBe(1);
    expect(h.spawned).toHaveLength(2);
    w.exit(null, 'SIGKILL');
    await flush();
    expect(h.logsMatching(/worker killed: no PONG/)).toHaveLength(1);
    h.w(1).ready();
    await flush();
    const r = h.request();
    expect(h.w(1).inflight).toBe(1);
    h.w(1).finish(r.ex);
  });
});

describe('recycling', () => {
  it('recycles after maxRequests plus seeded jitter: no request past the budget, replacement started at once', async () => {
    const maxRequests = 3;
    const maxRequestsJitter = 4;
    const replica = seeded(7);
    const budget = maxRequests + Math.floor(replica() * (maxRequestsJitter + 1));
    const h = await setup({ maxRequests, maxRequestsJitter }, seeded(7));
    const old = h.w(0);
    old.ready();
    await flush();

    for (let i = 0; i < budget - 1; i++) old.finish(h.request().ex);
    await flush();
    expect(h.spawned).toHaveLength(1);
    const last = h.request();
    old.finish(last.ex);
    await flush();
    // Its budget is spent: it takes no new request, stops once idle, and the replacement is started.
    expect(h.spawned).toHaveLength(2);
    expect(h.logsMatching(/^recycling worker/)[0]).toMatchObject({ pid: old.pid, reason: `served maxRequests (${budget})` });
    expect(old.count('drain')).toBe(1);
    expect(old.count('closeStdin')).toBe(1);
    // With no other worker, a request waits for the replacement rather than going over the budget.
    const meanwhile = h.request();
    expect(old.inflight).toBe(0);
    const fresh = h.w(1);
    fresh.ready();
    await flush();
    expect(fresh.inflight).toBe(1);
    old.exit(0);
    await flush();
    expect(h.logsMatching(/^worker stopped$/)[0]).toMatchObject({ pid: old.pid, reason: 'stopped' });
    fresh.finish(meanwhile.ex);
    await flush();
    expect(meanwhile.sink.ended).toBe(0);
    expect(pids(h.live())).toEqual(pids([fresh]));
  });

  it('gives workers different budgets so they do not recycle at once', async () => {
    const h = await running({ minWorkers: 4, maxWorkers: 4, maxRequests: 100, maxRequestsJitter: 50 });
    expect(h.spawned).toHaveLength(4);
    for (let round = 0; round < 151; round++) {
      const reqs = [h.request(), h.request(), h.request(), h.request()];
      for (const r of reqs) h.spawned.find((w) => [...w.exchanges].includes(r.ex))!.finish(r.ex);
      for (const w of h.inState('starting')) w.ready();
      for (const w of h.inState('stopping')) w.exit(0);
      await flush();
    }
    const reasons = h.logsMatching(/^recycling worker/).map((l) => l.reason);
    expect(reasons.length).toBeGreaterThan(0);
    expect(new Set(reasons).size).toBeGreaterThan(1);
    for (const r of reasons) expect(Number(/\((\d+)\)/.exec(String(r))?.[1])).toBeGreaterThanOrEqual(100);
  });

  it('recycles a worker whose RSS goes over maxMemoryMB, after sampling it', async () => {
    const h = await running({ maxMemoryMB: 150, monitorIntervalMs: 1_000 });
    const old = h.w(0);
    h.rss.set(old.pid, 100 * 1048576);
    await h.clock.advance(1_000);
    expect(h.sampled.at(-1)).toEqual([old.pid]);
    expect(h.pool.status()[0]).toMatchObject({ pid: old.pid, rssBytes: 100 * 1048576, cpu: 12.5 });
    expect(h.spawned).toHaveLength(1);

    const busy = h.request();
    h.rss.set(old.pid, 210 * 1048576);
    await h.clock.advance(1_000);
    expect(h.spawned).toHaveLength(2);
    expect(h.logsMatching(/memory limit hit/)[0]).toMatchObject({ pid: old.pid, rssMB: 210 });
    expect(h.logsMatching(/^recycling worker/)[0]?.reason).toMatch(/RSS 210 MB over maxMemoryMB \(150\)/);
    h.w(1).ready();
    await flush();
    expect(old.count('drain')).toBe(1);
    expect(old.count('closeStdin')).toBe(0); // graceful: after its current request
    old.finish(busy.ex);
    await flush();
    expect(busy.sink.ended).toBe(0);
    expect(old.count('closeStdin')).toBe(1);
    old.exit(0);
    await flush();
    expect(pids(h.live())).toEqual(pids([h.w(1)]));
  });
});

describe('scaling', () => {
  it('grows from minWorkers to maxWorkers when all threads are busy, booting at once what the queue needs', async () => {
    const h = await running({ minWorkers: 1, maxWorkers: 4, queueLength: 10 });
    const reqs = [h.request(), h.request(), h.request(), h.request()];
    await flush();
    // Three requests wait: three workers boot side by side, in one scaling step.
    expect(h.inState('starting')).toHaveLength(3);
    expect(h.logsMatching(/scaling up/)).toHaveLength(1);
    // While they boot, nothing more is started: they will take the queue.
    await h.clock.advance(1_000);
    expect(h.spawned).toHaveLength(4);
    for (const w of h.inState('starting')) w.ready();
    await flush();
    expect(h.spawned).toHaveLength(4);
    expect(h.pool.queued).toBe(0);
    expect(h.spawned.map((w) => w.inflight)).toEqual([1, 1, 1, 1]);
    for (const r of reqs) expect(r.ex.state).toBe('assigned');
    // At maxWorkers, more requests wait.
    expect(h.pool.maxWorkersReached).toBe(0);
    h.request();
    await h.clock.advance(1_000);
    expect(h.spawned).toHaveLength(4);
    expect(h.logsMatching(/maxWorkers reached/)).toHaveLength(1);
    // Counted once per time it happens (as the warning), not once per tick.
    expect(h.pool.maxWorkersReached).toBe(1);
    expect(h.pool.longestWaitMs).toBeGreaterThanOrEqual(1_000);
  });

  it('boots more only for the requests that workers already booting will not take', async () => {
    const h = await running({ minWorkers: 1, maxWorkers: 8, queueLength: 10 });
    h.request();
    h.request();
    await flush();
    expect(h.inState('starting')).toHaveLength(1);
    // Two more wait while that one boots: one more worker, not two (the booting one takes one).
    h.request();
    h.request();
    await h.clock.advance(50);
    expect(h.inState('starting')).toHaveLength(1); // at most one scaling decision per 200 ms
    await h.clock.advance(200);
    expect(h.inState('starting')).toHaveLength(3);
    expect(h.logsMatching(/scaling up/)).toHaveLength(2);
    for (const w of h.inState('starting')) w.ready();
    await flush();
    expect(h.pool.queued).toBe(0);
    expect(h.spawned).toHaveLength(4);
  });

  it('shrinks back to minWorkers after idleTimeout', async () => {
    const h = await running({ minWorkers: 1, maxWorkers: 4, idleTimeoutMs: 3_000 });
    const reqs = [h.request(), h.request(), h.request(), h.request()];
    for (let i = 0; i < 100 && h.spawned.length < 4; i++) {
      for (const w of h.inState('starting')) w.ready();
      await h.clock.advance(50);
    }
    for (const w of h.inState('starting')) w.ready();
    await flush();
    for (const [i, r] of reqs.entries()) h.w(i).finish(r.ex);
    await h.clock.advance(2_900);
    expect(h.spawned.every((w) => w.count('closeStdin') === 0)).toBe(true);
    await h.clock.advance(200);
    const stopped = h.spawned.filter((w) => w.count('closeStdin') === 1);
    expect(stopped).toHaveLength(3);
    for (const w of stopped) w.exit(0);
    await h.clock.advance(10_000);
    expect(h.live()).toHaveLength(1);
    expect(h.spawned).toHaveLength(4); // no respawn of what was scaled down
    expect(h.logsMatching(/scaling down/)).toHaveLength(3);
    const r = h.request();
    expect(r.ex.state).toBe('assigned');
  });

  it('with minWorkers 0, starts the first worker on the first request (and can scale to zero)', async () => {
    const h = await setup({ minWorkers: 0, maxWorkers: 2, idleTimeoutMs: 1_000 });
    await h.clock.advance(5_000);
    expect(h.spawned).toHaveLength(0);
    const r = h.request();
    await flush();
    expect(h.spawned).toHaveLength(1);
    h.w(0).ready();
    await flush();
    expect(r.ex.state).toBe('assigned');
    h.w(0).finish(r.ex);
    expect(r.sink.ended).toBe(0);
    await h.clock.advance(1_200);
    expect(h.w(0).count('closeStdin')).toBe(1);
    h.w(0).exit(0);
    await h.clock.advance(5_000);
    expect(h.live()).toHaveLength(0);
    const again = h.request();
    await flush();
    expect(h.spawned).toHaveLength(2);
    h.w(1).ready();
    await flush();
    expect(again.ex.state).toBe('assigned');
  });
});

describe('stop', () => {
  it('refuses new requests, finishes in-flight ones, closes stdin, kills after gracefulTimeout, then resolves', async () => {
    const h = await running({ minWorkers: 2, maxWorkers: 2, gracefulTimeoutMs: 5_000 });
    const [a, b] = [h.w(0), h.w(1)];
    const ra = h.request();
    const rb = h.request();
    let stopped = false;
    const done = h.pool.stop().then(() => void (stopped = true));
    await flush();
    expect(h.pool.state).toBe('stopping');
    const refused = h.request();
    await flush();
    expect(refused.sink.failed?.code).toBe('CORRAL_STOPPING');
    expect(refused.sink.failed?.status).toBe(503);
    expect(a.count('closeStdin') + b.count('closeStdin')).toBe(0); // both busy

    await h.clock.advance(1_000);
    a.finish(ra.ex);
    await flush();
    expect(ra.sink.ended).toBe(0);
    expect(a.count('closeStdin')).toBe(1);
    a.exit(0);
    await h.clock.advance(1_000);
    b.finish(rb.ex); // b ignores stdin EOF
    await flush();
    expect(rb.sink.ended).toBe(0);
    expect(b.count('closeStdin')).toBe(1);
    await h.clock.advance(2_900);
    expect(b.count('kill')).toBe(0);
    expect(stopped).toBe(false);
    await h.clock.advance(3_000);
    expect(b.count('kill')).toBe(1);
    expect(stopped).toBe(false);
    b.exit(null, 'SIGKILL');
    await flush();
    await done;
    expect(stopped).toBe(true);
    expect(h.pool.state).toBe('stopped');
    expect(h.logsMatching(/^pool stopped$/)).toHaveLength(1);
    // Stopping exits are requested: never counted or logged as crashes.
    expect(h.logsMatching(/unexpectedly/)).toHaveLength(0);
    // stop() again, and reload(), after stopped.
    await h.pool.stop();
    expect((await h.pool.reload('late'))?.code).toBe('CORRAL_STOPPING');
  });

  it('serves queued requests before stopping the workers', async () => {
    const h = await running({ queueLength: 5 });
    const w = h.w(0);
    const first = h.request();
    const queued = h.request();
    const done = h.pool.stop();
    await flush();
    w.finish(first.ex);
    await flush();
    expect(queued.ex.state).toBe('assigned');
    expect(w.count('closeStdin')).toBe(0);
    w.finish(queued.ex);
    await flush();
    expect(queued.sink.ended).toBe(0);
    expect(w.count('closeStdin')).toBe(1);
    w.exit(0);
    await done;
  });

  it('fails queued requests when the workers are gone, instead of leaving them hanging', async () => {
    const h = await running({ queueLength: 5, gracefulTimeoutMs: 1_000 });
    const w = h.w(0);
    h.request();
    const queued = h.request();
    const done = h.pool.stop();
    await h.clock.advance(1_200);
    expect(w.count('kill')).toBe(1);
    w.exit(null, 'SIGKILL');
    await flush();
    await done;
    expect(queued.sink.failed?.code).toBe('CORRAL_STOPPING');
  });

  it('fails queued requests at once when no worker is READY, and stops booting workers', async () => {
    const h = await setup();
    const queued = h.request();
    const done = h.pool.stop();
    await flush();
    expect(queued.sink.failed?.code).toBe('CORRAL_STOPPING');
    expect(h.w(0).count('closeStdin')).toBe(1);
    h.w(0).exit(0);
    await done;
  });
});

describe('reload', () => {
  it('starts a new generation, keeps the old serving until all new workers are READY, then drains the old', async () => {
    const h = await running({ minWorkers: 2, maxWorkers: 2 });
    const [o1, o2] = [h.w(0), h.w(1)];
    const busyOld = h.request();
    expect(o1.inflight).toBe(1);
    let result: CorralError | null | undefined;
    void h.pool.reload('files changed').then((v) => (result = v));
    await flush();
    expect(h.pool.state).toBe('reloading');
    expect(h.spawned).toHaveLength(4);
    const [n1, n2] = [h.w(2), h.w(3)];
    expect([n1.generation, n2.generation]).toEqual([2, 2]);

    n1.ready();
    await flush();
    expect(result).toBeUndefined();
    const during = h.request(); // old generation still serves
    expect(o2.inflight).toBe(1);
    expect(n1.inflight).toBe(0);

    n2.ready();
    await flush();
    expect(result).toBeNull();
    expect(h.pool.state).toBe('running');
    expect(h.pool.servingGeneration).toBe(2);
    expect(o1.count('drain')).toBe(1);
    expect(o2.count('drain')).toBe(1);
    expect(o1.count('closeStdin')).toBe(0); // still busy
    const after = h.request();
    expect(n1.inflight + n2.inflight).toBe(1);

    o1.finish(busyOld.ex);
    o2.finish(during.ex);
    await flush();
    expect(busyOld.sink.ended).toBe(0);
    expect(during.sink.ended).toBe(0);
    expect(o1.count('closeStdin')).toBe(1);
    expect(o2.count('closeStdin')).toBe(1);
    o1.exit(0);
    o2.exit(0);
    await flush();
    expect(pids(h.live())).toEqual(pids([n1, n2]));
    expect(h.spawned).toHaveLength(4);
    (n1.inflight ? n1 : n2).finish(after.ex);
    expect(h.logsMatching(/unexpectedly/)).toHaveLength(0);
  });

  it('discards a new generation that fails to import; the old keeps serving and reload() resolves with the error', async () => {
    const h = await running({ minWorkers: 2, maxWorkers: 2 });
    const result = h.pool.reload('files changed');
    await flush();
    const [n1, n2] = [h.w(2), h.w(3)];
    n1.failImport(IMPORT_ERROR, TRACEBACK);
    const err = await result;
    expect(err?.code).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(err?.message).toContain(IMPORT_ERROR);
    expect(h.pool.lastReloadError).toBe(err);
    expect(h.pool.state).toBe('running');
    expect(h.pool.servingGeneration).toBe(1);
    expect(n2.count('kill')).toBe(1);
    n2.exit(null, 'SIGKILL');
    await flush();
    expect(h.logsMatching(/reload failed/)[0]).toMatchObject({ traceback: TRACEBACK, gen: 2 });

    // Old workers untouched and serving; no retry loop of the broken generation.
    expect(h.w(0).count('drain') + h.w(1).count('drain')).toBe(0);
    await h.clock.advance(60_000);
    expect(h.spawned).toHaveLength(4);
    const r = h.request();
    expect(r.ex.state).toBe('assigned');
    expect(h.w(0).inflight + h.w(1).inflight).toBe(1);

    // A later good reload clears the error.
    const again = h.pool.reload('fixed');
    await flush();
    for (const w of h.inState('starting')) w.ready();
    expect(await again).toBeNull();
    expect(h.pool.lastReloadError).toBeNull();
  });

  it('in dev mode, a new generation that fails to import takes the pool to failed with its error', async () => {
    const h = await running({ keepOldOnFailedReload: false });
    const result = h.pool.reload('files changed');
    await flush();
    h.w(1).failImport(IMPORT_ERROR, TRACEBACK);
    expect((await result)?.code).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(h.pool.state).toBe('failed');
    const r = h.request();
    await flush();
    expect(r.sink.failed?.message).toContain(IMPORT_ERROR);
    expect(h.w(0).count('closeStdin')).toBe(1);
  });

  it('supersedes a reload still booting with a newer one', async () => {
    const h = await running();
    const first = h.pool.reload('edit 1');
    await flush();
    const gen2 = h.w(1);
    const second = h.pool.reload('edit 2');
    await flush();
    expect(gen2.count('kill')).toBe(1);
    gen2.exit(null, 'SIGKILL');
    const gen3 = h.w(2);
    expect(gen3.generation).toBe(3);
    gen3.ready();
    expect(await first).toBeNull();
    expect(await second).toBeNull();
    expect(h.pool.servingGeneration).toBe(3);
  });

  it('applies a reload asked while the first workers are still booting', async () => {
    const h = await setup();
    const old = h.w(0);
    let result: CorralError | null | undefined;
    void h.pool.reload('files changed').then((v) => (result = v));
    await flush();
    expect(h.spawned).toHaveLength(2);
    const fresh = h.w(1);
    expect(fresh.generation).toBe(2);
    expect(old.count('kill')).toBe(1); // it boots the old code
    old.exit(null, 'SIGKILL');
    await flush();
    expect(result).toBeUndefined();
    expect(h.pool.state).toBe('starting'); // its exit is no boot failure
    fresh.ready();
    await flush();
    expect(result).toBeNull();
    expect(h.pool.state).toBe('running');
    expect(h.pool.servingGeneration).toBe(2);
    const r = h.request();
    expect(fresh.inflight).toBe(1);
    fresh.finish(r.ex);
  });
});

describe('state transitions', () => {
  // Every test ends by checking that no illegal change was attempted (Harness.dispose); the one
  // reachable before (reload() while the first workers boot) is covered under 'reload'.
  it('goes through starting, failed, running, reloading, stopping, stopped, logging each change once', async () => {
    const h = await setup();
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    const retry = h.pool.reload('fixed');
    await flush();
    h.w(1).ready();
    expect(await retry).toBeNull();
    const reload = h.pool.reload('edit');
    await flush();
    h.w(2).ready();
    expect(await reload).toBeNull();
    h.w(1).exit(0); // drained by the reload
    const stopped = h.pool.stop();
    await flush();
    h.w(2).exit(0);
    await stopped;
    const changes = h.logsMatching(/^pool state$/).map((l) => `${String(l.from)}>${String(l.to)}`);
    expect(changes).toEqual(['starting>failed', 'failed>running', 'running>reloading', 'reloading>running', 'running>stopping', 'stopping>stopped']);
  });
});

describe('service-wide worker budget (maxTotalWorkers)', () => {
  it('spawns no worker beyond the shared budget, and spawns the missing one once another pool gives one back', async () => {
    const budget = new WorkerBudget(3);
    const a = await setup({ minWorkers: 2, maxWorkers: 2 }, undefined, { budget });
    const b = await setup({ minWorkers: 2, maxWorkers: 2 }, undefined, { budget });
    await b.clock.advance(1_000);
    expect(a.spawned).toHaveLength(2);
    expect(b.spawned).toHaveLength(1);
    expect(budget.used).toBe(3);
    expect(b.logsMatching(/maxTotalWorkers reached/)).toHaveLength(1);
    // A worker of pool a exits for good (a stops): its unit goes back, b takes it on its next tick.
    await a.dispose();
    expect(budget.used).toBe(1);
    await b.clock.advance(1_000);
    expect(b.spawned).toHaveLength(2);
    expect(budget.used).toBe(2);
    await b.dispose();
    expect(budget.used).toBe(0);
  });
});

describe('direct data plane (workers accept their own connections)', () => {
  const DIRECT: Partial<PoolOptions> = { direct: true };

  it('scales up when every worker reports itself busy and connections wait in the listen queue, one at a time, up to maxWorkers', async () => {
    const h = await running({ ...DIRECT, minWorkers: 1, maxWorkers: 3 });
    h.w(0).report({ busy: 1, queue: 0 });
    await h.clock.advance(1_000);
    expect(h.spawned).toHaveLength(1); // busy, but nothing waits
    h.w(0).report({ busy: 1, queue: 4 });
    await h.clock.advance(100);
    expect(h.spawned).toHaveLength(2);
    expect(h.logsMatching(/scaling up: every worker busy/)).toHaveLength(1);
    // While the new one boots, no more: it will take from the queue.
    await h.clock.advance(1_000);
    expect(h.spawned).toHaveLength(2);
    h.w(1).ready();
    h.w(1).report({ busy: 1, queue: 4 });
    await h.clock.advance(300);
    expect(h.spawned).toHaveLength(3);
    h.w(2).ready();
    h.w(2).report({ busy: 1, queue: 9 });
    await h.clock.advance(1_000);
    expect(h.spawned).toHaveLength(3);
    expect(h.logsMatching(/maxWorkers reached/)).toHaveLength(1);
  });

  it('without a visible listen queue (unix socket), scales up after every worker has been busy for a second', async () => {
    const h = await running({ ...DIRECT, minWorkers: 1, maxWorkers: 2 });
    h.w(0).report({ busy: 1, queue: null });
    await h.clock.advance(500);
    expect(h.spawned).toHaveLength(1);
    await h.clock.advance(700);
    expect(h.spawned).toHaveLength(2);
  });

  it('stops a worker idle for idleTimeout above minWorkers, but never one that reports requests running', async () => {
    const h = await running({ ...DIRECT, minWorkers: 1, maxWorkers: 2, idleTimeoutMs: 3_000 });
    h.w(0).report({ busy: 1, queue: 3 });
    await h.clock.advance(300);
    h.w(1).ready();
    h.w(0).report({ busy: 1, queue: 0, current: [{ method: 'GET', path: '/slow', ageMs: 10 }] });
    h.w(1).report({ busy: 0, served: 5 });
    await h.clock.advance(5_000);
    // The idle one goes (its stdin closed at once: it drains itself); the busy one stays.
    expect(h.w(1).count('closeStdin')).toBe(1);
    expect(h.w(0).count('closeStdin')).toBe(0);
    expect(h.pool.status().find((s) => s.pid === h.w(0).pid)?.running).toEqual([{ method: 'GET', path: '/slow', ageMs: 10 }]);
    expect(h.pool.status().find((s) => s.pid === h.w(0).pid)?.inflight).toBe(1);
  });

  it('recycles after maxRequests counted from its reports: the replacement first, then the old one is told to drain', async () => {
    const h = await running({ ...DIRECT, maxRequests: 100 });
    h.w(0).report({ served: 99 });
    await h.clock.advance(300);
    expect(h.spawned).toHaveLength(1);
    h.w(0).report({ served: 101 });
    await h.clock.advance(300);
    expect(h.spawned).toHaveLength(2);
    expect(h.w(0).count('closeStdin')).toBe(0); // still serving until the replacement is READY
    h.w(1).ready();
    await h.clock.advance(300);
    expect(h.w(0).count('closeStdin')).toBe(1);
  });

  it('on reload and stop, tells every old worker at once (it finishes its own requests)', async () => {
    const h = await running({ ...DIRECT, minWorkers: 2, maxWorkers: 2 });
    h.w(0).report({ busy: 1 });
    const reloaded = h.pool.reload('test');
    await h.clock.advance(100);
    for (const w of h.inState('starting')) w.ready();
    await h.clock.advance(100);
    expect(await reloaded).toBeNull();
    expect(h.w(0).count('closeStdin')).toBe(1);
    expect(h.w(1).count('closeStdin')).toBe(1);
    h.w(0).exit(0);
    h.w(1).exit(0);
    await h.clock.advance(100);
    expect(h.logsMatching(/worker exited unexpectedly/)).toEqual([]);
  });

  it('tells a draining worker where to hand its kept connections: a live worker of the newest generation, spread; none at stop', async () => {
    const h = await running({ ...DIRECT, minWorkers: 2, maxWorkers: 2, maxRequests: 100 });
    const reloaded = h.pool.reload('test');
    await h.clock.advance(100);
    const fresh = h.inState('starting');
    for (const w of fresh) w.ready();
    await h.clock.advance(100);
    expect(await reloaded).toBeNull();
    // Each old worker gets the new generation's workers (not an old, draining one), starting at a
    // different one.
    const lists = [h.w(0).handoffs[0], h.w(1).handoffs[0]].map((t) => (t ?? '').split('\n'));
    for (const l of lists) expect(new Set(l)).toEqual(new Set(fresh.map((w) => `/h/${w.pid}`)));
    expect(new Set(lists.map((l) => l[0]))).toEqual(new Set(fresh.map((w) => `/h/${w.pid}`)));
    // Recycling: the replacement is READY first, so there is one to hand to (not the recycled one itself).
    fresh[0]!.report({ served: 101 });
    await h.clock.advance(300);
    const replacement = h.inState('starting')[0]!;
    replacement.ready();
    await h.clock.advance(300);
    expect(fresh[0]!.handoffs).toHaveLength(1);
    expect(new Set(fresh[0]!.handoffs[0]!.split('\n'))).toEqual(new Set([`/h/${fresh[1]!.pid}`, `/h/${replacement.pid}`]));
    // A service stop: nobody would take them; the workers close them as before.
    const stopped = h.pool.stop();
    await h.clock.advance(100);
    expect(fresh[1]!.handoffs).toEqual([undefined]);
    expect(replacement.handoffs).toEqual([undefined]);
    for (const w of h.spawned) if (w.state !== 'exited') w.exit(0);
    await h.clock.advance(100);
    await stopped;
  });

  it('replaces a worker that exits 5 (it answered 504 to a request over requestTimeout) at once, not as a crash', async () => {
    const h = await running({ ...DIRECT, requestTimeoutMs: 1_000, rapidFailsPerMinute: 2 });
    for (let i = 0; i < 4; i++) {
      h.live()[0]!.exit(5);
      await h.clock.advance(100);
      for (const w of h.inState('starting')) w.ready();
      await flush();
    }
    expect(h.pool.state).toBe('running');
    expect(h.logsMatching(/answered 504/)).toHaveLength(4);
  });

  it('asks for the answerer when it fails with nobody serving (the error with Retry-After), and lets it go once a worker is READY', async () => {
    const answers: Array<CorralError | null> = [];
    const h = await setup({ ...DIRECT, failedRetryMs: 2_000 }, undefined, { answer: (e) => void answers.push(e) });
    h.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    expect(h.pool.state).toBe('failed');
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ code: 'CORRAL_APP_IMPORT_FAILED', retryAfter: 2 });
    // The retry fails the same way: the page is given again, with the next, longer delay.
    await h.clock.advance(2_100);
    h.w(1).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    expect(answers.map((a) => a?.retryAfter)).toEqual([2, 4]);
    // A reload of the failed pool boots the fixed code; the answerer stays until it is READY.
    const reloaded = h.pool.reload('fixed');
    await h.clock.advance(100);
    expect(answers).toHaveLength(2);
    h.inState('starting')[0]!.ready();
    expect(await reloaded).toBeNull();
    expect(answers.at(-1)).toBeNull();
    expect(h.pool.state).toBe('running');
  });

  it('asks for no answerer on a failed reload (the old generation serves on), nor off the direct plane', async () => {
    const answers: Array<CorralError | null> = [];
    const h = await setup({ ...DIRECT }, undefined, { answer: (e) => void answers.push(e) });
    h.w(0).ready();
    await flush();
    const reloaded = h.pool.reload('broken');
    await h.clock.advance(100);
    h.w(1).failImport(IMPORT_ERROR, TRACEBACK);
    expect(await reloaded).toMatchObject({ code: 'CORRAL_APP_IMPORT_FAILED' });
    expect(h.pool.state).toBe('running');
    expect(answers).toEqual([]);
    const proxied: Array<CorralError | null> = [];
    const p = await setup({}, undefined, { answer: (e) => void proxied.push(e) });
    p.w(0).failImport(IMPORT_ERROR, TRACEBACK);
    await flush();
    expect(p.pool.state).toBe('failed');
    expect(p.pool.failure?.retryAfter).toBe(1);
    expect(proxied).toEqual([]);
  });

  it('kills a worker whose reported request runs far over requestTimeout (its own watchdog failed)', async () => {
    const h = await running({ ...DIRECT, requestTimeoutMs: 1_000 });
    h.w(0).report({ busy: 1, current: [{ method: 'GET', path: '/hang', ageMs: 500 }] });
    await h.clock.advance(5_000);
    expect(h.w(0).count('kill')).toBe(0);
    await h.clock.advance(1_000);
    expect(h.w(0).count('kill')).toBe(1);
  });
});

describe('requests given ahead (proxy path)', () => {
  /** A running pool whose app has shown itself fast: one request served in 1 ms. */
  async function fast(opts: Partial<PoolOptions> = {}, threads = 1): Promise<Harness> {
    const h = await running({ queueLength: 5, ...opts }, threads);
    const first = h.request();
    await h.clock.advance(1);
    h.w(0).finish(first.ex);
    return h;
  }

  it('gives a busy worker one request ahead while others wait, and starts its time when the thread frees', async () => {
    const h = await fast();
    const w = h.w(0);
    const [r1, r2, r3] = [h.request(), h.request(), h.request()];
    expect(r1.ex.ahead).toBe(false);
    expect(r2.ex.state).toBe('assigned');
    expect(r2.ex.ahead).toBe(true);
    expect(w.inflight).toBe(2);
    expect(r3.ex.state).toBe('queued'); // one ahead per worker, no more
    expect(h.pool.queued).toBe(2); // r3, and r2 that waits on the worker
    await h.clock.advance(3);
    w.finish(r1.ex);
    // r2 now has the thread: its time starts now; r3 goes ahead of it in turn.
    expect(r2.ex.ahead).toBe(false);
    expect(r2.ex.dispatchedAt).toBe(h.clock.now());
    expect(r3.ex.ahead).toBe(true);
    expect(h.pool.queued).toBe(1);
    w.finish(r2.ex);
    w.finish(r3.ex);
    expect([r1, r2, r3].map((r) => r.sink.ended)).toEqual([0, 0, 0]);
  });

  it('counts a request given ahead as waiting, not running, on the status page', async () => {
    const h = await fast();
    const sink = (path: string): Sink => Object.assign(new Sink(), { describe: () => ({ method: 'GET', path }) });
    h.pool.begin(sink('/first'));
    await h.clock.advance(2);
    h.pool.begin(sink('/ahead'));
    await h.clock.advance(2);
    // Busy threads and running requests count the first; the one given ahead waits (queued).
    expect(h.pool.status()[0]).toMatchObject({ inflight: 1, running: [{ method: 'GET', path: '/first', ageMs: 4 }] });
    expect(h.pool.queued).toBe(1);
    expect(h.pool.longestWaitMs).toBe(2); // given ahead 2 ms ago
  });

  it('keeps plain queueing for an app whose requests take 10 ms or more', async () => {
    const h = await running({ queueLength: 5 });
    const w = h.w(0);
    const first = h.request();
    await h.clock.advance(50);
    w.finish(first.ex);
    const [r1, r2] = [h.request(), h.request()];
    expect(r1.ex.state).toBe('assigned');
    expect(r2.ex.state).toBe('queued');
    expect(w.inflight).toBe(1);
  });

  it('gives nothing ahead before any request has finished', async () => {
    const h = await running({ queueLength: 5 });
    h.request();
    expect(h.request().ex.state).toBe('queued');
  });

  it('never gives a request ahead of one that has run 10 ms already', async () => {
    const h = await fast({ minWorkers: 2, maxWorkers: 2 });
    const [a, b] = [h.w(0), h.w(1)];
    const slow = h.request();
    const quick = h.request();
    expect([a.inflight, b.inflight]).toEqual([1, 1]);
    await h.clock.advance(10);
    b.finish(quick.ex);
    const next = h.request(); // b is free: a plain dispatch
    expect(b.inflight).toBe(1);
    const behind = h.request(); // ahead of b's young request, not of a's old one
    expect(behind.ex.ahead).toBe(true);
    expect(b.inflight).toBe(2);
    expect(a.inflight).toBe(1);
    await h.clock.advance(10);
    expect(h.request().ex.state).toBe('queued'); // both now run requests 10 ms old or more
    a.finish(slow.ex);
    b.finish(next.ex);
  });

  it('times a request given ahead from when it got a thread (requestTimeout)', async () => {
    const h = await fast({ requestTimeoutMs: 1_000 });
    const w = h.w(0);
    const r1 = h.request();
    const r2 = h.request();
    expect(r2.ex.ahead).toBe(true);
    await h.clock.advance(900);
    w.finish(r1.ex);
    await h.clock.advance(900); // 1.8 s since it was given, 0.9 s on the thread
    expect(r2.sink.failed).toBeNull();
    expect(w.count('kill')).toBe(0);
    await h.clock.advance(200);
    expect(r2.sink.failed?.code).toBe('CORRAL_REQUEST_TIMEOUT');
    expect(w.count('kill')).toBe(1);
  });

  it('still scales up for the requests that wait in the queue', async () => {
    const h = await fast({ minWorkers: 1, maxWorkers: 3 });
    h.request();
    h.request(); // ahead: nothing waits in the queue
    await h.clock.advance(300);
    expect(h.spawned).toHaveLength(1);
    h.request();
    await h.clock.advance(300);
    expect(h.logsMatching(/scaling up/)).toHaveLength(1);
    expect(h.spawned).toHaveLength(2);
  });

  it('gives nothing ahead to a worker waiting to be recycled', async () => {
    const h = await fast({ maxMemoryMB: 150, monitorIntervalMs: 1_000 });
    const old = h.w(0);
    h.rss.set(old.pid, 210 * 1048576);
    await h.clock.advance(1_000); // over maxMemoryMB: it serves on until its replacement is READY
    expect(h.spawned).toHaveLength(2);
    const r1 = h.request();
    const next = h.pool.begin(new Sink());
    expect(next.state).toBe('queued');
    expect(old.inflight).toBe(1);
    h.w(1).ready();
    await flush();
    expect(next.state).toBe('assigned');
    old.finish(r1.ex);
    h.w(1).finish(next);
  });

  it('fails a request given ahead with the others when its worker dies', async () => {
    const h = await fast({ minWorkers: 1, maxWorkers: 1 });
    const r1 = h.request();
    const r2 = h.request();
    expect(r2.ex.ahead).toBe(true);
    h.w(0).exit(null, 'SIGKILL');
    await flush();
    expect(r1.sink.failed?.code).toBe('CORRAL_WORKER_LOST');
    expect(r2.sink.failed?.code).toBe('CORRAL_WORKER_LOST');
  });
});
