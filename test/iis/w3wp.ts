/**
 * An emulated w3wp.exe: the parent of the FastCGI processes IIS starts for one worker process of an
 * application pool (w3wp.mjs), and the job object iisfcgi.dll puts them in
 * (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE): when the w3wp exits, every process in its job dies, the
 * relays and whatever they started without breakaway (an auto-started service and its Python
 * workers). Job membership is inherited as on Windows: a marker variable in the environment that
 * every descendant keeps (and, for processes that drop it, the descendants of members at kill time).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type net from 'node:net';
import { fileURLToPath } from 'node:url';
import { childrenOf, running, waitUntil } from './procs.js';

/** The variable that marks a process as a member of an emulated job. */
export const JOB_VAR = 'IIS_EMULATOR_JOB';

const W3WP_SCRIPT = fileURLToPath(new URL('./w3wp.mjs', import.meta.url));

/** What the emulator needs of a started FastCGI process (a ChildProcess has it). */
export interface ProcessHandle {
  kill(signal?: NodeJS.Signals): boolean;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
}

type ExitInfo = { code: number | null; signal: NodeJS.Signals | null };

interface Pending {
  spawned: (pid: number) => void;
  failed: (err: Error) => void;
  exit: (e: ExitInfo) => void;
}

/** One emulated w3wp and its job. */
export class W3wp {
  readonly job = randomUUID();
  readonly pid: number;
  /** False once a recycle retired it: it takes no new requests and exits once its requests are done. */
  accepting = true;
  /** FastCGI processes being started in it. */
  starting = 0;
  readonly #proc: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #exited: Promise<number[]> | null = null;

  constructor() {
    this.#proc = fork(W3WP_SCRIPT, [], { env: { ...process.env, [JOB_VAR]: this.job }, execArgv: [], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    if (this.#proc.pid === undefined) throw new Error('cannot start the emulated w3wp');
    this.pid = this.#proc.pid;
    this.#proc.on('message', (m: { type: string; id: number; pid?: number; err?: string; code?: number | null; signal?: NodeJS.Signals | null }) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      if (m.type === 'spawned') p.spawned(m.pid!);
      else if (m.type === 'error') p.failed(new Error(m.err));
      else if (m.type === 'exit') {
        this.#pending.delete(m.id);
        p.exit({ code: m.code ?? null, signal: m.signal ?? null });
      }
    });
    // The w3wp gone (its job killed): exits of its children are no longer reported; they are dead.
    this.#proc.once('exit', () => {
      for (const p of this.#pending.values()) p.exit({ code: null, signal: 'SIGKILL' });
      this.#pending.clear();
    });
  }

  /** Starts a FastCGI process in this w3wp with `stdin` (IIS's pipe) as its stdin. */
  spawn(stdin: net.Socket, cmd: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ pid: number; child: ProcessHandle; exited: Promise<ExitInfo> }> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      let exitInfo: ExitInfo | null = null;
      let onExit: (e: ExitInfo) => void = () => undefined;
      const exited = new Promise<ExitInfo>((r) => (onExit = r));
      this.#pending.set(id, {
        spawned: (pid) => {
          const child: ProcessHandle = {
            kill: (signal = 'SIGTERM') => {
              try {
                process.kill(pid, signal);
                return true;
              } catch {
                return false;
              }
            },
            get exitCode() {
              return exitInfo?.code ?? (exitInfo ? -1 : null);
            },
            get signalCode() {
              return exitInfo?.signal ?? null;
            },
          };
          resolve({ pid, child, exited });
        },
        failed: (err) => {
          this.#pending.delete(id);
          reject(err);
        },
        exit: (e) => {
          exitInfo = e;
          onExit(e);
        },
      });
      this.#proc.send({ type: 'spawn', id, cmd, env: { ...env, [JOB_VAR]: this.job }, cwd }, stdin, (err) => {
        if (err) this.#pending.get(id)?.failed(err);
      });
    });
  }

  /** The w3wp exits: the job closes and every process in it is killed. Resolves with their pids. Idempotent. */
  exit(): Promise<number[]> {
    this.#exited ??= (async () => {
      const killed = new Set<number>();
      // Members may start children while we kill: repeat until none is left.
      for (let round = 0; round < 20; round++) {
        const members = this.members();
        if (members.length === 0) break;
        for (const pid of members) {
          killed.add(pid);
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
        await waitUntil(() => !members.some(running), 10_000, `job ${this.job} to die`);
      }
      return [...killed];
    })();
    return this.#exited;
  }

  /** Running processes in the job: marked ones and their descendants. */
  members(): number[] {
    const found = new Set<number>();
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const pid = Number(d);
      try {
        if (readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`${JOB_VAR}=${this.job}`) && running(pid)) found.add(pid);
      } catch {
        /* gone, or not ours */
      }
    }
    const queue = [...found];
    while (queue.length > 0) {
      for (const c of childrenOf(queue.pop()!)) {
        if (!found.has(c) && running(c)) {
          found.add(c);
          queue.push(c);
        }
      }
    }
    return [...found];
  }
}
