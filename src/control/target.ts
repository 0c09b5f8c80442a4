/**
 * What the control listener needs from the running service. `Service` (src/cli) satisfies it
 * structurally; control never imports cli, and unit tests pass fakes.
 */
import type { Settings } from '../config/settings.js';
import type { CorralError } from '../errors.js';
import type { StatsFigures } from '../monitor/app-stats.js';
import type { AnswererInfo } from '../pool/answerer.js';
import type { PoolState, WorkerStatus } from '../pool/pool.js';

/** The pool figures the status page reads; all synchronous, so it never waits on a worker. */
export interface ControlPool {
  readonly state: PoolState;
  readonly servingGeneration: number;
  readonly queued: number;
  readonly failure: CorralError | null;
  readonly lastReloadError: CorralError | null;
  /** Most requests waiting at once so far; times maxWorkers made requests wait; the oldest wait now (ms). */
  readonly queueHighWater: number;
  readonly maxWorkersReached: number;
  readonly longestWaitMs: number;
  status(): WorkerStatus[];
}

/** One app of the service. */
export interface ControlApp {
  readonly settings: Readonly<Pick<Settings, 'root' | 'wsgiApp' | 'threads' | 'workers' | 'minWorkers' | 'maxWorkers' | 'queueLength'>>;
  readonly pool: ControlPool;
  /** Unique in the service: the `app` label (the WSGI callable, or `callable@directory` when two apps share one). */
  readonly name: string;
  /** Request rates, latency and recent events; null when the service keeps none. */
  readonly stats: { read(): StatsFigures } | null;
  /** Direct data plane: the process answering the error page while the pool is failed (absent or null: none). */
  readonly answerer?: AnswererInfo | null;
  /** A rolling reload; resolves once the new generation serves, or with its boot error. */
  reload(reason: string): Promise<Error | null>;
}

/** The service, as the control listener drives it. */
export interface ControlTarget {
  /** Every app running. */
  readonly apps: readonly ControlApp[];
  /** True from the moment a stop begins: /healthz answers 503 so load balancers move traffic away. */
  readonly draining: boolean;
  /** Stops the service (idempotent). */
  stop(): Promise<void>;
}
