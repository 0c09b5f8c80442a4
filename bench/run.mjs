#!/usr/bin/env node
/**
 * `npm run bench`: the data-plane figures of wsgi-corral next to its peers, on this machine.
 * One interleaved run, behind one nginx (1 worker), of every candidate in lib/candidates.mjs:
 * corral direct and proxy, the standalone Python worker, uWSGI FastCGI and native, gunicorn sync
 * (when installed; a missing one is skipped with the reason) and nginx static as the limit, on five
 * workloads (hello at 16 and 64 connections, 64 KiB and 1 MiB answers, a 1 MiB upload echo).
 * Per candidate and workload: median req/s, p50/p99, errors, CPU µs per request of nginx, the
 * service and the workers, and ratios to uwsgi-fcgi-2p and to the standalone worker. A candidate
 * that cannot start, answers wrongly or dies gets an error row; the others are still measured.
 * Prints a Markdown table (bench/README.md says what each column means) and writes JSON and
 * Markdown to bench/out/.
 *
 *   npm run bench                      # default: 3 rounds x 3 s (~7 min)
 *   npm run bench -- --quick           # 1 round x 2 s (< 2 min)
 *   npm run bench -- --candidates corral-proxy,standalone,uwsgi-fcgi-2p --workloads hello-c16
 *
 * Options (and environment): --reps N (BENCH_REPS), --duration S (BENCH_DURATION), --warmup S
 * (BENCH_WARMUP), --candidates a,b (BENCH_CANDIDATES), --workloads a,b (BENCH_WORKLOADS);
 * BENCH_OUT (instead of bench/out/), BENCH_PYTHON=/usr/bin/python3, BENCH_CORRAL_ARGS (more options for corral serve, split on
 * spaces), BENCH_NO_INSTALL=1 (never apt-get nginx/wrk). Everything it starts runs in its own
 * process group and is stopped on exit, error or Ctrl-C.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { candidates as allCandidates } from './lib/candidates.mjs';
import { checkAnswers, waitForAnswer } from './lib/check.mjs';
import { measureOnce, schedule } from './lib/measure.mjs';
import { NGINX_MALLOC, nginxEnv, startNginx } from './lib/nginx.mjs';
import { BenchError, alive, cleanup, have, log, safeRead, stopChild } from './lib/proc.mjs';
import { fmt, markdown, summarize } from './lib/report.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = join(ROOT, 'bench');
const OUT = process.env.BENCH_OUT || join(BENCH, 'out');
const NGINX_BIN = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
const MiB = 1024 * 1024;
const HELLO = 'Hello, world';
const BIG64K = Buffer.from('0123456789abcdef'.repeat(4096));
const BIG = Buffer.concat(Array.from({ length: 16 }, () => BIG64K));

const WORKLOADS = [
  { name: 'hello-c16', path: '/hello', post: 0, connections: 16, what: `GET, ${HELLO.length}-byte answer` },
  { name: 'hello-c64', path: '/hello', post: 0, connections: 64, what: `GET, ${HELLO.length}-byte answer` },
  { name: 'get64k-c16', path: '/big64k', post: 0, connections: 16, what: 'GET, 64 KiB answer' },
  { name: 'get1m-c16', path: '/big', post: 0, connections: 16, what: 'GET, 1 MiB answer' },
  { name: 'echo1m-c16', path: '/echo', post: MiB, connections: 16, what: 'POST of 1 MiB, answer its length' },
];
const EXPECTED = { '/hello': Buffer.from(HELLO), '/big': BIG, '/big64k': BIG64K };

let interrupted = false;
let runDir = null;
const stopAll = () => cleanup(() => runDir && rmSync(runDir, { recursive: true, force: true }));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    interrupted = true;
    log(`${sig}: stopping everything this run started`);
    void stopAll().then(() => process.exit(130));
  });
}

function options() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      candidates: { type: 'string' },
      workloads: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: npm run bench [-- --quick] [--reps N] [--duration S] [--warmup S] [--candidates a,b] [--workloads a,b]\n(see the top of bench/run.mjs and bench/README.md)\n');
    process.exit(0);
  }
  const num = (flag, env, dflt) => {
    const v = values[flag] ?? process.env[env];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new BenchError(`--${flag} / ${env}: ${JSON.stringify(v)} is not a non-negative number`);
    return n;
  };
  const list = (flag, env) => (values[flag] ?? process.env[env] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const quick = values.quick;
  const o = {
    quick,
    reps: Math.max(1, Math.round(num('reps', 'BENCH_REPS', quick ? 1 : 3))),
    // wrk takes whole seconds
    duration: Math.max(1, Math.round(num('duration', 'BENCH_DURATION', quick ? 2 : 3))),
    warmup: Math.round(num('warmup', 'BENCH_WARMUP', 1)),
    candidates: list('candidates', 'BENCH_CANDIDATES'),
    workloads: list('workloads', 'BENCH_WORKLOADS'),
    python: process.env.BENCH_PYTHON || '/usr/bin/python3',
    corralArgs: (process.env.BENCH_CORRAL_ARGS ?? '').split(/\s+/).filter(Boolean),
    nginxHeapHeld: process.env.BENCH_NGINX_MALLOC !== 'default',
  };
  const unknownW = o.workloads.filter((w) => !WORKLOADS.some((x) => x.name === w));
  if (unknownW.length) throw new BenchError(`unknown workload(s) ${unknownW.join(', ')}; known: ${WORKLOADS.map((w) => w.name).join(', ')}`);
  return o;
}

/** How this run was asked for, for the table's first line. */
function commandLine() {
  const env = Object.entries(process.env)
    .filter(([k]) => k.startsWith('BENCH_'))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${/^[\w./:,-]*$/.test(v) ? v : `'${v}'`} `)
    .join('');
  const args = process.argv.slice(2);
  return `${env}npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
}

function ensurePrerequisites(python) {
  const missing = [];
  if (!existsSync('/usr/sbin/nginx') && !have('nginx')) missing.push('nginx-light');
  if (!have('wrk')) missing.push('wrk');
  if (missing.length > 0) {
    const canInstall = process.getuid?.() === 0 && have('apt-get') && process.env.BENCH_NO_INSTALL !== '1';
    if (!canInstall) throw new BenchError(`missing ${missing.join(', ')}; install them (Debian: apt-get install ${missing.join(' ')})`);
    log(`installing from Debian: ${missing.join(' ')} (set BENCH_NO_INSTALL=1 to refuse)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=60', 'update', '-q'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=60', 'install', '-y', '-q', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  }
  if (spawnSync(python, ['-c', 'import sys; assert sys.version_info >= (3, 9)']).status !== 0) throw new BenchError(`${python} is not a Python 3.9+ (set BENCH_PYTHON)`);
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) {
    log('dist/ is missing: building with tsc');
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', ROOT], { stdio: 'inherit' });
  }
}

function versions(python) {
  const first = (cmd, args, stream = 'stdout') => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return r.status === 0 ? String(r[stream]).trim().split('\n')[0] : null;
  };
  return {
    node: process.version,
    python: first(python, ['--version']),
    nginx: first(NGINX_BIN, ['-v'], 'stderr')?.replace('nginx version: nginx/', '') ?? null,
    uwsgi: existsSync('/usr/bin/uwsgi-core') ? first('/usr/bin/uwsgi-core', ['--version']) : null,
    gunicorn: first('/usr/bin/python3', ['-c', 'import gunicorn; print(gunicorn.__version__)']),
  };
}

async function main() {
  const t0 = Date.now();
  const opt = options();
  ensurePrerequisites(opt.python);
  mkdirSync(OUT, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  runDir = join(OUT, `run-${stamp}`);
  const workloads = opt.workloads.length ? WORKLOADS.filter((w) => opt.workloads.includes(w.name)) : WORKLOADS;

  const ctx = {
    root: ROOT,
    apps: join(BENCH, 'apps'),
    cli: join(ROOT, 'dist/cli/main.js'),
    worker: join(ROOT, 'src/python/corral_worker.py'),
    python: opt.python,
    peerPython: '/usr/bin/python3', // Debian's gunicorn is importable by Debian's python only
    corralArgs: opt.corralArgs,
    stop: (entry) => stopChild(entry, 5_000),
  };
  let list = allCandidates(ctx);
  if (opt.candidates.length) {
    const unknown = opt.candidates.filter((n) => !list.some((c) => c.name === n));
    if (unknown.length) throw new BenchError(`unknown candidate(s) ${unknown.join(', ')}; known: ${list.map((c) => c.name).join(', ')}`);
    list = list.filter((c) => opt.candidates.includes(c.name));
  }
  const skipped = [];
  const failures = [];
  const runnable = [];
  for (const c of list) {
    const why = c.unavailable();
    if (why) {
      skipped.push({ candidate: c.name, reason: why });
      log(`skipping ${c.name}: ${why}`);
    } else runnable.push(c);
  }

  log(`starting ${runnable.map((c) => c.name).join(', ')}`);
  const started = new Map();
  const results = await Promise.allSettled(runnable.map((c) => c.start()));
  runnable.forEach((c, i) => {
    const r = results[i];
    if (r.status === 'fulfilled') started.set(c.name, r.value);
    else {
      failures.push({ candidate: c.name, reason: `failed to start: ${r.reason?.message ?? r.reason}` });
      log(`${c.name} did not start: ${String(r.reason?.message ?? r.reason).split('\n').slice(0, 3).join(' / ')}`);
    }
  });
  let active = runnable.filter((c) => started.has(c.name));
  if (active.length === 0) throw new BenchError('no candidate started');

  const nginx = await startNginx({
    dir: join(runDir, 'nginx'),
    bin: NGINX_BIN,
    paramsFile: join(BENCH, 'fastcgi_wsgi_params'),
    candidates: active,
    backends: Object.fromEntries(active.map((c) => [c.name, started.get(c.name).port])),
    hello: HELLO,
    files: { big: BIG, big64k: BIG64K },
    env: nginxEnv(opt.nginxHeapHeld),
  });

  const drop = async (c, reason, workload) => {
    failures.push({ candidate: c.name, ...(workload ? { workload } : {}), reason });
    log(`${c.name}: ${reason}`);
    active = active.filter((x) => x !== c);
    const s = started.get(c.name);
    if (s.entry) await ctx.stop(s.entry);
  };

  log('checking every candidate answers correctly through nginx');
  for (const c of [...active]) {
    try {
      await waitForAnswer(nginx.ports[c.name], '/hello', 20_000);
      const problems = await checkAnswers(nginx.ports[c.name], workloads, EXPECTED);
      if (problems.length) await drop(c, `answers wrongly: ${problems.slice(0, 3).join('; ')}`);
    } catch (err) {
      await drop(c, `no answer through nginx: ${err.message}`);
    }
  }
  if (active.length === 0) throw new BenchError(`no candidate answers correctly:\n${failures.map((f) => `  ${f.candidate}: ${f.reason}`).join('\n')}`);

  const run = (c, w, seconds) => measureOnce({ candidate: c, started: started.get(c.name), workload: w, port: nginx.ports[c.name], nginxWorkers: nginx.workers, seconds, script: join(BENCH, 'wrk-report.lua') });
  const stillAlive = (c) => {
    const e = started.get(c.name).entry;
    return e === null || alive(e);
  };

  if (opt.warmup > 0) {
    // --quick warms each candidate once (hello); a full run warms every candidate x workload.
    const warm = opt.quick ? workloads.slice(0, 1) : workloads;
    log(`warm-up: ${opt.warmup} s per candidate x ${warm.length === 1 ? warm[0].name : 'workload'} (not recorded)`);
    for (const w of warm) for (const c of active) await run(c, w, opt.warmup);
  }

  const plan = schedule(active.map((c) => c.name), workloads.map((w) => w.name), opt.reps);
  log(`measuring: ${plan.length} runs of ${opt.duration} s (${opt.reps} round(s) x ${workloads.length} workload(s) x ${active.length} candidate(s))`);
  const runs = [];
  for (const step of plan) {
    const c = active.find((x) => x.name === step.candidate);
    if (!c) continue; // dropped after dying
    const w = workloads.find((x) => x.name === step.workload);
    const r = { rep: step.rep, ...(await run(c, w, opt.duration)) };
    runs.push(r);
    log(`  ${String(r.rep).padStart(2)} ${w.name.padEnd(10)} ${c.name.padEnd(16)} ${fmt(r.rps).padStart(7)} req/s  p50 ${fmt(r.p50_ms, 2)} ms  p99 ${fmt(r.p99_ms, 2)} ms  errors ${r.errors}  other load ${fmt(r.other_cores, 2)}`);
    if (!stillAlive(c)) await drop(c, `died during ${w.name} (round ${r.rep}): ${started.get(c.name).entry.output.slice(-500)}`, w.name);
  }
  if (!alive(nginx.entry)) throw new BenchError(`nginx died during the run:\n${nginx.entry.output.slice(-2000)}`);

  const nginxErrors = safeRead(nginx.errorLog).split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
  const summary = summarize(runs, list.map((c) => c.name), workloads.map((w) => w.name), failures);
  const otherLoad = summary.rows.map((r) => r.other_cores).filter(Number.isFinite).sort((a, b) => a - b);
  const meta = {
    command: commandLine(),
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    ...versions(opt.python),
    reps: opt.reps,
    duration_s: opt.duration,
    warmup_s: opt.warmup,
    quick: opt.quick,
    nginx_malloc: opt.nginxHeapHeld ? NGINX_MALLOC : 'default',
    note: (opt.nginxHeapHeld ? `nginx runs with GLIBC_TUNABLES=${NGINX_MALLOC} (its heap held, see bench/README.md). ` : 'nginx runs with glibc\'s default heap settings (BENCH_NGINX_MALLOC=default). ') + (otherLoad.length ? `Other load on the machine during the runs: median ${fmt(otherLoad[otherLoad.length >> 1], 2)} cores, at most ${fmt(otherLoad[otherLoad.length - 1], 2)}; nginx error-log lines at [error] or worse: ${nginxErrors.length}.` : ''),
    candidates: list.map((c) => ({ name: c.name, what: c.what })),
    workloads: workloads.map(({ name, path, post, connections, what }) => ({ name, path, post, connections, what })),
    skipped,
    nginxErrors: nginxErrors.length,
  };
  const md = markdown(summary, meta);
  meta.elapsed_s = (Date.now() - t0) / 1000;
  writeFileSync(join(OUT, `bench-${stamp}.json`), JSON.stringify({ meta, summary, runs, nginxErrors: nginxErrors.slice(0, 50) }, null, 2));
  writeFileSync(join(OUT, `bench-${stamp}.md`), `${md}\n`);
  writeFileSync(join(OUT, 'latest.md'), `${md}\n`);
  process.stdout.write(`\n${md}\n\n`);
  log(`wrote ${join(OUT, `bench-${stamp}`)}.{json,md} in ${fmt(meta.elapsed_s)} s`);
}

main()
  .catch((err) => {
    if (interrupted) return; // the signal handler reports and exits
    process.stderr.write(`bench: ${err instanceof BenchError ? err.message : (err.stack ?? err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
