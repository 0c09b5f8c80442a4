/**
 * FastCGI record writer: pure functions that build records into Buffers.
 * Records are written without padding (the spec makes padding optional).
 */
import { FCGI_VERSION_1, HEADER_LEN, MAX_CONTENT, NULL_REQUEST_ID, RecordType } from './constants.js';

/** Writes an 8-byte record header into `target` at `offset`. */
export function writeHeader(
  target: Buffer,
  offset: number,
  type: number,
  requestId: number,
  contentLength: number,
  paddingLength = 0,
): void {
  target[offset] = FCGI_VERSION_1;
  target[offset + 1] = type;
  target[offset + 2] = requestId >>> 8;
  target[offset + 3] = requestId & 0xff;
  target[offset + 4] = contentLength >>> 8;
  target[offset + 5] = contentLength & 0xff;
  target[offset + 6] = paddingLength;
  target[offset + 7] = 0;
}

/** A fresh header buffer. */
export function header(type: number, requestId: number, contentLength: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_LEN);
  writeHeader(b, 0, type, requestId, contentLength);
  return b;
}

/** One record (content up to 65535 bytes) as one Buffer. */
export function encodeRecord(type: number, requestId: number, content?: Uint8Array): Buffer {
  const length = content ? content.length : 0;
  if (length > MAX_CONTENT) throw new RangeError(`record content of ${length} bytes exceeds ${MAX_CONTENT}`);
  const b = Buffer.allocUnsafe(HEADER_LEN + length);
  writeHeader(b, 0, type, requestId, length);
  if (content && length > 0) b.set(content, HEADER_LEN);
  return b;
}

/**
 * A stream's data as records of at most 65535 content bytes, as [header, content, header, ...]
 * views for a vectored write (no copy of the data). Empty data gives no records: the empty
 * end-of-stream record is `encodeRecord(type, id)`.
 */
export function frameStream(type: number, requestId: number, data: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += MAX_CONTENT) {
    const piece = data.subarray(off, Math.min(off + MAX_CONTENT, data.length));
    parts.push(header(type, requestId, piece.length), piece);
  }
  return parts;
}

// The 8-byte bodies below are built in pooled memory (allocUnsafe) with every byte set: one
// such record goes out per request, and Buffer.alloc would give each its own zeroed allocation.

/** An 8-byte-body record with every body byte zero, in pooled memory. */
function record8(type: number, requestId: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_LEN + 8);
  writeHeader(b, 0, type, requestId, 8);
  b.fill(0, HEADER_LEN);
  return b;
}

/** BEGIN_REQUEST with a role and flags (FCGI_KEEP_CONN). */
export function encodeBeginRequest(requestId: number, role: number, flags: number): Buffer {
  const b = record8(RecordType.BEGIN_REQUEST, requestId);
  b.writeUInt16BE(role, HEADER_LEN);
  b[HEADER_LEN + 2] = flags;
  return b;
}

/** END_REQUEST with the app's exit status and a protocol status. */
export function encodeEndRequest(requestId: number, appStatus: number, protocolStatus: number): Buffer {
  const b = record8(RecordType.END_REQUEST, requestId);
  b.writeUInt32BE(appStatus >>> 0, HEADER_LEN);
  b[HEADER_LEN + 4] = protocolStatus;
  return b;
}

/** UNKNOWN_TYPE answer to a record type we do not know. */
export function encodeUnknownType(unknownType: number): Buffer {
  const b = record8(RecordType.UNKNOWN_TYPE, NULL_REQUEST_ID);
  b[HEADER_LEN] = unknownType;
  return b;
}

/** corral's CORRAL_WINDOW credit grant for one request. */
export function encodeWindow(requestId: number, increment: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_LEN + 4);
  writeHeader(b, 0, RecordType.CORRAL_WINDOW, requestId, 4);
  b.writeUInt32BE(increment >>> 0, HEADER_LEN);
  return b;
}

/** Parsed BEGIN_REQUEST body, or null if it is not 8 bytes. */
export function decodeBeginRequest(content: Buffer): { role: number; flags: number } | null {
  if (content.length !== 8) return null;
  return { role: content.readUInt16BE(0), flags: content[2]! };
}

/** Parsed END_REQUEST body, or null if it is not 8 bytes. */
export function decodeEndRequest(content: Buffer): { appStatus: number; protocolStatus: number } | null {
  if (content.length !== 8) return null;
  return { appStatus: content.readUInt32BE(0), protocolStatus: content[4]! };
}
