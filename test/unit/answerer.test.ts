/**
 * The answerer's life (src/pool/answerer.ts) with fake processes and vitest's fake timers: one at a
 * time, the page rewritten on each failure, started again (slower each time) if it exits on its own,
 * drained (stdin closed, never killed) when the app serves again, and stop() waiting for its exit.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import { CorralError } from '../../src/errors.js';
import { errorResponse } from '../../src/front/error-page.js';
import { Answerer } from '../../src/pool/answerer.js';
import { WorkerBudget } from '../../src/pool/budget.js';
import type { WorkerEvents, WorkerHandle, WorkerState } from '../../src/pool/handle.js';

type LogLine = Record<string, unknown> & { msg: string };

/** Just what the answerer uses of a worker; the rest throws if touched. */
class FakeProcess {
  static next = 5001;
  readonly pid = FakeProcess.next++;
  state: WorkerState = 'starting';
  readonly calls: string[] = [];
  lastStderr = '';
  requests = 0;
  fatal = null;
  constructor(
    readonly events: WorkerEvents,
    readonly log: ReturnType<typeof pino>,
  ) {}
  drain(): void {
    this.calls.push('drain');
    this.state = 'draining';
  }
  closeStdin(): void {
    this.calls.push('closeStdin');
    this.state = 'stopping';
  }
  kill(): void {
    this.calls.push('kill');
  }
  ready(): void {
    this.state = 'ready';
    this.events.ready(this as unknown as WorkerHandle);
  }
  exit(code: number | null): void {
    this.state = 'exited';
    this.events.exit(this as unknown as WorkerHandle, code, null);
  }
}

const IMPORT = new CorralError('CORRAL_APP_IMPORT_FAILED', 'app x: import failed: SyntaxError', { retryAfter: 5 });
const DEPLOY = new CorralError('CORRAL_DEPLOY_FAILED', 'deploy step failed', { retryAfter: 10 });

function harness(budget?: WorkerBudget): { a: Answerer; spawned: FakeProcess[]; pages: Buffer[]; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const log = pino({ level: 'trace', base: null }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
  const spawned: FakeProcess[] = [];
  const pages: Buffer[] = [];
  const a = new Answerer({
    spawn: (events) => {
      const p = new FakeProcess(events, log);
      spawned.push(p);
      return p as unknown as WorkerHandle;
    },
    render: (e) => errorResponse(e, false),
    writePage: (page) => void pages.push(page),
    log,
    ...(budget ? { budget } : {}),
    startupTimeoutMs: 10_000,
    gracefulTimeoutMs: 3_000,
  });
  return { a, spawned, pages, logs };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Answerer', () => {
  it('runs one process; each failure rewrites the page before it answers', () => {
    const { a, spawned, pages } = harness();
    a.show(IMPORT);
    a.show(IMPORT);
    a.show(DEPLOY);
    expect(spawned).toHaveLength(1);
    expect(pages.map((p) => /X-Corral-Error: (\w+)/.exec(p.toString('latin1'))?.[1])).toEqual(['CORRAL_APP_IMPORT_FAILED', 'CORRAL_APP_IMPORT_FAILED', 'CORRAL_DEPLOY_FAILED']);
    expect(pages[2]!.toString('latin1')).toMatch(/^Status: 503 [^\r]*\r\n[\s\S]*Retry-After: 10\r\n\r\n/);
    expect(a.pid).toBe(spawned[0]!.pid);
  });

  it('drains (stdin closed, no kill) when the app serves again; stop() waits for the exit', async () => {
    const { a, spawned } = harness();
    a.show(IMPORT);
    spawned[0]!.ready();
    a.clear();
    expect(spawned[0]!.calls).toEqual(['drain', 'closeStdin']);
    expect(a.pid).toBeNull();
    let stopped = false;
    const stop = a.stop().then(() => void (stopped = true));
    await vi.advanceTimersByTimeAsync(1_000);
    expect(stopped).toBe(false);
    spawned[0]!.exit(0);
    await stop;
    expect(spawned[0]!.calls).not.toContain('kill');
    a.show(IMPORT); // after stop: nothing starts
    expect(spawned).toHaveLength(1);
  });

  it('kills one that does not exit after its drain, past gracefulTimeout', async () => {
    const { a, spawned } = harness();
    a.show(IMPORT);
    spawned[0]!.ready();
    a.clear();
    await vi.advanceTimersByTimeAsync(3_000);
    expect(spawned[0]!.calls).not.toContain('kill');
    await vi.advanceTimersByTimeAsync(6_000);
    expect(spawned[0]!.calls).toContain('kill');
  });

  it('starts another when one exits on its own, slower each time, and none once the app serves', async () => {
    const { a, spawned, logs } = harness();
    a.show(IMPORT);
    spawned[0]!.exit(1);
    await vi.advanceTimersByTimeAsync(499);
    expect(spawned).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(spawned).toHaveLength(2);
    spawned[1]!.exit(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(spawned).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(spawned).toHaveLength(3);
    spawned[2]!.exit(1);
    a.clear(); // the app serves again before the next start
    await vi.advanceTimersByTimeAsync(60_000);
    expect(spawned).toHaveLength(3);
    expect(logs.filter((l) => l.msg === 'answerer exited; starting another')).toHaveLength(3);
  });

  it('kills one not READY within startupTimeout, then starts another', async () => {
    const { a, spawned } = harness();
    a.show(IMPORT);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(spawned[0]!.calls).toEqual(['kill']);
    spawned[0]!.exit(null);
    await vi.advanceTimersByTimeAsync(500);
    expect(spawned).toHaveLength(2);
  });

  it('takes a unit of maxTotalWorkers while it runs; with none free it waits (one warning) and starts once one is', () => {
    const budget = new WorkerBudget(1);
    const { a, spawned, logs } = harness(budget);
    expect(budget.take()).toBe(true); // another app's worker holds the only unit
    a.show(IMPORT);
    vi.advanceTimersByTime(2_000);
    expect(spawned).toHaveLength(0);
    expect(a.info).toBeNull();
    expect(logs.filter((l) => l.msg === 'maxTotalWorkers reached: the answerer waits for a worker to exit')).toHaveLength(1);
    budget.give();
    vi.advanceTimersByTime(500);
    expect(spawned).toHaveLength(1);
    expect(budget.used).toBe(1);
    spawned[0]!.ready();
    spawned[0]!.requests = 3;
    expect(a.info).toMatchObject({ pid: spawned[0]!.pid, state: 'ready', requests: 3, code: 'CORRAL_APP_IMPORT_FAILED' });
    a.clear();
    spawned[0]!.exit(0);
    expect(budget.used).toBe(0);
    expect(a.info).toBeNull();
  });
});
