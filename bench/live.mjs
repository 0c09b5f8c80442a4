/**
 * Shared by the live tools `npm run fuzz` (bench/fuzz.mjs) and `npm run soak` (bench/soak.mjs):
 * starting `corral serve` (dist/cli/main.js; run `npm run build` first, the npm scripts do) in its
 * own process group and reading its JSON log, ending every process started here on exit, error or
 * Ctrl-C, a small FastCGI client over dist/fcgi, the service's RSS from /proc, and a seeded PRNG.
 * Loopback only.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI = join(ROOT, 'dist/cli/main.js');
export const FIXTURES = join(ROOT, 'test/fixtures/python');

if (!existsSync(CLI)) {
  process.stderr.write(`${CLI} is missing: run \`npm run build\` first (npm run fuzz / npm run soak do)\n`);
  process.exit(2);
}
const fcgi = await import(join(ROOT, 'dist/fcgi/index.js'));
export const { RecordParser, RecordType, encodeParams, encodeRecord, encodeBeginRequest, decodeEndRequest, FCGI_KEEP_CONN } = fcgi;

/** A non-negative number from the environment. */
export function envNum(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`${name}=${JSON.stringify(v)}: expected a non-negative number\n`);
    process.exit(2);
  }
  return n;
}

export function say(tool, msg) {
  process.stderr.write(`[${tool} ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---------------------------------------------------------------- processes

const started = [];
let cleaning = null;

/** Stops every process started here: SIGTERM to its group, SIGKILL to the group after 10 s. Idempotent. */
export function cleanup() {
  cleaning ??= Promise.all(
    started.map(async (s) => {
      const pid = s.child.pid;
      if (pid === undefined) return;
      if (s.running) {
        killGroup(pid, 'SIGTERM');
        const t = setTimeout(() => killGroup(pid, 'SIGKILL'), 10_000);
        await s.exited;
        clearTimeout(t);
      }
      killGroup(pid, 'SIGKILL'); // workers left in its group
    }),
  );
  return cleaning;
}

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    /* gone */
  }
}

let onInterrupt = null;
/** `fn` runs (once) before exiting on Ctrl-C / SIGTERM, e.g. to print what was measured so far. */
export function atInterrupt(fn) {
  onInterrupt = fn;
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: stopping everything this run started\n`);
    try {
      onInterrupt?.();
    } catch {
      /* best effort */
    }
    void cleanup().then(() => process.exit(130));
  });
}

/** `corral ARGS` in its own process group, with its JSON log lines parsed. */
export class Service {
  constructor(args, env = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.running = true;
    this.stderr = '';
    this.tail = [];
    this.waiters = [];
    this.listeners = [];
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        this.running = false;
        this.exitStatus = { code, signal };
        for (const w of this.waiters.splice(0)) w.reject(new Error(`corral exited (${code ?? signal}) before: ${w.what}\n${this.stderr}\n${this.tail.join('\n')}`));
        resolve({ code, signal });
      }),
    );
    let buf = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (t) => {
      buf += t;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let l;
        try {
          l = JSON.parse(line);
        } catch {
          continue;
        }
        this.tail.push(line);
        if (this.tail.length > 30) this.tail.shift();
        for (const f of this.listeners) f(l);
        this.waiters = this.waiters.filter((w) => (w.pred(l) ? (w.resolve(l), false) : true));
      }
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (t) => (this.stderr = (this.stderr + t).slice(-20_000)));
    started.push(this);
  }

  /** Calls `f` with every later log line. */
  onLog(f) {
    this.listeners.push(f);
  }

  /** The first later log line matching `pred`. */
  waitFor(pred, what, timeoutMs = 30_000) {
    return new Promise((resolve, reject) => {
      const w = { pred, what, resolve: (l) => (clearTimeout(t), resolve(l)), reject };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out waiting for ${what}\n${this.tail.join('\n')}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}

export function splitHostPort(s) {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

/** Resident set size of `pid` in bytes, or null if it is gone. */
export function rss(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

export function mib(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** True when a worker-exit log line is not one the service asked for. */
export function isWorkerLoss(l) {
  const m = typeof l.msg === 'string' ? l.msg : '';
  return m.startsWith('worker exited') || m.startsWith('worker was killed') || m.startsWith('worker killed') || m.startsWith('worker broke the protocol') || m.startsWith('worker did not stop');
}

// ---------------------------------------------------------------- FastCGI

export function cgiParams(method, uri, extra = {}) {
  const q = uri.indexOf('?');
  return {
    GATEWAY_INTERFACE: 'CGI/1.1', REQUEST_METHOD: method, SCRIPT_NAME: '', PATH_INFO: q >= 0 ? uri.slice(0, q) : uri,
    QUERY_STRING: q >= 0 ? uri.slice(q + 1) : '', REQUEST_URI: uri, SERVER_NAME: 'localhost', SERVER_PORT: '80',
    SERVER_PROTOCOL: 'HTTP/1.1', REMOTE_ADDR: '127.0.0.1', ...extra,
  };
}

/** The records of a whole request as nginx sends them: BEGIN, PARAMS..., empty PARAMS, STDIN..., empty STDIN. */
export function requestBytes(id, params, body = Buffer.alloc(0), keepConn = false) {
  const parts = [encodeBeginRequest(id, 1, keepConn ? FCGI_KEEP_CONN : 0)];
  const p = encodeParams(Object.entries(params));
  for (let off = 0; off < p.length; off += 0xffff) parts.push(encodeRecord(RecordType.PARAMS, id, p.subarray(off, off + 0xffff)));
  parts.push(encodeRecord(RecordType.PARAMS, id));
  for (let off = 0; off < body.length; off += 0xffff) parts.push(encodeRecord(RecordType.STDIN, id, body.subarray(off, off + 0xffff)));
  parts.push(encodeRecord(RecordType.STDIN, id));
  return Buffer.concat(parts);
}

/**
 * One request on a fresh connection. Resolves {status, body} (status from the CGI head) or
 * rejects on a closed connection, a bad stream or the timeout.
 */
export function fcgiRequest(addr, method, uri, body = Buffer.alloc(0), timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(addr);
    const out = [];
    let done = false;
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    const parser = new RecordParser();
    s.on('connect', () => {
      s.setNoDelay(true);
      const extra = body.length > 0 ? { CONTENT_LENGTH: String(body.length), CONTENT_TYPE: 'application/octet-stream' } : {};
      s.write(requestBytes(1, cgiParams(method, uri, extra), body));
    });
    s.on('data', (chunk) => {
      const err = parser.push(chunk, (r) => {
        if (r.type === RecordType.STDOUT) out.push(Buffer.from(r.content));
        else if (r.type === RecordType.END_REQUEST) {
          const raw = Buffer.concat(out);
          const cut = raw.indexOf('\r\n\r\n');
          const head = raw.toString('latin1', 0, Math.max(cut, 0));
          const m = /^Status:\s*(\d{3})/im.exec(head);
          finish(null, { status: cut < 0 ? 0 : m ? Number(m[1]) : 200, body: cut < 0 ? raw : raw.subarray(cut + 4), protocolStatus: decodeEndRequest(r.content)?.protocolStatus });
        }
      });
      if (err) finish(new Error(`bad stream: ${err.message}`));
    });
    s.on('error', (e) => finish(e));
    s.on('close', () => finish(new Error('connection closed before END_REQUEST')));
  });
}

// ---------------------------------------------------------------- randomness

/** xorshift32, seeded: the same seed gives the same inputs. */
export class Rng {
  constructor(seed) {
    this.x = (seed >>> 0) || 0x9e3779b9;
  }
  u32() {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x;
  }
  int(n) {
    return n <= 0 ? 0 : this.u32() % n;
  }
  chance(p) {
    return this.u32() / 0x100000000 < p;
  }
  pick(a) {
    return a[this.int(a.length)];
  }
  bytes(n) {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
