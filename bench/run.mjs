#!/usr/bin/env node
/**
 * `npm run bench`: a quick (< 2 min) comparison, on this machine, of
 *   corral      nginx -> corral (node dist/cli/main.js serve, 2 workers x 1 thread) -> Python
 *   standalone  nginx -> the same Python worker run alone as a FastCGI server (--listen, 2 threads)
 *   static      nginx answering itself (return / static file): the ceiling
 * for three workloads (hello GET, 1 MiB GET, 1 MiB POST), driven by wrk with 16 connections.
 * One nginx (1 worker, upstream keepalive, settings of ../shared/bench/conf/nginx.conf) with one
 * server block per stack. Repetitions are interleaved (rep -> workload -> stack) and reported as
 * medians, with the ratios corral/standalone and corral/static, and corral's own CPU per request
 * (node process, from /proc/PID/stat) and peak RSS. Results go to bench/out/ (JSON + markdown).
 *
 * Settings (environment): BENCH_DURATION=3 (s per measured run), BENCH_REPS=3, BENCH_WARMUP=1 (s),
 * BENCH_CONNECTIONS=16, BENCH_PYTHON=/usr/bin/python3, BENCH_NO_INSTALL=1 (never apt-get),
 * BENCH_CORRAL_ARGS="--access-log false" (more options for corral serve, split on spaces).
 * Everything it starts runs in its own process group and is stopped on exit, error or Ctrl-C.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A failure with a message for the user (no stack trace). */
class BenchError extends Error {}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = join(ROOT, 'bench');
const OUT = join(BENCH, 'out');
const CLI = join(ROOT, 'dist/cli/main.js');
const WORKER = join(ROOT, 'src/python/corral_worker.py');
const APPS = join(BENCH, 'apps');
const WRK_SCRIPT = join(BENCH, 'wrk-report.lua');

const DURATION = num('BENCH_DURATION', 3);
const REPS = num('BENCH_REPS', 3);
const WARMUP = num('BENCH_WARMUP', 1);
const CONNS = num('BENCH_CONNECTIONS', 16);
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';
const CORRAL_ARGS = (process.env.BENCH_CORRAL_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
const NGINX_BIN = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;
const MiB = 1024 * 1024;
const HELLO = 'Hello, world';
const BIG64K = Buffer.from('0123456789abcdef'.repeat(4096));
const BIG = Buffer.concat(Array.from({ length: 16 }, () => BIG64K));

const STACKS = ['corral', 'standalone', 'static'];
const WORKLOADS = [
  { name: 'hello', path: '/hello', post: 0, what: `GET, ${HELLO.length}-byte answer` },
  { name: 'get-1m', path: '/big', post: 0, what: 'GET, 1 MiB answer' },
  { name: 'post-1m', path: '/echo', post: MiB, what: 'POST of 1 MiB, short answer' },
];

function num(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) die(`${name}=${JSON.stringify(v)}: expected a non-negative number`);
  return n;
}

function log(msg) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function die(msg) {
  throw new BenchError(msg);
}

// ---------------------------------------------------------------- processes we started

/** Every child we started: {name, child, stopSignal}. Each leads its own process group. */
const children = [];
let cleaning = null;
let interrupted = false;
/** This run's scratch dir (nginx prefix), removed on the way out. */
let runDir = null;

function startChild(name, cmd, args, opts = {}) {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const entry = { name, child, stopSignal: opts.stopSignal ?? 'SIGTERM', output: '', exited: null };
  entry.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.on('error', (err) => (entry.output += `spawn error: ${err.message}\n`));
  const keep = (b) => {
    entry.output += b.toString();
    if (entry.output.length > 200_000) entry.output = entry.output.slice(-100_000);
    opts.onData?.(b.toString());
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  /** From now on read stdout and drop it, as a log collector would, without decoding or keeping it here (that CPU would count against the stack measured). */
  entry.discardStdout = () => {
    child.stdout.off('data', keep);
    child.stdout.resume();
  };
  children.push(entry);
  return entry;
}

function alive(entry) {
  return entry.child.exitCode === null && entry.child.signalCode === null;
}

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    /* gone */
  }
}

/** Asks each child to stop (its own signal), SIGKILLs its group after 10 s. Idempotent. */
function cleanup() {
  cleaning ??= Promise.all(
    children.map(async (e) => {
      const pid = e.child.pid;
      if (pid === undefined) return;
      if (alive(e)) {
        killGroup(pid, e.stopSignal);
        const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), 10_000);
        await e.exited;
        clearTimeout(timer);
      }
      killGroup(pid, 'SIGKILL'); // anything left in its group (nginx worker, Python workers)
    }),
  ).then(() => {
    if (runDir) rmSync(runDir, { recursive: true, force: true });
  });
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    interrupted = true;
    log(`${sig}: stopping everything this run started`);
    void cleanup().then(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- prerequisites

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function ensurePrerequisites() {
  const missing = [];
  if (!existsSync('/usr/sbin/nginx') && !have('nginx')) missing.push('nginx-light');
  if (!have('wrk')) missing.push('wrk');
  if (missing.length > 0) {
    const canInstall = process.getuid?.() === 0 && have('apt-get') && process.env.BENCH_NO_INSTALL !== '1';
    if (!canInstall) die(`missing ${missing.join(', ')}; install them (Debian: apt-get install ${missing.join(' ')})`);
    log(`installing from Debian: ${missing.join(' ')} (set BENCH_NO_INSTALL=1 to refuse)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=60', 'update', '-q'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=60', 'install', '-y', '-q', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  }
  if (spawnSync(PYTHON, ['-c', 'import sys; assert sys.version_info >= (3, 9)']).status !== 0) die(`${PYTHON} is not a Python 3.9+ (set BENCH_PYTHON)`);
  if (!existsSync(WORKER)) die(`${WORKER} is missing`);
  if (!existsSync(CLI)) {
    log('dist/ is missing: building with tsc');
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', ROOT], { stdio: 'inherit' });
  }
}

// ---------------------------------------------------------------- ports and readiness

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, entry, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive(entry)) throw new Error(`${entry.name} exited before listening on ${port}:\n${entry.output.slice(-3000)}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${entry.name}: nothing accepted on 127.0.0.1:${port} within ${timeoutMs} ms:\n${entry.output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts corral; resolves with its FastCGI port once it listens and both workers are READY. */
function startCorral() {
  return new Promise((resolve, reject) => {
    let buf = '';
    let port = 0;
    let ready = 0;
    const workerPids = [];
    const timer = setTimeout(() => reject(new Error(`corral not ready in 20 s:\n${entry.output.slice(-3000)}`)), 20_000);
    const entry = startChild(
      'corral',
      process.execPath,
      [CLI, 'serve', APPS, '--wsgi-app', 'wsgi_apps:application', '--listen', '127.0.0.1:0', '--workers', '2', '--threads', '1', '--python', PYTHON, '--log-level', 'info', ...CORRAL_ARGS],
      {
        onData: (text) => {
          buf += text;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            let o;
            try {
              o = JSON.parse(line);
            } catch {
              continue;
            }
            if (o.msg === 'FastCGI front listening') port = Number(String(o.listen).split(':').pop());
            if (o.msg === 'worker ready') {
              ready++;
              workerPids.push(Number(o.pid));
            }
            if (port && ready >= 2) {
              clearTimeout(timer);
              entry.discardStdout();
              resolve({ entry, port, workerPids });
            }
          }
        },
      },
    );
    void entry.exited.then((x) => {
      clearTimeout(timer);
      reject(new Error(`corral exited (${JSON.stringify(x)}):\n${entry.output.slice(-3000)}`));
    });
  });
}

async function startStandalone() {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const entry = startChild('standalone', PYTHON, [WORKER, '--listen', `127.0.0.1:${port}`, '--app', 'wsgi_apps:application', '--root', APPS, '--threads', '2'], { cwd: APPS });
    try {
      await waitForPort(port, entry, 15_000);
      return { entry, port };
    } catch (err) {
      if (attempt < 4 && /in use/i.test(entry.output)) continue;
      throw err;
    }
  }
}

function nginxConf(ports, upstreams) {
  return `# generated by bench/run.mjs; settings after ../shared/bench/conf/nginx.conf
${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid nginx.pid;
error_log logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path tmp/client_body;
    fastcgi_temp_path     tmp/fastcgi;
    proxy_temp_path       tmp/proxy;
    uwsgi_temp_path       tmp/uwsgi;
    scgi_temp_path        tmp/scgi;
    client_max_body_size    2m;
    client_body_buffer_size 2m;
    fastcgi_buffer_size 16k;
    fastcgi_buffers 8 16k;

    upstream corral     { server 127.0.0.1:${upstreams.corral}; keepalive 32; keepalive_requests 1000000; }
    upstream standalone { server 127.0.0.1:${upstreams.standalone}; keepalive 32; keepalive_requests 1000000; }

    server {   # corral
        listen 127.0.0.1:${ports.corral};
        location / { include fastcgi_wsgi_params; fastcgi_keep_conn on; fastcgi_pass corral; }
    }
    server {   # the Python worker alone
        listen 127.0.0.1:${ports.standalone};
        location / { include fastcgi_wsgi_params; fastcgi_keep_conn on; fastcgi_pass standalone; }
    }
    server {   # nginx alone
        listen 127.0.0.1:${ports.static};
        location = /hello  { return 200 '${HELLO}'; }
        location = /big    { root static; }
        location = /big64k { root static; }
        location = /echo   { return 200 $content_length; }
    }
}
`;
}

async function startNginx(dir, upstreams) {
  for (let attempt = 0; ; attempt++) {
    rmSync(dir, { recursive: true, force: true });
    for (const d of ['logs', 'tmp', 'static']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'static/big'), BIG);
    writeFileSync(join(dir, 'static/big64k'), BIG64K);
    copyFileSync(join(BENCH, 'fastcgi_wsgi_params'), join(dir, 'fastcgi_wsgi_params'));
    const ports = { corral: await freePort(), standalone: await freePort(), static: await freePort() };
    writeFileSync(join(dir, 'nginx.conf'), nginxConf(ports, upstreams));
    const entry = startChild('nginx', NGINX_BIN, ['-p', `${dir}/`, '-c', 'nginx.conf', '-e', 'logs/error.log', '-g', 'daemon off;'], { stopSignal: 'SIGQUIT' });
    try {
      for (const p of Object.values(ports)) await waitForPort(p, entry, 10_000);
      return { entry, ports, errorLog: join(dir, 'logs/error.log') };
    } catch (err) {
      const text = `${err.message}\n${safeRead(join(dir, 'logs/error.log'))}`;
      if (attempt < 4 && /Address already in use/.test(text)) {
        killGroup(entry.child.pid, 'SIGKILL');
        await entry.exited;
        continue;
      }
      throw new Error(text);
    }
  }
}

function safeRead(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------- checks

function request(port, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: body ? 'POST' : 'GET', agent: false, headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${path} on ${port}: no answer in 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const sha = (b) => createHash('sha256').update(b).digest('hex');

/** Each stack must answer each workload correctly (twice, so a kept connection is reused) before it is measured. */
async function checkStack(stack, port) {
  const problems = [];
  for (let i = 0; i < 2; i++) {
    const hello = await request(port, '/hello');
    if (hello.status !== 200 || hello.body.toString() !== HELLO) problems.push(`/hello: ${hello.status} ${JSON.stringify(hello.body.toString().slice(0, 80))}`);
    const big = await request(port, '/big');
    if (big.status !== 200 || sha(big.body) !== sha(BIG)) problems.push(`/big: ${big.status}, ${big.body.length} bytes, expected the 1 MiB body`);
    const big64 = await request(port, '/big64k');
    if (big64.status !== 200 || sha(big64.body) !== sha(BIG64K)) problems.push(`/big64k: ${big64.status}, ${big64.body.length} bytes`);
    const echo = await request(port, '/echo', Buffer.alloc(MiB, 'a'));
    if (echo.status !== 200 || echo.body.toString() !== String(MiB)) problems.push(`/echo: ${echo.status} ${JSON.stringify(echo.body.toString().slice(0, 80))}`);
  }
  if (problems.length > 0) throw new Error(`stack ${stack} answers wrongly:\n  ${problems.join('\n  ')}`);
}

// ---------------------------------------------------------------- measuring

function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  } catch {
    return NaN;
  }
}

/** Pids whose parent is `pid` (from /proc/N/stat). */
function childrenOf(pid) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = safeRead(`/proc/${d}/stat`);
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) out.push(Number(d));
  }
  return out;
}

function memKb(pid) {
  const s = safeRead(`/proc/${pid}/status`);
  const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

function runWrk(port, workload, seconds) {
  return new Promise((resolve, reject) => {
    const args = ['-t1', `-c${CONNS}`, `-d${seconds}s`, '--latency', '-s', WRK_SCRIPT, `http://127.0.0.1:${port}${workload.path}`];
    if (workload.post) args.push('--', 'post', String(workload.post));
    const wrk = startChild('wrk', 'wrk', args, { stopSignal: 'SIGKILL' });
    const timer = setTimeout(() => killGroup(wrk.child.pid, 'SIGKILL'), (seconds + 15) * 1000);
    void wrk.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      children.splice(children.indexOf(wrk), 1);
      const m = /^WRKJSON (.*)$/m.exec(wrk.output);
      if (code !== 0 || !m) return reject(new Error(`wrk ${args.join(' ')} failed (code ${code}, signal ${signal}):\n${wrk.output}`));
      resolve(JSON.parse(m[1]));
    });
  });
}

function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function measure(stacks, pids) {
  const runs = [];
  if (WARMUP > 0) {
    log(`warm-up: ${WARMUP} s per stack x workload`);
    for (const w of WORKLOADS) for (const s of STACKS) await runWrk(stacks[s], w, WARMUP);
  }
  const corralPeak = { rssKb: 0 };
  for (let rep = 1; rep <= REPS; rep++) {
    log(`round ${rep}/${REPS}`);
    for (const w of WORKLOADS) {
      for (const s of STACKS) {
        const tracked = { node: s === 'corral' ? [pids.corral] : [], python: s === 'corral' ? pids.corralWorkers : s === 'standalone' ? [pids.standalone] : [], nginx: [pids.nginxWorker] };
        const before = Object.fromEntries(Object.entries(tracked).map(([k, ps]) => [k, ps.reduce((n, p) => n + cpuTicks(p), 0)]));
        const sampler = s === 'corral' ? setInterval(() => (corralPeak.rssKb = Math.max(corralPeak.rssKb, memKb(pids.corral).rss || 0)), 100) : null;
        const r = await runWrk(stacks[s], w, DURATION);
        if (sampler) clearInterval(sampler);
        const after = Object.fromEntries(Object.entries(tracked).map(([k, ps]) => [k, ps.reduce((n, p) => n + cpuTicks(p), 0)]));
        const usPerReq = (k) => (tracked[k].length === 0 || r.requests === 0 ? null : ((after[k] - before[k]) * 1e6) / CLK_TCK / r.requests);
        const errors = r.err_connect + r.err_read + r.err_write + r.err_status + r.err_timeout;
        const row = {
          rep,
          workload: w.name,
          stack: s,
          requests: r.requests,
          rps: r.requests / (r.duration_us / 1e6),
          p50_ms: r.p50_us / 1000,
          p99_ms: r.p99_us / 1000,
          errors,
          cpu_us_per_req: { node: usPerReq('node'), python: usPerReq('python'), nginx: usPerReq('nginx') },
          wrk: r,
        };
        runs.push(row);
        log(`  ${w.name.padEnd(8)} ${s.padEnd(10)} ${row.rps.toFixed(0).padStart(7)} req/s  p50 ${row.p50_ms.toFixed(2)} ms  p99 ${row.p99_ms.toFixed(2)} ms  errors ${errors}`);
      }
    }
  }
  return { runs, corralPeak };
}

// ---------------------------------------------------------------- report

function fmt(x, digits = 0) {
  return x === null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

function summarize(runs) {
  const rows = [];
  for (const w of WORKLOADS) {
    for (const s of STACKS) {
      const mine = runs.filter((r) => r.workload === w.name && r.stack === s);
      rows.push({
        workload: w.name,
        stack: s,
        rps: median(mine.map((r) => r.rps)),
        rps_min: Math.min(...mine.map((r) => r.rps)),
        rps_max: Math.max(...mine.map((r) => r.rps)),
        p50_ms: median(mine.map((r) => r.p50_ms)),
        p99_ms: median(mine.map((r) => r.p99_ms)),
        errors: mine.reduce((n, r) => n + r.errors, 0),
        node_us_per_req: s === 'corral' ? median(mine.map((r) => r.cpu_us_per_req.node)) : null,
        python_us_per_req: s === 'static' ? null : median(mine.map((r) => r.cpu_us_per_req.python)),
        nginx_us_per_req: median(mine.map((r) => r.cpu_us_per_req.nginx)),
        reps: mine.length,
      });
    }
  }
  for (const r of rows) {
    const corral = rows.find((x) => x.workload === r.workload && x.stack === 'corral');
    r.corral_ratio = corral.rps / r.rps; // how corral compares with this stack
  }
  const ratios = WORKLOADS.map((w) => {
    const get = (s) => rows.find((x) => x.workload === w.name && x.stack === s).rps;
    return { workload: w.name, corral_vs_standalone: get('corral') / get('standalone'), corral_vs_static: get('corral') / get('static') };
  });
  return { rows, ratios };
}

function markdown(summary, meta) {
  const lines = [];
  lines.push(`Medians of ${REPS} interleaved runs of ${DURATION} s (wrk -t1 -c${CONNS}), ${meta.date}, ${meta.cpus} CPUs, node ${process.version}, ${meta.python}, ${meta.nginx}.`);
  lines.push('');
  lines.push('| workload | stack | req/s | req/s min-max | p50 ms | p99 ms | errors | corral ÷ this | corral node CPU µs/req | Python CPU µs/req | nginx CPU µs/req |');
  lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of summary.rows) {
    lines.push(
      `| ${r.workload} | ${r.stack} | ${fmt(r.rps)} | ${fmt(r.rps_min)}-${fmt(r.rps_max)} | ${fmt(r.p50_ms, 2)} | ${fmt(r.p99_ms, 2)} | ${r.errors} | ${fmt(r.corral_ratio, 2)} | ${fmt(r.node_us_per_req)} | ${fmt(r.python_us_per_req)} | ${fmt(r.nginx_us_per_req)} |`,
    );
  }
  lines.push('');
  lines.push('| workload | corral / standalone worker | corral / nginx static |');
  lines.push('|---|--:|--:|');
  for (const r of summary.ratios) lines.push(`| ${r.workload} | ${fmt(r.corral_vs_standalone, 2)} | ${fmt(r.corral_vs_static, 2)} |`);
  lines.push('');
  lines.push(`corral's node process: peak RSS ${fmt(meta.corralPeakRssKb / 1024, 1)} MB sampled during the runs, VmHWM ${fmt(meta.corralHwmKb / 1024, 1)} MB over its life; nginx error-log lines at [error] or worse: ${meta.nginxErrors}.`);
  lines.push('');
  lines.push('Stacks: `corral` = nginx -> corral (2 workers x 1 thread, access log on' + (CORRAL_ARGS.length ? `, \`${CORRAL_ARGS.join(' ')}\`` : '') + ') -> Python; `standalone` = nginx -> the same Python worker alone (`corral_worker.py --listen`, 2 threads); `static` = nginx answering itself. All behind one nginx (1 worker, `fastcgi_keep_conn on`, upstream keepalive 32). Workloads: ' + WORKLOADS.map((w) => `\`${w.name}\` = ${w.what}`).join('; ') + '.');
  return lines.join('\n');
}

// ---------------------------------------------------------------- main

async function main() {
  const t0 = Date.now();
  ensurePrerequisites();
  mkdirSync(OUT, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  runDir = join(OUT, `run-${stamp}`);

  log('starting corral, the standalone worker and nginx');
  const [corral, standalone] = await Promise.all([startCorral(), startStandalone()]);
  const nginx = await startNginx(join(runDir, 'nginx'), { corral: corral.port, standalone: standalone.port });
  const nginxWorker = childrenOf(nginx.entry.child.pid)[0];
  if (!nginxWorker) throw new Error('cannot find the nginx worker process');

  log('checking every stack answers correctly');
  for (const s of STACKS) await checkStack(s, nginx.ports[s]);

  const pids = { corral: corral.entry.child.pid, corralWorkers: corral.workerPids, standalone: standalone.entry.child.pid, nginxWorker };
  const { runs, corralPeak } = await measure(nginx.ports, pids);
  const corralMem = memKb(pids.corral);
  const nginxErrors = safeRead(nginx.errorLog).split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
  for (const [name, e] of [['corral', corral.entry], ['standalone', standalone.entry], ['nginx', nginx.entry]]) if (!alive(e)) throw new Error(`${name} died during the run:\n${e.output.slice(-3000)}`);

  const summary = summarize(runs);
  const meta = {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    python: spawnSync(PYTHON, ['--version']).stdout.toString().trim(),
    nginx: spawnSync(NGINX_BIN, ['-v']).stderr.toString().trim().replace('nginx version: ', ''),
    duration_s: DURATION,
    reps: REPS,
    warmup_s: WARMUP,
    connections: CONNS,
    corralPeakRssKb: corralPeak.rssKb,
    corralHwmKb: corralMem.hwm,
    nginxErrors: nginxErrors.length,
    elapsed_s: (Date.now() - t0) / 1000,
  };
  const md = markdown(summary, meta);
  writeFileSync(join(OUT, `bench-${stamp}.json`), JSON.stringify({ meta, summary, runs, nginxErrors: nginxErrors.slice(0, 50) }, null, 2));
  writeFileSync(join(OUT, `bench-${stamp}.md`), `${md}\n`);
  writeFileSync(join(OUT, 'latest.md'), `${md}\n`);
  process.stdout.write(`\n${md}\n\n`);
  log(`wrote bench/out/bench-${stamp}.{json,md} in ${meta.elapsed_s.toFixed(0)} s`);
}

main()
  .catch((err) => {
    if (interrupted) return; // the signal handler reports and exits
    process.stderr.write(`bench: ${err instanceof BenchError ? err.message : (err.stack ?? err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
