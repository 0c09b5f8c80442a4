/**
 * Fuzz properties of the FastCGI codec (src/fcgi): whatever bytes arrive (random, mutated valid
 * streams, hostile headers, 2 GiB name-value lengths), the parser and the params decoder never
 * throw, hold no more than they were given, and report bad input as values. Seeded: deterministic.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  FCGI_VERSION_1,
  HEADER_LEN,
  RecordParser,
  decodeBeginRequest,
  decodeEndRequest,
  decodeParams,
  encodeParams,
  checkParams,
  getValuesResult,
  paramsToMap,
  scanParams,
  type FcgiRecord,
  type ParseError,
} from '../../src/fcgi/index.js';
import { chunkingArb, fcOptions, split } from '../fcgi/util.js';
import { hostileInputArb, hostileRecordArb, mutate, mutationArb, requestStreamArb } from './streams.js';

/** Bytes of the whole pairs at the start of a params body (the decoder's own framing, pair by pair). */
function prefixLength(body: Buffer): number {
  let best = 0;
  for (let n = 1; n <= body.length; n++) if (decodeParams(body.subarray(0, n)).ok) best = n;
  return best;
}

/** A cheap assertion for hot loops (expect() per record is slow). */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(what);
}

interface Seen {
  records: Array<{ type: number; requestId: number; content: string; frameLength: number }>;
  error: ParseError | null;
  maxBuffered: number;
}

/** Parses `chunks`, checking as it goes that each record is consistent with its header and that the parser holds no more than it got. */
function run(chunks: Buffer[], splitStreams = false): Seen {
  const p = new RecordParser({ splitStreams });
  const records: Seen['records'] = [];
  let error: ParseError | null = null;
  let given = 0;
  let maxBuffered = 0;
  const onRecord = (r: FcgiRecord): void => {
    const frame = r.frame;
    check(frame[0] === FCGI_VERSION_1 && frame[1] === r.type && ((frame[2]! << 8) | frame[3]!) === r.requestId, 'record header disagrees with the record');
    if (!splitStreams) check(((frame[4]! << 8) | frame[5]!) === r.content.length && frame.length === HEADER_LEN + r.content.length + frame[6]!, 'record length disagrees with its header');
    records.push({ type: r.type, requestId: r.requestId, content: r.content.toString('hex'), frameLength: frame.length });
  };
  for (const c of chunks) {
    given += c.length;
    const e = p.push(c, onRecord);
    if (error) expect(e).toBe(error); // the first error sticks
    else if (e) {
      expect(e.code).toBe('BAD_VERSION');
      expect(e.offset).toBeLessThanOrEqual(given);
      error = e;
    }
    // Never holds more than the bytes it was given, whatever length a header claims.
    check(p.buffered <= given && p.buffered <= HEADER_LEN + 0xffff + 0xff, `holds ${p.buffered} bytes after ${given}`);
    maxBuffered = Math.max(maxBuffered, p.buffered);
  }
  expect(p.error).toBe(error);
  return { records, error, maxBuffered };
}

describe('RecordParser on hostile input', () => {
  test('arbitrary bytes in arbitrary chunks: never throws, errors are values, same verdict however chunked', () => {
    fc.assert(
      fc.property(hostileInputArb, chunkingArb, chunkingArb, (input, a, b) => {
        const one = run(split(input, a, 1000));
        const two = run(split(input, b, 1000));
        expect(two.records).toEqual(one.records);
        expect(two.error?.offset ?? null).toBe(one.error?.offset ?? null);
      }),
      fcOptions(500),
    );
  });

  test('the first bad version byte is reported at the offset of the record it starts', () => {
    fc.assert(
      fc.property(requestStreamArb, fc.integer({ min: 0, max: 255 }).filter((v) => v !== FCGI_VERSION_1), chunkingArb, (stream, version, chunking) => {
        const bad = Buffer.concat([stream, Buffer.from([version, 1, 0, 1, 0, 0, 0, 0]), stream]);
        const seen = run(split(bad, chunking, 1000));
        expect(seen.error).not.toBeNull();
        expect(seen.error!.offset).toBe(stream.length);
        expect(seen.error!.message).toContain(`version ${version}`);
      }),
      fcOptions(200),
    );
  });

  test('mutated valid streams: never throws; records before the first edited byte come out unchanged', () => {
    fc.assert(
      fc.property(requestStreamArb, fc.array(mutationArb, { minLength: 1, maxLength: 5 }), chunkingArb, (stream, muts, chunking) => {
        const bad = mutate(stream, muts);
        let same = 0;
        while (same < bad.length && same < stream.length && bad[same] === stream[same]) same++;
        const good = run([stream]).records;
        const got = run(split(bad, chunking, 1000));
        let end = 0;
        for (const r of good) {
          if (end + r.frameLength > same) break;
          end += r.frameLength;
          expect(got.records.shift()).toEqual(r);
        }
      }),
      fcOptions(200),
    );
  });

  test('splitStreams gives the same error verdict and never holds more than one header', () => {
    fc.assert(
      fc.property(hostileInputArb, chunkingArb, (input, chunking) => {
        const whole = run(split(input, chunking, 1000));
        const parts = run(split(input, chunking, 1000), true);
        expect(parts.error?.offset ?? null).toBe(whole.error?.offset ?? null);
      }),
      fcOptions(200),
    );
  });

  test('a header claiming 65535 + 255 bytes followed by a trickle holds only what came', () => {
    fc.assert(
      fc.property(hostileRecordArb, fc.integer({ min: 1, max: 64 }), (rec, size) => {
        const seen = run(split(rec, { kind: 'size', size }, 1000));
        expect(seen.maxBuffered).toBeLessThanOrEqual(rec.length);
      }),
      fcOptions(200),
    );
  });
});

describe('record bodies of the wrong size', () => {
  test('BEGIN_REQUEST and END_REQUEST decode only at exactly 8 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (a) => {
        const b = Buffer.from(a);
        const begin = decodeBeginRequest(b);
        const end = decodeEndRequest(b);
        if (b.length !== 8) {
          expect(begin).toBeNull();
          expect(end).toBeNull();
        } else {
          expect(begin).toEqual({ role: b.readUInt16BE(0), flags: b[2] });
          expect(end).toEqual({ appStatus: b.readUInt32BE(0), protocolStatus: b[4] });
        }
      }),
      fcOptions(200),
    );
  });
});

/** Name-value bodies with hostile length prefixes: 1-byte, 4-byte, 2 GiB-ish, cut short. */
const hostileParamsArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
  fc
    .tuple(
      fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 200 })), { maxLength: 6 }),
      fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
    )
    .map(([pairs, muts]) => mutate(encodeParams(pairs), muts)),
  fc
    .tuple(fc.constantFrom(0x7fffffff, 0x7ffffff0, 0x40000000, 65536, 200), fc.constantFrom(0x7fffffff, 0, 5, 0x7ffffff0), fc.uint8Array({ maxLength: 64 }))
    .map(([nl, vl, tail]) => {
      const b = Buffer.alloc(8);
      b.writeUInt32BE((nl | 0x80000000) >>> 0, 0);
      b.writeUInt32BE((vl | 0x80000000) >>> 0, 4);
      return Buffer.concat([b, Buffer.from(tail)]);
    }),
);

describe('params (name-value pairs) on hostile input', () => {
  test('decodeParams never throws; a decoded body re-encodes to the same pairs; the pairs lie within the body', () => {
    fc.assert(
      fc.property(hostileParamsArb, (body) => {
        const d = decodeParams(body);
        if (!d.ok) {
          expect(typeof d.message).toBe('string');
          expect(paramsToMap(body)).toBeNull();
          return;
        }
        let total = 0;
        for (const [n, v] of d.pairs) {
          expect(n.buffer).toBe(body.buffer); // views, no copies sized by a claimed length
          total += n.length + v.length;
        }
        expect(total).toBeLessThanOrEqual(body.length);
        const again = decodeParams(encodeParams(d.pairs));
        expect(again.ok && again.pairs.map(([n, v]) => [n.toString('hex'), v.toString('hex')])).toEqual(d.pairs.map(([n, v]) => [n.toString('hex'), v.toString('hex')]));
        expect(paramsToMap(body)).not.toBeNull();
      }),
      fcOptions(400),
    );
  });

  test('2 GiB length prefixes: answered as truncated at once, without allocating what they claim', () => {
    const before = process.memoryUsage().arrayBuffers;
    for (const nl of [0x7fffffff, 0x7ffffff0, 0x40000000]) {
      const b = Buffer.alloc(8 + 16);
      b.writeUInt32BE((nl | 0x80000000) >>> 0, 0);
      b.writeUInt32BE(0x80000005, 4);
      for (let i = 0; i < 2000; i++) {
        const d = decodeParams(b);
        expect(d.ok).toBe(false);
        expect(paramsToMap(b)).toBeNull();
        const into: Record<string, string> = {};
        scanParams(b, ['REQUEST_METHOD'], into);
        expect(into).toEqual({});
        expect(getValuesResult(b, { FCGI_MAX_CONNS: '1' }).ok).toBe(false);
      }
    }
    // 6000 allocations of what the prefixes claim would be terabytes; allow for unrelated noise.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  test('checkParams and scanParams (which read in place) agree with the full decoder', () => {
    const names = ['REQUEST_METHOD', 'REQUEST_URI', 'CONTENT_LENGTH', 'A', ''];
    const pairArb = fc.tuple(fc.constantFrom(...names, 'REQUEST_METHOX', 'request_method', 'Ä'), fc.string({ maxLength: 200 }));
    const bodyArb = fc.oneof(
      hostileParamsArb,
      fc.tuple(fc.array(pairArb, { maxLength: 12 }), fc.nat(40)).map(([pairs, cut]) => {
        const b = encodeParams(pairs);
        return cut < 20 ? b.subarray(0, Math.max(0, b.length - cut)) : b;
      }),
    );
    fc.assert(
      fc.property(bodyArb, fc.subarray(names, { minLength: 1 }), (body, wanted) => {
        const decoded = decodeParams(body);
        expect(checkParams(body) === null).toBe(decoded.ok);
        // The oracle: the first pair with each wanted name among the whole pairs before any broken one.
        const expected: Record<string, string> = {};
        const whole = decodeParams(body.subarray(0, prefixLength(body)));
        if (whole.ok)
          for (const [n, v] of whole.pairs) {
            const name = n.toString('latin1');
            if (wanted.includes(name) && expected[name] === undefined) expected[name] = v.toString('latin1');
          }
        const into: Record<string, string> = {};
        scanParams(body, wanted, into);
        expect(into).toEqual(expected);
      }),
      fcOptions(1000),
    );
  });

  test('scanParams and getValuesResult never throw; GET_VALUES is answered iff its body decodes', () => {
    fc.assert(
      fc.property(hostileParamsArb, fc.array(fc.constantFrom('REQUEST_METHOD', 'REQUEST_URI', 'PATH_INFO', ''), { maxLength: 4 }), (body, wanted) => {
        const into: Record<string, string> = {};
        scanParams(body, wanted, into);
        for (const k of Object.keys(into)) expect(wanted).toContain(k);
        const answer = getValuesResult(body, { FCGI_MAX_CONNS: '10', FCGI_MAX_REQS: '20', FCGI_MPXS_CONNS: '1' });
        expect(answer.ok).toBe(decodeParams(body).ok);
        if (answer.ok) {
          // The answer is itself one well-formed record whose body decodes.
          const recs: Buffer[] = [];
          expect(new RecordParser().push(answer.record, (r) => recs.push(Buffer.from(r.content)))).toBeNull();
          expect(recs.length).toBe(1);
          expect(decodeParams(recs[0]!).ok).toBe(true);
        }
      }),
      fcOptions(500),
    );
  });
});
