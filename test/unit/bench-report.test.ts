/**
 * The pure parts of `npm run bench` (bench/lib): the interleaved schedule, CPU tick accounting
 * across processes that come and go, medians and ratios, the Markdown table with its error rows,
 * and the nginx configuration per kind of backend.
 */
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain ES module of the bench, no type declarations
import { schedule, ticksBetween } from '../../bench/lib/measure.mjs';
// @ts-expect-error: plain ES module of the bench, no type declarations
import { markdown, median, summarize } from '../../bench/lib/report.mjs';
// @ts-expect-error: plain ES module of the bench, no type declarations
import { NGINX_MALLOC, nginxConf, nginxEnv } from '../../bench/lib/nginx.mjs';
// @ts-expect-error: plain ES module of the bench, no type declarations
import { UPSTREAM } from '../../bench/lib/candidates.mjs';

interface Step { rep: number; workload: string; candidate: string }

function run(workload: string, candidate: string, rps: number, extra: Record<string, unknown> = {}) {
  return {
    workload, candidate, rps, requests: rps, p50_ms: 1, p99_ms: 2, errors: 0, other_cores: 0.1,
    cpu_us_per_req: { nginx: 10, service: candidate === 'standalone' ? null : 20, workers: 30 },
    processes: { nginx: 1, service: 1, workers: 2 }, processes_gone: 0, ...extra,
  };
}

describe('bench schedule', () => {
  it('interleaves candidates within each workload and rotates who goes first each round', () => {
    const plan: Step[] = schedule(['a', 'b', 'c'], ['w1', 'w2'], 3);
    expect(plan).toHaveLength(18);
    const order = (rep: number, w: string) => plan.filter((s) => s.rep === rep && s.workload === w).map((s) => s.candidate).join('');
    expect([order(1, 'w1'), order(2, 'w1'), order(3, 'w1')]).toEqual(['abc', 'bca', 'cab']);
    expect(order(1, 'w2')).toBe('abc');
    // rounds do not overlap: every step of round 1 comes before any of round 2
    expect(plan.findIndex((s) => s.rep === 2)).toBe(6);
  });
});

describe('bench CPU accounting', () => {
  it('sums deltas, counts a process born during the run from zero, and reports one that vanished', () => {
    const before = new Map([[1, 100], [2, 50], [3, 10]]);
    const after = new Map([[1, 130], [2, NaN], [4, 7]]); // 2 exited, 3 not seen again, 4 new
    expect(ticksBetween(before, after)).toEqual({ ticks: 30 + 7, gone: 2 });
  });
});

describe('bench summary', () => {
  it('takes medians over rounds and ratios to uwsgi-fcgi-2p and to the standalone worker per workload', () => {
    const runs = [
      run('hello', 'corral-proxy', 900), run('hello', 'corral-proxy', 1100), run('hello', 'corral-proxy', 1000),
      run('hello', 'standalone', 2000), run('hello', 'standalone', 2000), run('hello', 'standalone', 1900),
      run('hello', 'uwsgi-fcgi-2p', 500), run('hello', 'uwsgi-fcgi-2p', 400), run('hello', 'uwsgi-fcgi-2p', 600),
      run('echo', 'corral-proxy', 10, { errors: 2 }), run('echo', 'corral-proxy', 30, { errors: 1 }),
    ];
    const { rows } = summarize(runs, ['corral-proxy', 'standalone', 'uwsgi-fcgi-2p'], ['hello', 'echo']);
    const proxy = rows.find((r: { workload: string; candidate: string }) => r.workload === 'hello' && r.candidate === 'corral-proxy');
    expect(proxy.rps).toBe(1000);
    expect([proxy.rps_min, proxy.rps_max]).toEqual([900, 1100]);
    expect(proxy.x_uwsgi_fcgi).toBeCloseTo(2, 5);
    expect(proxy.x_standalone).toBeCloseTo(0.5, 5);
    expect(proxy.cpu_us_per_req).toEqual({ nginx: 10, service: 20, workers: 30, total: 60 });
    const standalone = rows.find((r: { workload: string; candidate: string }) => r.workload === 'hello' && r.candidate === 'standalone');
    expect(standalone.cpu_us_per_req.service).toBeNull(); // no manager process: not a zero
    const echo = rows.find((r: { workload: string }) => r.workload === 'echo');
    expect(echo.rps).toBe(20); // the median of an even count is the mean of the middle two
    expect(echo.errors).toBe(3);
    expect(echo.x_uwsgi_fcgi).toBeNull(); // no reference measured on this workload
    expect(median([3, NaN, 1, 2])).toBe(2);
  });

  it('prints the command, one row per measured pair and an error row per candidate that could not run', () => {
    const summary = summarize([run('hello', 'standalone', 1234.4)], ['corral-direct', 'standalone'], ['hello'], [
      { candidate: 'corral-direct', reason: 'failed to start: unrecognized arguments: --direct-fd 3 |x' },
    ]);
    const md: string = markdown(summary, {
      command: 'npm run bench -- --quick', date: '2026-12-06T17:00:00.000Z', cpus: 2, node: 'v20', python: 'Python 3.11.2', nginx: '1.22.1',
      reps: 1, duration_s: 2, candidates: [{ name: 'corral-direct', what: 'd' }, { name: 'standalone', what: 's' }],
      workloads: [{ name: 'hello', what: 'GET', connections: 16 }], skipped: [{ candidate: 'gunicorn-sync-2w', reason: 'not installed' }],
    });
    const lines = md.split('\n');
    expect(lines[0]).toContain('`npm run bench -- --quick`');
    const table = lines.filter((l) => l.startsWith('| '));
    expect(table).toHaveLength(3); // header + 1 measured + 1 error
    expect(table[1]).toMatch(/^\| hello \| standalone \| 1234 \|/);
    expect(table[2]).toContain('| all | corral-direct | **not measured**: failed to start: unrecognized arguments: --direct-fd 3 \\|x |');
    // every table line has the header's column count (an error row must not break the table)
    const cols = (l: string) => l.replace(/\\\|/g, '').split('|').length;
    for (const l of table) expect(cols(l)).toBe(cols(table[0]!));
    expect(md).toContain('Skipped (not installed here): `gunicorn-sync-2w` (not installed)');
  });
});

describe('bench nginx configuration', () => {
  it('keeps FastCGI connections only for backends that keep them, and speaks uwsgi and HTTP to the others', () => {
    const conf: string = nginxConf({
      candidates: [
        { name: 'corral-proxy', upstream: UPSTREAM.fastcgiKeep },
        { name: 'uwsgi-fcgi-2p', upstream: UPSTREAM.fastcgiClose },
        { name: 'uwsgi-native-2p', upstream: UPSTREAM.uwsgi },
        { name: 'gunicorn-sync-2w', upstream: UPSTREAM.http },
        { name: 'nginx-static', upstream: UPSTREAM.static },
      ],
      ports: { 'corral-proxy': 1001, 'uwsgi-fcgi-2p': 1002, 'uwsgi-native-2p': 1003, 'gunicorn-sync-2w': 1004, 'nginx-static': 1005 },
      backends: { 'corral-proxy': 2001, 'uwsgi-fcgi-2p': 2002, 'uwsgi-native-2p': 2003, 'gunicorn-sync-2w': 2004 },
      hello: 'Hello, world',
      asRoot: false,
    });
    expect(conf).toMatch(/upstream corral_proxy \{ server 127\.0\.0\.1:2001; keepalive 32;/);
    expect(conf).toMatch(/listen 127\.0\.0\.1:1001;\s+location \/ \{ include fastcgi_wsgi_params; fastcgi_keep_conn on; fastcgi_pass corral_proxy; \}/);
    expect(conf).toMatch(/upstream uwsgi_fcgi_2p \{ server 127\.0\.0\.1:2002; \}/);
    expect(conf).toContain('fastcgi_keep_conn off; fastcgi_pass uwsgi_fcgi_2p;');
    expect(conf).toContain('uwsgi_pass uwsgi_native_2p;');
    expect(conf).toMatch(/upstream gunicorn_sync_2w \{ server 127\.0\.0\.1:2004; keepalive 32;/);
    expect(conf).toContain('proxy_pass http://gunicorn_sync_2w;');
    expect(conf).toMatch(/listen 127\.0\.0\.1:1005;\s+location = \/hello\s+\{ return 200 'Hello, world'; \}/);
    expect(conf).not.toContain('user root');
  });

  it("holds nginx's heap unless told not to, keeping GLIBC_TUNABLES the caller set", () => {
    expect(nginxEnv(true, { PATH: '/bin' })).toEqual({ PATH: '/bin', GLIBC_TUNABLES: NGINX_MALLOC });
    expect(nginxEnv(true, { GLIBC_TUNABLES: 'glibc.malloc.tcache_count=0' }).GLIBC_TUNABLES).toBe(`glibc.malloc.tcache_count=0:${NGINX_MALLOC}`);
    expect(nginxEnv(false, { PATH: '/bin' })).toEqual({ PATH: '/bin' });
    expect(NGINX_MALLOC).toMatch(/mmap_threshold=\d+:glibc\.malloc\.trim_threshold=\d+$/);
  });
});
