/**
 * Issue 5, "must hold with real workers": `corral serve` watching `*.py` with 2 real Python
 * workers, under 4 FastCGI clients looping requests the whole time. Edits are served within 3 s
 * (median reported), every worker is replaced, a .txt change reloads nothing, a SyntaxError
 * leaves the old version serving, a burst of saves is one reload, a safe write (temp file renamed
 * over the original) reloads, and no request fails across any of it.
 */
import { readdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startCorral, stopAll, type CorralProcess, type LogLine } from '../helpers/corral.js';
import { cgiParams, FcgiClient } from '../helpers/fcgi-client.js';
import { workersReady } from '../helpers/e2e.js';
import { AppDir, Load, latencies, median, type Requester } from '../helpers/reload.js';

const STARTING = 'reload: starting a new generation';
const DONE = 'reload done';
const FAILED = 'reload failed: new generation did not boot; the old one keeps serving';
const CLIENTS = 4;
/** Issue 5: an edit is served within 3 s. */
const SERVED_WITHIN_MS = 3_000;
/** The slowest request allowed during reloads (a loose bound: the test may share 2 cores with others). */
const MAX_WAIT_MS = 1_000;

const apps: AppDir[] = [];
const loads: Load[] = [];

afterEach(async () => {
  await Promise.all(loads.splice(0).map((l) => l.stop()));
  await stopAll();
  for (const a of apps.splice(0)) a.remove();
});

/** One persistent FastCGI connection per client (reopened if it closes), one request at a time. */
function fcgiRequester(addr: { host: string; port: number }): Requester {
  const conns = new Map<number, FcgiClient>();
  return async (client) => {
    let c = conns.get(client);
    if (!c || c.isClosed) {
      c = await FcgiClient.connect(addr);
      conns.set(client, c);
    }
    try {
      const r = await c.request(1, cgiParams('GET', '/'));
      return { status: r.status, body: r.body.toString('utf8') };
    } catch (err) {
      c.close();
      conns.delete(client);
      throw err;
    }
  };
}

interface Running {
  app: AppDir;
  corral: CorralProcess;
  load: Load;
}

/**
 * A fresh app at version `v1`, `corral serve` on it with 2 workers and `*.py` watched (flag or
 * env), the watcher ready, and 4 clients getting `v1` answers.
 */
async function start(how: 'flag' | 'env' = 'flag'): Promise<Running> {
  const app = new AppDir('v1');
  apps.push(app);
  // The proxy path on purpose: these clients keep one raw FastCGI connection each and never retry,
  // which only the service's own front supports across a reload (it keeps the connection while the
  // workers change). On the direct path a draining worker closes a kept connection after a
  // response and the web server reconnects: test/e2e/direct.test.ts checks 20 reloads through nginx.
  const args = ['serve', app.dir, '--listen', '127.0.0.1:0', '--workers', '2', '--threads', '1', '--data-plane', 'proxy'];
  // Python writes __pycache__ as it would for a user (the test environment may turn that off).
  const env: NodeJS.ProcessEnv = { PYTHONDONTWRITEBYTECODE: undefined };
  const corral =
    how === 'flag' ? startCorral([...args, '--watch', '*.py'], { env }) : startCorral(args, { env: { ...env, WATCH_FILE_CHANGES_MASK: '*.py' } });
  const addr = await corral.fcgiAddress();
  await workersReady(corral, 2);
  await corral.waitForMsg('watching files');
  const load = new Load(CLIENTS, fcgiRequester(addr));
  load.known.add('v1');
  loads.push(load);
  load.start();
  await load.pidsOf('v1', 2);
  return { app, corral, load };
}

/** Log lines with this message after index `from`. */
function linesSince(c: CorralProcess, from: number, msg: string): LogLine[] {
  return c.logs.slice(from).filter((l) => l.msg === msg);
}

/** The `n`-th (1-based) log line with `msg` after index `from`. */
function nth(c: CorralProcess, from: number, msg: string, n: number, timeoutMs = 10_000): Promise<LogLine> {
  let seen = 0;
  return c.waitForLog((l) => l.msg === msg && c.logs.indexOf(l) >= from && ++seen >= n, timeoutMs);
}

/** The files in the app's __pycache__ (for failure messages). */
function pycache(dir: string): string[] {
  try {
    return readdirSync(join(dir, '__pycache__'));
  } catch {
    return [];
  }
}

/** Fails with the first failed answers, if any. */
function expectNoFailures(load: Load): void {
  const failed = load.failures();
  expect(failed.slice(0, 5), `${failed.length} of ${load.samples.length} requests failed`).toEqual([]);
}

describe('corral serve --watch *.py: rolling reload under load (2 workers, 4 clients)', () => {
  it('serves each of 5 edits within 3 s (median reported), replacing every worker each time', async () => {
    const { app, corral, load } = await start('flag');
    const times: number[] = [];
    let previousPids = await load.pidsOf('v1', 2);
    const allPids = new Set(previousPids);
    /** When each version's reload was done (from then on, every request sent must get it or newer). */
    const switchedAt: number[] = [];
    for (let i = 2; i <= 6; i++) {
      const version = `v${i}`;
      const mark = corral.logs.length;
      load.known.add(version);
      const t0 = performance.now();
      app.write(version);
      const first = await load.served(version, t0, 10_000);
      times.push(first.at - t0);
      await nth(corral, mark, DONE, 1);
      switchedAt[i] = performance.now();
      // Both workers of the new generation answer, and none of the previous one does.
      const pids = await load.pidsOf(version, 2);
      expect(pids.size).toBe(2);
      for (const p of pids) expect(previousPids.has(p), `pid ${p} served ${version} and the previous version`).toBe(false);
      // The old workers exit (drained), so nothing of the previous generation keeps running.
      for (const p of previousPids) await corral.waitForLog((l) => l.pid === p && typeof l.msg === 'string' && l.msg.startsWith('worker') && 'code' in l);
      for (const p of pids) expect(allPids.has(p)).toBe(false);
      for (const p of pids) allPids.add(p);
      previousPids = pids;
      expect(linesSince(corral, mark, STARTING)).toHaveLength(1);
    }
    // Once a reload is done, no request sent later is answered by an older version.
    const stale = load.samples.filter((smp) => {
      const v = Number(smp.version?.slice(1));
      return switchedAt.some((at, i) => i > v && smp.sentAt >= at);
    });
    expect(stale.slice(0, 3), `${stale.length} requests answered by an older version after a reload was done`).toEqual([]);
    const sorted = times.map((t) => Math.round(t));
    const lat = latencies(load.samples);
    console.log(
      `reload: edit -> first response with the new code: median ${Math.round(median(times))} ms (each: ${sorted.join(', ')} ms); ` +
        `${load.samples.length} requests, latency median ${lat.median} ms, p99 ${lat.p99} ms, max ${lat.max} ms`,
    );
    // Issue 5: served within 3 s, as a median of the 5 edits (one slow edit on a loaded 2-core CI
    // machine is noise, not a broken reload); each edit must be served at all.
    expect(median(times)).toBeLessThan(SERVED_WITHIN_MS);
    for (const t of times) expect(t).toBeLessThan(3 * SERVED_WITHIN_MS);
    // No request waits noticeably: none waits for a new worker to boot (that alone takes ~150 ms).
    expect(lat.max).toBeLessThan(MAX_WAIT_MS);
    expect(corral.liveWorkerPids().sort()).toEqual([...previousPids].sort());
    expectNoFailures(load);
  });

  it('a .txt change reloads nothing (WATCH_FILE_CHANGES_MASK=*.py from the environment)', async () => {
    const { app, corral, load } = await start('env');
    const mark = corral.logs.length;
    // The .txt first, then a .py: the one reload that follows must name only the .py. Events
    // arrive in order, so by the time the .py reload is done the .txt change has been seen.
    app.writeOther('notes.txt', 'not code\n');
    app.writeOther('README.txt', 'still not code\n');
    load.known.add('v2');
    const t0 = performance.now();
    app.write('v2');
    await load.served('v2', t0);
    await nth(corral, mark, DONE, 1);
    // A second round, so a late reload caused by the .txt files would show up before this one.
    app.writeOther('notes.txt', 'changed again\n');
    load.known.add('v3');
    const t1 = performance.now();
    app.write('v3');
    await load.served('v3', t1);
    await nth(corral, mark, DONE, 2);
    const starts = linesSince(corral, mark, STARTING);
    expect(starts.map((l) => l.reason)).toEqual(['files changed: wsgi.py', 'files changed: wsgi.py']);
    expectNoFailures(load);
  });

  it('a broken edit (SyntaxError) leaves the previous version serving; the fix is served', async () => {
    const { app, corral, load } = await start('flag');
    const pids = await load.pidsOf('v1', 2);
    const mark = corral.logs.length;
    app.writeBroken('v2');
    const failed = await nth(corral, mark, FAILED, 1);
    expect(String(failed.err)).toMatch(/SyntaxError/);
    expect(String(failed.traceback)).toMatch(/wsgi\.py/);
    expect(linesSince(corral, mark, DONE)).toEqual([]);
    // Requests keep being answered by the old generation: the same two workers, version v1.
    const after = await load.more(40);
    expect(after.filter((s) => s.version !== 'v1' || s.status !== 200)).toEqual([]);
    for (const s of after) expect(pids.has(s.pid!)).toBe(true);
    expect(corral.liveWorkerPids().sort()).toEqual([...pids].sort());
    // Fixing the file reloads again and the fix is served by new workers.
    load.known.add('v3');
    const t0 = performance.now();
    app.write('v3');
    await load.served('v3', t0);
    await nth(corral, mark, DONE, 1);
    const fresh = await load.pidsOf('v3', 2);
    for (const p of fresh) expect(pids.has(p)).toBe(false);
    expect(linesSince(corral, mark, STARTING)).toHaveLength(2);
    expectNoFailures(load);
  });

  it('10 saves within half a second cause one reload, which serves the last save', async () => {
    const { app, corral, load } = await start('flag');
    const mark = corral.logs.length;
    for (let i = 1; i <= 10; i++) load.known.add(`b${i}`);
    const t0 = performance.now();
    for (let i = 1; i <= 10; i++) {
      app.write(`b${i}`);
      // An editor saving repeatedly: ~40 ms apart, all 10 within half a second.
      if (i < 10) await new Promise((r) => setTimeout(r, 40));
    }
    const burstMs = performance.now() - t0;
    expect(burstMs).toBeLessThan(500);
    await load.served('b10', t0);
    await nth(corral, mark, DONE, 1);
    // A later, separate save: any extra reload from the burst would come before this one's.
    load.known.add('after');
    const t1 = performance.now();
    app.write('after');
    await load.served('after', t1);
    await nth(corral, mark, DONE, 2);
    const starts = linesSince(corral, mark, STARTING);
    expect(starts, JSON.stringify(starts)).toHaveLength(2);
    // Nothing but the last save and the later one was ever served.
    const versions = new Set(load.samples.filter((s) => s.sentAt >= t0).map((s) => s.version));
    expect([...versions].filter((v) => v !== 'v1' && v !== 'b10' && v !== 'after')).toEqual([]);
    expectNoFailures(load);
  });

  it('a quick save keeping the size and the mtime second is served, not the stale __pycache__ bytecode', async () => {
    const { app, corral, load } = await start('flag');
    await load.pidsOf('v1', 2);
    // Python trusts a .pyc whose recorded source mtime (whole seconds) and size still match: two
    // saves within one second with the same length look unchanged to it. Pin the mtime to make
    // "within one second" certain rather than likely.
    const pinned = new Date(Math.floor(Date.now() / 1000) * 1000);
    const mark = corral.logs.length;
    for (const [i, version] of ['v2', 'v3', 'v4'].entries()) {
      load.known.add(version);
      app.write(version);
      utimesSync(app.file, pinned, pinned);
      await nth(corral, mark, DONE, i + 1);
      // The new generation serves every request sent from now on.
      const switched = performance.now();
      const after = await load.next((s) => s.sentAt >= switched, 10_000, 'an answer after the reload');
      expect(after.version, `after saving ${version} (pyc cache: ${JSON.stringify(pycache(app.dir))})`).toBe(version);
    }
    expectNoFailures(load);
  });

  it("an editor's safe write (wsgi.py.tmp renamed over wsgi.py) reloads, naming wsgi.py only", async () => {
    const { app, corral, load } = await start('flag');
    const mark = corral.logs.length;
    load.known.add('v2');
    const t0 = performance.now();
    app.safeWrite('v2');
    await load.served('v2', t0);
    await nth(corral, mark, DONE, 1);
    // And again, so the watcher still follows the file after its inode was replaced.
    load.known.add('v3');
    const t1 = performance.now();
    app.safeWrite('v3');
    await load.served('v3', t1);
    await nth(corral, mark, DONE, 2);
    // Vim's save: wsgi.py renamed to wsgi.py~, a new wsgi.py written, the backup deleted.
    load.known.add('v4');
    const t2 = performance.now();
    app.vimWrite('v4');
    await load.served('v4', t2);
    await nth(corral, mark, DONE, 3);
    expect(linesSince(corral, mark, STARTING).map((l) => l.reason)).toEqual(['files changed: wsgi.py', 'files changed: wsgi.py', 'files changed: wsgi.py']);
    expectNoFailures(load);
  });

  it('an edit while the previous reload is still booting supersedes it; the latest edit is served', async () => {
    const { app, corral, load } = await start('flag');
    const mark = corral.logs.length;
    // v2 imports slowly (1.5 s), so its generation is still booting when v3 is saved.
    load.known.add('v2');
    load.known.add('v3');
    app.write('v2', 1.5);
    await nth(corral, mark, STARTING, 1);
    const t0 = performance.now();
    app.write('v3');
    const first = await load.served('v3', t0);
    expect(first.at - t0).toBeLessThan(SERVED_WITHIN_MS);
    await nth(corral, mark, DONE, 1);
    const starts = linesSince(corral, mark, STARTING);
    expect(starts).toHaveLength(2);
    // The superseded generation's workers were stopped before they ever served.
    const superseded = corral.logs.slice(mark).filter((l) => l.msg === 'worker killed: superseded by a newer reload');
    expect(superseded.map((l) => l.gen)).toEqual([starts[0]!.gen, starts[0]!.gen]);
    expect(load.samples.filter((s) => s.version === 'v2')).toEqual([]);
    expectNoFailures(load);
  });
});
