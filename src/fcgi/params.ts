/**
 * FastCGI name-value pairs (spec section 3.4). Names and values are raw bytes: WSGI wants them
 * as latin-1 native strings, so strings given here are encoded as latin-1, never UTF-8.
 */

import { NULL_REQUEST_ID, RecordType } from './constants.js';
import { encodeRecord } from './records.js';

/** A name or value: a string (encoded latin-1) or raw bytes. */
export type ParamBytes = string | Uint8Array;

function lengthSize(n: number): number {
  return n < 128 ? 1 : 4;
}

function writeLength(b: Buffer, off: number, n: number): number {
  if (n < 128) {
    b[off] = n;
    return off + 1;
  }
  b.writeUInt32BE((n | 0x80000000) >>> 0, off);
  return off + 4;
}

function toBytes(v: ParamBytes): Uint8Array {
  return typeof v === 'string' ? Buffer.from(v, 'latin1') : v;
}

/** Encodes pairs into one params body (split it into records with `frameStream`). */
export function encodeParams(pairs: Iterable<readonly [ParamBytes, ParamBytes]>): Buffer {
  const bytes: Uint8Array[] = [];
  let size = 0;
  for (const [name, value] of pairs) {
    const n = toBytes(name);
    const v = toBytes(value);
    bytes.push(n, v);
    size += lengthSize(n.length) + lengthSize(v.length) + n.length + v.length;
  }
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    const n = bytes[i]!;
    const v = bytes[i + 1]!;
    off = writeLength(out, off, n.length);
    off = writeLength(out, off, v.length);
    out.set(n, off);
    off += n.length;
    out.set(v, off);
    off += v.length;
  }
  return out;
}

/** Decoded pairs as raw byte views, or an error message if the body is truncated. */
export type DecodedParams = { ok: true; pairs: Array<[Buffer, Buffer]> } | { ok: false; message: string };

function readLength(b: Buffer, off: number): [number, number] | null {
  if (off >= b.length) return null;
  const first = b[off]!;
  if (first < 128) return [first, off + 1];
  if (off + 4 > b.length) return null;
  return [b.readUInt32BE(off) & 0x7fffffff, off + 4];
}

/** Decodes a whole params body (all PARAMS records of a request, concatenated). Never throws. */
export function decodeParams(body: Buffer): DecodedParams {
  const pairs: Array<[Buffer, Buffer]> = [];
  let off = 0;
  while (off < body.length) {
    const nl = readLength(body, off);
    const vl = nl && readLength(body, nl[1]);
    if (!nl || !vl) return { ok: false, message: `params truncated in a length at byte ${off}` };
    const start = vl[1];
    const mid = start + nl[0];
    const end = mid + vl[0];
    if (end > body.length) return { ok: false, message: `params truncated: pair at byte ${off} needs ${end - body.length} more bytes` };
    pairs.push([body.subarray(start, mid), body.subarray(mid, end)]);
    off = end;
  }
  return { ok: true, pairs };
}

/** The offset after the length last read by `lengthAt` (a module variable: no pair allocated per length on the hot path). */
let lengthEnd = 0;

/** The length at `off`, or -1 when it does not fit in `b`; sets `lengthEnd`. */
function lengthAt(b: Buffer, off: number): number {
  if (off >= b.length) return -1;
  const first = b[off]!;
  if (first < 128) {
    lengthEnd = off + 1;
    return first;
  }
  if (off + 4 > b.length) return -1;
  lengthEnd = off + 4;
  return (first & 0x7f) * 0x1000000 + (b[off + 1]! << 16) + (b[off + 2]! << 8) + b[off + 3]!;
}

/**
 * Why a params body is not a valid name-value list (truncated pair or length), or null if it is.
 * Checks framing only, without decoding: what the front runs on every request before forwarding.
 */
export function checkParams(body: Buffer): string | null {
  let off = 0;
  while (off < body.length) {
    const nl = lengthAt(body, off);
    const vl = nl < 0 ? -1 : lengthAt(body, lengthEnd);
    if (vl < 0) return `params truncated in a length at byte ${off}`;
    const end = lengthEnd + nl + vl;
    if (end > body.length) return `params truncated: the pair at byte ${off} needs ${end - body.length} more bytes`;
    off = end;
  }
  return null;
}

/** Decoded params as a latin-1 string map (later duplicates win), or null if malformed. */
export function paramsToMap(body: Buffer): Map<string, string> | null {
  const d = decodeParams(body);
  if (!d.ok) return null;
  const m = new Map<string, string>();
  for (const [n, v] of d.pairs) m.set(n.toString('latin1'), v.toString('latin1'));
  return m;
}

/**
 * Finds a few params in a params body without decoding the rest (for access logs on the hot
 * path). Names are matched by exact bytes; a pair cut short at the end of `body` is skipped.
 */
export function scanParams(body: Buffer, wanted: readonly string[], into: Record<string, string>): void {
  let off = 0;
  let left = wanted.length;
  while (off < body.length && left > 0) {
    const nl = lengthAt(body, off);
    const vl = nl < 0 ? -1 : lengthAt(body, lengthEnd);
    if (vl < 0) return;
    const start = lengthEnd;
    const mid = start + nl;
    const end = mid + vl;
    if (end > body.length) return;
    for (const name of wanted) {
      if (name.length === nl && into[name] === undefined && sameBytes(body, start, name)) {
        into[name] = body.toString('latin1', mid, end);
        left--;
        break;
      }
    }
    off = end;
  }
}

/** Whether `b` holds `name`'s latin-1 bytes at `off` (compared in place: no string made per candidate name). */
function sameBytes(b: Buffer, off: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) if (b[off + i] !== name.charCodeAt(i)) return false;
  return true;
}

/**
 * The FCGI_GET_VALUES_RESULT record answering a GET_VALUES content: the asked names that `known`
 * has, with its values (names it does not know are left out, as the spec says), or why the
 * content is not a valid name-value list.
 */
export function getValuesResult(content: Buffer, known: Readonly<Record<string, string>>): { ok: true; record: Buffer } | { ok: false; message: string } {
  const asked = decodeParams(content);
  if (!asked.ok) return { ok: false, message: asked.message };
  const answer: Array<[string, string]> = [];
  for (const [name] of asked.pairs) {
    const key = name.toString('latin1');
    const value = known[key];
    if (value !== undefined) answer.push([key, value]);
  }
  return { ok: true, record: encodeRecord(RecordType.GET_VALUES_RESULT, NULL_REQUEST_ID, encodeParams(answer)) };
}
