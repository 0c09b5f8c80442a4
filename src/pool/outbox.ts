/**
 * Write batching for one stream: buffers pushed during one turn of the event loop go out in a
 * single write (or one writev for large ones) when the turn's I/O callbacks are done. Under load
 * many requests share one syscall on a worker pipe or a front socket.
 */
import type { Writable } from 'node:stream';

/** Below this total, chunks are copied into one buffer; above it they go out as a writev. */
const CONCAT_LIMIT = 16 * 1024;

/**
 * Writes `chunks` (`bytes` in all, at least one chunk) with one write call: copied together when
 * small, one writev when large. `written`, if given, is called once the last of them left the
 * stream (reached the OS, or failed).
 */
export function writeChunks(stream: Writable, chunks: Buffer[], bytes: number, written?: () => void): void {
  if (chunks.length === 1) stream.write(chunks[0], written);
  else if (bytes <= CONCAT_LIMIT) stream.write(Buffer.concat(chunks, bytes), written);
  else {
    stream.cork();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) stream.write(chunks[i]);
    stream.write(chunks[last], written);
    stream.uncork();
  }
}

/**
 * The outboxes pushed to while a reused read buffer is parsed (a worker's stdout, see
 * reused-reads.ts): views of that buffer may wait in them, so they must write before the buffer
 * is read into again. null when no such parse is under way.
 */
let lease: Set<Outbox> | null = null;
/** The set a lease notes into, reused: a lease is opened for every read. */
const noted = new Set<Outbox>();

/** Starts noting the outboxes pushed to (call before parsing a reused read buffer). */
export function openLease(): void {
  noted.clear();
  lease = noted;
}

/**
 * Ends the lease: what the outboxes noted since openLease hold is written out now. True if every
 * byte of it reached the OS (or was copied on the way): then nothing refers to the read buffer any
 * more. False if a stream keeps some of it queued (a slow reader).
 */
export function settleLease(): boolean {
  lease = null; // pushes made while flushing (credit for the worker) are not views of the buffer
  let clear = true;
  for (const box of noted) if (!box.flushFully()) clear = false;
  noted.clear();
  return clear;
}

/** Batches writes to `stream`; `afterFlush` callbacks run once the data left the stream's buffer. */
export class Outbox {
  readonly #stream: Writable;
  #chunks: Buffer[] = [];
  /** Where, in the last chunk's memory, the run of adjacent views that extends it ends (-1: no run). */
  #runEnd = -1;
  /** The memory of that run (null: no run). */
  #runBuf: ArrayBufferLike | null = null;
  #bytes = 0;
  #scheduled = false;
  #waiting: Array<() => void> = [];
  #drainHooked = false;
  /** Called once everything pushed has left the stream (whenSettled). */
  #settleWaiters: Array<() => void> = [];

  constructor(stream: Writable) {
    this.#stream = stream;
  }

  /** Bytes waiting for the next flush. */
  get pending(): number {
    return this.#bytes;
  }

  /** Queues one buffer. */
  push(chunk: Buffer): void {
    const chunks = this.#chunks;
    const n = chunks.length;
    // Records passed on as they came lie next to each other in the buffer of one read (a
    // response's STDOUT, its empty STDOUT and END_REQUEST from a worker; a request's BEGIN,
    // PARAMS and STDIN from a client): they go out as one view of it, so the flush writes it as
    // it is instead of copying the pieces together. The run is extended here and its view made
    // once, when something else comes or at the flush.
    if (n === 0 || !this.#extendRun(chunks[n - 1]!, chunk)) {
      this.#closeRun();
      chunks.push(chunk);
    }
    this.#bytes += chunk.length;
    if (lease !== null) lease.add(this);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushNow);
    }
  }

  /** Runs `cb` once everything pushed so far has been handed to the OS (at once if nothing is pending). */
  afterFlush(cb: () => void): void {
    if (this.#bytes === 0 && !this.#stream.writableNeedDrain) cb();
    else this.#waiting.push(cb);
  }

  /**
   * True once everything pushed so far has reached the OS (or never will: the stream is gone), so
   * nothing refers to the memory of what was pushed any more. Stricter than afterFlush, which
   * only waits until the stream is below its high-water mark.
   */
  settled(): boolean {
    const stream = this.#stream;
    return (this.#bytes === 0 && stream.writableLength === 0) || stream.destroyed;
  }

  /** Runs `cb` once settled() holds (at once if it does now). */
  whenSettled(cb: () => void): void {
    if (this.settled()) cb();
    else this.#settleWaiters.push(cb);
  }

  /** Writes what is queued now. Returns false if the stream is backed up. */
  flush(): boolean {
    this.#scheduled = false;
    this.#closeRun();
    const chunks = this.#chunks;
    const stream = this.#stream;
    if (chunks.length > 0 && !stream.destroyed && stream.writable) {
      this.#chunks = [];
      const bytes = this.#bytes;
      this.#bytes = 0;
      // Every flush learns when its last write left: whenSettled's waiters are told then.
      writeChunks(stream, chunks, bytes, this.#written);
    } else if (chunks.length > 0) {
      this.#chunks = [];
      this.#bytes = 0;
      this.#releaseSettled(); // the stream is gone: nothing will read them
    }
    const backedUp = stream.writableNeedDrain;
    if (this.#waiting.length > 0) {
      if (!backedUp) this.#release();
      else if (!this.#drainHooked) {
        this.#drainHooked = true;
        stream.once('drain', () => {
          this.#drainHooked = false;
          this.#release();
        });
      }
    }
    return !backedUp;
  }

  /** Writes what is queued now; then whether it is settled() (all of it is with the OS). */
  flushFully(): boolean {
    if (this.#chunks.length > 0) this.flush();
    return this.settled();
  }

  /**
   * Drops queued data and pending afterFlush callbacks (the stream is gone). Those waiting for
   * whenSettled are told now: nothing will read what was pushed any more.
   */
  discard(): void {
    this.#chunks = [];
    this.#runEnd = -1;
    this.#runBuf = null;
    this.#bytes = 0;
    this.#waiting = [];
    this.#releaseSettled();
  }

  /** Extends the run of `last` (the last chunk) with `chunk` if it comes right after it in the same memory. */
  #extendRun(last: Buffer, chunk: Buffer): boolean {
    const end = this.#runEnd >= 0 ? this.#runEnd : last.byteOffset + last.length;
    if (end !== chunk.byteOffset) return false;
    // Only now the memory, once per piece: `.buffer` is a call into V8's C++.
    const buf = chunk.buffer;
    if ((this.#runBuf ?? last.buffer) !== buf) return false;
    this.#runBuf = buf;
    this.#runEnd = end + chunk.length;
    return true;
  }

  /** Replaces the last chunk with the view of its whole run. */
  #closeRun(): void {
    if (this.#runEnd < 0) return;
    const chunks = this.#chunks;
    const last = chunks[chunks.length - 1]!;
    chunks[chunks.length - 1] = Buffer.from(this.#runBuf!, last.byteOffset, this.#runEnd - last.byteOffset);
    this.#runEnd = -1;
    this.#runBuf = null;
  }

  readonly #flushNow = (): void => {
    this.flush();
  };

  readonly #written = (): void => {
    if (this.#settleWaiters.length > 0 && this.settled()) this.#releaseSettled();
  };

  #releaseSettled(): void {
    const waiters = this.#settleWaiters;
    if (waiters.length === 0) return;
    this.#settleWaiters = [];
    for (const cb of waiters) cb();
  }

  #release(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const cb of waiting) cb();
  }
}
