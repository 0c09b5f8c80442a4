/**
 * The relay's log: JSON lines appended to a file, because under IIS the relay's stdout and stderr
 * are invalid handles (black holes). One line per start, stop and error, never per request.
 */
import path from 'node:path';
import { pino } from 'pino';
import { createLogger, type Logger } from '../log/logger.js';
import { sanitizeName } from './discover.js';

/** CORRAL_RELAY_LOG, else `<tmp>/corral-relay-<APP_POOL_ID or pid>.log` (every relay of an app pool appends to one file). */
export function relayLogPath(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, tmpDir: string, pid: number): string {
  const explicit = env.CORRAL_RELAY_LOG?.trim();
  if (explicit) return explicit;
  const p = platform === 'win32' ? path.win32 : path.posix;
  return p.join(tmpDir, `corral-relay-${env.APP_POOL_ID ? sanitizeName(env.APP_POOL_ID) : String(pid)}.log`);
}

/** A logger appending to `file` (created with its directory). Lines are written synchronously: the relay may be killed at any time. */
export function createRelayLogger(file: string, level: string): Logger {
  const destination = pino.destination({ dest: file, sync: true, mkdir: true, append: true });
  return createLogger({ level, destination, base: { svc: 'corral-relay', pid: process.pid } });
}
