/**
 * What the fronts report about each finished request: the access log line, and the figures the
 * metrics count. One record per request, built by the front that served it.
 */
import { fastLine, jsonNumber, jsonString } from '../log/fast-line.js';
import type { Logger } from '../log/logger.js';
import type { Exchange } from '../pool/exchange.js';

/** One finished request. */
export interface RequestRecord {
  app: string | null;
  method: string;
  path: string;
  status: number;
  /** Response bytes sent to the client (CGI head included). */
  bytes: number;
  durationMs: number;
  /** Worker that served it; null if none did (queue full, refused, failed while queued). */
  pid: number | null;
  /** Time spent waiting for a free worker thread. */
  queueMs: number | null;
  /** Error code when corral answered instead of the app. */
  error: string | null;
}

/** Called once per finished request. */
export type RequestObserver = (r: RequestRecord) => void;

/** Several observers as one. */
export function observers(...list: Array<RequestObserver | null>): RequestObserver | null {
  const live = list.filter((o): o is RequestObserver => o !== null);
  if (live.length === 0) return null;
  if (live.length === 1) return live[0]!;
  return (r) => {
    for (const o of live) o(r);
  };
}

/** The access log: one `request` line per request. */
export function accessLogger(log: Logger): RequestObserver {
  const access = log.child({ kind: 'access' });
  const line = fastLine(access, 'info');
  if (line === null) return (r) => access.info(accessFields(r), 'request');
  // The same line pino would write for accessFields(r), built directly (fast-line.ts says why).
  return (r) => {
    if (!line.enabled) return;
    const q = r.queueMs;
    line.write(
      `,"app":${r.app === null ? 'null' : jsonString(r.app)},"method":${jsonString(r.method)},"path":${jsonString(r.path)},"status":${jsonNumber(r.status)},"bytes":${jsonNumber(r.bytes)}` +
        `,"ms":${jsonNumber(Math.round(r.durationMs * 100) / 100)},"pid":${r.pid === null ? 'null' : jsonNumber(r.pid)},"queueMs":${q === null ? 'null' : jsonNumber(Math.round(q * 100) / 100)}` +
        (r.error ? `,"error":${jsonString(r.error)}` : ''),
      'request',
    );
  };
}

/** The fields of an access line, in their order. */
export function accessFields(r: RequestRecord): Record<string, unknown> {
  return {
    app: r.app,
    method: r.method,
    path: r.path,
    status: r.status,
    bytes: r.bytes,
    ms: Math.round(r.durationMs * 100) / 100,
    pid: r.pid,
    queueMs: r.queueMs === null ? null : Math.round(r.queueMs * 100) / 100,
    ...(r.error ? { error: r.error } : {}),
  };
}

/** How much of a response's start cgiStatus searches for the `Status:` line. */
export const CGI_STATUS_PROBE = 2048;

/** The status in the head of a CGI response (`Status: 404 ...`, else 200, or 302 with a Location). */
export function cgiStatus(head: Buffer): number {
  const text = head.toString('latin1', 0, Math.min(head.length, CGI_STATUS_PROBE));
  const m = /(?:^|\n)Status:[ \t]*(\d{3})/i.exec(text);
  if (m) return Number(m[1]);
  return /(?:^|\n)Location:/i.test(text) ? 302 : 200;
}

/** Worker pid and queue wait of an exchange, as far as it got. */
export function exchangeFacts(ex: Exchange | null, now: number): { pid: number | null; queueMs: number | null } {
  if (!ex || ex.worker === null) return { pid: null, queueMs: ex ? now - ex.createdAt : null };
  return { pid: ex.worker.pid, queueMs: ex.dispatchedAt - ex.createdAt };
}
