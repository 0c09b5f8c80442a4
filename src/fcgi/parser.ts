/**
 * Incremental FastCGI record parser: pure logic over Buffers, no I/O.
 *
 * Records that arrive whole inside one chunk are handed out as views into that chunk (no copy),
 * which lets the service rewrite a request id in place and forward the record as it came.
 * Only a record split across chunks is assembled, and only from the bytes it needs, so the
 * cost stays linear however the input is chunked (fastcgi-stream re-copies its whole backlog).
 *
 * With `splitStreams`, even that copy is avoided for the byte-stream types (STDIN, STDOUT,
 * STDERR, DATA): a record split across chunks is handed out as several records of the same type
 * and id, one per chunk it touches, each with a part of the content, which means the same in
 * FastCGI (a stream may be cut into records anywhere). Their `frame` is built only if read.
 * Large records from a socket nearly always span two reads (Node reads 64 KiB at a time and a
 * record holds up to 65535 + 8 bytes), so this saves copying nearly every byte of a big body.
 */
import { FCGI_VERSION_1, HEADER_LEN, RecordType } from './constants.js';

/** One record as received. `content` and `frame` are views: copy them to keep them past the callback's caller. */
export interface FcgiRecord {
  readonly type: number;
  readonly requestId: number;
  /** The record's content bytes (padding excluded). */
  readonly content: Buffer;
  /** The whole record: 8-byte header, content and padding. */
  readonly frame: Buffer;
  /**
   * True when `frame` is the record as received, a view into the chunk (the worker's answer is
   * passed on as it came, its request id rewritten in place); false for a part of a split stream
   * record, whose `frame` is made up (a copy) when read.
   */
  readonly received: boolean;
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

/** Record types whose content is a byte stream, which can be split at any byte. */
const STREAM_TYPES: ReadonlySet<number> = new Set([RecordType.STDIN, RecordType.STDOUT, RecordType.STDERR, RecordType.DATA]);

/** A part of a split stream record; its frame (a fresh header plus the content) is made on first read. */
function pieceRecord(type: number, requestId: number, content: Buffer): FcgiRecord {
  let frame: Buffer | null = null;
  return {
    type,
    requestId,
    content,
    received: false,
    get frame(): Buffer {
      if (frame === null) {
        frame = Buffer.allocUnsafe(HEADER_LEN + content.length);
        frame[0] = FCGI_VERSION_1;
        frame[1] = type;
        frame.writeUInt16BE(requestId, 2);
        frame.writeUInt16BE(content.length, 4);
        frame[6] = 0;
        frame[7] = 0;
        content.copy(frame, HEADER_LEN);
      }
      return frame;
    },
  };
}

/** The rest of a stream record being handed out in parts (splitStreams). */
interface StreamRest {
  readonly type: number;
  readonly requestId: number;
  contentLeft: number;
  paddingLeft: number;
}

/** Parser options. */
export interface ParserOptions {
  /** Hand out STDIN/STDOUT/STDERR/DATA records that span chunks in parts instead of assembling them. */
  readonly splitStreams?: boolean;
}

function toRecord(frame: Buffer): FcgiRecord {
  const contentLength = (frame[4]! << 8) | frame[5]!;
  return {
    type: frame[1]!,
    requestId: (frame[2]! << 8) | frame[3]!,
    content: frame.subarray(HEADER_LEN, HEADER_LEN + contentLength),
    frame,
    received: true,
  };
}

/** Feed chunks with `push`; each complete record is passed to `onRecord` in order. */
export class RecordParser {
  readonly #splitStreams: boolean;
  /** Pieces of a record that is not complete yet. */
  #pieces: Buffer[] = [];
  #pendingLength = 0;
  /** A stream record whose content is being handed out in parts (splitStreams only). */
  #stream: StreamRest | null = null;
  /** Bytes consumed so far, for error offsets. */
  #offset = 0;
  #error: ParseError | null = null;

  constructor(opts: ParserOptions = {}) {
    this.#splitStreams = opts.splitStreams ?? false;
  }

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
    if (this.#stream) {
      off = this.#continueStream(chunk, 0, onRecord);
      if (this.#stream) return null;
    }
    if (this.#pendingLength > 0) {
      off = this.#completePending(chunk, onRecord);
      if (off < 0 || this.#error) return this.#error;
      if (this.#stream) return null;
    }
    const end = chunk.length;
    while (end - off >= HEADER_LEN) {
      if (chunk[off] !== FCGI_VERSION_1) return this.#fail(chunk[off]!);
      const total = frameLength(chunk, off);
      if (end - off < total) {
        if (this.#startStream(chunk, off)) {
          this.#continueStream(chunk, off + HEADER_LEN, onRecord); // the record runs past this chunk: all of it is used
          return null;
        }
        break;
      }
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
      if (this.#startStream(header, 0)) {
        this.#pieces = [];
        this.#pendingLength = 0;
        return this.#continueStream(chunk, used, onRecord);
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

  /**
   * splitStreams: if the record whose header is at `buf[off]` is a stream record with content,
   * starts handing it out in parts (the caller then feeds its content from after the header).
   */
  #startStream(buf: Buffer, off: number): boolean {
    if (!this.#splitStreams || !STREAM_TYPES.has(buf[off + 1]!)) return false;
    const contentLength = (buf[off + 4]! << 8) | buf[off + 5]!;
    if (contentLength === 0) return false; // an end-of-stream marker stays one record
    this.#stream = { type: buf[off + 1]!, requestId: (buf[off + 2]! << 8) | buf[off + 3]!, contentLeft: contentLength, paddingLeft: buf[off + 6]! };
    this.#offset += HEADER_LEN;
    return true;
  }

  /** Hands out the stream record's content found in `chunk` from `off`, skips its padding; returns the offset reached. */
  #continueStream(chunk: Buffer, off: number, onRecord: (record: FcgiRecord) => void): number {
    const s = this.#stream!;
    const start = off;
    if (s.contentLeft > 0 && off < chunk.length) {
      const part = Math.min(s.contentLeft, chunk.length - off);
      s.contentLeft -= part;
      off += part;
      onRecord(pieceRecord(s.type, s.requestId, chunk.subarray(start, off)));
    }
    if (s.contentLeft === 0) {
      const skip = Math.min(s.paddingLeft, chunk.length - off);
      s.paddingLeft -= skip;
      off += skip;
      if (s.paddingLeft === 0) this.#stream = null;
    }
    this.#offset += off - start;
    return off;
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
    this.#stream = null;
    return this.#error;
  }
}
