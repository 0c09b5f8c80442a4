/** The stdout log writer: one write per event-loop turn, order kept through EAGAIN and partial writes. */
import { describe, expect, it } from 'vitest';
import { turnWriter } from '../../src/log/turn-writer.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });

describe('turnWriter', () => {
  it('writes the lines of one turn with one write, at the end of the turn', async () => {
    const writes: string[] = [];
    const w = turnWriter(1, (_fd, b) => (writes.push(b.toString()), b.length), undefined, { minGapMs: 0 });
    w.write('a\n');
    w.write('b\n');
    expect(writes).toEqual([]);
    await turn();
    expect(writes).toEqual(['a\nb\n']);
    w.write('c\n');
    await turn();
    expect(writes).toEqual(['a\nb\n', 'c\n']);
  });

  it('while lines keep coming, writes at most once per gap, carrying every turn since; a large batch goes at once', async () => {
    const writes: string[] = [];
    const w = turnWriter(1, (_fd, b) => (writes.push(b.toString()), b.length), undefined, { minGapMs: 60_000 });
    w.write('a\n');
    await turn();
    expect(writes).toEqual(['a\n']); // the first line after a quiet spell goes at the end of its turn
    w.write('b\n');
    await turn();
    w.write('c\n');
    await turn();
    expect(writes).toEqual(['a\n']); // within the gap: held
    const big = `${'x'.repeat(64 * 1024)}\n`;
    w.write(big);
    expect(writes).toEqual(['a\n']);
    await turn();
    expect(writes).toEqual(['a\n', `b\nc\n${big}`]);
    w.write('d\n');
    await turn();
    expect(writes.length).toBe(2);
    w.flushSync();
    expect(writes).toEqual(['a\n', `b\nc\n${big}`, 'd\n']);
  });

  it('writes lines held for the gap when it has passed, with no further line to prompt it', async () => {
    const writes: string[] = [];
    let wrote: () => void = () => undefined;
    const w = turnWriter(
      1,
      (_fd, b) => {
        writes.push(b.toString());
        wrote();
        return b.length;
      },
      undefined,
      { minGapMs: 20 },
    );
    w.write('a\n');
    await turn();
    const second = new Promise<void>((r) => (wrote = r));
    w.write('b\n');
    await second;
    expect(writes).toEqual(['a\n', 'b\n']);
  });

  it('resumes partial writes and keeps lines refused with EAGAIN, in order, until the fd takes them', async () => {
    const out: string[] = [];
    let mode: 'partial' | 'full' | 'ok' = 'partial';
    const w = turnWriter(1, (_fd, b) => {
      if (mode === 'full') throw errno('EAGAIN');
      const n = mode === 'partial' ? Math.min(3, b.length) : b.length;
      out.push(b.subarray(0, n).toString());
      if (mode === 'partial' && out.join('').length >= 6) mode = 'full';
      return n;
    });
    w.write('line one\n');
    w.write('line two\n');
    await turn();
    expect(out.join('')).toBe('line o');
    w.write('line three\n');
    await turn();
    expect(out.join('')).toBe('line o'); // held while the fd is full
    mode = 'ok';
    await new Promise((r) => setTimeout(r, 30)); // the retry timer
    expect(out.join('')).toBe('line one\nline two\nline three\n');
  });

  it('drops lines when the reader is gone (EPIPE) and goes on', async () => {
    let gone = true;
    const out: string[] = [];
    const w = turnWriter(1, (_fd, b) => {
      if (gone) throw errno('EPIPE');
      out.push(b.toString());
      return b.length;
    });
    w.write('lost\n');
    await turn();
    gone = false;
    w.write('kept\n');
    w.flushSync();
    expect(out).toEqual(['kept\n']);
  });

  it('tells once when lines are lost for good (disk full), and again only after a write went through', async () => {
    let full = true;
    const lost: string[] = [];
    const out: string[] = [];
    const w = turnWriter(
      1,
      (_fd, b) => {
        if (full) throw errno('ENOSPC');
        out.push(b.toString());
        return b.length;
      },
      (err) => lost.push(err.code ?? ''),
      { minGapMs: 0 },
    );
    for (let i = 0; i < 3; i++) {
      w.write(`line ${i}\n`);
      await turn();
    }
    expect(lost).toEqual(['ENOSPC']);
    full = false;
    w.write('back\n');
    await turn();
    expect(out).toEqual(['back\n']);
    full = true;
    w.write('again\n');
    await turn();
    expect(lost).toEqual(['ENOSPC', 'ENOSPC']);
  });
  it('at exit (flushSync) waits a bounded time for a slow reader of a non-blocking fd, then gives up', () => {
    const out: string[] = [];
    let refusals = 3; // the reader takes the lines after three refused tries
    const slow = turnWriter(1, (_fd, b) => {
      if (refusals-- > 0) throw errno('EAGAIN');
      out.push(b.toString());
      return b.length;
    }, undefined, { minGapMs: 0, exitWaitMs: 5000 });
    slow.write('last\n');
    slow.flushSync();
    expect(out).toEqual(['last\n']);
    // A reader that never reads costs exitWaitMs, not a hang.
    const stuck = turnWriter(1, () => {
      throw errno('EAGAIN');
    }, undefined, { minGapMs: 0, exitWaitMs: 50 });
    stuck.write('lost\n');
    const t0 = performance.now();
    stuck.flushSync();
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(45);
    expect(waited).toBeLessThan(5000);
  });
});
