/**
 * The takeover of a child's stdout (src/pool/reused-reads.ts) on the Node that runs the tests:
 * the handle is rewrapped with `onread`, reads land in one reused slab, nothing is lost, and the
 * child's own 'close' still comes. (If a Node release changed the internals it relies on,
 * readReused would return null or read nothing, and this fails.)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readReused, STREAM_FROM } from '../../src/pool/reused-reads.js';

describe('readReused on a child process pipe', () => {
  it('reads everything into one reused slab and lets the child close', async () => {
    // Five writes of 20,000 bytes (byte value = write number), each after the previous one was read.
    const script = `
      let n = 0;
      process.stdin.on('data', () => {
        if (n === 5) return process.exit(0);
        process.stdout.write(Buffer.alloc(20000, n++));
      });
      process.stdout.write(Buffer.alloc(20000, n++));`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const slabs = new Set<ArrayBufferLike>();
    const offsets = new Set<number>();
    const chunks: Buffer[] = [];
    let have = 0;
    const socket = readReused(child.stdout!, {
      parse: (view) => {
        slabs.add(view.buffer);
        offsets.add(view.byteOffset);
        chunks.push(Buffer.from(view)); // a copy: the view's memory is read into again
        const before = Math.floor(have / 20000);
        have += view.length;
        if (Math.floor(have / 20000) > before) child.stdin!.write('next\n');
      },
      idle: () => true,
    });
    expect(socket).not.toBeNull();
    const closed = once(child, 'close');
    await once(socket!, 'end');
    await closed;
    const all = Buffer.concat(chunks);
    expect(all.length).toBe(100000);
    for (let i = 0; i < 5; i++) expect(all.subarray(i * 20000, (i + 1) * 20000).equals(Buffer.alloc(20000, i))).toBe(true);
    // Every read that streamed was let go (nothing kept it), so each went to the same memory;
    // a short one (under STREAM_FROM) may have moved the next ones on within the slab.
    expect(slabs.size).toBe(1);
    if (chunks.every((c) => c.length >= STREAM_FROM)) expect([...offsets]).toEqual([0]);
  });

  it('leaves a stream it cannot take over as it was (null: read it as usual)', async () => {
    const stream = new PassThrough();
    const owner = { parse: () => expect.fail('not taken over'), idle: () => true };
    expect(readReused(stream, owner)).toBeNull();
    stream.end('still readable');
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    expect(chunk.toString()).toBe('still readable');
  });
});
