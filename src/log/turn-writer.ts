/**
 * A log destination for stdout (or any fd) that writes the lines of one event-loop turn with
 * one synchronous write at the end of the turn; while lines keep coming (an access line per
 * request under load), at most one write every `minGapMs`, carrying the lines of every turn
 * since. Under load a turn serves a request or two, so a write per turn was nearly a write per
 * request: measured through nginx at 16 connections, 0.75 extra write syscalls per request
 * with the access log on (node's writes per request 2.8 instead of 2.0); with the gap, about
 * one per 5 ms. A line waits at most that long; at exit `flushSync` writes what waits.
 *
 * Why not pino's sonic-boom: asynchronous, it sends each small write through libuv's thread
 * pool (a round trip per line or two at low load); synchronous, it makes one syscall per line,
 * and its flushSync() also fsyncs, which is no way to flush every turn. Measured with an access
 * line per request at ~10,000 requests/s: async sonic-boom cost 40 µs of CPU per request, this
 * writer a few. A synchronous write is what Node itself does for stdout on a pipe or file on
 * Linux. If the fd is non-blocking and full (EAGAIN), the lines wait and are retried shortly,
 * in order; nothing blocks the event loop (logger.ts makes a pipe or socket non-blocking:
 * nonblocking.ts).
 */
import { writeSync } from 'node:fs';

/** The destination pino writes JSON lines to, plus a synchronous flush for exit. */
export interface TurnWriter {
  write(line: string): void;
  /** Writes everything pending now (at exit); gives up quietly if the fd cannot take it. */
  flushSync(): void;
}

/** Lines held while the fd refuses them, beyond which new lines are dropped (and counted). */
const MAX_HELD_BYTES = 16 * 1024 * 1024;
/** Shortest time between two writes while lines keep coming (default of `minGapMs`). */
const MIN_GAP_MS = 5;
/** Lines waiting for the gap to pass are written at the end of the turn once they reach this size. */
const FLUSH_BYTES = 64 * 1024;

/** How long `flushSync` (at exit) waits for a non-blocking fd's reader to take what is held. */
const EXIT_WAIT_MS = 2000;

/** Tuning for tests. */
export interface TurnWriterOptions {
  /** Shortest time between two writes while lines keep coming (0: one write per turn). */
  minGapMs?: number;
  /** How long flushSync waits for a reader that is slow to take the lines (default 2 s). */
  exitWaitMs?: number;
}

/** Blocks the thread for `ms` (at exit only, where no event loop turns any more). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * `onLost` is told the first time lines are lost because the fd refuses them for good (ENOSPC,
 * EPIPE, EBADF...), and again only after a write went through since.
 */
export function turnWriter(
  fd: number,
  write: (fd: number, b: Buffer) => number = writeSync,
  onLost: (err: NodeJS.ErrnoException) => void = () => undefined,
  opts: TurnWriterOptions = {},
): TurnWriter {
  const minGap = opts.minGapMs ?? MIN_GAP_MS;
  let lost = false;
  let lines: string[] = [];
  let held: Buffer | null = null; // bytes refused by a full fd, written before anything newer
  let heldBytes = 0;
  let dropped = 0;
  let scheduled = false;
  /** The flush waits for the gap to pass (a timer, not the end of the turn). */
  let gapTimer: NodeJS.Timeout | null = null;
  let lastFlush = -Infinity;
  let retrying = false;

  /** Writes `b` as far as the fd takes it; returns what is left (null when all went out). */
  const writeOut = (b: Buffer): Buffer | null => {
    let off = 0;
    while (off < b.length) {
      try {
        off += write(fd, off === 0 ? b : b.subarray(off));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return b.subarray(off);
        // ENOSPC, EPIPE, EBADF...: the disk is full or the reader is gone; the lines have nowhere to go.
        if (!lost) {
          lost = true;
          try {
            onLost(err as NodeJS.ErrnoException);
          } catch {
            /* the fallback failed too: nothing more to do */
          }
        }
        return null;
      }
    }
    lost = false;
    return null;
  };

  const flush = (): void => {
    scheduled = false;
    if (gapTimer !== null) {
      clearTimeout(gapTimer);
      gapTimer = null;
    }
    if (lines.length === 0 && held === null) return;
    lastFlush = performance.now();
    let out = lines.length > 0 ? Buffer.from(lines.join(''), 'utf8') : null;
    lines = [];
    heldBytes = 0;
    if (dropped > 0 && out !== null) {
      out = Buffer.concat([Buffer.from(`{"level":"warn","msg":"log lines dropped: stdout was not taking them","dropped":${dropped}}\n`), out]);
      dropped = 0;
    }
    const pending = held === null ? out : out === null ? held : Buffer.concat([held, out]);
    held = pending === null ? null : writeOut(pending);
    if (held !== null && !retrying) {
      retrying = true;
      setTimeout(() => {
        retrying = false;
        flush();
      }, 10).unref();
    }
  };

  return {
    write(line) {
      if ((held?.length ?? 0) + heldBytes > MAX_HELD_BYTES) {
        dropped++;
        return;
      }
      lines.push(line);
      heldBytes += line.length;
      if (retrying) return;
      if (!scheduled) {
        scheduled = true;
        const wait = minGap > 0 ? lastFlush + minGap - performance.now() : 0;
        if (wait <= 0) setImmediate(flush);
        else {
          // Not unref'd: a command that logs and ends still writes its last lines, at most minGapMs later.
          gapTimer = setTimeout(flush, Math.ceil(wait));
        }
      } else if (gapTimer !== null && heldBytes >= FLUSH_BYTES) {
        clearTimeout(gapTimer);
        gapTimer = null;
        setImmediate(flush);
      }
    },
    flushSync() {
      flush();
      // A non-blocking fd whose reader is slow: give it a little time, since after the exit
      // nobody will write these lines (a reader that is gone or stuck costs EXIT_WAIT_MS at most).
      const until = performance.now() + (opts.exitWaitMs ?? EXIT_WAIT_MS);
      while (held !== null && performance.now() < until) {
        sleepSync(5);
        held = writeOut(held);
      }
    },
  };
}
