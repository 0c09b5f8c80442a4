/**
 * Finding and stopping processes the tests did not start themselves (a service auto-started by a
 * relay is detached: no ChildProcess, no exit event). Linux /proc only, like the rest of test/iis.
 */
import { readdirSync, readFileSync } from 'node:fs';

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
  } catch {
    return [];
  }
}

/** True while `pid` runs (a zombie, dead but not yet reaped, does not count). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function pids(): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}

/** `corral serve` processes (any parent) whose arguments mention `marker` (a socket path). */
export function serveProcesses(marker: string): number[] {
  return pids().filter((pid) => {
    const argv = cmdline(pid);
    return running(pid) && argv.some((a) => a.endsWith('main.js')) && argv.includes('serve') && argv.some((a) => a.includes(marker));
  });
}

/** The parent pid of a Linux process (0 once it is gone). */
export function parentPid(pid: number): number {
  try {
    // The command name (field 2) may hold spaces and parentheses: the ppid comes after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Direct children of `parent`. */
export function childrenOf(parent: number): number[] {
  return pids().filter((pid) => parentPid(pid) === parent);
}

/**
 * Polls `pred` until it holds or `timeoutMs` passes. Only for conditions no event reports (the
 * life of a process that is not our child); everything else waits on events.
 */
export async function waitUntil(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** SIGTERM (a graceful stop), SIGKILL after `graceMs`, and waits until every pid is gone. */
export async function terminate(targets: number[], graceMs = 5_000): Promise<void> {
  const live = targets.filter(running);
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  try {
    await waitUntil(() => !live.some(running), graceMs, `pids ${live.join(', ')} to exit`);
  } catch {
    for (const pid of live.filter(running)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await waitUntil(() => !live.some(running), 5_000, `pids ${live.join(', ')} to die`);
  }
}
