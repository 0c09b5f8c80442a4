/**
 * The CGI response a front sends when the pool cannot serve a request: a plain text page naming
 * the error code and nothing else (serve mode: messages quote paths and values, which stay in the
 * log), or an HTML page with the message and the Python traceback (dev mode only).
 */
import { ERRORS, type CorralError } from '../errors.js';

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

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

/**
 * The page body and content type for an error: in dev mode the message and traceback; in serve
 * mode the status, the code and a generic sentence only (the caller logs the details).
 */
export function errorBody(error: CorralError, dev: boolean): { type: string; body: Buffer } {
  const spec = ERRORS[error.code];
  if (dev) {
    const html =
      `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(error.message.slice(0, 120))}</title>` +
      `<style>body{font-family:system-ui,sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head>` +
      `<body><h1>${clientStatus(error, true)} ${escapeHtml(APP_BROKEN.has(error.code) ? 'The app failed to start' : spec.title)}</h1><p><code>${error.code}</code>: ${escapeHtml(error.message)}</p>` +
      (error.detail ? `<pre>${escapeHtml(error.detail)}</pre>` : '') +
      `</body></html>\n`;
    return { type: 'text/html; charset=utf-8', body: Buffer.from(html, 'utf8') };
  }
  // Serve mode: messages name paths, settings and app internals; the client gets the code only.
  return { type: 'text/plain; charset=utf-8', body: Buffer.from(`${error.status} ${spec.title}\n${error.code}: ${clientSentence(error.status)}\n`, 'utf8') };
}

/** A whole CGI response (Status line, headers, body) for an error. */
export function errorResponse(error: CorralError, dev: boolean): Buffer {
  const spec = ERRORS[error.code];
  const { type, body } = errorBody(error, dev);
  const status = clientStatus(error, dev);
  let head = `Status: ${status} ${status === 500 ? 'Internal Server Error' : spec.title}\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\nX-Corral-Error: ${error.code}\r\n`;
  if (error.retryAfter !== undefined) head += `Retry-After: ${error.retryAfter}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), body]);
}
