/**
 * The supervisor's view of a worker. The real one is `Worker` (a Python process); unit tests use
 * fakes, so the supervisor can be driven with a fake clock and no processes.
 */
import type { Logger } from '../log/logger.js';
import type { Exchange, WorkerPort } from './exchange.js';
import type { DirectReport, RunningRequest } from './report.js';

/** What the worker said in CORRAL_READY. */
export interface ReadyInfo {
  pid: number;
  python: string;
  app: string;
  threads: number;
  window: number;
  /** A direct worker's handoff socket: where a draining sibling hands it kept connections. */
  handoff?: string;
}

/** What the worker said in CORRAL_FATAL before exiting. */
export interface FatalInfo {
  kind: string;
  error: string;
  traceback?: string;
  file?: string;
  line?: number;
  /** `corral dev`: the exception's facts for the dev page (src/devtrace.ts parses them). */
  devtrace?: unknown;
}

export type WorkerState = 'starting' | 'ready' | 'draining' | 'stopping' | 'exited';

/** A worker, as the pool drives it. */
export interface WorkerHandle extends WorkerPort {
  readonly generation: number;
  readonly log: Logger;
  readonly state: WorkerState;
  readonly info: ReadyInfo | null;
  readonly fatal: FatalInfo | null;
  readonly spawnError: Error | null;
  /** The last lines of its stderr. */
  readonly lastStderr: string;
  /** Threads (known after READY). */
  readonly capacity: number;
  /** Requests the service has on it (its exchanges); 0 for a direct worker, which takes its own. */
  readonly inflight: number;
  /** Requests running on it: its exchanges, or for a direct worker what it last reported. */
  readonly busy: number;
  /** The requests running on a direct worker as it last reported (empty for a proxied one: see exchanges). */
  readonly running: readonly RunningRequest[];
  /** Requests completed. */
  readonly requests: number;
  readonly exchanges: Iterable<Exchange>;
  /** Starts a request; the caller checked that a thread is free, or (`ex.ahead`) that it may take one more ahead. */
  dispatch(ex: Exchange): void;
  /** Takes it out of dispatch. */
  drain(): void;
  /** The protocol-level stop; `handoffTo`: a live direct worker's handoff socket for its kept connections. */
  closeStdin(handoffTo?: string): void;
  kill(): void;
  ping(): void;
  /** Removes and returns the exchanges in flight (after its exit). */
  forgetExchanges(): Exchange[];
}

/** Callbacks to the pool. */
export interface WorkerEvents {
  ready(w: WorkerHandle): void;
  /** A request finished or failed and freed a thread; `ex`: the request, when known. */
  idle(w: WorkerHandle, ex?: Exchange): void;
  exit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void;
  /** A line the worker wrote to stderr. */
  stderr(w: WorkerHandle, line: string): void;
  /** The answer to `ping()`. */
  pong(w: WorkerHandle): void;
  /** A direct worker's report (after `busy`, `running` and `requests` took it in). */
  report?(w: WorkerHandle, r: DirectReport): void;
}

