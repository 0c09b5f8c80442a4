/**
 * The processes `npm run bench` starts, and what /proc says about them. Every child leads its own
 * process group (detached), so stopping it stops what it forked (nginx's worker, Python workers,
 * uWSGI's and gunicorn's workers) and nothing else on this shared machine.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

/** A failure with a message for the user (no stack trace). */
export class BenchError extends Error {}

export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

/** Every child started and not yet reaped by its owner: {name, child, stopSignal, output, exited}. */
const children = [];
let cleaning = null;

export function log(msg) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export function safeRead(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Starts `cmd` as the leader of a new process group; keeps the tail of its output (for error
 * messages) unless told to drop it. opts: cwd, env, stopSignal, onData(text).
 */
export function startChild(name, cmd, args, opts = {}) {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
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
  /** From now on read stdout and drop it, as a log collector would, without decoding it here (that CPU would count against nobody, but it would steal a core). */
  entry.discardStdout = () => {
    child.stdout.off('data', keep);
    child.stdout.resume();
  };
  children.push(entry);
  return entry;
}

/** Forgets a child that has exited (wrk runs), so cleanup() does not signal a reused pid. */
export function forget(entry) {
  const i = children.indexOf(entry);
  if (i >= 0) children.splice(i, 1);
}

export function alive(entry) {
  return entry.child.exitCode === null && entry.child.signalCode === null;
}

export function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    /* gone */
  }
}

/** Stops one child: its own signal to its group, SIGKILL to the group after `graceMs`. */
export async function stopChild(entry, graceMs = 10_000) {
  const pid = entry.child.pid;
  if (pid === undefined) return;
  if (alive(entry)) {
    killGroup(pid, entry.stopSignal);
    const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
    await entry.exited;
    clearTimeout(timer);
  }
  killGroup(pid, 'SIGKILL'); // anything left in its group
  forget(entry);
}

/** Stops every child still registered. Idempotent; `then` runs once, after. */
export function cleanup(then = () => {}) {
  cleaning ??= Promise.all([...children].map((e) => stopChild(e))).then(then);
  return cleaning;
}

// ---------------------------------------------------------------- ports

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts on 127.0.0.1:port; rejects if `entry` exits or time runs out. */
export async function waitForPort(port, entry, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive(entry)) throw new Error(`${entry.name} exited before listening on ${port}:\n${entry.output.slice(-2000)}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${entry.name}: nothing accepted on 127.0.0.1:${port} within ${timeoutMs} ms:\n${entry.output.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---------------------------------------------------------------- /proc

function statFields(pid) {
  const stat = safeRead(`/proc/${pid}/stat`);
  if (stat === '') return null;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
}

/** utime + stime of one process in clock ticks, NaN if it is gone. */
export function cpuTicks(pid) {
  const f = statFields(pid);
  return f ? Number(f[11]) + Number(f[12]) : NaN;
}

/** Every process below `pid` (children, grandchildren...), from /proc/N/stat. */
export function descendantsOf(pid) {
  const parentOf = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const f = statFields(d);
    if (f) parentOf.set(Number(d), Number(f[1]));
  }
  const out = [];
  const want = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [p, pp] of parentOf) {
      if (want.has(pp) && !want.has(p)) {
        want.add(p);
        out.push(p);
        grew = true;
      }
    }
  }
  return out.sort((a, b) => a - b);
}

/** Busy and total clock ticks of the whole machine (first line of /proc/stat). */
export function machineTicks() {
  const f = safeRead('/proc/stat').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal; guest is inside user
  const idle = f[3] + f[4]; // idle + iowait
  return { busy: total - idle, total };
}

export function memKb(pid) {
  const s = safeRead(`/proc/${pid}/status`);
  const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

export function have(cmd) {
  return spawnSync('sh', ['-c', `command -v "$0"`, cmd], { stdio: 'ignore' }).status === 0;
}
