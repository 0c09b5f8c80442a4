/**
 * The write batcher: what is pushed in one turn leaves in one write, and views that lie next to
 * each other in one buffer (a worker's records passed on as they came) go out as one view.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { openLease, Outbox, settleLease } from '../../src/pool/outbox.js';
import { parseRead, SlabCursor, STREAM_FROM } from '../../src/pool/reused-reads.js';

/** A stream that records each chunk it is given (as the same object, not a copy). */
function sink(): { stream: Writable; writes: Buffer[] } {
  const writes: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      writes.push(chunk);
      cb();
    },
  });
  return { stream, writes };
}

describe('Outbox', () => {
  it('sends adjacent views of one buffer as one view of it, without a copy', () => {
    const { stream, writes } = sink();
    const box = new Outbox(stream);
    const read = Buffer.from('0123456789abcdef');
    box.push(read.subarray(2, 5));
    box.push(read.subarray(5, 9));
    box.push(read.subarray(9, 10));
    expect(box.pending).toBe(8);
    box.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]!.toString()).toBe('23456789');
    expect(writes[0]!.buffer).toBe(read.buffer); // a view, not a copy
    expect(writes[0]!.byteOffset).toBe(read.byteOffset + 2);
  });

  it('keeps views that are not adjacent (a gap, another buffer, out of order) apart, in order', () => {
    const { stream, writes } = sink();
    const box = new Outbox(stream);
    const read = Buffer.from('0123456789');
    const other = Buffer.from('XY');
    box.push(read.subarray(0, 2));
    box.push(read.subarray(3, 4)); // a gap: byte 2 is not sent
    box.push(other);
    box.push(read.subarray(6, 8));
    box.push(read.subarray(4, 6)); // before the previous one in memory: not merged
    box.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]!.toString()).toBe('013XY6745');
  });

  it('writes what is pushed in one turn once, at the end of the turn', async () => {
    const { stream, writes } = sink();
    const box = new Outbox(stream);
    box.push(Buffer.from('a'));
    box.push(Buffer.from('b'));
    expect(writes).toHaveLength(0);
    await new Promise((r) => setImmediate(r));
    expect(writes.map((w) => w.toString())).toEqual(['ab']);
  });
});

describe('lease: outboxes holding views of a reused read buffer', () => {
  it('writes what was pushed during the lease at once and says whether all of it reached the stream', () => {
    const { stream, writes } = sink();
    const box = new Outbox(stream);
    openLease();
    box.push(Buffer.from('view'));
    expect(writes).toHaveLength(0); // batched until the lease settles
    expect(settleLease()).toBe(true);
    expect(writes.map((w) => w.toString())).toEqual(['view']);
    expect(box.pending).toBe(0);
  });

  it('says false while a stream keeps some of it queued (a client that does not read)', () => {
    let release: (() => void) | null = null;
    const stuck = new Writable({
      highWaterMark: 4,
      write(_chunk: Buffer, _enc, cb) {
        release = () => cb(); // never written until released
      },
    });
    const box = new Outbox(stuck);
    stuck.write(Buffer.from('earlier')); // the stream is busy with this one
    openLease();
    box.push(Buffer.from('queued behind it'));
    expect(settleLease()).toBe(false);
    release!();
  });

  it('notes only pushes made during the lease', () => {
    const { stream, writes } = sink();
    const box = new Outbox(stream);
    box.push(Buffer.from('before'));
    openLease();
    const other = sink();
    const box2 = new Outbox(other.stream);
    box2.push(Buffer.from('during'));
    expect(settleLease()).toBe(true);
    expect(other.writes.map((w) => w.toString())).toEqual(['during']);
    expect(writes).toHaveLength(0); // left for its own flush at the end of the turn
    box.flush();
    expect(writes.map((w) => w.toString())).toEqual(['before']);
  });
});

describe('SlabCursor: where the next read of a worker pipe goes', () => {
  it('reads into the same region while each read is let go', () => {
    const slabs = new SlabCursor();
    const first = slabs.next();
    slabs.used(100_000, 'free');
    const again = slabs.next();
    expect(again.buffer).toBe(first.buffer);
    expect(again.byteOffset).toBe(first.byteOffset);
    expect(slabs.made).toBe(1);
  });

  it('moves past a read that is held or batched, and to a new slab when too little is left', () => {
    const slabs = new SlabCursor();
    const first = slabs.next();
    slabs.used(1001, 'batched'); // its views wait for the turn's writes
    const second = slabs.next();
    expect(second.buffer).toBe(first.buffer);
    expect(second.byteOffset).toBe(first.byteOffset + 1008); // 8-byte aligned
    slabs.used(50_000, 'free'); // let go: that region again, the batched one stays untouched
    expect(slabs.next().byteOffset).toBe(second.byteOffset);
    slabs.used(second.length - 1000, 'held'); // held, and the slab is nearly used up
    const fresh = slabs.next();
    expect(fresh.buffer).not.toBe(first.buffer);
    expect(fresh.byteOffset).toBe(0);
    expect(slabs.made).toBe(2);
  });
});

describe('parseRead', () => {
  const owner = (idle: boolean, push?: () => void) => ({ parse: () => push?.(), idle: () => idle });

  it('a small read keeps the batching: batched, nothing written yet', async () => {
    const { stream, writes } = sink();
    const box = new Outbox(stream);
    expect(parseRead(Buffer.alloc(100), owner(true, () => box.push(Buffer.from('x'))))).toBe('batched');
    expect(writes).toHaveLength(0);
    await new Promise((r) => setImmediate(r));
    expect(writes).toHaveLength(1);
  });

  it('a large read is written at once: free when nothing keeps it, held when the owner does', () => {
    const { stream, writes } = sink();
    const box = new Outbox(stream);
    expect(parseRead(Buffer.alloc(STREAM_FROM), owner(true, () => box.push(Buffer.from('y'))))).toBe('free');
    expect(writes).toHaveLength(1);
    expect(parseRead(Buffer.alloc(STREAM_FROM), owner(false))).toBe('held');
  });
});

/** A stream that keeps each write pending until release() is called (a reader that is slow). */
function slowSink(): { stream: Writable; release: () => void } {
  const pending: Array<() => void> = [];
  const stream = new Writable({
    highWaterMark: 1 << 20,
    write(_chunk: Buffer, _enc, cb) {
      pending.push(cb);
    },
  });
  return { stream, release: () => pending.splice(0).forEach((cb) => cb()) };
}

describe('Outbox.whenSettled: everything pushed has left the stream', () => {
  it('waits until the stream has written it all, not only until it is under its high-water mark', async () => {
    const { stream, release } = slowSink();
    const box = new Outbox(stream);
    box.push(Buffer.from('a view of a read'));
    expect(box.settled()).toBe(false); // not even written yet
    let settled = 0;
    box.whenSettled(() => settled++);
    box.flush();
    let flushedBelowMark = false;
    box.afterFlush(() => (flushedBelowMark = true));
    expect(flushedBelowMark).toBe(true); // afterFlush: below the mark is enough
    expect(box.settled()).toBe(false); // but the stream still holds the bytes
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(0);
    release();
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(1);
    expect(box.settled()).toBe(true);
    box.whenSettled(() => settled++); // settled now: at once
    expect(settled).toBe(2);
  });

  it('tells those waiting when the stream is gone (nothing will read the memory any more)', () => {
    const { stream } = slowSink();
    const box = new Outbox(stream);
    box.push(Buffer.from('x'));
    box.flush();
    let told = false;
    box.whenSettled(() => (told = true));
    box.discard();
    expect(told).toBe(true);
  });
});

describe('parseRead on a stream that cannot take a read whole', () => {
  it('says queued, which is what makes a connection wait for the worker', () => {
    const { stream } = slowSink();
    const box = new Outbox(stream);
    const owner = { parse: () => box.push(Buffer.from('z')), idle: () => true, streamFrom: 0 };
    expect(parseRead(Buffer.alloc(10), owner)).toBe('queued'); // streamFrom 0: even a small read is leased
  });
});

describe('SlabCursor with a connection\'s sizes', () => {
  it('gives at most maxRead per read, grows when a read fills it, starts again when all is let go', () => {
    const sizes = { small: 16 * 1024, big: 256 * 1024, maxRead: 64 * 1024 };
    const slabs = new SlabCursor(sizes);
    expect(slabs.next().length).toBe(16 * 1024);
    slabs.used(16 * 1024, 'held'); // filled what it was given: more is coming
    const big = slabs.next();
    expect([big.buffer.byteLength, big.length, slabs.made]).toEqual([256 * 1024, 64 * 1024, 2]);
    slabs.used(64 * 1024, 'held');
    const after = slabs.next();
    expect(after.byteOffset).toBe(big.byteOffset + 64 * 1024);
    slabs.used(100, 'free', true); // nothing refers to any read: the slab from its start
    const again = slabs.next();
    expect([again.buffer === big.buffer, again.byteOffset]).toEqual([true, big.byteOffset]);
    slabs.used(100, 'free', false); // free, but only this read: its region again
    expect(slabs.next().byteOffset).toBe(big.byteOffset);
  });

  it('gives a big slab back for a small one after a long run of small reads', () => {
    const sizes = { small: 16 * 1024, big: 256 * 1024, maxRead: 64 * 1024 };
    const slabs = new SlabCursor(sizes);
    slabs.used(16 * 1024, 'held');
    expect(slabs.next().buffer.byteLength).toBe(256 * 1024);
    for (let i = 0; i < 63; i++) slabs.used(600, 'free', true);
    expect(slabs.next().buffer.byteLength).toBe(256 * 1024);
    slabs.used(600, 'free', true);
    expect(slabs.next().buffer.byteLength).toBe(16 * 1024);
    expect(slabs.made).toBe(3);
  });
});
