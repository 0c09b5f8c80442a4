/**
 * CORRAL_REPORT: what a direct-mode worker tells the service about the connections it serves
 * itself (fcgi/PROTOCOL.md, "Direct mode"): how busy it is, the listen queue it sees, the
 * requests running now and those finished since its last report (the access log's lines).
 * The worker is our own child, but its report still crosses a process boundary: every field is
 * checked here and a malformed report is dropped whole.
 */

/** A request running on a direct worker now. */
export interface RunningRequest {
  readonly method: string;
  readonly path: string;
  readonly ageMs: number;
}

/** A request a direct worker finished. */
export interface FinishedRequest {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly bytes: number;
  readonly ms: number;
  readonly error: string | null;
}

/** One report. */
export interface DirectReport {
  /** Requests running now. */
  readonly busy: number;
  /** Connections open now. */
  readonly conns: number;
  /** Requests finished since the worker started. */
  readonly served: number;
  /** Connections waiting in the listen queue (Linux TCP), or null where the worker cannot see it. */
  readonly queue: number | null;
  readonly current: readonly RunningRequest[];
  readonly access: readonly FinishedRequest[];
  /** Finished requests the worker dropped from its batch (the service was not reading). */
  readonly accessDropped: number;
}

/** Most entries taken from one report's lists; the worker sends far fewer. */
const MAX_ENTRIES = 5_000;
const MAX_TEXT = 8_192;

const count = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null);
const figure = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
const text = (v: unknown): string | null => (typeof v === 'string' ? v.slice(0, MAX_TEXT) : null);

/** The report in `content`, or null if it is not one. */
export function parseReport(content: Buffer): DirectReport | null {
  let j: unknown;
  try {
    j = JSON.parse(content.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof j !== 'object' || j === null) return null;
  const o = j as Record<string, unknown>;
  const busy = count(o.busy);
  const conns = count(o.conns);
  const served = count(o.served);
  if (busy === null || conns === null || served === null) return null;
  const queue = o.queue === null || o.queue === undefined ? null : count(o.queue);
  if (queue === null && o.queue !== null && o.queue !== undefined) return null;
  const current: RunningRequest[] = [];
  for (const e of list(o.current)) {
    const method = text(e.method);
    // The path only: a query string may carry tokens, and the status page shows this.
    const path = text(e.path)?.split('?')[0] ?? null;
    const ageMs = figure(e.age_ms);
    if (method === null || path === null || ageMs === null) return null;
    current.push({ method, path, ageMs });
  }
  const access: FinishedRequest[] = [];
  // Each entry an array [method, path, status, bytes, microseconds, error?]: the worker builds
  // one per request, and a tuple with no key names is the cheapest it can (PROTOCOL.md).
  for (const e of Array.isArray(o.access) ? (o.access as unknown[]).slice(0, MAX_ENTRIES) : []) {
    if (!Array.isArray(e)) return null;
    const method = text(e[0]);
    const path = text(e[1]);
    const status = count(e[2]);
    const bytes = count(e[3]);
    const us = count(e[4]);
    if (method === null || path === null || status === null || bytes === null || us === null) return null;
    access.push({ method, path, status, bytes, ms: us / 1000, error: e.length > 5 ? text(e[5]) : null });
  }
  return { busy, conns, served, queue, current, access, accessDropped: count(o.access_dropped) ?? 0 };
}

function list(v: unknown): Array<Record<string, unknown>> {
  if (!Array.isArray(v)) return [];
  return v.slice(0, MAX_ENTRIES).filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null);
}
