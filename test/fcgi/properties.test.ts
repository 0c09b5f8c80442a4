/** Property tests of the FastCGI codec (seeded: deterministic). */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  HEADER_LEN,
  MAX_CONTENT,
  RecordParser,
  RecordType,
  decodeBeginRequest,
  decodeEndRequest,
  decodeParams,
  encodeBeginRequest,
  encodeEndRequest,
  encodeParams,
  encodeRecord,
  encodeUnknownType,
  encodeWindow,
  frameStream,
  paramsToMap,
  type ParseError,
} from '../../src/fcgi/index.js';
import { chunkingArb, encodeWithPadding, fcOptions, fill, parseChunks, show, sizedBytes, split, type Rec } from './util.js';

const LENGTH_EDGES = [0, 1, 126, 127, 128, 129, 255, 256, 65534, 65535];

/** Record content: mostly small, sometimes up to the 65535 maximum. */
const contentArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: sizedBytes(fc.constantFrom(...LENGTH_EDGES)) },
  { weight: 1, arbitrary: sizedBytes(fc.integer({ min: 0, max: MAX_CONTENT })) },
);

const recArb = (content: fc.Arbitrary<Buffer>): fc.Arbitrary<Rec> =>
  fc.record({
    type: fc.integer({ min: 0, max: 255 }),
    requestId: fc.integer({ min: 0, max: 0xffff }),
    content,
    padding: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
  });

describe('records: encode -> arbitrary chunking -> parse', () => {
  test('gives back the same records (any type 0..255, id, content 0..65535, padding 0..255)', () => {
    fc.assert(
      fc.property(fc.array(recArb(contentArb), { maxLength: 12 }), chunkingArb, (recs, chunking) => {
        const stream = Buffer.concat(recs.map((r) => encodeWithPadding(r)));
        const got = parseChunks(split(stream, chunking));
        expect(show(got.records)).toEqual(show(recs));
        expect(got.firstErrorChunk).toBe(-1);
        expect(got.parser.buffered).toBe(0);
      }),
      fcOptions(300),
    );
  });

  test('1-byte chunks give back the same records', () => {
    const small = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));
    fc.assert(
      fc.property(fc.array(recArb(small), { maxLength: 8 }), (recs) => {
        const stream = Buffer.concat(recs.map((r) => encodeWithPadding(r)));
        const got = parseChunks(split(stream, { kind: 'bytes' }, Infinity));
        expect(show(got.records)).toEqual(show(recs));
        expect(got.parser.buffered).toBe(0);
      }),
      fcOptions(300),
    );
  });

  test('encodeRecord(type, id, content) is the padding-0 frame, and the frame a record hands out is its bytes', () => {
    fc.assert(
      fc.property(recArb(contentArb), chunkingArb, (r, chunking) => {
        const b = encodeRecord(r.type, r.requestId, r.content);
        expect(b.equals(encodeWithPadding({ ...r, padding: 0 }))).toBe(true);
        const frames: Buffer[] = [];
        const p = new RecordParser();
        for (const c of split(b, chunking)) p.push(c, (rec) => frames.push(Buffer.from(rec.frame)));
        expect(frames.length).toBe(1);
        expect(frames[0]!.equals(b)).toBe(true);
      }),
      fcOptions(300),
    );
  });

  test('a stream cut short leaves the unfinished record pending, and the rest completes it', () => {
    fc.assert(
      fc.property(fc.array(recArb(contentArb), { minLength: 1, maxLength: 6 }), fc.nat(), chunkingArb, (recs, cutSeed, chunking) => {
        const frames = recs.map((r) => encodeWithPadding(r));
        const stream = Buffer.concat(frames);
        const cut = cutSeed % (stream.length + 1);
        const p = new RecordParser();
        const first = parseChunks(split(stream.subarray(0, cut), chunking), p);
        // Whole records before the cut are out, the rest is pending.
        let whole = 0;
        let wholeBytes = 0;
        while (whole < frames.length && wholeBytes + frames[whole]!.length <= cut) wholeBytes += frames[whole++]!.length;
        expect(first.records.length).toBe(whole);
        expect(p.buffered).toBe(cut - wholeBytes);
        expect(p.error).toBeNull();
        const second = parseChunks(split(stream.subarray(cut), chunking), p);
        expect(show([...first.records, ...second.records])).toEqual(show(recs));
        expect(p.buffered).toBe(0);
      }),
      fcOptions(300),
    );
  });
});

describe('splitStreams: stream records that span chunks come in parts', () => {
  const STREAMS = new Set<number>([RecordType.STDIN, RecordType.STDOUT, RecordType.STDERR, RecordType.DATA]);
  /** Adjacent records of one stream (same stream type and id) joined; padding dropped for streams. */
  const joined = (recs: Rec[]): Array<{ type: number; requestId: number; content: string; padding: number }> => {
    const out: Array<Rec & { parts: Buffer[] }> = [];
    for (const r of recs) {
      const last = out.at(-1);
      if (last && STREAMS.has(r.type) && last.type === r.type && last.requestId === r.requestId && r.content.length > 0 && last.content.length > 0) {
        last.parts.push(r.content);
      } else out.push({ ...r, padding: STREAMS.has(r.type) ? 0 : r.padding, parts: [r.content] });
    }
    return show(out.map((r) => ({ ...r, content: Buffer.concat(r.parts) })));
  };
  const streamTypeArb = fc.oneof(fc.constantFrom(RecordType.STDIN, RecordType.STDOUT, RecordType.STDERR, RecordType.DATA), fc.integer({ min: 0, max: 255 }));

  test('the same streams, in the same order, and the other records whole; every part is a valid record', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: streamTypeArb, requestId: fc.integer({ min: 0, max: 3 }), content: contentArb, padding: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })) }), { maxLength: 12 }),
        chunkingArb,
        (recs, chunking) => {
          const stream = Buffer.concat(recs.map((r) => encodeWithPadding(r)));
          const parser = new RecordParser({ splitStreams: true });
          const got: Rec[] = [];
          let n = 0;
          for (const chunk of split(stream, chunking)) {
            const err = parser.push(chunk, (rec) => {
              // The frame of a part is a record of its own (checked on a sample: 1-byte chunks make tens of thousands of parts).
              if (n++ % 53 === 0) {
                const rebuilt = parseChunks([rec.frame]).records;
                expect(rebuilt).toHaveLength(1);
                expect(rebuilt[0]!.content.equals(rec.content)).toBe(true);
              }
              const part = STREAMS.has(rec.type) && rec.content.length > 0; // may be a part: its padding is not kept
              got.push({ type: rec.type, requestId: rec.requestId, content: Buffer.from(rec.content), padding: part ? 0 : rec.frame.length - HEADER_LEN - rec.content.length });
            });
            expect(err).toBeNull();
          }
          expect(joined(got)).toEqual(joined(recs));
          // Records that were not streams, or were empty, came whole.
          const whole = (rs: Rec[]): Rec[] => rs.filter((r) => !STREAMS.has(r.type) || r.content.length === 0);
          expect(show(whole(got))).toEqual(show(whole(recs)));
          expect(parser.buffered).toBe(0);
        },
      ),
      fcOptions(100), // a part per chunk: with 1-byte chunks a run hands out tens of thousands
    );
  });

  test('a 65535-byte STDOUT record read in 64 KiB chunks is handed out as views, never assembled', () => {
    const content = fill(65535, 7);
    const wire = Buffer.concat([encodeRecord(RecordType.STDOUT, 1, content), encodeRecord(RecordType.STDOUT, 1, content)]);
    const chunks = split(wire, { kind: 'size', size: 65536 });
    const parts: Buffer[] = [];
    const parser = new RecordParser({ splitStreams: true });
    for (const c of chunks) parser.push(c, (r) => parts.push(r.content));
    expect(Buffer.concat(parts).equals(Buffer.concat([content, content]))).toBe(true);
    // Each part is a view into one of the chunks (same memory), not a copy.
    for (const part of parts) expect(chunks.some((c) => c.buffer === part.buffer && part.byteOffset >= c.byteOffset && part.byteOffset + part.length <= c.byteOffset + c.length)).toBe(true);
  });

  test('a record read whole is marked received (its frame is the bytes read); a part is not', () => {
    const small = encodeRecord(RecordType.STDOUT, 1, fill(100, 3));
    const big = encodeRecord(RecordType.STDOUT, 2, fill(65535, 5));
    const chunks = split(Buffer.concat([small, big]), { kind: 'size', size: 65536 });
    const seen: Array<[number, boolean, boolean]> = [];
    const parser = new RecordParser({ splitStreams: true });
    for (const c of chunks) parser.push(c, (r) => seen.push([r.requestId, r.received, chunks.some((k) => k.buffer === r.frame.buffer)]));
    expect(seen).toEqual([
      [1, true, true],
      [2, false, false],
      [2, false, false],
    ]);
  });
});

describe('params: encode -> decode', () => {
  /** Names/values with lengths around the 1-byte/4-byte switch (127/128) and beyond one record (> 65535). */
  const paramBytes: fc.Arbitrary<Buffer> = fc.oneof(
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)) },
    { weight: 2, arbitrary: sizedBytes(fc.constantFrom(...LENGTH_EDGES, 65536, 65537, 70000, 131071)) },
    { weight: 1, arbitrary: sizedBytes(fc.integer({ min: 0, max: 140000 })) },
  );

  test('round-trips arbitrary byte names and values, with 1-byte lengths below 128 and 4-byte lengths from 128', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(paramBytes, paramBytes), { maxLength: 6 }), (pairs) => {
        const body = encodeParams(pairs);
        const size = (n: number): number => (n < 128 ? 1 : 4);
        expect(body.length).toBe(pairs.reduce((s, [n, v]) => s + size(n.length) + size(v.length) + n.length + v.length, 0));
        const d = decodeParams(body);
        expect(d.ok).toBe(true);
        if (!d.ok) return;
        expect(d.pairs.map(([n, v]) => [n.toString('hex'), v.toString('hex')])).toEqual(pairs.map(([n, v]) => [n.toString('hex'), v.toString('hex')]));
      }),
      fcOptions(200),
    );
  });

  test('a params body split into PARAMS records (pairs spanning records) decodes from the concatenated contents', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(paramBytes, paramBytes), { minLength: 1, maxLength: 4 }), chunkingArb, (pairs, chunking) => {
        const body = encodeParams(pairs);
        const wire = Buffer.concat([...frameStream(RecordType.PARAMS, 1, body), encodeRecord(RecordType.PARAMS, 1)]);
        const { records } = parseChunks(split(wire, chunking));
        expect(records.every((r) => r.type === RecordType.PARAMS && r.content.length <= MAX_CONTENT)).toBe(true);
        expect(records.at(-1)!.content.length).toBe(0);
        const d = decodeParams(Buffer.concat(records.map((r) => r.content)));
        expect(d.ok && d.pairs.map(([n, v]) => Buffer.concat([n, Buffer.from([0]), v]).toString('hex'))).toEqual(
          pairs.map(([n, v]) => Buffer.concat([n, Buffer.from([0]), v]).toString('hex')),
        );
      }),
      fcOptions(100),
    );
  });

  test('length prefixes at the boundaries are exact', () => {
    const lenBytes = (n: number): string => encodeParams([[Buffer.alloc(n), '']]).subarray(0, n < 128 ? 1 : 4).toString('hex');
    expect(lenBytes(0)).toBe('00');
    expect(lenBytes(127)).toBe('7f');
    expect(lenBytes(128)).toBe('80000080');
    expect(lenBytes(255)).toBe('800000ff');
    expect(lenBytes(65535)).toBe('8000ffff');
    expect(lenBytes(65536)).toBe('80010000');
    // Decoders must also accept the 4-byte form for short lengths (the spec does not forbid it).
    const nonCanonical = Buffer.from([0x80, 0, 0, 1, 0x80, 0, 0, 2, 0x41, 0x42, 0x43]);
    const d = decodeParams(nonCanonical);
    expect(d.ok && d.pairs.map(([n, v]) => [n.toString(), v.toString()])).toEqual([['A', 'BC']]);
  });

  const ALL_BYTES = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));

  test('latin-1 strings stay byte-exact for all 256 byte values', () => {
    const body = encodeParams([
      [ALL_BYTES, ALL_BYTES.split('').reverse().join('')],
      ...Array.from({ length: 256 }, (_, i) => [String.fromCharCode(i), String.fromCharCode(255 - i)] as [string, string]),
    ]);
    const d = decodeParams(body);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    const [first, ...singles] = d.pairs;
    expect([...first![0]]).toEqual(Array.from({ length: 256 }, (_, i) => i));
    expect(first![0].toString('latin1')).toBe(ALL_BYTES);
    expect(first![1].toString('latin1')).toBe(ALL_BYTES.split('').reverse().join(''));
    singles.forEach(([n, v], i) => {
      expect([n[0], v[0], n.length, v.length]).toEqual([i, 255 - i, 1, 1]);
    });
    const m = paramsToMap(body)!;
    expect(m.get(ALL_BYTES)).toBe(ALL_BYTES.split('').reverse().join(''));
    expect(m.get('\u00e9')).toBe(String.fromCharCode(255 - 0xe9));
  });

  test('arbitrary latin-1 strings round-trip byte for byte (string in, latin-1 bytes on the wire, same string out)', () => {
    const latin1 = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 300 });
    fc.assert(
      fc.property(fc.array(fc.tuple(latin1, latin1), { maxLength: 8 }), (pairs) => {
        const body = encodeParams(pairs);
        const d = decodeParams(body);
        expect(d.ok).toBe(true);
        if (!d.ok) return;
        d.pairs.forEach(([n, v], i) => {
          const [sn, sv] = pairs[i]!;
          expect(n.length).toBe(sn.length); // one byte per character
          expect([...n]).toEqual([...sn].map((ch) => ch.charCodeAt(0)));
          expect(n.toString('latin1')).toBe(sn);
          expect(v.toString('latin1')).toBe(sv);
        });
        // Later duplicates win in the map.
        const expected = new Map<string, string>();
        for (const [n, v] of pairs) expected.set(n, v);
        expect(paramsToMap(body)).toEqual(expected);
      }),
      fcOptions(300),
    );
  });
});

describe('garbage input', () => {
  /** Random bytes, and "almost records": headers with version mostly 1 and lengths that do not match. */
  const garbage: fc.Arbitrary<Buffer> = fc.oneof(
    fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
    fc
      .array(
        fc.record({
          version: fc.constantFrom(1, 1, 1, 1, 0, 2, 0xff),
          type: fc.integer({ min: 0, max: 255 }),
          id: fc.integer({ min: 0, max: 0xffff }),
          len: fc.oneof(fc.nat(300), fc.constant(0xffff)),
          pad: fc.nat(255),
          body: fc.uint8Array({ maxLength: 400 }),
        }),
        { maxLength: 10 },
      )
      .map((parts) =>
        Buffer.concat(parts.map((p) => Buffer.concat([Buffer.from([p.version, p.type, p.id >> 8, p.id & 0xff, p.len >> 8, p.len & 0xff, p.pad, 0]), Buffer.from(p.body)]))),
      ),
  );

  test('push never throws; it returns null or a BAD_VERSION error with an offset inside the input', () => {
    fc.assert(
      fc.property(garbage, chunkingArb, (data, chunking) => {
        const p = new RecordParser();
        let consumed = 0;
        for (const chunk of split(data, chunking)) {
          const r = p.push(chunk, (rec) => void (consumed += rec.frame.length));
          if (r) {
            expect(r.code).toBe('BAD_VERSION');
            expect(typeof r.message).toBe('string');
            expect(r.offset).toBe(consumed); // the bad header follows the last good record
            expect(data[r.offset]).not.toBe(1);
          }
        }
        expect(consumed + p.buffered).toBeLessThanOrEqual(data.length);
      }),
      fcOptions(500),
    );
  });

  /** Params-shaped garbage: lots of length bytes with the top bit set. */
  const paramsGarbage: fc.Arbitrary<Buffer> = fc.oneof(
    fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
    fc.array(fc.oneof(fc.nat(255), fc.constantFrom(0x80, 0xff, 0x7f, 0, 1, 2)), { maxLength: 64 }).map((a) => Buffer.from(a)),
  );

  test('decodeParams and paramsToMap never throw; a successful decode re-encodes to a body that decodes the same', () => {
    fc.assert(
      fc.property(paramsGarbage, (body) => {
        const d = decodeParams(body);
        const m = paramsToMap(body);
        if (d.ok) {
          expect(m).not.toBeNull();
          const again = decodeParams(encodeParams(d.pairs));
          expect(again.ok && again.pairs.map(([n, v]) => n.toString('hex') + ':' + v.toString('hex'))).toEqual(
            d.pairs.map(([n, v]) => n.toString('hex') + ':' + v.toString('hex')),
          );
        } else {
          expect(m).toBeNull();
          expect(d.message).toMatch(/^params truncated/);
        }
      }),
      fcOptions(500),
    );
  });

  test('decodeBeginRequest and decodeEndRequest never throw and need exactly 8 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 20 }), (a) => {
        const b = Buffer.from(a);
        expect(decodeBeginRequest(b) === null).toBe(b.length !== 8);
        expect(decodeEndRequest(b) === null).toBe(b.length !== 8);
      }),
      fcOptions(300),
    );
  });
});

describe('after a parse error', () => {
  test('the parser keeps returning the same error, emits nothing more, and reports the bad header offset', () => {
    const small = fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a));
    fc.assert(
      fc.property(
        fc.array(recArb(small), { maxLength: 6 }),
        fc.integer({ min: 0, max: 255 }).filter((v) => v !== 1),
        fc.uint8Array({ minLength: 7, maxLength: 60 }),
        fc.array(recArb(small), { maxLength: 4 }),
        chunkingArb,
        (good, badVersion, rest, after, chunking) => {
          const prefix = Buffer.concat(good.map((r) => encodeWithPadding(r)));
          const stream = Buffer.concat([prefix, Buffer.from([badVersion]), Buffer.from(rest)]);
          const chunks = split(stream, chunking);
          const got = parseChunks(chunks);
          const err = got.parser.error;
          expect(err).not.toBeNull();
          expect(err!.code).toBe('BAD_VERSION');
          expect(err!.offset).toBe(prefix.length);
          expect(err!.message).toContain(`version ${badVersion} at byte ${prefix.length}`);
          expect(show(got.records)).toEqual(show(good));
          // Reported no later than the chunk that completes the bad header.
          let end = 0;
          const completes = chunks.findIndex((c) => (end += c.length) >= prefix.length + HEADER_LEN);
          expect(got.firstErrorChunk).toBeGreaterThanOrEqual(0);
          expect(got.firstErrorChunk).toBeLessThanOrEqual(completes);
          for (const r of got.results.slice(got.firstErrorChunk)) expect(r).toBe(err);
          // More input, valid or not, changes nothing.
          const more = parseChunks([...after.map((r) => encodeWithPadding(r)), Buffer.alloc(0), Buffer.from([1])], got.parser);
          expect(more.records).toEqual([]);
          for (const r of more.results) expect(r).toBe(err);
          expect(got.parser.error).toBe(err);
          expect(got.parser.buffered).toBe(0);
        },
      ),
      fcOptions(500),
    );
  });

  test('error offsets count records from earlier chunks and from the same chunk alike', () => {
    const rec = encodeRecord(RecordType.STDIN, 1, Buffer.from('abcdefgh')); // 16 bytes
    const bad = Buffer.from([2, 5, 0, 1, 0, 0, 0, 0]);
    const cases: Buffer[][] = [
      [Buffer.concat([rec, bad])], // same chunk
      [rec, bad], // separate chunks
      [Buffer.concat([rec, rec, bad])],
      [rec.subarray(0, 5), Buffer.concat([rec.subarray(5), rec, bad])], // after a pending record completes
      [Buffer.concat([rec, rec, bad.subarray(0, 3)]), bad.subarray(3)], // bad header split across chunks
    ];
    for (const chunks of cases) {
      const p = new RecordParser();
      let err: ParseError | null = null;
      for (const c of chunks) err = p.push(c, () => {});
      const expected = chunks.reduce((s, c) => s + c.length, 0) - bad.length;
      expect(err?.offset).toBe(expected);
      expect(err?.message).toContain(`at byte ${expected}`);
    }
  });
});

describe('frameStream', () => {
  test('data of any length 0..200000 is framed in records of at most 65535 bytes that reassemble to it', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 200000 }), fc.constantFrom(0, 1, 65534, 65535, 65536, 131070, 131071, 196605, 200000)),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffff }),
        (len, seed, type, id) => {
          const data = fill(len, seed);
          const parts = frameStream(type, id, data);
          expect(parts.length).toBe(2 * Math.ceil(len / MAX_CONTENT));
          const pieces: Buffer[] = [];
          for (let i = 0; i < parts.length; i += 2) {
            const h = parts[i]!;
            const piece = parts[i + 1]!;
            expect(h.length).toBe(HEADER_LEN);
            expect([h[0], h[1], h.readUInt16BE(2), h.readUInt16BE(4), h[6], h[7]]).toEqual([1, type, id, piece.length, 0, 0]);
            expect(piece.length).toBeGreaterThan(0);
            expect(piece.length).toBeLessThanOrEqual(MAX_CONTENT);
            if (i + 2 < parts.length) expect(piece.length).toBe(MAX_CONTENT); // full records until the last
            expect(piece.buffer).toBe(data.buffer); // a view, not a copy
            pieces.push(piece);
          }
          expect(Buffer.concat(pieces).equals(data)).toBe(true);
          // And the parser agrees.
          const { records } = parseChunks([Buffer.concat(parts)]);
          expect(records.every((r) => r.type === type && r.requestId === id && r.padding === 0)).toBe(true);
          expect(Buffer.concat(records.map((r) => r.content)).equals(data)).toBe(true);
        },
      ),
      fcOptions(200),
    );
  });
});

describe('writer functions', () => {
  test('encodeRecord refuses content over 65535 bytes', () => {
    expect(() => encodeRecord(RecordType.STDOUT, 1, Buffer.alloc(MAX_CONTENT + 1))).toThrow(RangeError);
    expect(encodeRecord(RecordType.STDOUT, 1, Buffer.alloc(MAX_CONTENT)).length).toBe(HEADER_LEN + MAX_CONTENT);
  });

  test('BEGIN, END, UNKNOWN_TYPE and WINDOW records decode to what was encoded, reserved bytes zero', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 255 }),
        (id, role, flags, u32, byte) => {
          const one = (b: Buffer): Rec => {
            const { records } = parseChunks([b]);
            expect(records.length).toBe(1);
            return records[0]!;
          };
          const begin = one(encodeBeginRequest(id, role, flags));
          expect([begin.type, begin.requestId]).toEqual([RecordType.BEGIN_REQUEST, id]);
          expect(decodeBeginRequest(begin.content)).toEqual({ role, flags });
          expect(begin.content.subarray(3).equals(Buffer.alloc(5))).toBe(true);
          const end = one(encodeEndRequest(id, u32, byte));
          expect(decodeEndRequest(end.content)).toEqual({ appStatus: u32, protocolStatus: byte });
          expect(end.content.subarray(5).equals(Buffer.alloc(3))).toBe(true);
          const unk = one(encodeUnknownType(byte));
          expect([unk.type, unk.requestId, unk.content.toString('hex')]).toEqual([RecordType.UNKNOWN_TYPE, 0, Buffer.from([byte, 0, 0, 0, 0, 0, 0, 0]).toString('hex')]);
          const win = one(encodeWindow(id, u32));
          expect([win.type, win.requestId, win.content.readUInt32BE(0), win.content.length]).toEqual([RecordType.CORRAL_WINDOW, id, u32, 4]);
        },
      ),
      fcOptions(300),
    );
  });
});
