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
