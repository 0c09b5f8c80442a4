import { describe, expect, it } from 'vitest';
import { Exchange, type ExchangeSink, type WorkerPort } from '../../src/pool/exchange.js';
import { RecordType } from '../../src/fcgi/constants.js';
import { encodeRecord } from '../../src/fcgi/records.js';
import { RecordParser, type FcgiRecord } from '../../src/fcgi/parser.js';
import { CorralError } from '../../src/errors.js';

class FakeWorker implements WorkerPort {
  readonly pid = 42;
  sent: Buffer[] = [];
  windows: Array<[number, number]> = [];
  aborted: number[] = [];
  send(frame: Buffer): void {
    this.sent.push(Buffer.from(frame));
  }
  grantWindow(id: number, n: number): void {
    this.windows.push([id, n]);
  }
  abort(id: number): void {
    this.aborted.push(id);
  }
  records(): FcgiRecord[] {
    const out: FcgiRecord[] = [];
    new RecordParser().push(Buffer.concat(this.sent), (r) => out.push(r));
    return out;
  }
  stdinBytes(): number {
    return this.records()
      .filter((r) => r.type === RecordType.STDIN)
      .reduce((n, r) => n + r.content.length, 0);
  }
}

class Sink implements ExchangeSink {
  out: Buffer[] = [];
  ended: number | null = null;
  failed: CorralError | null = null;
  paused = 0;
  resumed = 0;
  stdout(c: Buffer): void {
    this.out.push(Buffer.from(c));
  }
  end(s: number): void {
    this.ended = s;
  }
  fail(e: CorralError): void {
    this.failed = e;
  }
  pauseInput(): void {
    this.paused++;
  }
  resumeInput(): void {
    this.resumed++;
  }
}

const stdin = (n: number) => encodeRecord(RecordType.STDIN, 7, Buffer.alloc(n, 1));

describe('Exchange', () => {
  it('holds records while queued and forwards them with the worker id once assigned', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    ex.params(encodeRecord(RecordType.PARAMS, 7, Buffer.from([1, 1, 65, 66])));
    ex.params(encodeRecord(RecordType.PARAMS, 7));
    ex.stdin(stdin(10));
    ex.stdin(encodeRecord(RecordType.STDIN, 7));
    const w = new FakeWorker();
    expect(w.sent).toHaveLength(0);
    ex.assign(w, 3, 1000, 4000);
    const recs = w.records();
    expect(recs.map((r) => [r.type, r.requestId, r.content.length])).toEqual([
      [RecordType.PARAMS, 3, 4],
      [RecordType.PARAMS, 3, 0],
      [RecordType.STDIN, 3, 10],
      [RecordType.STDIN, 3, 0],
    ]);
  });

  it('sends body bytes only within the credit, splitting a record, and more as credit arrives', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    const w = new FakeWorker();
    ex.params(encodeRecord(RecordType.PARAMS, 7));
    ex.assign(w, 1, 1000, 4000);
    ex.stdin(stdin(600));
    ex.stdin(stdin(600));
    ex.stdin(encodeRecord(RecordType.STDIN, 7));
    expect(w.stdinBytes()).toBe(1000);
    expect(w.records().filter((r) => r.type === RecordType.STDIN && r.content.length === 0)).toHaveLength(0);
    ex.onWindow(150);
    expect(w.stdinBytes()).toBe(1150);
    ex.onWindow(1000);
    expect(w.stdinBytes()).toBe(1200);
    // the end-of-body record follows once everything before it went out
    const last = w.records().at(-1)!;
    expect([last.type, last.content.length]).toEqual([RecordType.STDIN, 0]);
  });

  it('passes parts of a STDIN record on as records of their own, and copies the parts it holds', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    const w = new FakeWorker();
    ex.params(encodeRecord(RecordType.PARAMS, 7));
    const read = Buffer.from('abcdef');
    ex.stdinPart(read.subarray(0, 2)); // queued: held, so it must not stay a view of the read
    read.fill(0x2a);
    ex.assign(w, 4, 5, 4000);
    ex.stdinPart(Buffer.from('ghi')); // within the credit: on at once
    ex.stdinPart(Buffer.from('jk')); // past it: held until the worker has read more
    expect(w.records().filter((r) => r.type === RecordType.STDIN).map((r) => [r.requestId, r.content.toString()])).toEqual([
      [4, 'ab'],
      [4, 'ghi'],
    ]);
    ex.onWindow(2);
    ex.stdin(encodeRecord(RecordType.STDIN, 7));
    expect(w.records().filter((r) => r.type === RecordType.STDIN).map((r) => [r.requestId, r.content.toString()])).toEqual([
      [4, 'ab'],
      [4, 'ghi'],
      [4, 'jk'],
      [4, ''],
    ]);
  });

  it('pauses the front when held body bytes reach the bound and resumes as they drain', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    const w = new FakeWorker();
    ex.params(encodeRecord(RecordType.PARAMS, 7));
    ex.assign(w, 1, 0, 4000);
    for (let i = 0; i < 5; i++) ex.stdin(stdin(65535));
    expect(sink.paused).toBe(1);
    expect(w.stdinBytes()).toBe(0);
    ex.onWindow(5 * 65535);
    expect(sink.resumed).toBe(1);
    expect(w.stdinBytes()).toBe(5 * 65535);
  });

  it('while queued, pauses the front at 32 KiB of body and stays paused until a worker takes it', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    ex.params(encodeRecord(RecordType.PARAMS, 7));
    ex.stdin(stdin(32768));
    expect([sink.paused, sink.resumed]).toEqual([1, 0]);
    // The rest of the read the front had parsed already: held, and the front stays paused.
    ex.stdin(stdin(32768));
    ex.stdin(stdin(1000));
    expect([sink.paused, sink.resumed]).toEqual([1, 0]);
    const w = new FakeWorker();
    ex.assign(w, 1, 1 << 20, 4000);
    expect([sink.paused, sink.resumed]).toEqual([1, 1]);
    expect(w.stdinBytes()).toBe(2 * 32768 + 1000);
  });

  it('returns response credit in quanta of a quarter window', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    const w = new FakeWorker();
    ex.assign(w, 9, 1000, 4000);
    ex.credit(500);
    expect(w.windows).toEqual([]);
    ex.credit(600);
    expect(w.windows).toEqual([[9, 1100]]);
  });

  it('an aborted queued request ends at once and sends nothing later', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    ex.params(encodeRecord(RecordType.PARAMS, 7));
    ex.abort();
    expect(sink.ended).toBe(0);
    expect(ex.state).toBe('done');
    const w = new FakeWorker();
    ex.stdin(stdin(5));
    expect(w.sent).toHaveLength(0);
  });

  it('an aborted assigned request asks the worker and gives credit back for output nobody reads', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    const w = new FakeWorker();
    ex.assign(w, 4, 1000, 4000);
    ex.abort();
    expect(w.aborted).toEqual([4]);
    ex.onStdout(Buffer.alloc(300));
    expect(sink.out).toHaveLength(0);
    expect(w.windows).toEqual([[4, 300]]);
    ex.finish(0);
    expect(sink.ended).toBe(0);
  });

  it('fail reaches the sink once, and finish after it is ignored', () => {
    const sink = new Sink();
    const ex = new Exchange(sink, 0);
    ex.fail(new CorralError('CORRAL_WORKER_LOST', 'gone'));
    ex.finish(0);
    expect(sink.failed?.code).toBe('CORRAL_WORKER_LOST');
    expect(sink.ended).toBeNull();
  });
});
