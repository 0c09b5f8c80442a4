/**
 * The auto-start lock: a file created with O_EXCL (`wx`), so that when several relays find no
 * service at once, exactly one of them starts it. The file stays after the start and names the
 * service's pid; it is stale once that process is gone (or never answered), and the next relay
 * that needs the service removes it and starts a new one.
 *
 * Removing a stale lock is itself a race (two relays see the same stale file; one removes it and
 * creates a fresh one, the other must not remove the fresh one), so removal goes through a
 * second `wx` file, the breaker, and only deletes the lock if its content is still what was judged stale.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';

/** What a lock file says. `at` is when it was written (ms since the epoch). */
export interface LockInfo {
  /** The auto-started service, once spawned. */
  readonly service: number | null;
  /** The relay that holds or held the lock. */
  readonly relay: number | null;
  readonly at: number;
  /** The file's exact content, for compare-and-delete. */
  readonly raw: string;
}

/** A breaker left by a relay that died in the middle of a removal is ignored after this long. */
const BREAKER_STALE_MS = 5_000;

/** The lock's content, or null if there is none. Unreadable or half-written content gives nulls and the file's mtime. */
export function readLock(path: string): LockInfo | null {
  let raw: string;
  let mtime: number;
  try {
    raw = readFileSync(path, 'utf8');
    mtime = statSync(path).mtimeMs;
  } catch {
    return null;
  }
  try {
    const j = JSON.parse(raw) as { service?: unknown; relay?: unknown; at?: unknown };
    const num = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null);
    return { service: num(j.service), relay: num(j.relay), at: typeof j.at === 'number' ? j.at : mtime, raw };
  } catch {
    return { service: null, relay: null, at: mtime, raw };
  }
}

/**
 * True while a process with this pid runs (signal 0 is an existence check on Windows too). On
 * Linux a zombie (exited, not yet reaped by its parent or init) answers signal 0 but runs nothing.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc: signal 0 said it exists
  }
}

/**
 * Whether a lock no longer protects anything: its process is gone, or it is older than `staleMs`
 * while the caller has failed to reach the service for `staleMs` (a hung service, or a pid reused
 * after a reboot: Windows keeps %TEMP% across reboots).
 */
export function lockIsStale(info: LockInfo, now: number, failingForMs: number, staleMs: number, alive: (pid: number) => boolean = pidAlive): boolean {
  const holder = info.service ?? info.relay;
  if (holder !== null && !alive(holder)) return true;
  if (holder === null && now - info.at > staleMs) return true;
  return now - info.at > staleMs && failingForMs > staleMs;
}

/** A lock this relay holds. */
export interface HeldLock {
  /** Records the spawned service's pid; the lock stays for the service's life. */
  keep(servicePid: number): void;
  /**
   * After keep: rewrites the lock with the time now, while this relay waits for its service to
   * listen, so that other relays do not judge a live service that is slow to start (node.exe under
   * load, a virus scanner) hung and start a second one. A no-op once the lock was removed.
   */
  refresh(): void;
  /** Gives the lock up (the service turned out to be running already, or the spawn failed). */
  release(): void;
}

/** Takes the lock, or returns null if another relay has it. */
export function tryLock(path: string): HeldLock | null {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw err;
  }
  const write = (service: number | null): void => {
    const text = JSON.stringify({ service, relay: process.pid, at: Date.now() });
    writeSync(fd, text, 0);
    ftruncateSync(fd, Buffer.byteLength(text));
  };
  write(null);
  let open = true;
  const close = (): void => {
    if (open) closeSync(fd);
    open = false;
  };
  let kept: number | null = null;
  return {
    keep(servicePid) {
      write(servicePid);
      close();
      kept = servicePid;
    },
    refresh() {
      if (kept === null) return;
      // Only our own lock: another relay may have judged it stale and replaced it meanwhile.
      const now = readLock(path);
      if (now === null || now.service !== kept || now.relay !== process.pid) return;
      const text = JSON.stringify({ service: kept, relay: process.pid, at: Date.now() });
      try {
        writeFileSync(path, text);
      } catch {
        /* removed meanwhile: nothing to refresh */
      }
    },
    release() {
      close();
      rmSync(path, { force: true });
    },
  };
}

/** Deletes the lock if its content is still `raw`. False if another relay is removing it right now. */
export function removeIfUnchanged(path: string, raw: string): boolean {
  const breaker = `${path}.break`;
  let fd: number;
  try {
    fd = openSync(breaker, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const st = statSync(breaker, { throwIfNoEntry: false });
    if (st && Date.now() - st.mtimeMs > BREAKER_STALE_MS) rmSync(breaker, { force: true });
    return false;
  }
  try {
    let current: string;
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      return true;
    }
    if (current === raw) unlinkSync(path);
    return true;
  } finally {
    closeSync(fd);
    rmSync(breaker, { force: true });
  }
}
