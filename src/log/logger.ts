/** pino logger creation: JSON lines on stdout (or a file descriptor), child loggers per pool and worker. */
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';
import { onFlushLogs, onLogStarting } from './flush.js';
import { nonBlockingIfPipe } from './nonblocking.js';
import { turnWriter, type TurnWriter } from './turn-writer.js';

export type { Logger } from 'pino';

/** Options for the root logger. */
export interface LoggerOptions {
  level: string;
  /** Where lines go; default stdout (fd 1). */
  destination?: DestinationStream | number;
  /** Write to this file instead, rotated daily and at 10 MiB, 7 files kept (pino-roll). */
  file?: string | null;
  /** Fields on every line; default `{svc: 'corral'}`. */
  base?: Record<string, unknown>;
}

export { flushLogs } from './flush.js';

/**
 * The service's root logger. On stdout, the lines of one event-loop turn go out in one
 * synchronous write at the end of the turn (turn-writer.ts); `flushLogs()` writes out the rest
 * at exit. With `file`, pino-roll writes from its own thread.
 */
export function createLogger(opts: LoggerOptions): Logger {
  let dest: DestinationStream;
  if (typeof opts.destination === 'object') dest = opts.destination;
  else if (opts.file) dest = fileDestination(opts.file);
  else {
    const fd = opts.destination ?? 1;
    // A reader that stops reading would otherwise block every write, and the service with it.
    nonBlockingIfPipe(fd);
    const writer = turnWriter(fd, undefined, (err) => {
      // Said on stderr, once per spell of failures: stdout on a full disk would crash nothing, but lose the log unseen.
      if (fd !== 2) writeSync(2, `${JSON.stringify({ level: 'error', time: new Date().toISOString(), svc: 'corral', pid: process.pid, fd, err: err.message, code: err.code ?? null, msg: 'cannot write the log; log lines are lost until it can' })}\n`);
    });
    onFlushLogs(() => writer.flushSync());
    dest = writer;
  }
  return pino(
    {
      level: opts.level,
      base: opts.base ?? { svc: 'corral' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}

/**
 * The log file through pino-roll (in its own thread). A write error there (disk full,
 * permissions) ends that thread and is emitted on the stream, where unhandled it would end the
 * service: instead it is said once on stderr and the lines go to stderr from then on.
 */
function fileDestination(file: string, stderrFd = 2): DestinationStream {
  const roll = pino.transport({
    target: 'pino-roll',
    options: { file, frequency: 'daily', size: '10m', mkdir: true, limit: { count: 7 } },
  }) as DestinationStream & NodeJS.EventEmitter;
  // Nothing is written until its thread has started: exit waits for that (flush.ts, logsStarted).
  onLogStarting(
    new Promise<void>((resolve) => {
      roll.once('ready', () => resolve());
      roll.once('error', () => resolve());
      roll.once('close', () => resolve());
    }),
  );
  let fallback: TurnWriter | null = null;
  roll.on('error', (err: Error) => {
    if (fallback) return;
    nonBlockingIfPipe(stderrFd);
    fallback = turnWriter(stderrFd);
    const f = fallback;
    onFlushLogs(() => f.flushSync());
    const code = (err as NodeJS.ErrnoException).code ?? null;
    f.write(`${JSON.stringify({ level: 'error', time: new Date().toISOString(), svc: 'corral', pid: process.pid, file, err: err.message, code, msg: 'cannot write the log file; log lines go to stderr from now on' })}\n`);
  });
  return {
    write(line: string) {
      if (fallback) fallback.write(line);
      else roll.write(line);
    },
  };
}

/** A logger that drops everything (tests, or stdout being a black hole under IIS). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Human-readable colored lines for `corral dev` (pino-pretty, written synchronously). */
export function createPrettyLogger(level: string): Logger {
  // Loaded here, not at the top: `corral relay`, which IIS starts often, logs through this module too.
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  const stream = pretty({ colorize: process.stdout.isTTY === true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'svc,hostname' });
  return pino({ level, base: { svc: 'corral' } }, stream);
}
