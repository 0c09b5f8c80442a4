/** pino logger creation: JSON lines on stdout (or a file descriptor), child loggers per pool and worker. */
import { pino, type Logger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';

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

/** Human-readable colored lines for `corral dev` (pino-pretty, written synchronously). */
export function createPrettyLogger(level: string): Logger {
  const stream = pretty({ colorize: process.stdout.isTTY === true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'svc,hostname' });
  return pino({ level, base: { svc: 'corral' } }, stream);
}
