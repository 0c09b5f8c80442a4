/**
 * The CGI response a front sends when the pool cannot serve a request: a plain text page naming
 * the error code (serve mode), or an HTML page with the Python traceback (dev mode only).
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

/** The page body and content type for an error. */
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
  return { type: 'text/plain; charset=utf-8', body: Buffer.from(`${error.status} ${spec.title}\n${error.code}: ${error.message}\n`, 'utf8') };
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
