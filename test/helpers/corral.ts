/**
 * Runs the real `corral` CLI (dist/cli/main.js) as a child process for black-box tests, reads its
 * JSON log lines, and stops it. Every started service is tracked so `stopAll()` in afterEach
 * leaves nothing running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { onTestFailed } from 'vitest';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('../fixtures/python', import.meta.url));
/** Debian's python, which has python3-flask; the python3 first on PATH may not. */
export const DEBIAN_PYTHON = '/usr/bin/python3';

/** One JSON log line. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

/** A running corral process. */
export class CorralProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  readonly nonJson: string[] = [];
  stderr = '';
  #waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (text: string) => {
      buf += text;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.#onLine(line);
      }
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (t: string) => (this.stderr += t));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    running.add(this);
    void this.exited.then(() => running.delete(this));
  }

  #onLine(line: string): void {
    if (!line.trim()) return;
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      this.nonJson.push(line);
      return;
    }
    this.logs.push(parsed);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred(parsed)) return true;
      w.resolve(parsed);
      return false;
    });
  }

  /** Resolves with the first log line (past or future) matching `pred`; rejects on timeout or exit. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
    const found = this.logs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log line in ${timeoutMs} ms; last lines:\n${this.tail()}`)), timeoutMs);
      const w = {
        pred,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.#waiters.push(w);
      void this.exited.then(({ code }) => {
        if (this.#waiters.includes(w)) {
          clearTimeout(timer);
          reject(new Error(`corral exited (code ${code}) before the log line; stderr: ${this.stderr}\n${this.tail()}`));
        }
      });
    });
  }

  /** Waits for a message. */
  waitForMsg(msg: string, timeoutMs?: number): Promise<LogLine> {
    return this.waitForLog((l) => l.msg === msg, timeoutMs);
  }

  /** The last log lines, for failure messages. */
  tail(n = 15): string {
    return this.logs.slice(-n).map((l) => JSON.stringify(l)).join('\n');
  }

  /** Address of the first FastCGI listener as bound, e.g. 127.0.0.1:40123. */
  async fcgiAddress(): Promise<{ host: string; port: number }> {
    const l = await this.waitForMsg('FastCGI front listening');
    return splitHostPort(String(l.listen));
  }

  /** Address of the HTTP front as bound. */
  async httpAddress(): Promise<{ host: string; port: number }> {
    const l = await this.waitForMsg('HTTP front listening');
    return splitHostPort(String(l.http));
  }

  /** Pids of workers that said READY and have not exited (from the log). */
  liveWorkerPids(): number[] {
    const ready = new Set<number>();
    for (const l of this.logs) {
      if (l.msg === 'worker ready') ready.add(Number(l.pid));
      if (typeof l.msg === 'string' && l.msg.startsWith('worker') && 'code' in l) ready.delete(Number(l.pid));
    }
    return [...ready];
  }

  /** SIGTERM, then wait for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

const running = new Set<CorralProcess>();

/** Starts `corral ARGS`. */
export function startCorral(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): CorralProcess {
  return new CorralProcess(args, opts);
}

/** Kills every corral (and, through stdin EOF, its workers) a test started. Use in afterEach. */
export async function stopAll(): Promise<void> {
  const all = [...running];
  await Promise.all(
    all.map(async (c) => {
      const t = setTimeout(() => c.child.kill('SIGKILL'), 10_000);
      await c.stop();
      clearTimeout(t);
    }),
  );
}

export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** When the running test fails, prints the last 60 of `c`'s log lines that `keep` keeps. */
export function showLogOnFailure(c: CorralProcess, keep: (l: LogLine) => boolean = () => true, title = 'corral log'): void {
  onTestFailed(() => {
    console.log(`${title}:\n${c.logs.filter(keep).slice(-60).map((l) => JSON.stringify(l)).join('\n')}`);
  });
}
