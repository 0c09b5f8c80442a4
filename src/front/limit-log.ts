/**
 * Log lines for limits a peer hits (timeouts, connection and buffer limits, bad input): one line
 * per peer and condition, then at most one a minute with the count of those left out, so a
 * hostile or broken client cannot flood the log (nginx logs each, HAProxy counts; this does both).
 */
import type { Logger } from '../log/logger.js';

/** Rate-limited warnings keyed by peer and code. */
export class LimitLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #seen = new Map<string, { at: number; skipped: number }>();

  constructor(log: Logger, intervalMs = 60_000) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  /** Logs `msg` at warn for `peer` unless the same condition was logged for it within the interval. */
  warn(peer: string, code: string, fields: Record<string, unknown>, msg: string): void {
    const key = `${code}\n${peer}`;
    const now = Date.now();
    const seen = this.#seen.get(key);
    if (seen && now - seen.at < this.#intervalMs) {
      seen.skipped++;
      return;
    }
    this.#log.warn({ code, peer, ...fields, ...(seen && seen.skipped > 0 ? { notLogged: seen.skipped } : {}) }, msg);
    // Bounded however many peers there are.
    if (this.#seen.size >= 10_000) this.#seen.clear();
    this.#seen.set(key, { at: now, skipped: 0 });
  }
}

/** A peer as limits count it: the remote address for TCP (any port), `local` for unix sockets, pipes and stdin. */
export function peerOf(socket: unknown): string {
  return (socket as { remoteAddress?: string }).remoteAddress || 'local';
}
