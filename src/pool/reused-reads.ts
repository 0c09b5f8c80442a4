/**
 * Reading into reused memory: a worker's stdout (the proxy's responses) and the web server's
 * connections (requests and their bodies).
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
 * sockets constructed with it; a child's stdout is constructed by child_process, an accepted
 * connection by net.Server. The handle is therefore taken over right away, before any data can
 * have arrived (data comes only from the event loop): reading stopped, the handle wrapped in a
 * socket made with `onread`, the original socket detached from it, and closed when the new one
 * closes (child_process waits for that 'close' before its own; net.Server and the service count
 * connections by it).
 *
 * On a web server's connection (FcgiConnection) every read is written on at once, and the
 * records of a read are views that may also wait for a busy worker; so the connection's slab
 * starts again only once nothing at all refers to any of its reads (ReadOwner.idleCoversAll:
 * no incomplete record, nothing held for a worker, everything sent to workers gone to the OS),
 * and a connection whose body a worker's pipe did not take whole reads no more until it has.
 * Measured behind nginx, 1 MiB uploads at 16 connections: new read memory per upload 1 MiB ->
 * about 20 KiB (a new 256 KiB slab every dozen uploads or so), the service's CPU per upload
 * 2,000-2,300 -> 1,250-1,500 us.
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import { openLease, settleLease } from './outbox.js';

/** Sizes of one stream's read memory. */
export interface SlabSizes {
  /** Bytes of a slab while reads are small. */
  readonly small: number;
  /** Bytes of a slab once a read filled all it was given (more is coming). */
  readonly big: number;
  /** Most bytes one read is given. */
  readonly maxRead: number;
}

/** A worker's stdout: responses, often large; one slab per worker. */
export const PIPE_SLABS: SlabSizes = { small: 256 * 1024, big: 256 * 1024, maxRead: 256 * 1024 };
/**
 * A web server's connection: small requests mostly (nginx's are under 1 KiB), so an idle kept
 * connection holds 16 KiB; an upload grows it to 256 KiB while it streams. A read takes at most
 * 64 KiB, as Node's own do: the service's end of a worker's pipe holds about 200 KiB (Linux's
 * default socket send buffer, which Node cannot raise), so a read of that size can usually be
 * written on whole at once and its memory read into again.
 */
export const CONNECTION_SLABS: SlabSizes = { small: 16 * 1024, big: 256 * 1024, maxRead: 64 * 1024 };
/** Reads of at least this many bytes stream a response: they are written on at once. */
export const STREAM_FROM = 8 * 1024;
/** Small reads in a row after which a big slab is given back for a small one. */
const SHRINK_AFTER = 64;

/**
 * What became of a read: `batched`, a small read whose views go out with the turn's batched
 * writes (one write for many), so it counts as held; `free`, a large one written out at once,
 * nothing refers to it any more; `held`, a large one that something still refers to; `queued`,
 * a large one that a stream it was written to could not take whole (a slow reader).
 */
export type ReadOutcome = 'batched' | 'free' | 'held' | 'queued';

/** The owner of a stream read into reused memory. */
export interface ReadOwner {
  /** Handles every record of the read (views of it, valid until the owner lets them go). */
  parse(view: Buffer): void;
  /** Nothing of the reads is kept by the owner itself (no incomplete record). */
  idle(): boolean;
  /**
   * idle() answers for every earlier read too: nothing anywhere refers to any of them (not
   * only the owner, also the outboxes they went to). A read found free then starts the slab again.
   */
  readonly idleCoversAll?: boolean;
  /** Told what became of each read, after the slab has moved on. */
  afterRead?(outcome: ReadOutcome): void;
  /** Reads of at least this many bytes are written on at once (default STREAM_FROM); smaller ones keep the turn's batching. */
  readonly streamFrom?: number;
}

/** What the takeover needs of the handle under a socket (Node's internal Pipe or TCP). */
interface PipeHandle {
  readStop(): number;
  reading?: boolean;
}

/** The parts of Node's Socket the takeover touches beyond its public API. */
interface HandleOwner {
  _handle: PipeHandle | null;
}

/**
 * Reads `stream` (a child's stdout, an accepted connection) into reused memory, each read parsed
 * by `owner` (parseRead).
 * Returns the socket now reading (listen on it for 'end', 'error' and 'close'), or null if the
 * stream has no handle to take over (then nothing was changed).
 */
export function readReused(stream: Readable, owner: ReadOwner, sizes: SlabSizes = PIPE_SLABS): net.Socket | null {
  const old = stream as unknown as HandleOwner;
  const handle = old._handle;
  if (!(stream instanceof net.Socket) || handle === null || typeof handle.readStop !== 'function') return null;
  const slabs = new SlabCursor(sizes);
  const restart = owner.idleCoversAll === true;
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
          slabs.used(bytes, outcome, restart);
        }
        owner.afterRead?.(outcome);
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
  if (view.length < (owner.streamFrom ?? STREAM_FROM)) {
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
  if (!written) return 'queued';
  return owner.idle() ? 'free' : 'held';
}

/**
 * Where the next read goes: the same region while reads are let go, onwards past one that is
 * held, to a new slab when this one runs short. A slab grows to `big` when a read filled all it
 * was given (more is coming) and goes back to `small` after a long run of small reads that were
 * let go; a slab left behind lives as long as views of it do.
 */
export class SlabCursor {
  readonly #sizes: SlabSizes;
  #slab: Buffer;
  /** Where the free part starts: reads before it may still be referred to. */
  #pos = 0;
  /** Slabs made, for tests and figures. */
  made = 1;
  /** Small free reads in a row into a big slab. */
  #smallRun = 0;

  constructor(sizes: SlabSizes = PIPE_SLABS) {
    this.#sizes = sizes;
    this.#slab = Buffer.allocUnsafe(sizes.small);
  }

  /** The region the next read goes to. */
  next(): Buffer {
    return this.#slab.subarray(this.#pos, this.#pos + this.#sizes.maxRead);
  }

  /**
   * A read of `bytes` into next()'s region, and what became of it. `restart`: a free read means
   * nothing refers to any read in the slab, so the next one starts it again.
   */
  used(bytes: number, outcome: ReadOutcome, restart = false): void {
    const size = this.#slab.length;
    const { small, big, maxRead } = this.#sizes;
    if (size < big && bytes === Math.min(maxRead, size - this.#pos)) return this.#fresh(big);
    if (outcome === 'free') {
      if (!restart) return; // the same region again
      this.#pos = 0;
      // Small reads again, for long: back to a small slab (what an idle kept connection holds).
      if (size > small && (bytes < small / 2 ? ++this.#smallRun : (this.#smallRun = 0)) >= SHRINK_AFTER) this.#fresh(small);
      return;
    }
    this.#pos += (bytes + 7) & ~7;
    if (size - this.#pos < size / 8) this.#fresh(size);
  }

  #fresh(size: number): void {
    this.#slab = Buffer.allocUnsafe(size); // not from Node's shared pool: a slab of its own
    this.#pos = 0;
    this.#smallRun = 0;
    this.made++;
  }
}
