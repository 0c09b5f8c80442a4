/**
 * Incremental FastCGI record parser: pure logic over Buffers, no I/O.
 *
 * Records that arrive whole inside one chunk are handed out as views into that chunk (no copy),
 * which lets the service rewrite a request id in place and forward the record as it came.
 * Only a record split across chunks is assembled, and only from the bytes it needs, so the
 * cost stays linear however the input is chunked (fastcgi-stream re-copies its whole backlog).
 */
import { FCGI_VERSION_1, HEADER_LEN } from './constants.js';

/** One record as received. `content` and `frame` are views: copy them to keep them past the callback's caller. */
export interface FcgiRecord {
  readonly type: number;
  readonly requestId: number;
  /** The record's content bytes (padding excluded). */
  readonly content: Buffer;
  /** The whole record: 8-byte header, content and padding. */
  readonly frame: Buffer;
}

/** Why the byte stream is not FastCGI. The parser stops at the first one. */
export interface ParseError {
  readonly code: 'BAD_VERSION';
  readonly message: string;
  /** Bytes accepted before the bad header. */
  readonly offset: number;
}

/** Total length of the record whose header starts at `buf[off]`. */
function frameLength(buf: Buffer, off: number): number {
  return HEADER_LEN + ((buf[off + 4]! << 8) | buf[off + 5]!) + buf[off + 6]!;
}

function toRecord(frame: Buffer): FcgiRecord {
  const contentLength = (frame[4]! << 8) | frame[5]!;
  return {
    type: frame[1]!,
    requestId: (frame[2]! << 8) | frame[3]!,
    content: frame.subarray(HEADER_LEN, HEADER_LEN + contentLength),
    frame,
  };
}

/** Feed chunks with `push`; each complete record is passed to `onRecord` in order. */
export class RecordParser {
  /** Pieces of a record that is not complete yet. */
  #pieces: Buffer[] = [];
  #pendingLength = 0;
  /** Bytes consumed so far, for error offsets. */
  #offset = 0;
  #error: ParseError | null = null;

  /** The error that stopped this parser, if any. */
  get error(): ParseError | null {
    return this.#error;
  }

  /** Bytes held for an incomplete record. */
  get buffered(): number {
    return this.#pendingLength;
  }

  /**
   * Parse `chunk`. Returns null, or the error that makes the stream unusable (the caller closes
   * the connection). Never throws on any input; `onRecord` exceptions propagate.
   */
  push(chunk: Buffer, onRecord: (record: FcgiRecord) => void): ParseError | null {
    if (this.#error) return this.#error;
    let off = 0;
    if (this.#pendingLength > 0) {
      off = this.#completePending(chunk, onRecord);
      if (off < 0 || this.#error) return this.#error;
    }
    const end = chunk.length;
    while (end - off >= HEADER_LEN) {
      if (chunk[off] !== FCGI_VERSION_1) return this.#fail(chunk[off]!);
      const total = frameLength(chunk, off);
      if (end - off < total) break;
      onRecord(toRecord(chunk.subarray(off, off + total)));
      off += total;
      this.#offset += total;
    }
    if (off < end) {
      this.#pieces.push(chunk.subarray(off));
      this.#pendingLength = end - off;
    }
    return null;
  }

  /** Uses the start of `chunk` to finish the pending record. Returns the offset reached, or -1 if still incomplete. */
  #completePending(chunk: Buffer, onRecord: (record: FcgiRecord) => void): number {
    let have = this.#pendingLength;
    let used = 0;
    if (have < HEADER_LEN) {
      used = Math.min(HEADER_LEN - have, chunk.length);
      this.#pieces.push(chunk.subarray(0, used));
      have += used;
      this.#pendingLength = have;
      if (have < HEADER_LEN) return -1;
      const header = Buffer.concat(this.#pieces, HEADER_LEN);
      this.#pieces = [header];
      if (header[0] !== FCGI_VERSION_1) {
        this.#fail(header[0]!);
        return -1;
      }
    }
    const first = this.#pieces[0]!;
    const head = first.length >= HEADER_LEN ? first : Buffer.concat(this.#pieces, HEADER_LEN);
    const total = frameLength(head, 0);
    const take = Math.min(total - have, chunk.length - used);
    if (take > 0) this.#pieces.push(chunk.subarray(used, used + take));
    have += take;
    used += take;
    this.#pendingLength = have;
    if (have < total) return -1;
    const frame = this.#pieces.length === 1 ? this.#pieces[0]! : Buffer.concat(this.#pieces, total);
    this.#pieces = [];
    this.#pendingLength = 0;
    this.#offset += total;
    onRecord(toRecord(frame));
    return used;
  }

  /** `#offset` already counts every record before the bad header, in this chunk and earlier ones. */
  #fail(version: number): ParseError {
    this.#error = {
      code: 'BAD_VERSION',
      message: `FastCGI record version ${version} at byte ${this.#offset} (expected ${FCGI_VERSION_1}): not a FastCGI stream`,
      offset: this.#offset,
    };
    this.#pieces = [];
    this.#pendingLength = 0;
    return this.#error;
  }
}
