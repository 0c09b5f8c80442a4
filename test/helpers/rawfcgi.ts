// Test helper: a tiny FastCGI record encoder/decoder for driving workers and FastCGI servers
// byte by byte. Not the production codec (that lives in src/fcgi/).

export const T = {
  BEGIN: 1, ABORT: 2, END: 3, PARAMS: 4, STDIN: 5, STDOUT: 6, STDERR: 7,
  GET_VALUES: 9, GET_VALUES_RESULT: 10, UNKNOWN_TYPE: 11,
  READY: 0xc0, WINDOW: 0xc1, PING: 0xc2, PONG: 0xc3, FATAL: 0xc4,
} as const;

export interface Rec { type: number; id: number; content: Buffer }

/** One record; content must fit in 65535 bytes. */
export function record(type: number, id: number, content: Buffer = Buffer.alloc(0)): Buffer {
  if (content.length > 0xffff) throw new Error(`record content too long: ${content.length}`);
  const head = Buffer.from([1, type, id >> 8, id & 0xff, content.length >> 8, content.length & 0xff, 0, 0]);
  return Buffer.concat([head, content]);
}

/** Records of a stream (split at 65535 bytes), ended by an empty record if `end`. */
export function streamRecords(type: number, id: number, data: Buffer, end = true): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += 0xffff) out.push(record(type, id, data.subarray(i, i + 0xffff)));
  if (end) out.push(record(type, id));
  return Buffer.concat(out);
}

function lengthBytes(n: number): Buffer {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0, 0);
  return b;
}

/** FastCGI name-value pairs, latin-1. */
export function pairs(params: Record<string, string>): Buffer {
  const out: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) {
    const kb = Buffer.from(k, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    out.push(lengthBytes(kb.length), lengthBytes(vb.length), kb, vb);
  }
  return Buffer.concat(out);
}

export function decodePairs(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  const len = (): number => {
    const b = buf[i]!;
    if (b < 128) { i += 1; return b; }
    const n = buf.readUInt32BE(i) & 0x7fffffff;
    i += 4;
    return n;
  };
  while (i < buf.length) {
    const kl = len();
    const vl = len();
    out[buf.toString('latin1', i, i + kl)] = buf.toString('latin1', i + kl, i + kl + vl);
    i += kl + vl;
  }
  return out;
}

export function begin(id: number, keepConn = true, role = 1): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(role, 0);
  body.writeUInt8(keepConn ? 1 : 0, 2);
  return record(T.BEGIN, id, body);
}

/** BEGIN + PARAMS + empty PARAMS, then the body and the empty STDIN unless body is null. */
export function request(id: number, params: Record<string, string>, body: Buffer | null = Buffer.alloc(0), keepConn = true): Buffer {
  const parts = [begin(id, keepConn), streamRecords(T.PARAMS, id, pairs(params))];
  if (body !== null) parts.push(streamRecords(T.STDIN, id, body));
  return Buffer.concat(parts);
}

export function windowRecord(id: number, credit: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(credit, 0);
  return record(T.WINDOW, id, b);
}

/** Incremental decoder: push chunks, get whole records; throws on a bad version byte. */
export class Decoder {
  #buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Rec[] {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    const out: Rec[] = [];
    let pos = 0;
    while (this.#buf.length - pos >= 8) {
      if (this.#buf[pos] !== 1) throw new Error(`bad FastCGI version byte ${this.#buf[pos]} at ${pos}`);
      const clen = this.#buf.readUInt16BE(pos + 4);
      const end = pos + 8 + clen + this.#buf[pos + 6]!;
      if (end > this.#buf.length) break;
      out.push({ type: this.#buf[pos + 1]!, id: this.#buf.readUInt16BE(pos + 2), content: this.#buf.subarray(pos + 8, pos + 8 + clen) });
      pos = end;
    }
    this.#buf = this.#buf.subarray(pos);
    return out;
  }
}

export interface CgiResponse { status: number; headers: [string, string][]; body: Buffer }

/** Split a CGI response (`Status:` line, headers, blank line, body). */
export function parseCgi(buf: Buffer): CgiResponse {
  const cut = buf.indexOf('\r\n\r\n');
  if (cut < 0) throw new Error(`no end of headers in ${JSON.stringify(buf.toString('latin1', 0, 200))}`);
  const headers = buf.toString('latin1', 0, cut).split('\r\n').map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  const status = Number(headers.find(([k]) => k.toLowerCase() === 'status')?.[1].slice(0, 3) ?? 200);
  return { status, headers: headers.filter(([k]) => k.toLowerCase() !== 'status'), body: buf.subarray(cut + 4) };
}
