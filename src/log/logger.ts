/** pino logger creation: JSON lines on stdout (or a file descriptor), child loggers per pool and worker. */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/** Options for the root logger. */
export interface LoggerOptions {
  level: string;
  /** Where lines go; default stdout (fd 1). */
  destination?: DestinationStream | number;
}

/** The service's root logger. Lines are written synchronously so nothing is lost at exit. */
export function createLogger(opts: LoggerOptions): Logger {
  const dest = typeof opts.destination === 'object' ? opts.destination : pino.destination({ fd: opts.destination ?? 1, sync: true });
  return pino(
    {
      level: opts.level,
      base: { svc: 'corral' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}

/** A logger that drops everything (tests, or stdout being a black hole under IIS). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
