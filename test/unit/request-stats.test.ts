/**
 * The last-minute request window (per-second buckets, latency histogram) and the per-app stats,
 * driven by a fake clock: rates, status classes, percentiles, expiry after a minute, lifetime
 * totals, and the pairing of failed requests with the exception line a worker wrote.
 */
import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../src/front/access-log.js';
import { AppStats, RECENT, StatsBook } from '../../src/monitor/app-stats.js';
import { bucketOf, LATENCY_BOUNDS_MS, quantile, RequestWindow } from '../../src/monitor/window.js';

const T0 = Date.UTC(2026, 11, 6, 12, 0, 0);

function rec(over: Partial<RequestRecord> = {}): RequestRecord {
  return { app: 'a', method: 'GET', path: '/', status: 200, bytes: 10, durationMs: 3, pid: 7, queueMs: 0, error: null, ...over };
}

describe('request window', () => {
  it('puts durations in the right bucket and interpolates percentiles within one', () => {
    expect(bucketOf(0.2)).toBe(0);
    expect(bucketOf(1)).toBe(0);
    expect(bucketOf(7)).toBe(3);
    expect(bucketOf(60_001)).toBe(LATENCY_BOUNDS_MS.length);
    const hist = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    hist[3] = 100; // 100 requests in (5, 10] ms
    expect(quantile(hist, 0.5, 10)).toBeCloseTo(7.5);
    expect(quantile(hist, 0.99, 9)).toBe(9); // never above the slowest seen
    hist[LATENCY_BOUNDS_MS.length] = 100; // 100 above 60 s
    expect(quantile(hist, 0.99, 75_000)).toBe(75_000);
    expect(quantile(new Array<number>(16).fill(0), 0.5, 0)).toBeNull();
  });

  it('counts requests per second and by status class, and reads percentiles over the minute', () => {
    const w = new RequestWindow(T0);
    for (let s = 0; s < 20; s++) {
      for (let i = 0; i < 9; i++) w.record(200, 4, T0 + s * 1000 + i);
      w.record(500, 400, T0 + s * 1000 + 500);
    }
    const f = w.read(T0 + 19_999);
    expect(f.seconds).toBe(20);
    expect(f.requests).toBe(200);
    expect(f.perSecondMinute).toBe(10);
    expect(f.perSecond).toBe(10);
    expect(f.byClass).toEqual({ '1xx': 0, '2xx': 180, '3xx': 0, '4xx': 0, '5xx': 20 });
    expect(f.errorRate).toBeCloseTo(0.1);
    expect(f.p50Ms).toBeGreaterThan(2.5);
    expect(f.p50Ms).toBeLessThanOrEqual(4);
    expect(f.p95Ms).toBeGreaterThan(250);
    expect(f.p95Ms).toBeLessThanOrEqual(400);
    expect(f.maxMs).toBe(400);
    expect(f.series).toHaveLength(60);
    expect(f.series.at(-1)).toMatchObject({ requests: 10, errors: 1, maxMs: 400 });
    expect(f.series[0]!.requests).toBe(0);
  });

  it('forgets seconds older than a minute, reusing their buckets', () => {
    const w = new RequestWindow(T0);
    w.record(500, 2_000, T0);
    w.record(200, 1, T0 + 30_000);
    expect(w.read(T0 + 59_999).requests).toBe(2);
    const later = w.read(T0 + 60_000);
    expect(later.requests).toBe(1);
    expect(later.byClass['5xx']).toBe(0);
    expect(later.maxMs).toBe(1);
    // The slot of T0 is reused for T0 + 60 s and starts from zero.
    w.record(200, 5, T0 + 60_500);
    const again = w.read(T0 + 60_500);
    expect(again.requests).toBe(2);
    expect(again.series.at(-1)).toMatchObject({ requests: 1, errors: 0, maxMs: 5 });
    expect(w.read(T0 + 200_000).requests).toBe(0);
    expect(w.read(T0 + 200_000).p99Ms).toBeNull();
  });

  it('live rate is over the last 10 seconds', () => {
    const w = new RequestWindow(T0);
    for (let i = 0; i < 50; i++) w.record(200, 1, T0 + 1_000);
    for (let i = 0; i < 30; i++) w.record(200, 1, T0 + 55_000);
    const f = w.read(T0 + 59_000);
    expect(f.perSecond).toBe(3);
    expect(f.perSecondMinute).toBeCloseTo(80 / 60);
  });
});

describe('app stats', () => {
  it('keeps lifetime totals, slow and corral-answered counts, and recent 5xx with their exception line', () => {
    let now = T0;
    const s = new AppStats(() => now, 1_000);
    s.request(rec());
    s.request(rec({ durationMs: 1_500 }));
    s.request(rec({ status: 503, error: 'CORRAL_QUEUE_FULL', pid: null, path: '/busy?token=secret' }));
    now += 200;
    s.stderr(7, 'corral_worker: exception in the app for GET /boom');
    s.stderr(7, 'Traceback (most recent call last):');
    s.stderr(7, '  File "/srv/app.py", line 3, in app');
    s.stderr(7, '    raise ValueError("boom")');
    s.stderr(7, 'ValueError: boom');
    s.stderr(8, 'ValueError: not in a traceback');
    now += 100;
    s.request(rec({ status: 500, path: '/boom' }));
    const f = s.read();
    expect(f.totals).toEqual({ requests: 4, errors5xx: 2, slow: 1, byCode: { CORRAL_QUEUE_FULL: 1 } });
    expect(f.recentErrors.map((e) => [e.path, e.code, e.exception])).toEqual([
      ['/boom', null, 'ValueError: boom'],
      ['/busy', 'CORRAL_QUEUE_FULL', null],
    ]);
    expect(f.window.byClass['5xx']).toBe(2);
  });

  it('does not take a slow request\'s stack (slowLogAfter) for the exception of a failed one', () => {
    let now = T0;
    const s = new AppStats(() => now);
    s.stderr(7, 'corral_worker: request GET /slow still running after 1s. Where it is:');
    s.stderr(7, 'Traceback (most recent call last):');
    s.stderr(7, '  File "/srv/app.py", line 9, in app');
    s.stderr(7, 'SlowRequest: GET /slow still running after 1s');
    now += 50;
    s.request(rec({ status: 500, path: '/other', pid: 7 }));
    expect(s.read().recentErrors.map((e) => e.exception)).toEqual([null]);
  });

  it('does not pair an exception with a request of another worker or long after', () => {
    let now = T0;
    const s = new AppStats(() => now);
    s.stderr(9, 'Traceback (most recent call last):');
    s.stderr(9, 'KeyError: 1');
    s.request(rec({ status: 500, pid: 7 }));
    now += 10_000;
    s.request(rec({ status: 500, pid: 9 }));
    expect(s.read().recentErrors.map((e) => e.exception)).toEqual([null, null]);
  });

  it('keeps the last reloads and exits, newest first, at most RECENT of each', () => {
    let now = T0;
    const s = new AppStats(() => now);
    s.reload('files changed', 2, null);
    s.reload('SIGHUP', 2, Object.assign(new Error('import failed'), { code: 'CORRAL_IMPORT_FAILED' }));
    for (let i = 0; i < RECENT + 5; i++) {
      now += 1;
      s.exit(100 + i, 'served maxRequests (1000)');
    }
    const f = s.read();
    expect(f.recentReloads.map((r) => [r.ok, r.code])).toEqual([
      [false, 'CORRAL_IMPORT_FAILED'],
      [true, null],
    ]);
    expect(f.recentExits).toHaveLength(RECENT);
    expect(f.recentExits[0]!.pid).toBe(100 + RECENT + 4);
  });

  it('a book routes each record to its app', () => {
    const book = new StatsBook(() => T0);
    book.observe(rec({ app: 'x' }));
    book.observe(rec({ app: 'x' }));
    book.observe(rec({ app: 'y', status: 404 }));
    expect(book.for('x').read().totals.requests).toBe(2);
    expect(book.for('y').read().window.byClass['4xx']).toBe(1);
  });
});
