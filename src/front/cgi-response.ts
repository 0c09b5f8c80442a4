/**
 * Parses the head of a CGI response (the app's STDOUT): `Status:`, headers, blank line.
 * Used by the HTTP front; a FastCGI front passes the bytes through untouched.
 *
 * The head is checked here as strictly as Node's http layer checks `res.writeHead` (which throws
 * on what it refuses), so that an app's bad head is that request's 502, never an exception in
 * the service: status 200..599 only (a CGI response is the final one; 1xx would leave the client
 * waiting for another, and Node refuses < 100), reason phrase and values of HTAB, SP, VCHAR and
 * obs-text only (RFC 9110 5.5; no CTL such as \x01 or \x7f), names that are tokens.
 * Hop-by-hop headers (RFC 9110 7.6.1; PEP 3333 forbids them to apps) are dropped: the front
 * frames the response itself, and an app's `Transfer-Encoding` next to a `Content-Length` would
 * make Node send both with an unchunked body.
 */

/** A parsed response head. */
export interface CgiHead {
  status: number;
  /** The reason phrase the app gave ('' if none). */
  reason: string;
  /** Headers in order, duplicates kept (two Set-Cookie stay two). */
  headers: Array<[string, string]>;
}

/** Why a head is refused: a sentence, and the offending bytes escaped and truncated (for the log). */
export interface CgiHeadError {
  error: string;
  bytes: string;
}

const MAX_HEAD = 64 * 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Node's own test (checkInvalidHeaderChar): anything but HTAB, SP..~ and obs-text. */
const BAD_FIELD_CHAR = /[^\t\x20-\x7e\x80-\xff]/;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
const SHOWN = 120;

/** Bytes (as latin-1 text) made safe for a log line: printable ASCII kept, the rest as \xNN, cut at 120 characters. */
export function escapeBytes(text: string, max = SHOWN): string {
  let out = '';
  for (const ch of text) {
    const c = ch.charCodeAt(0);
    const piece = c >= 0x20 && c < 0x7f && ch !== '\\' ? ch : c === 0x5c ? '\\\\' : `\\x${c.toString(16).padStart(2, '0')}`;
    if (out.length + piece.length > max) return `${out}...`;
    out += piece;
  }
  return out;
}

/** Where a CGI head ends: its first blank line (CRLF CRLF or LF LF, whichever comes first) and that separator's length; null if there is none yet. */
export function headEnd(buf: Buffer): { end: number; sep: number } | null {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (lf >= 0 && (crlf < 0 || lf < crlf)) return { end: lf, sep: 2 };
  return crlf >= 0 ? { end: crlf, sep: 4 } : null;
}

/** Accumulates STDOUT bytes until the head is complete. */
export class CgiHeadParser {
  #buf: Buffer | null = null;

  /**
   * Feeds bytes. Returns the head and the body bytes that followed it, `null` if more is
   * needed, or an error if this is not a CGI response the front can pass on.
   */
  push(chunk: Buffer): { head: CgiHead; rest: Buffer } | CgiHeadError | null {
    const buf = this.#buf ? Buffer.concat([this.#buf, chunk]) : chunk;
    const at = headEnd(buf);
    if (at === null) {
      if (buf.length > MAX_HEAD) return { error: `response head longer than ${MAX_HEAD} bytes`, bytes: escapeBytes(buf.toString('latin1', 0, SHOWN)) };
      this.#buf = Buffer.from(buf);
      return null;
    }
    this.#buf = null;
    const head = parseHead(buf.toString('latin1', 0, at.end));
    if ('error' in head) return head;
    return { head, rest: buf.subarray(at.end + at.sep) };
  }
}

function bad(error: string, bytes: string): CgiHeadError {
  return { error, bytes: escapeBytes(bytes) };
}

/** Parses the head's text (latin-1, one char per byte). */
export function parseHead(text: string): CgiHead | CgiHeadError {
  let status = 200;
  let reason = '';
  let sawStatus = false;
  let location = false;
  let length: string | null = null;
  const headers: Array<[string, string]> = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return bad('malformed header line', line);
    const name = line.slice(0, colon).replace(/[ \t]+$/, '');
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!TOKEN.test(name)) return bad('bad header name', line);
    if (BAD_FIELD_CHAR.test(value)) return bad(`control byte in the value of ${name}`, line);
    const lower = name.toLowerCase();
    if (lower === 'status') {
      if (sawStatus) return bad('two Status headers', line);
      const m = /^(\d{3})(?:[ \t]+(.*))?$/.exec(value);
      if (!m) return bad('bad Status', line);
      status = Number(m[1]);
      if (status < 200 || status > 599) return bad(`status ${m[1]} is not a final HTTP status (200..599)`, line);
      reason = m[2] ?? '';
      sawStatus = true;
      continue;
    }
    if (HOP_BY_HOP.has(lower)) continue;
    if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value)) return bad('bad Content-Length', line);
      const normal = String(Number(value));
      if (length !== null && length !== normal) return bad('two different Content-Length values', line);
      if (length !== null) continue;
      length = normal;
    }
    if (lower === 'location') location = true;
    headers.push([name, value]);
  }
  if (!sawStatus && location) {
    status = 302;
    reason = 'Found';
  }
  return { status, reason, headers };
}
