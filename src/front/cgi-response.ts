/**
 * Parses the head of a CGI response (the app's STDOUT): `Status:`, headers, blank line.
 * Used by the HTTP front; a FastCGI front passes the bytes through untouched.
 */

/** A parsed response head. */
export interface CgiHead {
  status: number;
  reason: string;
  /** Headers in order, duplicates kept (two Set-Cookie stay two). */
  headers: Array<[string, string]>;
}

const MAX_HEAD = 64 * 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

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
   * needed, or an error message if this is not a CGI response.
   */
  push(chunk: Buffer): { head: CgiHead; rest: Buffer } | { error: string } | null {
    const buf = this.#buf ? Buffer.concat([this.#buf, chunk]) : chunk;
    const at = headEnd(buf);
    if (at === null) {
      if (buf.length > MAX_HEAD) return { error: `response head longer than ${MAX_HEAD} bytes` };
      this.#buf = Buffer.from(buf);
      return null;
    }
    this.#buf = null;
    const head = parseHead(buf.toString('latin1', 0, at.end));
    if ('error' in head) return head;
    return { head, rest: buf.subarray(at.end + at.sep) };
  }
}

function parseHead(text: string): CgiHead | { error: string } {
  let status = 200;
  let reason = 'OK';
  let sawStatus = false;
  let location = false;
  const headers: Array<[string, string]> = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { error: `malformed header line ${JSON.stringify(line.slice(0, 80))}` };
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!TOKEN.test(name)) return { error: `bad header name ${JSON.stringify(name.slice(0, 80))}` };
    if (/[\0\r\n]/.test(value)) return { error: `bad value for header ${name}` };
    if (name.toLowerCase() === 'status') {
      const m = /^(\d{3})(?:\s+(.*))?$/.exec(value);
      if (!m) return { error: `bad Status ${JSON.stringify(value)}` };
      status = Number(m[1]);
      reason = m[2] ?? '';
      sawStatus = true;
      continue;
    }
    if (name.toLowerCase() === 'location') location = true;
    headers.push([name, value]);
  }
  if (!sawStatus && location) {
    status = 302;
    reason = 'Found';
  }
  return { status, reason, headers };
}
