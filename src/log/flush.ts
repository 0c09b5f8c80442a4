/**
 * Log flushing at exit, apart from logger.ts so that `main.ts` can call it without loading pino
 * and pino-pretty for commands that do not log to stdout (`corral relay` starts often under IIS).
 */

const flushers: Array<() => void> = [];

/** Registers a destination's synchronous flush. */
export function onFlushLogs(flush: () => void): void {
  flushers.push(flush);
}

/** Writes out buffered log lines; call before process.exit. */
export function flushLogs(): void {
  for (const f of flushers) {
    try {
      f();
    } catch {
      /* the destination is gone (closed stdout): nothing left to save */
    }
  }
}

/** Log destinations still starting (pino-roll's thread before its 'ready'). */
const starting: Array<Promise<void>> = [];

/** Registers a destination that writes nothing until `started` resolves. */
export function onLogStarting(started: Promise<void>): void {
  starting.push(started);
}

/**
 * Resolves once every log destination has started, or after `ms`. Call before process.exit: a
 * service stopped right after its start (a CTRL_C as it starts listening) would otherwise exit
 * while pino-roll's thread is still starting, with nothing of its log written, and under Wine
 * the exit then waited for that thread for good (CI saw a service alive 75 s after CTRL_C with
 * an empty log file).
 */
export async function logsStarted(ms: number): Promise<void> {
  if (starting.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(starting), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
