/**
 * Exit classification: one pure function from how a worker ended to what the pool logs and does.
 * Exit codes come from the worker (src/python/corral_wsgi/common.py, direct.py): 3 = bad usage/boot, 4 = app
 * import failed, 0 = stopped on stdin EOF, 5 = a direct-mode worker ended a request that ran over
 * requestTimeout (it answered 504 itself) and exited to be replaced.
 */

/** Worker exit codes with a meaning. */
export const WorkerExit = { OK: 0, BOOT: 3, IMPORT: 4, REQUEST_TIMEOUT: 5 } as const;

/** The facts about one exit. */
export interface ExitFacts {
  code: number | null;
  signal: string | null;
  /** The pool asked it to stop (stdin closed, or killed after the grace period). */
  requested: boolean;
  /** It had said READY. */
  ready: boolean;
  uptimeMs: number;
  /** The process could not be started at all. */
  spawnError: string | null;
  /** Requests it had in flight. */
  inflight: number;
}

/** What to do about it. */
export interface ExitVerdict {
  level: 'info' | 'warn' | 'error';
  /** A short reason for logs and metrics. */
  reason: string;
  message: string;
  /** Failed before serving: do not respawn in a loop. */
  bootFailure: boolean;
}

/** Classifies a worker exit. Pure: same facts, same verdict. */
export function classifyExit(f: ExitFacts): ExitVerdict {
  if (f.spawnError !== null)
    return { level: 'error', reason: 'spawn failed', message: `worker could not be started: ${f.spawnError}`, bootFailure: true };
  if (!f.ready && !f.requested) {
    if (f.code === WorkerExit.IMPORT)
      return { level: 'error', reason: 'app import failed', message: 'worker exited: the app failed to import', bootFailure: true };
    if (f.code === WorkerExit.BOOT)
      return { level: 'error', reason: 'boot failed', message: 'worker exited during boot (bad usage or environment)', bootFailure: true };
    return {
      level: 'error',
      reason: 'exited before ready',
      message: `worker exited before READY (${describe(f)})`,
      bootFailure: true,
    };
  }
  if (f.requested) {
    if (f.signal === 'SIGKILL')
      return { level: 'warn', reason: 'killed after grace period', message: 'worker did not stop in time and was killed', bootFailure: false };
    return { level: 'info', reason: 'stopped', message: 'worker stopped', bootFailure: false };
  }
  if (f.code === WorkerExit.REQUEST_TIMEOUT)
    return { level: 'warn', reason: 'request timeout', message: 'worker answered 504 to a request that ran over requestTimeout and exited; it is replaced', bootFailure: false };
  if (f.signal === 'SIGKILL')
    return {
      level: 'error',
      reason: 'killed',
      message: `worker was killed (SIGKILL), possibly out of memory${f.inflight > 0 ? `; ${f.inflight} request(s) lost` : ''}`,
      bootFailure: false,
    };
  return {
    level: 'warn',
    reason: f.signal ? `signal ${f.signal}` : `exit code ${f.code}`,
    message: `worker exited unexpectedly (${describe(f)}), possible request loss`,
    bootFailure: false,
  };
}

function describe(f: ExitFacts): string {
  return f.signal ? `signal ${f.signal}` : `exit code ${f.code}`;
}
