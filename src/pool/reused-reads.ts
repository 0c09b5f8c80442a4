/**
 * Reading a worker's stdout into one reused buffer (the proxy data plane's responses).
 *
 * Node reads every chunk of a stream into a new buffer. Behind the proxy that is every byte of
 * every response: 200-600 MB/s of buffers on large ones, and V8 counts the memory they hold
 * against its heap's limit, so it ran a full mark-compact every 20-50 ms (--trace-gc), about half
 * of the service's CPU on 64 KiB responses. Here the pipe is read into a slab that is used again
 * as soon as nothing refers to what was read into it: the records parsed from a read are passed
 * on as views, the outboxes they went to write them out before the next read (settleLease), and
 * only if a stream keeps some of them queued (a slow client) or a record is incomplete does the
 * next read go to the rest of the slab, or to a new one.
 *
 * Node's documented way to read into caller-owned memory (net.Socket's `onread`) applies to
 * sockets constructed with it; a child's stdout is constructed by child_process. Its handle is
 * therefore taken over right after the spawn, before any data can have arrived (data comes only
 * from the event loop): reading stopped, the handle wrapped in a socket made with `onread`, the
 * original socket detached from it and closed.
 */
import net from 'node:net';
import type { Readable } from 'node:stream';

/** Bytes per slab; a read gets what is left of it, at least MIN_READ. */
const SLAB = 256 * 1024;
const MIN_READ = 32 * 1024;

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
 * Reads `stream` (a child's stdout) into reused memory: `onChunk` gets a view of each read and
 * returns true if nothing refers to it once it returns (its data was written out or copied), false
 * if something still does. Returns the socket now reading (listen on it for 'end', 'error' and
 * 'close'), or null if the stream has no handle to take over (then nothing was changed).
 */
export function readReused(stream: Readable, onChunk: (view: Buffer) => boolean): net.Socket | null {
  const old = stream as unknown as HandleOwner;
  const handle = old._handle;
  if (!(stream instanceof net.Socket) || handle === null || typeof handle.readStop !== 'function') return null;
  const slabs = new SlabCursor();
  handle.readStop();
  handle.reading = false; // so that the new socket starts reading
  old._handle = null;
  stream.destroy(); // no handle: only its 'close' (child_process counts it)
  const options = {
    handle,
    readable: true,
    onread: {
      buffer: (): Buffer => slabs.next(),
      callback: (bytes: number, buf: Uint8Array): boolean => {
        let free = false;
        try {
          free = onChunk(Buffer.from(buf.buffer, buf.byteOffset, bytes));
        } finally {
          slabs.used(bytes, free);
        }
        return true;
      },
    },
  };
  return new net.Socket(options as net.SocketConstructorOpts);
}

/** Where the next read goes: the same region while each read is let go, onwards past one that is held. */
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

  /** A read of `bytes` into next()'s region; `free`: nothing refers to it any more. */
  used(bytes: number, free: boolean): void {
    if (free) return; // the same region again
    this.#pos += (bytes + 7) & ~7;
    if (SLAB - this.#pos < MIN_READ) {
      this.#slab = Buffer.allocUnsafe(SLAB); // the old one lives as long as the views of it
      this.#pos = 0;
      this.made++;
    }
  }
}
