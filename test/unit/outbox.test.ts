/**
 * The write batcher: what is pushed in one turn leaves in one write, and views that lie next to
 * each other in one buffer (a worker's records passed on as they came) go out as one view.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Outbox } from '../../src/pool/outbox.js';

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
