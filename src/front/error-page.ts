/**
 * The CGI response a front sends when the pool cannot serve a request: a plain text page naming
 * the error code and nothing else (serve mode: messages quote paths and values, which stay in the
 * log), or the dev page (dev-page.ts) with the message and the Python exception (dev mode only).
 */
import { randomBytes } from 'node:crypto';
import { ERRORS, type CorralError } from '../errors.js';
import { devPageCsp, renderDevPage } from './dev-page.js';

/** Errors that mean "the app's code is broken": dev mode shows them as a 500 with the traceback. */
const APP_BROKEN = new Set(['CORRAL_APP_IMPORT_FAILED', 'CORRAL_WORKER_BOOT_FAILED', 'CORRAL_RAPID_FAIL']);

/** The HTTP status a client gets: the catalogue's, except broken-app errors in dev mode (500, like a framework's debug page). */
export function clientStatus(error: CorralError, dev: boolean): number {
  return dev && APP_BROKEN.has(error.code) ? 500 : error.status;
}

const SENTENCES: Record<number, string> = {
  400: 'The request was malformed.',
  403: 'This request is not allowed.',
  404: 'Nothing is served here.',
  413: 'The request body is too large.',
  431: 'The request headers are too large.',
  500: 'The server could not handle this request.',
  502: 'The application did not give a valid answer.',
  503: 'The service is unavailable; try again later.',
  504: 'The application took too long to answer.',
};

/** A sentence for clients that says nothing about the service: by status only. */
export function clientSentence(status: number): string {
  return `${SENTENCES[status] ?? 'The request could not be served.'} The details are in the service log.`;
}

/** What the dev page needs besides the error: the generation to wait past, the request's method. */
export interface DevContext {
  /** The generation serving when the error happened; null: the page does not reload itself (no dev front to ask). */
  generation: number | null;
  method: string;
  path: string | null;
}

const NO_RELOAD: DevContext = { generation: null, method: 'GET', path: null };

/**
 * The page body, content type and extra headers for an error: in dev mode the dev page
 * (dev-page.ts: the message, the Python exception or traceback, a strict CSP); in serve mode the
 * status, the code and a generic sentence only (the caller logs the details).
 */
export function errorBody(error: CorralError, dev: boolean, ctx: DevContext = NO_RELOAD): { type: string; body: Buffer; headers: Record<string, string> } {
  const spec = ERRORS[error.code];
  if (dev) {
    const nonce = randomBytes(16).toString('base64');
    const first = error.trace?.exceptions[0];
    const html = renderDevPage({
      status: clientStatus(error, true),
      code: error.code,
      title: first ? first.type : APP_BROKEN.has(error.code) ? 'The app failed to start' : spec.title,
      message: first ? first.message : error.message,
      trace: error.trace ?? null,
      detail: error.detail ?? null,
      generation: ctx.generation,
      method: ctx.method,
      path: ctx.path,
      // A Python exception speaks for itself; corral's own errors get the catalogue's explanation.
      explain: first ? null : spec.doc,
      nonce,
    });
    return { type: 'text/html; charset=utf-8', body: Buffer.from(html, 'utf8'), headers: { 'Content-Security-Policy': devPageCsp(nonce), 'Cache-Control': 'no-store' } };
  }
  // Serve mode: messages name paths, settings and app internals; the client gets the code only.
  return { type: 'text/plain; charset=utf-8', body: Buffer.from(`${error.status} ${spec.title}\n${error.code}: ${clientSentence(error.status)}\n`, 'utf8'), headers: {} };
}

/** A whole CGI response (Status line, headers, body) for an error. */
export function errorResponse(error: CorralError, dev: boolean): Buffer {
  const spec = ERRORS[error.code];
  const { type, body, headers } = errorBody(error, dev);
  const status = clientStatus(error, dev);
  let head = `Status: ${status} ${status === 500 ? 'Internal Server Error' : spec.title}\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\nX-Corral-Error: ${error.code}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  if (error.retryAfter !== undefined) head += `Retry-After: ${error.retryAfter}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), body]);
}
