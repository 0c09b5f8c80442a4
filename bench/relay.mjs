#!/usr/bin/env node
/**
 * `node bench/relay.mjs`: what `corral relay` costs, on this machine (build first: npx tsc -p .).
 *   start-up   spawn of a relay (as IIS does: a connected socket as stdin, no stdout/stderr) to
 *              the end of its first response, with the service already running; median of RUNS
 *   overhead   N sequential kept-alive requests straight to the service vs. through one relay:
 *              (interleaved rounds): the latency difference per request, and the relay's own
 *              CPU per request (utime+stime from /proc/PID/stat)
 * The service is `corral serve` on a unix socket with bench/apps/wsgi_apps.py (1 worker, 1 thread).
 * Settings: BENCH_REQUESTS=5000, BENCH_RUNS=15, BENCH_PYTHON=python3.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RecordParser } from '../dist/fcgi/parser.js';
import { encodeParams } from '../dist/fcgi/params.js';
import { encodeBeginRequest, encodeRecord } from '../dist/fcgi/records.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
const N = Number(process.env.BENCH_REQUESTS ?? 5000);
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const PYTHON = process.env.BENCH_PYTHON ?? 'python3';
const THREADS = process.env.BENCH_THREADS ?? '1';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;
const dir = mkdtempSync(join(tmpdir(), 'corral-bench-relay-'));
const sock = join(dir, 'corral.sock');
const children = new Set();

const PARAMS = encodeParams(Object.entries({
  REQUEST_METHOD: 'GET', URL: '/hello', SCRIPT_NAME: '/hello', PATH_INFO: '/hello', QUERY_STRING: '', CONTENT_LENGTH: '0',
  APPL_MD_PATH: '/LM/W3SVC/1/ROOT', APPL_PHYSICAL_PATH: `${join(ROOT, 'bench/apps')}/`, SERVER_SOFTWARE: 'Microsoft-IIS/10.0',
  HTTPS: 'off', SERVER_NAME: 'localhost', SERVER_PORT: '80', SERVER_PROTOCOL: 'HTTP/1.1', REMOTE_ADDR: '127.0.0.1', HTTP_HOST: 'localhost',
}));

/** One FastCGI connection sending IIS-style requests one at a time. */
class Conn {
  constructor(socket) {
    this.socket = socket;
    this.parser = new RecordParser();
    this.id = 0;
    this.done = null;
    socket.on('data', (chunk) => this.parser.push(chunk, (r) => { if (r.type === 3) this.done?.(); }));
  }
  request() {
    this.id = this.id === 255 ? 1 : this.id + 1;
    const id = this.id;
    return new Promise((resolve) => {
      this.done = resolve;
      this.socket.write(Buffer.concat([encodeBeginRequest(id, 1, 1), encodeRecord(4, id, PARAMS), encodeRecord(4, id), encodeRecord(5, id)]));
    });
  }
}

function connect(path) {
  return new Promise((resolve, reject) => {
    const s = net.connect(path, () => resolve(s));
    s.once('error', reject);
  });
}

/** A relay with a connected socket pair as stdin, like IIS's named pipe. */
async function spawnRelay() {
  const pairPath = join(dir, `pair-${Math.random().toString(36).slice(2)}.sock`);
  const server = net.createServer();
  await new Promise((r) => server.listen(pairPath, r));
  const accepted = new Promise((r) => server.once('connection', r));
  const ours = await connect(pairPath);
  const theirs = await accepted;
  server.close();
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, 'relay'], {
    stdio: [theirs, 'ignore', 'ignore'],
    env: { ...process.env, CORRAL_SERVICE: sock, CORRAL_AUTOSTART: '0', CORRAL_RELAY_LOG: join(dir, 'relay.log'), APP_POOL_ID: 'bench' },
  });
  theirs.destroy();
  children.add(child);
  const exited = new Promise((r) => child.once('exit', r));
  return { child, conn: new Conn(ours), t0, exited, close: async () => { ours.destroy(); await exited; children.delete(child); } };
}

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime
}

async function timed(conn, n) {
  const all = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await conn.request();
    all.push(performance.now() - t);
  }
  return { all };
}

function stats(lat) {
  const s = [...lat].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], mean: s.reduce((a, b) => a + b, 0) / s.length, p99: s[Math.floor(s.length * 0.99)] };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const us = (ms) => `${(ms * 1000).toFixed(0)} µs`;

async function main() {
  // The relay's connection to the service is the service's own (the proxy data plane): on a unix
  // socket `auto` would pick direct, and the workers would take the relay's connections.
  const service = spawn(process.execPath, [CLI, 'serve', join(ROOT, 'bench/apps'), '--wsgi-app', 'wsgi_apps:application', '--listen', sock, '--data-plane', 'proxy', '--workers', '1', '--threads', THREADS, '--python', PYTHON], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(service);
  await new Promise((resolve, reject) => {
    let buf = '';
    const onData = (t) => {
      buf += t;
      if (!buf.includes('"app ready"')) return;
      service.stdout.off('data', onData); // then drain the access lines unread, at no cost to the loop
      resolve();
    };
    service.stdout.on('data', onData);
    service.once('exit', (code) => reject(new Error(`service exited with code ${code}`)));
  });
  service.stdout.resume();

  // Start-up: spawn -> first response, service warm.
  const firsts = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await spawnRelay();
    await r.conn.request();
    firsts.push(performance.now() - r.t0);
    await r.close();
  }
  const bare = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    bare.push(performance.now() - t);
  }

  // Overhead: the same requests, direct vs. through one relay, interleaved in rounds so that
  // noise from other load on the machine falls on both alike.
  const direct = new Conn(await connect(sock));
  const relay = await spawnRelay();
  await timed(direct, 500);
  await timed(relay.conn, 500);
  const dl = [];
  const vl = [];
  let relayTicks = 0;
  let relayWall = 0;
  const ROUND = 250;
  for (let done = 0; done < N; done += ROUND) {
    dl.push(...(await timed(direct, ROUND)).all);
    const before = cpuTicks(relay.child.pid);
    const t = performance.now();
    vl.push(...(await timed(relay.conn, ROUND)).all);
    relayWall += performance.now() - t;
    relayTicks += cpuTicks(relay.child.pid) - before;
  }
  const relayCpuMs = (relayTicks * 1000) / CLK_TCK;
  const wall = relayWall;
  const d = stats(dl);
  const v = stats(vl);
  await relay.close();
  direct.socket.destroy();

  console.log(`corral relay on ${process.platform}, node ${process.version}, ${N} requests, ${RUNS} start-ups`);
  console.log(`start-up, spawn to first response (service warm): median ${median(firsts).toFixed(0)} ms (min ${Math.min(...firsts).toFixed(0)}, max ${Math.max(...firsts).toFixed(0)}); bare \`node -e 0\`: ${median(bare).toFixed(0)} ms`);
  console.log(`latency direct to the service: median ${us(d.median)}, mean ${us(d.mean)}, p99 ${us(d.p99)}`);
  console.log(`latency through the relay:     median ${us(v.median)}, mean ${us(v.mean)}, p99 ${us(v.p99)}`);
  console.log(`relay overhead per request: +${us(v.median - d.median)} median, +${us(v.mean - d.mean)} mean; relay CPU ${us(relayCpuMs / N)} per request (${((relayCpuMs / wall) * 100).toFixed(0)}% of one core at this rate)`);
}

/** Stops what we started (SIGKILL after 5 s), then removes the temp dir once nothing writes to it. */
async function cleanup() {
  await Promise.all([...children].map((c) => {
    if (c.exitCode !== null || c.signalCode !== null) return undefined;
    const killer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    c.kill('SIGTERM');
    return new Promise((r) => c.once('exit', r)).then(() => clearTimeout(killer));
  }));
  rmSync(dir, { recursive: true, force: true });
}

main().then(
  () => cleanup(),
  async (err) => {
    console.error(err);
    process.exitCode = 1;
    await cleanup();
  },
);
