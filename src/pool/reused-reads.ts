/**
 * Reading a worker's stdout into reused memory (the proxy data plane's responses).
 *
 * Node reads every chunk of a stream into a new buffer. Behind the proxy that is every byte of
 * every response: 200-600 MB/s of buffers on large ones, and V8 counts the memory they hold
 * against its heap's limit, so it ran a full mark-compact every 20-50 ms (--trace-gc): about half
 * of the service's CPU on 64 KiB responses. Here the pipe is read into a slab that is used again
 * as soon as nothing refers to what was read into it: the records of a read go on as views of it;
 * after a large read the outboxes they went to write them out at once (parseRead, outbox.ts's
 * lease), and if none keeps any of it queued (a slow client) and no record is left incomplete,
 * the next read goes to the same memory. Otherwise it goes on to the rest of the slab, or to a
 * new one: never over memory something may still read.
 *
 * Node's documented way to read into caller-owned memory (net.Socket's `onread`) applies to
 * sockets constructed with it; a child's stdout is constructed by child_process. Its handle is
 * therefore taken over right after the spawn, before any data can have arrived (data comes only
 * from the event loop): reading stopped, the handle wrapped in a socket made with `onread`, the
 * original socket detached from it, and closed when the new one closes (child_process waits for
 * that 'close' before its own).
 *
 * The web server's side (request bodies) is read as Node reads it: there a body that waits for a
 * busy worker must be kept anyway, and with a slab per connection an idle one would hold memory
 * (measured and left: see README, "Performance").
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import { openLease, settleLease } from './outbox.js';

/** Bytes per slab (one per worker). */
const SLAB = 256 * 1024;
/** A slab with less than this left is replaced. */
const MIN_READ = 32 * 1024;
/** Reads of at least this many bytes stream a response: they are written on at once. */
export const STREAM_FROM = 8 * 1024;

/**
 * What became of a read: `batched`, a small read whose views go out with the turn's batched
 * writes (one write for many), so it counts as held; `free`, a large one written out at once,
 * nothing refers to it any more; `held`, a large one that something still refers to.
 */
export type ReadOutcome = 'batched' | 'free' | 'held';

/** The owner of a stream read into reused memory. */
export interface ReadOwner {
  /** Handles every record of the read (views of it, valid until the owner lets them go). */
  parse(view: Buffer): void;
  /** Nothing of the reads is kept by the owner itself (no incomplete record). */
  idle(): boolean;
}

/** What the takeover needs of the handle under a child's pipe socket (Node's internal Pipe). */
interface PipeHandle {
  readStop(): number;
  reading?: boolean;
}

/** The parts of Node's Socket the takeover touches beyond its public API. */
interface HandleOwner {
  _handle: PipeHandle | null;
}

/**
 * Reads `stream` (a child's stdout) into reused memory, each read parsed by `owner` (parseRead).
 * Returns the socket now reading (listen on it for 'end', 'error' and 'close'), or null if the
 * stream has no handle to take over (then nothing was changed).
 */
export function readReused(stream: Readable, owner: ReadOwner): net.Socket | null {
  const old = stream as unknown as HandleOwner;
  const handle = old._handle;
  if (!(stream instanceof net.Socket) || handle === null || typeof handle.readStop !== 'function') return null;
  const slabs = new SlabCursor();
  handle.readStop();
  handle.reading = false; // so that the new socket starts reading
  old._handle = null;
  const options = {
    handle,
    readable: true,
    allowHalfOpen: stream.allowHalfOpen,
    onread: {
      buffer: (): Buffer => slabs.next(),
      callback: (bytes: number, buf: Uint8Array): boolean => {
        let outcome: ReadOutcome = 'held'; // if parsing throws, as if all of it were kept
        try {
          outcome = parseRead(Buffer.from(buf.buffer, buf.byteOffset, bytes), owner);
        } finally {
          slabs.used(bytes, outcome);
        }
        return true;
      },
    },
  };
  const socket = new net.Socket(options as net.SocketConstructorOpts);
  socket.once('close', () => stream.destroy()); // it has no handle now: only its 'close' is emitted
  return socket;
}

/**
 * Parses one read. A large one (a response streaming in) is leased: the outboxes its records
 * were pushed to write them out now, so that its memory can be read into again. A small one keeps
 * the turn's batching.
 */
export function parseRead(view: Buffer, owner: ReadOwner): ReadOutcome {
  if (view.length < STREAM_FROM) {
    owner.parse(view);
    return 'batched';
  }
  openLease();
  let written = false;
  try {
    owner.parse(view);
  } finally {
    written = settleLease();
  }
  return written && owner.idle() ? 'free' : 'held';
}

/** Where the next read goes: the same region while reads are let go, onwards past one that is held. */
export class SlabCursor {
  #slab = Buffer.allocUnsafe(SLAB);
  /** Where the free part starts: reads before it may still be referred to. */
  #pos = 0;
  /** Slabs made, for tests and figures. */
  made = 1;

  /** The region the next read goes to. */
  next(): Buffer {
    return this.#slab.subarray(this.#pos);
  }

  /** A read of `bytes` into next()'s region, and what became of it. */
  used(bytes: number, outcome: ReadOutcome): void {
    if (outcome === 'free') return; // the same region again
    this.#pos += (bytes + 7) & ~7;
    if (SLAB - this.#pos < MIN_READ) {
      this.#slab = Buffer.allocUnsafe(SLAB); // the old one lives as long as the views of it
      this.#pos = 0;
      this.made++;
    }
  }
}
