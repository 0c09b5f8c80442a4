/**
 * Fuzz properties of the FastCGI front (src/front/fcgi-connection.ts), driven in-process over a
 * fake socket and a fake pool (front-harness.ts): for random, mutated and hostile input in any
 * chunking, nothing is thrown out of the connection, what it writes back is FastCGI, and once the
 * client is done the connection is either served or closed; params are checked before they reach
 * a worker, incomplete requests are aborted when the client goes away, over-long params are
 * refused for that request only.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { RecordType } from '../../src/fcgi/constants.js';
import { encodeParams } from '../../src/fcgi/params.js';
import { RecordParser } from '../../src/fcgi/parser.js';
import { encodeRecord } from '../../src/fcgi/records.js';
import { chunkingArb, fcOptions, split } from '../fcgi/util.js';
import { answers, closed, connect, decodes, emit, settle, type Drive } from './front-harness.js';
import { hostileInputArb, mutate, mutationArb, requestRecords, requestStreamArb } from './streams.js';
import { begin as beginRecord } from '../helpers/rawfcgi.js';

/** Feeds `chunks`, then the client's end; returns the drive for checks. */
async function feed(d: Drive, chunks: Buffer[], thenEnd = true): Promise<Drive> {
  for (const c of chunks) emit(d, 'data', c);
  await settle();
  if (thenEnd) emit(d, 'end');
  await settle();
  return d;
}

const modeArb = fc.boolean(); // needsParams: one app (forward as it comes) or a router that decodes params

describe('front connection on hostile input', () => {
  test('nothing is thrown out of the connection, and what it writes back is FastCGI', async () => {
    await fc.assert(
      fc.asyncProperty(hostileInputArb, chunkingArb, modeArb, async (input, chunking, needsParams) => {
        const d = await feed(connect(needsParams), split(input, chunking, 500));
        expect(d.thrown).toEqual([]);
        const a = answers(d.socket);
        expect(a.error).toBeNull();
        // END_REQUEST only for ids the client began (the connection parses what we parse here).
        const begun = new Set<number>();
        new RecordParser().push(input, (r) => void (r.type === RecordType.BEGIN_REQUEST && begun.add(r.requestId)));
        for (const rec of a.records) {
          if (rec.type !== RecordType.END_REQUEST) continue;
          expect(rec.content.length).toBe(8);
          expect(begun.has(rec.requestId)).toBe(true);
        }
      }),
      fcOptions(300),
    );
  });

  test('once the client ended and the pool answered what it got, the connection is closed', async () => {
    await fc.assert(
      fc.asyncProperty(hostileInputArb, chunkingArb, modeArb, async (input, chunking, needsParams) => {
        const d = await feed(connect(needsParams), split(input, chunking, 500));
        d.pool.finishAll();
        await settle();
        expect(d.thrown).toEqual([]);
        expect(closed(d.socket)).toBe(true);
      }),
      fcOptions(300),
    );
  });

  test('valid nginx-like streams in any chunking are all answered (REQUEST_COMPLETE or UNKNOWN_ROLE)', async () => {
    await fc.assert(
      fc.asyncProperty(requestStreamArb, chunkingArb, modeArb, async (stream, chunking, needsParams) => {
        const d = await feed(connect(needsParams, 1 << 20), split(stream, chunking, 500), false);
        expect(d.thrown).toEqual([]);
        expect(answers(d.socket).error).toBeNull();
        for (const v of d.pool.views) expect(v.streamError).toBeNull();
      }),
      fcOptions(200),
    );
  });

  test('the client going away mid-request (close at any byte) throws nothing and aborts what reached the pool', async () => {
    await fc.assert(
      fc.asyncProperty(requestStreamArb, fc.nat(), modeArb, async (stream, cutSeed, needsParams) => {
        const d = connect(needsParams, 1 << 20);
        emit(d, 'data', stream.subarray(0, cutSeed % (stream.length + 1)));
        await settle();
        emit(d, 'close');
        await settle();
        expect(d.thrown).toEqual([]);
        for (const v of d.pool.views) expect(v.ex.state === 'done' || v.ex.aborted).toBe(true);
      }),
      fcOptions(200),
    );
  });
});

describe('validation before forwarding', () => {
  test('the pool never receives a PARAMS body that does not decode, nor a body before the params ended', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(hostileInputArb, fc.tuple(requestStreamArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 })).map(([s, m]) => mutate(s, m))),
        chunkingArb,
        modeArb,
        async (input, chunking, needsParams) => {
          const d = await feed(connect(needsParams, 1 << 20), split(input, chunking, 500), false);
          expect(d.thrown).toEqual([]);
          for (const v of d.pool.views) {
            expect(v.streamError).toBeNull();
            expect(v.stdinBeforeParamsEnd).toBe(false);
            if (v.paramsEnded) expect(decodes(v.params)).toBe(true);
          }
        },
      ),
      fcOptions(300),
    );
  });

  test('a request reaches the pool only once its params are complete', async () => {
    await fc.assert(
      fc.asyncProperty(requestStreamArb, fc.nat(), async (stream, cutSeed) => {
        const d = await feed(connect(false, 1 << 20), [stream.subarray(0, cutSeed % (stream.length + 1))], false);
        for (const v of d.pool.views) expect(v.paramsEnded).toBe(true);
      }),
      fcOptions(200),
    );
  });

  test('after the client half-closes, requests it left incomplete are aborted and the connection closes', async () => {
    await fc.assert(
      fc.asyncProperty(hostileInputArb, chunkingArb, modeArb, async (input, chunking, needsParams) => {
        const d = await feed(connect(needsParams, 1 << 20), split(input, chunking, 500));
        await settle();
        expect(d.thrown).toEqual([]);
        // The pool answers only requests whose body ended; the rest must be aborted by the front.
        for (const v of d.pool.views) expect(v.ex.state === 'done' || v.aborted || v.ex.aborted).toBe(true);
        expect(closed(d.socket)).toBe(true);
      }),
      fcOptions(300),
    );
  });

  test('params over maxParamsBytes are refused for that request only: the kept connection serves the next one', async () => {
    const d = connect(false, 512);
    const big = { id: 1, keepConn: true, role: 1, params: [['REQUEST_METHOD', 'GET'], ['HTTP_COOKIE', 'c'.repeat(2000)]] as Array<[string, string]>, paramsCuts: [], body: Buffer.alloc(0), bodyCuts: [], abort: false };
    const ok = { ...big, id: 2, params: [['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/']] as Array<[string, string]> };
    await feed(d, [Buffer.concat(requestRecords(big))], false);
    await feed(d, [Buffer.concat(requestRecords(ok))], false);
    const ends = answers(d.socket).records.filter((r) => r.type === RecordType.END_REQUEST);
    expect(ends.map((r) => r.requestId)).toEqual([1, 2]);
    expect(closed(d.socket)).toBe(false);
    expect(d.pool.views.every((v) => decodes(v.params))).toBe(true);
  });

  test('after a protocol error, the rest of the same chunk starts no request', async () => {
    // A duplicate BEGIN closes the connection, but records after it in the same read were still
    // handled: here they start request 2, whose params go to a worker of a connection already gone
    // (and with interleaved ids, params of two requests were joined into one malformed body).
    for (const needsParams of [false, true]) {
      const d = connect(needsParams);
      const ok = encodeParams([['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/late']]);
      const chunk = Buffer.concat([
        beginRecord(1), beginRecord(1),
        beginRecord(2), encodeRecord(RecordType.PARAMS, 2, ok), encodeRecord(RecordType.PARAMS, 2), encodeRecord(RecordType.STDIN, 2),
      ]);
      await feed(d, [chunk], false);
      expect(d.socket.destroyed).toBe(true);
      expect(d.pool.views.length).toBe(0);
    }
  });

  test('a PARAMS body cut inside a pair is refused before it reaches a worker (one app)', async () => {
    const d = connect(false);
    const good = encodeParams([['REQUEST_METHOD', 'GET'], ['PATH_INFO', '/x']]);
    const bad = good.subarray(0, good.length - 2);
    await feed(d, [beginRecord(1), encodeRecord(RecordType.PARAMS, 1, bad), encodeRecord(RecordType.PARAMS, 1), encodeRecord(RecordType.STDIN, 1)], false);
    for (const v of d.pool.views) expect(decodes(v.params)).toBe(true);
    const ends = answers(d.socket).records.filter((r) => r.type === RecordType.END_REQUEST);
    // Either answered (an error page) or the connection closed; never forwarded.
    expect(ends.length === 1 || closed(d.socket)).toBe(true);
  });
});
