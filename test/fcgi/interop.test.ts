/**
 * Interop with the `fastcgi-stream` npm package (1.0.0): our writer -> its reader, its writer -> our
 * parser, for every record type it supports. Tests named "fastcgi-stream differs: ..." assert
 * fastcgi-stream's actual behaviour where it departs from the FastCGI spec or from our codec.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  HEADER_LEN,
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
} from '../../src/fcgi/index.js';
import { FsReader, R, fastcgi, fsRead, fsWrite, type FsRecord } from './fastcgi-stream-harness.js';
import { chunkingArb, encodeWithPadding, fcOptions, parseChunks, split, type Rec } from './util.js';

/**
 * A record in the terms both libraries share. Names/values of params are strings that both sides
 * carry as the same bytes: our side encodes them as UTF-8 bytes, fastcgi-stream as UTF-8 strings.
 */
type Logical =
  | { t: 'begin'; id: number; role: number; flags: number }
  | { t: 'abort'; id: number }
  | { t: 'end'; id: number; appStatus: number; protocolStatus: number }
  | { t: 'params'; id: number; pairs: Array<[string, string]> }
  | { t: 'stream'; type: 5 | 6 | 7 | 8; id: number; data: Buffer }
  | { t: 'getValues'; names: string[] }
  | { t: 'getValuesResult'; pairs: Array<[string, string]> }
  | { t: 'unknownType'; unknownType: number };

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const utf8Pairs = (pairs: Array<[string, string]>): Array<[Buffer, Buffer]> => pairs.map(([n, v]) => [utf8(n), utf8(v)]);

/** Our writer. */
function oursEncode(l: Logical): Buffer {
  switch (l.t) {
    case 'begin':
      return encodeBeginRequest(l.id, l.role, l.flags);
    case 'abort':
      return encodeRecord(RecordType.ABORT_REQUEST, l.id);
    case 'end':
      return encodeEndRequest(l.id, l.appStatus, l.protocolStatus);
    case 'params':
      return encodeRecord(RecordType.PARAMS, l.id, encodeParams(utf8Pairs(l.pairs)));
    case 'stream':
      return encodeRecord(l.type, l.id, l.data);
    case 'getValues':
      return encodeRecord(RecordType.GET_VALUES, 0, encodeParams(l.names.map((n) => [utf8(n), ''] as const)));
    case 'getValuesResult':
      return encodeRecord(RecordType.GET_VALUES_RESULT, 0, encodeParams(utf8Pairs(l.pairs)));
    case 'unknownType':
      return encodeUnknownType(l.unknownType);
  }
}

/** fastcgi-stream's writer: [requestId, record]. */
function fsRecord(l: Logical): [number, FsRecord] {
  switch (l.t) {
    case 'begin':
      return [l.id, new R.BeginRequest(l.role, l.flags)];
    case 'abort':
      return [l.id, new R.AbortRequest()];
    case 'end':
      return [l.id, new R.EndRequest(l.appStatus, l.protocolStatus)];
    case 'params':
      return [l.id, new R.Params(l.pairs)];
    case 'stream': {
      const C = { 5: R.StdIn, 6: R.StdOut, 7: R.StdErr, 8: R.Data }[l.type];
      return [l.id, new C(l.data)];
    }
    case 'getValues':
      return [0, new R.GetValues(l.names)];
    case 'getValuesResult':
      return [0, new R.GetValuesResult(l.pairs)];
    case 'unknownType':
      return [0, new R.UnknownType(l.unknownType)];
  }
}

/** What fastcgi-stream's reader should hand out for `l` (in its own representation). */
function fsExpected(l: Logical): { requestId: number; TYPE: number; fields: Record<string, unknown> } {
  // fastcgi-stream represents a pair with an empty value as the bare name (see "differs" below).
  const fsPairs = (pairs: Array<[string, string]>): unknown[] => pairs.map(([n, v]) => (v === '' ? n : [n, v]));
  switch (l.t) {
    case 'begin':
      return { requestId: l.id, TYPE: 1, fields: { role: l.role, flags: l.flags } };
    case 'abort':
      return { requestId: l.id, TYPE: 2, fields: {} };
    case 'end':
      return { requestId: l.id, TYPE: 3, fields: { appStatus: l.appStatus, protocolStatus: l.protocolStatus } };
    case 'params':
      return { requestId: l.id, TYPE: 4, fields: { params: fsPairs(l.pairs) } };
    case 'stream':
      return { requestId: l.id, TYPE: l.type, fields: { data: l.data.length ? l.data.toString('hex') : '' } };
    case 'getValues':
      return { requestId: 0, TYPE: 9, fields: { values: l.names } };
    case 'getValuesResult':
      return { requestId: 0, TYPE: 10, fields: { values: fsPairs(l.pairs) } };
    case 'unknownType':
      return { requestId: 0, TYPE: 11, fields: { type: l.unknownType } };
  }
}

function fsActual(requestId: number, r: FsRecord, like: Record<string, unknown>): { requestId: number; TYPE: number; fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const k of Object.keys(like)) {
    const v = (r as unknown as Record<string, unknown>)[k];
    fields[k] = Buffer.isBuffer(v) ? v.toString('hex') : v;
  }
  return { requestId, TYPE: r.TYPE, fields };
}

/** Our parse of one record, checked against `l`. */
function checkOurs(rec: Rec, l: Logical): void {
  const exp = fsExpected(l);
  expect(rec.type).toBe(exp.TYPE);
  expect(rec.requestId).toBe(exp.requestId);
  switch (l.t) {
    case 'begin':
      expect(decodeBeginRequest(rec.content)).toEqual({ role: l.role, flags: l.flags });
      break;
    case 'abort':
      expect(rec.content.length).toBe(0);
      break;
    case 'end':
      expect(decodeEndRequest(rec.content)).toEqual({ appStatus: l.appStatus, protocolStatus: l.protocolStatus });
      break;
    case 'params':
    case 'getValuesResult':
    case 'getValues': {
      const d = decodeParams(rec.content);
      const want = l.t === 'getValues' ? l.names.map((n) => [n, '']) : l.pairs;
      expect(d.ok && d.pairs.map(([n, v]) => [n.toString('utf8'), v.toString('utf8')])).toEqual(want);
      // Byte for byte: the UTF-8 bytes of the strings.
      expect(d.ok && Buffer.concat(d.pairs.flat()).equals(Buffer.concat(want.flat().map(utf8)))).toBe(true);
      break;
    }
    case 'stream':
      expect(rec.content.equals(l.data)).toBe(true);
      break;
    case 'unknownType':
      expect(rec.content.length).toBe(8);
      expect(rec.content[0]).toBe(l.unknownType);
      break;
  }
}

const id = fc.integer({ min: 1, max: 0xffff });
const byte = fc.integer({ min: 0, max: 255 });
/** Names/values: printable ASCII or any Unicode (carried as UTF-8 bytes), short or long (4-byte lengths). */
const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ minLength: 128, maxLength: 400 }),
);
const nonEmptyText = text.filter((s) => s.length > 0);
const pairs = fc.array(fc.tuple(nonEmptyText, text), { maxLength: 6 });

const logicalArb: fc.Arbitrary<Logical> = fc.oneof(
  fc.record({ t: fc.constant('begin' as const), id, role: fc.constantFrom(1, 2, 3), flags: fc.constantFrom(0, 1) }),
  fc.record({ t: fc.constant('abort' as const), id }),
  fc.record({ t: fc.constant('end' as const), id, appStatus: fc.oneof(fc.nat(255), fc.integer({ min: 0, max: 0xffffffff })), protocolStatus: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ t: fc.constant('params' as const), id, pairs }),
  fc.record({ t: fc.constant('stream' as const), type: fc.constantFrom(5 as const, 6 as const, 7 as const, 8 as const), id, data: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)) }),
  fc.record({ t: fc.constant('getValues' as const), names: fc.array(nonEmptyText, { maxLength: 4 }) }),
  fc.record({ t: fc.constant('getValuesResult' as const), pairs }),
  fc.record({ t: fc.constant('unknownType' as const), unknownType: byte }),
);

/** fastcgi-stream cannot take empty chunks (see "differs" below): drop them. */
const nonEmpty = (chunks: Buffer[]): Buffer[] => chunks.filter((c) => c.length > 0);

/** One example of every record type fastcgi-stream supports. */
const EXAMPLES: Array<[string, Logical]> = [
  ['BEGIN_REQUEST (RESPONDER, KEEP_CONN)', { t: 'begin', id: 1, role: 1, flags: 1 }],
  ['BEGIN_REQUEST (FILTER)', { t: 'begin', id: 0xffff, role: 3, flags: 0 }],
  ['ABORT_REQUEST', { t: 'abort', id: 258 }],
  ['END_REQUEST', { t: 'end', id: 1, appStatus: 0xffffffff, protocolStatus: 3 }],
  ['PARAMS', { t: 'params', id: 1, pairs: [['REQUEST_METHOD', 'GET'], ['HTTP_COOKIE', 'c='.padEnd(300, 'x')], ['X'.repeat(200), 'y']] }],
  ['PARAMS, non-ASCII (UTF-8 bytes)', { t: 'params', id: 2, pairs: [['PATH_INFO', '/café/ñ/€/日本'], ['HTTP_X_EMOJI', '🙂']] }],
  ['STDIN', { t: 'stream', type: 5, id: 1, data: Buffer.from('name=value&x=1') }],
  ['STDOUT', { t: 'stream', type: 6, id: 1, data: Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80]) }],
  ['STDERR', { t: 'stream', type: 7, id: 1, data: Buffer.from('oops\n') }],
  ['DATA', { t: 'stream', type: 8, id: 1, data: Buffer.alloc(65535, 0x5a) }],
  ['GET_VALUES', { t: 'getValues', names: ['FCGI_MAX_CONNS', 'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS'] }],
  ['GET_VALUES_RESULT', { t: 'getValuesResult', pairs: [['FCGI_MAX_CONNS', '10'], ['FCGI_MAX_REQS', '50'], ['FCGI_MPXS_CONNS', '1']] }],
  ['UNKNOWN_TYPE', { t: 'unknownType', unknownType: 0x20 }],
];

describe('our writer -> fastcgi-stream reader', () => {
  test.each(EXAMPLES)('%s', (_name, l) => {
    const got = fsRead([oursEncode(l)]);
    expect(got.length).toBe(1);
    const exp = fsExpected(l);
    expect(fsActual(got[0]!.requestId, got[0]!.record, exp.fields)).toEqual(exp);
  });

  test('arbitrary record sequences, with or without padding, in arbitrary non-empty chunks', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(logicalArb, fc.oneof(fc.constant(0), byte)), { maxLength: 10 }), chunkingArb, (list, chunking) => {
        const wire = Buffer.concat(
          list.map(([l, padding]) => {
            const b = oursEncode(l);
            if (padding === 0) return b;
            const content = b.subarray(HEADER_LEN);
            return encodeWithPadding({ type: b[1]!, requestId: b.readUInt16BE(2), content, padding });
          }),
        );
        const got = fsRead(nonEmpty(split(wire, chunking)));
        expect(got.map((g, i) => fsActual(g.requestId, g.record, fsExpected(list[i]![0]).fields))).toEqual(list.map(([l]) => fsExpected(l)));
      }),
      fcOptions(300),
    );
  });

  test("non-ASCII latin-1 params: nginx's raw UTF-8 bytes, as our latin-1 strings, reach fastcgi-stream intact", () => {
    // nginx passes the request's raw bytes; WSGI (PEP 3333) sees them as latin-1 strings.
    const wsgi = '/caf\u00c3\u00a9/\u00e2\u0082\u00ac'; // the UTF-8 bytes of "/café/€"
    const got = fsRead([encodeRecord(RecordType.PARAMS, 1, encodeParams([['PATH_INFO', wsgi]]))]);
    expect(got[0]!.record.params).toEqual([['PATH_INFO', '/café/€']]);
  });
});

describe('fastcgi-stream writer -> our parser', () => {
  test.each(EXAMPLES)('%s', (_name, l) => {
    const { records, parser } = parseChunks([fsWrite([fsRecord(l)])]);
    expect(records.length).toBe(1);
    checkOurs(records[0]!, l);
    expect(parser.error).toBeNull();
    expect(parser.buffered).toBe(0);
  });

  test('arbitrary record sequences in arbitrary chunks (incl. empty and 1-byte chunks)', () => {
    fc.assert(
      fc.property(fc.array(logicalArb, { maxLength: 10 }), chunkingArb, (list, chunking) => {
        const { records, parser } = parseChunks(split(fsWrite(list.map(fsRecord)), chunking));
        expect(records.length).toBe(list.length);
        records.forEach((r, i) => checkOurs(r, list[i]!));
        expect(parser.error).toBeNull();
        expect(parser.buffered).toBe(0);
      }),
      fcOptions(300),
    );
  });

  test('non-ASCII params: the UTF-8 bytes fastcgi-stream writes are the latin-1 strings WSGI expects', () => {
    const { records } = parseChunks([fsWrite([[1, new R.Params([['PATH_INFO', '/café/€']])]])]);
    const d = decodeParams(records[0]!.content);
    expect(d.ok && d.pairs.map(([n, v]) => [n.toString('latin1'), v.toString('latin1')])).toEqual([['PATH_INFO', '/caf\u00c3\u00a9/\u00e2\u0082\u00ac']]);
  });
});

describe('fastcgi-stream differs', () => {
  test('fastcgi-stream differs: encodes params strings as UTF-8, where we encode strings as latin-1', () => {
    const theirs = fsWrite([[1, new R.Params([['A', '\u00e9']])]]);
    const { records } = parseChunks([theirs]);
    expect(records[0]!.content.toString('hex')).toBe('0102' + '41' + 'c3a9'); // é as 2 UTF-8 bytes
    expect(encodeParams([['A', '\u00e9']]).toString('hex')).toBe('0101' + '41' + 'e9'); // ours: 1 latin-1 byte
  });

  test('fastcgi-stream differs: decodes params as UTF-8, so latin-1 bytes that are not valid UTF-8 come out as U+FFFD', () => {
    const got = fsRead([encodeRecord(RecordType.PARAMS, 1, encodeParams([['PATH_INFO', '/caf\u00e9'], ['\u00ff', '\u0080']]))]);
    expect(got[0]!.record.params).toEqual([['PATH_INFO', '/caf\ufffd'], ['\ufffd', '\ufffd']]);
    // All 256 byte values cannot survive: 0x80..0xff each become U+FFFD.
    const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    const back = fsRead([encodeRecord(RecordType.PARAMS, 1, encodeParams([['ALL', all]]))])[0]!.record.params![0] as [string, string];
    expect(back[1]).toBe(all.slice(0, 128) + '\ufffd'.repeat(128));
  });

  test('fastcgi-stream differs: cannot write raw-byte params (Buffer names or values throw TypeError)', () => {
    expect(() => fsWrite([[1, new R.Params([[Buffer.from('A'), Buffer.from([0xe9])]])]])).toThrow(TypeError);
    // Ours takes bytes as they are.
    expect(encodeParams([[Buffer.from('A'), Buffer.from([0xe9])]]).toString('hex')).toBe('010141e9');
  });

  test('fastcgi-stream differs: reads a pair with an empty value as a bare name string, not [name, ""]', () => {
    const got = fsRead([encodeRecord(RecordType.PARAMS, 1, encodeParams([['CONTENT_TYPE', ''], ['A', 'b']]))]);
    expect(got[0]!.record.params).toEqual(['CONTENT_TYPE', ['A', 'b']]);
    // ...and writes a bare string as a pair with an empty value.
    const d = decodeParams(parseChunks([fsWrite([[1, new R.Params(['CONTENT_TYPE'])]])]).records[0]!.content);
    expect(d.ok && d.pairs.map(([n, v]) => [n.toString(), v.toString()])).toEqual([['CONTENT_TYPE', '']]);
  });

  test("fastcgi-stream differs: reads an empty STDIN/STDOUT/STDERR/DATA record's data as '' (a string), not an empty Buffer", () => {
    for (const type of [5, 6, 7, 8]) {
      const got = fsRead([encodeRecord(type, 1)]);
      expect(got[0]!.record.TYPE).toBe(type);
      expect(got[0]!.record.data).toBe('');
    }
    expect(Buffer.isBuffer(fsRead([encodeRecord(5, 1, Buffer.from('x'))])[0]!.record.data)).toBe(true);
  });

  test('fastcgi-stream differs: throws TypeError out of the data handler on an unknown record type (the spec wants an UNKNOWN_TYPE answer)', () => {
    for (const type of [0x20, RecordType.CORRAL_WINDOW, 12, 255]) {
      const r = new FsReader();
      expect(() => r.feed(encodeRecord(type, 0, Buffer.from('x')))).toThrow(TypeError);
      expect(r.records).toEqual([]);
    }
    expect(() => fsRead([encodeWindow(1, 65536)])).toThrow(/is not a constructor/);
    // Ours frames unknown types like any other record.
    const { records } = parseChunks([encodeRecord(0x20, 0, Buffer.from('x')), encodeWindow(1, 65536)]);
    expect(records.map((r) => r.type)).toEqual([0x20, RecordType.CORRAL_WINDOW]);
  });

  test('fastcgi-stream differs: a record of type 0 stalls the reader, which then reads its content as the next header (phantom records)', () => {
    const phantomHeader = Buffer.from([1, RecordType.STDOUT, 0, 9, 0, 0, 0, 0]); // looks like an empty STDOUT for id 9
    const type0 = encodeRecord(0, 1, phantomHeader);
    const stdin = encodeRecord(RecordType.STDIN, 1, Buffer.from('abcdefgh'));
    const r = new FsReader().feed(Buffer.concat([type0, stdin]));
    expect(r.records).toEqual([]); // stalled: the STDIN record is already there but not read
    r.feed(stdin);
    expect(r.records.map((x) => [x.requestId, x.record.TYPE])).toEqual([
      [9, RecordType.STDOUT], // never sent
      [1, RecordType.STDIN],
      [1, RecordType.STDIN],
    ]);
    // Ours: the type-0 record, then both STDIN records.
    const { records } = parseChunks([Buffer.concat([type0, stdin]), stdin]);
    expect(records.map((x) => [x.requestId, x.type])).toEqual([
      [1, 0],
      [1, RecordType.STDIN],
      [1, RecordType.STDIN],
    ]);
  });

  test('fastcgi-stream differs: ignores the version byte (a header with version 2 is read as a record)', () => {
    const v2 = Buffer.from([2, RecordType.STDIN, 0, 1, 0, 0, 0, 0]);
    const got = fsRead([v2]);
    expect(got.map((g) => [g.requestId, g.record.TYPE])).toEqual([[1, RecordType.STDIN]]);
    const { records, parser } = parseChunks([v2]);
    expect(records).toEqual([]);
    expect(parser.error).toMatchObject({ code: 'BAD_VERSION', offset: 0 });
  });

  test('fastcgi-stream differs: pads each record by contentLength % 8 bytes, not up to an 8-byte boundary', () => {
    for (const [len, pad] of [
      [0, 0],
      [5, 5],
      [8, 0],
      [13, 5],
      [15, 7],
    ] as const) {
      const wire = fsWrite([[1, new R.StdOut(Buffer.alloc(len, 0x61))]]);
      expect(wire[6]).toBe(pad);
      expect(wire.length).toBe(HEADER_LEN + len + pad);
      // Spec-aligned padding would be (8 - len % 8) % 8; ours writes none. Both are legal, and we read theirs.
      const { records } = parseChunks([wire]);
      expect(records[0]!.padding).toBe(pad);
      expect(records[0]!.content.length).toBe(len);
    }
    // 8-byte content gets no padding, 5-byte content gets 5: an 18-byte record, not 16.
    expect(fsWrite([[1, new R.StdOut(Buffer.alloc(5))]]).length % 8).not.toBe(0);
  });

  test('fastcgi-stream differs: writes content over 65535 bytes with its length wrapped to 16 bits, corrupting the stream', () => {
    const wire = fsWrite([[1, new R.StdOut(Buffer.alloc(70000, 0x41))]]);
    expect(wire.readUInt16BE(4)).toBe(70000 - 65536); // 4464
    expect(wire.length).toBe(HEADER_LEN + 70000); // all 70000 bytes follow anyway (70000 % 8 = 0, no padding)
    const { records, parser } = parseChunks([wire]);
    expect(records.map((r) => r.content.length)).toEqual([4464]);
    expect(parser.error).toMatchObject({ code: 'BAD_VERSION', offset: HEADER_LEN + 4464 }); // 'A' (0x41) read as a version byte
    // Ours refuses such a record, and frameStream splits a stream instead.
    expect(() => encodeRecord(RecordType.STDOUT, 1, Buffer.alloc(70000))).toThrow(RangeError);
    expect(frameStream(RecordType.STDOUT, 1, Buffer.alloc(70000)).filter((_, i) => i % 2 === 1).map((p) => p.length)).toEqual([65535, 4465]);
  });

  test('fastcgi-stream differs: decodes each PARAMS record on its own, so a pair spanning two records (any value > 65535 bytes) is garbled', () => {
    const cookie = Buffer.alloc(70000, 0x41);
    const wire = Buffer.concat([...frameStream(RecordType.PARAMS, 1, encodeParams([['HTTP_COOKIE', cookie]])), encodeRecord(RecordType.PARAMS, 1)]);
    const got = fsRead([wire]);
    expect(got.length).toBe(3);
    const first = got[0]!.record.params as Array<[string, string]>;
    expect(first.map(([n, v]) => [n, v.length])).toEqual([['HTTP_COOKIE', 65535 - 16]]); // cut to what the first record holds
    const second = got[1]!.record.params as Array<[string, string]>;
    expect(second.length).toBeGreaterThan(10); // the tail of the cookie, read as phantom pairs named "AAAA..."
    expect(second[0]![0]).toMatch(/^A+$/);
    // Ours: the params stream is the concatenated contents.
    const { records } = parseChunks([wire]);
    const d = decodeParams(Buffer.concat(records.map((r) => r.content)));
    expect(d.ok && d.pairs.map(([n, v]) => [n.toString(), v.equals(cookie)])).toEqual([['HTTP_COOKIE', true]]);
  });

  test('fastcgi-stream differs: does not detect truncated params (reads garbage pairs instead of failing)', () => {
    const cases: Array<[number[], unknown[]]> = [
      [[0x85, 0x00, 0x00], ['']], // a 4-byte length cut after 3 bytes
      [[0x04, 0x03, 0x41, 0x42], [['AB', '']]], // name of 4 and value of 3 announced, 2 bytes present
    ];
    for (const [bytes, theirs] of cases) {
      expect(fsRead([encodeRecord(RecordType.PARAMS, 1, Buffer.from(bytes))])[0]!.record.params).toEqual(theirs);
      const d = decodeParams(Buffer.from(bytes));
      expect(d.ok).toBe(false);
    }
  });

  test('fastcgi-stream differs: an empty data chunk when its buffer is drained makes it read the next header as zeros and lose the stream', () => {
    const stdin = encodeRecord(RecordType.STDIN, 1, Buffer.from('abcdefgh'));
    const r = new FsReader().feed(Buffer.alloc(0)).feed(stdin).feed(stdin).feed(stdin);
    expect(r.records).toEqual([]); // three valid records, none read
    // Same records without the empty chunk:
    expect(new FsReader().feed(stdin).feed(stdin).feed(stdin).records.length).toBe(3);
    // Ours: empty chunks are no-ops.
    expect(parseChunks([Buffer.alloc(0), stdin, Buffer.alloc(0), stdin, stdin]).records.length).toBe(3);
  });

  test('fastcgi-stream differs: BeginRequest.flags has KEEPCONN, not the KEEP_CONN its README documents', () => {
    expect(R.BeginRequest.flags).toEqual({ KEEPCONN: 1 });
    expect(R.BeginRequest.flags.KEEP_CONN).toBeUndefined();
  });

  test('fastcgi-stream differs: re-copies the rest of the current chunk for every record it reads (quadratic in the chunk size)', () => {
    // A 64 KiB chunk of small records, as nginx pipelines them.
    const req = Buffer.concat([
      encodeBeginRequest(1, 1, 1),
      encodeRecord(RecordType.PARAMS, 1, encodeParams([['REQUEST_METHOD', 'GET'], ['HTTP_USER_AGENT', 'x'.repeat(500)]])),
      encodeRecord(RecordType.PARAMS, 1),
      encodeRecord(RecordType.STDIN, 1),
    ]);
    const n = Math.floor(65536 / req.length);
    const chunk = Buffer.concat(Array.from({ length: n }, () => req));
    let copied = 0;
    const original = Buffer.prototype.copy;
    Buffer.prototype.copy = function (this: Buffer, ...args: Parameters<Buffer['copy']>): number {
      const k = original.apply(this, args);
      copied += k;
      return k;
    };
    let records: unknown[];
    try {
      records = fsRead([chunk]);
    } finally {
      Buffer.prototype.copy = original;
    }
    expect(records.length).toBe(4 * n);
    // Every header/body read copies what is left of the 64 KiB chunk: ~chunk/2 per read, ~300x the input here.
    expect(copied).toBeGreaterThan(100 * chunk.length);
    // Ours hands out whole records as views of the chunk: nothing copied.
    const p = new RecordParser();
    let views = 0;
    p.push(chunk, (rec) => void (rec.frame.buffer === chunk.buffer && views++));
    expect(views).toBe(4 * n);
  });

  test('fastcgi-stream constants agree with ours', () => {
    expect(fastcgi.constants).toMatchObject({ VERSION: 1, HEADER_LEN: 8, MAX_CONTENT_SIZE: 65535, MAX_PADDING_SIZE: 255, NULL_REQUEST_ID: 0 });
    expect([R.BeginRequest.TYPE, R.AbortRequest.TYPE, R.EndRequest.TYPE, R.Params.TYPE, R.StdIn.TYPE, R.StdOut.TYPE, R.StdErr.TYPE, R.Data.TYPE, R.GetValues.TYPE, R.GetValuesResult.TYPE, R.UnknownType.TYPE]).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
    ]);
  });
});
