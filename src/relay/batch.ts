/**
 * Writes for one direction of the relay, collected while one input chunk is parsed and written
 * together at its end. Records forwarded unchanged are views into the input chunk; adjacent views
 * are merged back, so a chunk that needs no rewriting goes out as the very buffer that came in.
 */
import type { Writable } from 'node:stream';
import { writeChunks } from '../pool/outbox.js';

/** Collects buffers for `stream`; `flush` writes them in one call. */
export class WriteBatch {
  readonly #stream: Writable;
  #parts: Buffer[] = [];
  #bytes = 0;

  constructor(stream: Writable) {
    this.#stream = stream;
  }

  /** Queues `b` after what is queued. */
  push(b: Buffer): void {
    const n = this.#parts.length;
    const last = n > 0 ? this.#parts[n - 1]! : null;
    if (last !== null && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
      this.#parts[n - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
    } else this.#parts.push(b);
    this.#bytes += b.length;
  }

  /** Writes what is queued. Returns false when the stream is backed up (wait for 'drain'). */
  flush(): boolean {
    const stream = this.#stream;
    const parts = this.#parts;
    const bytes = this.#bytes;
    if (parts.length === 0) return !stream.writableNeedDrain;
    this.#parts = [];
    this.#bytes = 0;
    if (stream.destroyed || !stream.writable) return true;
    writeChunks(stream, parts, bytes);
    return !stream.writableNeedDrain;
  }
}
