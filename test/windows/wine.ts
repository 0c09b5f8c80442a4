/**
 * Running corral's Windows side under Wine from Linux vitest: node.exe (the official win-x64 build)
 * with output to files (node.exe cannot use Linux pipes as its stdio), the helpers of shim/, and
 * the clean-up. Every process a test starts carries CORRAL_WINE_RUN in its environment (Wine passes
 * the Linux environment on, corral passes it to the service and its workers), so `killMarked()` in
 * afterEach finds and ends all of them, the relay's detached service and its Python workers too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { parentPid } from '../iis/procs.js';

/** What test/windows/global-setup.ts found: the set-up's variables, or why the layer is skipped. */
export interface WineSetup {
  readonly ok: boolean;
  readonly reason: string;
  readonly env: Record<string, string>;
}

declare module 'vitest' {
  export interface ProvidedContext {
    wine: WineSetup;
  }
}

export const wine: WineSetup = inject('wine');
/** The reason to skip, or null when Wine is ready. */
export const skipReason: string | null = wine.ok ? null : wine.reason;

export const NODE_EXE = wine.env.N ?? '';
export const BIN = wine.env.WP_BIN ?? '';
export const WINEPREFIX = wine.env.WINEPREFIX ?? '';
/** This test run's marker: every process started here carries it in its environment. */
export const RUN_MARK = `w${process.pid}-${randomBytes(3).toString('hex')}`;

/** `/a/b` as a Windows path through Wine's Z: drive. */
export function zPath(p: string): string {
  return `Z:${p.replace(/\//g, '\\')}`;
}

/** A fresh directory under the prefix's C: drive: [its Linux path, its C:\ path]. */
export function cDriveDir(name: string): [string, string] {
  const rel = `corral-test\\${name}-${RUN_MARK}`;
  const linux = path.join(WINEPREFIX, 'drive_c', ...rel.split('\\'));
  mkdirSync(linux, { recursive: true });
  return [linux, `C:\\${rel}`];
}

/** The Windows temp directory node.exe's os.tmpdir() gives (Wine's %TEMP%), as a Linux path. */
export function windowsTemp(): string {
  return path.join(WINEPREFIX, 'drive_c', 'users', os.userInfo().username, 'Temp');
}

/** The python command for the service: Linux python behind unixrun.exe, which converts drive paths. */
export const PYTHON_CMD = (): string => `${zPath(path.join(BIN, 'unixrun.exe'))} /usr/bin/python3`;

/** A Windows program started under Wine, its stdout and stderr in one file. */
export interface WineProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly outFile: string;
  readonly exited: Promise<number | null>;
  output(): string;
}

const started = new Set<ChildProcess>();
const tmpFiles: string[] = [];

/** A file name in the Linux temp directory, removed by killMarked(). */
export function tempFile(prefix: string, ext = '.txt'): string {
  const f = path.join(os.tmpdir(), `${prefix}-${RUN_MARK}-${randomBytes(4).toString('hex')}${ext}`);
  tmpFiles.push(f);
  return f;
}

/** Starts `wine EXE ARGS` with the given extra environment; stdio are a file, never a Linux pipe. */
export function startWine(exe: string, args: readonly string[], env: Record<string, string> = {}): WineProcess {
  const outFile = tempFile('corral-wine', '.out');
  const fd = openSync(outFile, 'w');
  const child = spawn('wine', [exe, ...args], {
    env: { ...process.env, ...wine.env, CORRAL_WINE_RUN: RUN_MARK, ...env },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  started.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => started.delete(child));
  if (child.pid === undefined) throw new Error(`cannot start wine ${exe}`);
  return { child, pid: child.pid, outFile, exited, output: () => readFileSync(outFile, 'utf8') };
}

/** `wine node.exe ARGS`. */
export function startNodeExe(args: readonly string[], env: Record<string, string> = {}): WineProcess {
  return startWine(NODE_EXE, args, env);
}

/**
 * Linux pids of this run's processes: those with its marker in their environment, and those with
 * it on their command line (Python workers: corral gives them a clean environment, but their
 * --root is a cDriveDir). Not Wine's own (wineserver, services.exe, ...: the first Windows process
 * of a test may start them with its environment); they end by themselves when the prefix is idle.
 */
export function markedPids(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${d}/environ`, 'latin1');
    } catch {
      continue;
    }
    const cmd = cmdline(Number(d));
    if (!environ.includes(`CORRAL_WINE_RUN=${RUN_MARK}\0`) && !cmd.includes(RUN_MARK)) continue;
    if (/wineserver|^C:\\windows\\/i.test(cmd)) continue;
    out.push(Number(d));
  }
  return out;
}

/**
 * `pids` without those whose parent is among them: a process Wine is starting for one of them
 * (pidusage's sampling, a worker's spawn) is a fork of it with its command line until its exec.
 */
export function withoutForks(pids: readonly number[]): number[] {
  const all = new Set(pids);
  return pids.filter((p) => !all.has(parentPid(p)));
}

/** The command line of a Linux process ('' once it is gone). */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** This run's Linux Python workers (behind unixrun.exe, or orphaned). */
export function pythonWorkers(): number[] {
  return markedPids().filter((p) => /^\S*python3? \S*corral_worker\.py /.test(cmdline(p)));
}

/** Kills every process this run started (afterEach), Wine's own excepted (see markedPids). */
export async function killMarked(): Promise<void> {
  for (const c of started) c.kill('SIGKILL');
  for (let i = 0; i < 3; i++) {
    const pids = markedPids();
    if (pids.length === 0) break;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await until(() => markedPids().length === 0, 5000).catch(() => undefined);
  }
  for (const f of tmpFiles.splice(0)) rmSync(f, { force: true });
  // The sites, and what relays and services left in Wine's %TEMP% (logs, locks, secrets) for this run's pools.
  rmSync(path.join(WINEPREFIX, 'drive_c', 'corral-test'), { recursive: true, force: true });
  const temp = windowsTemp();
  if (existsSync(temp)) for (const n of readdirSync(temp)) if (n.includes(RUN_MARK)) rmSync(path.join(temp, n), { recursive: true, force: true });
}

/** Resolves once `check()` is true (polled every 50 ms), rejects with `what` after `ms`. */
export async function until(check: () => boolean, ms: number, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits for `file` to hold a line matching `re`; returns that line's match. */
export async function waitForLine(file: string, re: RegExp, ms: number): Promise<RegExpExecArray> {
  let m: RegExpExecArray | null = null;
  await until(() => existsSync(file) && (m = re.exec(readFileSync(file, 'utf8'))) !== null, ms, `${re} in ${file}`);
  return m!;
}

/** JSON log lines of a corral log file (pino-roll writes NAME.1.EXT, NAME.2.EXT, ...: all of them, in order). */
export function logLines(file: string): Array<Record<string, unknown>> {
  const dir = path.dirname(file);
  const ext = path.extname(file);
  const stem = path.basename(file, ext);
  if (!existsSync(dir)) return [];
  const num = (n: string): number => Number(n.slice(stem.length + 1, n.length - ext.length) || 0);
  const parts = readdirSync(dir)
    .filter((n) => n.startsWith(stem) && n.endsWith(ext) && /^(\.\d+)?$/.test(n.slice(stem.length, n.length - ext.length)))
    .sort((a, b) => num(a) - num(b));
  const lines: Array<Record<string, unknown>> = [];
  for (const n of parts)
    for (const l of readFileSync(path.join(dir, n), 'utf8').split('\n'))
      if (l.trim()) {
        try {
          lines.push(JSON.parse(l) as Record<string, unknown>);
        } catch {
          /* a torn last line */
        }
      }
  return lines;
}
