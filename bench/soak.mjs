#!/usr/bin/env node
/**
 * `npm run soak`: a long mixed load against a live `corral serve` with real Python workers
 * (test/fixtures/python/hello_app.py, Debian's /usr/bin/python3), on loopback, for SOAK_SECONDS
 * (default 300): SOAK_CLIENTS (6) clients each loop over small GETs, 1 MiB uploads (the app's
 * sha256 checked) and 1 MiB downloads (the bytes checked), while the service is reloaded every
 * SOAK_RELOAD_EVERY seconds (POST /reload on --control with its token) and a random worker is
 * SIGKILLed every SOAK_KILL_EVERY seconds. Prints requests, failures (and how many kills could
 * explain: kills x threads, plus one per kill on the proxy path), p50/p99 latency, and the service's RSS sampled over time, with a
 * verdict whether RSS after warm-up (the first SOAK_WARMUP seconds, default 20 % of the run)
 * stays flat within 10 %. A download cut short (its worker killed) is told apart from one whose
 * bytes differ (CORRUPT). Exits 1 if the service crashed, RSS grew more than 10 %, more requests
 * failed than the kills explain, or any response was corrupt.
 *
 * Environment: SOAK_SECONDS=300, SOAK_CLIENTS=6, SOAK_RELOAD_EVERY=30, SOAK_KILL_EVERY=20,
 * SOAK_WARMUP, SOAK_PYTHON=/usr/bin/python3, SOAK_CORRAL_ARGS (more options for corral serve).
 * `npm run soak` builds dist/ first (tsc); `node bench/soak.mjs` needs a build.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { FIXTURES, Rng, Service, atInterrupt, cleanup, envNum, fcgiRequest, mib, rss, say, sleep, splitHostPort } from './live.mjs';

const SECONDS = envNum('SOAK_SECONDS', 300);
const CLIENTS = Math.max(1, envNum('SOAK_CLIENTS', 6));
const RELOAD_EVERY = envNum('SOAK_RELOAD_EVERY', 30);
const KILL_EVERY = envNum('SOAK_KILL_EVERY', 20);
const WARMUP = envNum('SOAK_WARMUP', SECONDS * 0.2);
const PYTHON = process.env.SOAK_PYTHON ?? '/usr/bin/python3';
const EXTRA = (process.env.SOAK_CORRAL_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
const WORKERS = 3;
const THREADS = 2;
/** Requests a kill can fail on one worker: its threads', plus on the proxy path one given ahead (src/pool/pool.ts). */
const PER_KILL = THREADS + (EXTRA.join(' ').includes('proxy') ? 1 : 0);
const MiB = 1024 * 1024;
const log = (m) => say('soak', m);

const stats = { requests: 0, failures: 0, failWhy: new Map(), byKind: { get: 0, upload: 0, download: 0 }, latencies: [], reloads: 0, reloadFailures: 0, kills: 0, crashed: null, samples: [] };
let t0 = 0;

function pattern(n) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}
const DOWNLOAD = pattern(MiB);

function fail(why) {
  stats.failures++;
  stats.failWhy.set(why, (stats.failWhy.get(why) ?? 0) + 1);
}

async function one(addr, rng) {
  const kind = rng.pick(['get', 'get', 'get', 'upload', 'download']);
  const start = performance.now();
  try {
    if (kind === 'get') {
      const r = await fcgiRequest(addr, 'GET', '/');
      if (r.status !== 200 || r.body.toString() !== 'Hello, world') return fail(`GET / answered ${r.status}`);
    } else if (kind === 'upload') {
      const body = rng.bytes(MiB);
      const want = `${createHash('sha256').update(body).digest('hex')} ${MiB}`;
      const r = await fcgiRequest(addr, 'POST', '/sha256', body);
      if (r.status !== 200) return fail(`upload answered ${r.status}`);
      if (r.body.toString() !== want) return fail('upload: sha256 differs');
    } else {
      const r = await fcgiRequest(addr, 'GET', `/pattern?n=${MiB}`);
      if (r.status !== 200) return fail(`download answered ${r.status}`);
      if (!r.body.equals(DOWNLOAD)) {
        // A worker killed mid-response cuts it short (a kill explains that); any other
        // difference is corruption.
        const n = Math.min(r.body.length, DOWNLOAD.length);
        if (r.body.length < DOWNLOAD.length && r.body.equals(DOWNLOAD.subarray(0, n))) return fail('download: cut short');
        let at = 0;
        while (at < n && r.body[at] === DOWNLOAD[at]) at++;
        return fail(`download: CORRUPT (bytes differ from ${at < n ? 'offset' : 'length'} ${at < n ? at : r.body.length})`);
      }
    }
    stats.byKind[kind]++;
    stats.latencies.push(performance.now() - start);
  } catch (err) {
    fail(err.message);
  } finally {
    stats.requests++;
  }
}

function post(control, path, token) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: control.host, port: control.port, path, method: 'POST', headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (t) => (text += t));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

function quantile(sorted, q) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  return quantile(s, 0.5);
}

function verdict() {
  const after = stats.samples.filter((s) => s.t >= WARMUP);
  if (after.length < 4) return { flat: null, text: 'too few samples after warm-up for a verdict (run longer)' };
  const window = Math.max(2, Math.floor(after.length / 5));
  const base = median(after.slice(0, window).map((s) => s.rss));
  const end = median(after.slice(-window).map((s) => s.rss));
  const growth = (end - base) / base;
  const flat = Math.abs(growth) <= 0.1;
  return { flat, text: `${flat ? 'FLAT' : 'NOT FLAT'}: after warm-up ${mib(base)} -> ${mib(end)} (${(growth * 100).toFixed(1)} %, limit 10 %)` };
}

function report() {
  const sorted = [...stats.latencies].sort((a, b) => a - b);
  const why = [...stats.failWhy].map(([w, n]) => `${n} x ${w}`).join('; ');
  const explained = stats.kills * PER_KILL;
  const step = Math.max(1, Math.ceil(stats.samples.length / 12));
  const over = stats.samples.filter((_, i) => i % step === 0 || i === stats.samples.length - 1).map((s) => `${Math.round(s.t)}s ${mib(s.rss)}`);
  const v = verdict();
  process.stdout.write(
    `\ncorral soak, ${SECONDS} s, ${CLIENTS} clients, ${WORKERS} workers x ${THREADS} threads\n` +
      `  requests        ${stats.requests} (GET ${stats.byKind.get}, 1 MiB upload ${stats.byKind.upload}, 1 MiB download ${stats.byKind.download} answered right)\n` +
      `  failures        ${stats.failures}${why ? ` (${why})` : ''}; kills could explain up to ${explained}\n` +
      `  latency         p50 ${quantile(sorted, 0.5).toFixed(1)} ms, p99 ${quantile(sorted, 0.99).toFixed(1)} ms\n` +
      `  reloads         ${stats.reloads} (${stats.reloadFailures} failed); worker kills ${stats.kills}\n` +
      `  service crash   ${stats.crashed ? JSON.stringify(stats.crashed) : 'none'}\n` +
      `  service RSS     ${over.join(', ')}\n` +
      `  RSS verdict     ${v.text}\n`,
  );
  return v;
}

async function main() {
  log(`starting corral serve (hello_app, ${WORKERS} workers x ${THREADS} threads, ${PYTHON})`);
  const svc = new Service([
    'serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0',
    '--workers', String(WORKERS), '--threads', String(THREADS), '--python', PYTHON, '--access-log', 'off', ...EXTRA,
  ]);
  const live = new Set();
  svc.onLog((l) => {
    if (l.msg === 'worker ready') live.add(Number(l.pid));
    else if (typeof l.msg === 'string' && l.msg.startsWith('worker') && 'code' in l) live.delete(Number(l.pid));
  });
  const [front, control] = await Promise.all([
    svc.waitFor((l) => l.msg === 'FastCGI front listening', 'the FastCGI listener'),
    svc.waitFor((l) => l.msg === 'control listener ready', 'the control listener'),
  ]);
  const addr = splitHostPort(String(front.listen));
  const ctl = splitHostPort(String(control.control));
  const token = readFileSync(String(control.tokenFile), 'utf8').trim();
  let ready = 0;
  await svc.waitFor((l) => l.msg === 'worker ready' && ++ready >= WORKERS, `${WORKERS} workers READY`);
  let stopping = false;
  void svc.exited.then((st) => {
    if (!stopping) stats.crashed = st;
  });
  const pid = svc.child.pid;
  t0 = performance.now();
  const sampler = setInterval(() => {
    const r = rss(pid);
    if (r !== null) stats.samples.push({ t: (performance.now() - t0) / 1000, rss: r });
  }, 1000);
  atInterrupt(report);
  log(`load on ${addr.host}:${addr.port} for ${SECONDS} s; reload every ${RELOAD_EVERY} s, worker kill every ${KILL_EVERY} s`);
  const until = t0 + SECONDS * 1000;
  const rng = new Rng(Date.now() % 0x7fffffff);
  const clients = Array.from({ length: CLIENTS }, async (_, i) => {
    const r = new Rng(i * 7919 + 1);
    while (performance.now() < until && !stats.crashed) await one(addr, r);
  });
  const chaos = (async () => {
    let nextReload = RELOAD_EVERY > 0 ? t0 + RELOAD_EVERY * 1000 : Infinity;
    let nextKill = KILL_EVERY > 0 ? t0 + KILL_EVERY * 1000 : Infinity;
    while (performance.now() < until && !stats.crashed) {
      const now = performance.now();
      if (now >= nextReload) {
        nextReload += RELOAD_EVERY * 1000;
        try {
          const r = await post(ctl, '/reload', token);
          stats.reloads++;
          if (r.status !== 200) stats.reloadFailures++;
        } catch {
          stats.reloadFailures++;
        }
      }
      if (now >= nextKill) {
        nextKill += KILL_EVERY * 1000;
        const pids = [...live];
        if (pids.length > 0) {
          const victim = rng.pick(pids);
          try {
            process.kill(victim, 'SIGKILL');
            stats.kills++;
          } catch {
            /* exited meanwhile */
          }
        }
      }
      await sleep(200);
    }
  })();
  const progress = setInterval(() => log(`${stats.requests} requests, ${stats.failures} failures, RSS ${mib(rss(pid) ?? 0)}`), 30_000);
  await Promise.all([...clients, chaos]);
  clearInterval(progress);
  clearInterval(sampler);
  stopping = true;
  const v = report();
  await cleanup();
  // A kill explains a failed request, never a corrupt one.
  const corrupt = [...stats.failWhy.keys()].some((w) => w.includes('CORRUPT'));
  const bad = stats.crashed || v.flat === false || stats.failures > stats.kills * PER_KILL || corrupt;
  process.exitCode = bad ? 1 : 0;
}

main().catch(async (err) => {
  process.stderr.write(`soak: ${err.message}\n`);
  await cleanup();
  process.exitCode = 2;
});
