/**
 * Golden corpus: parses each test/fcgi/corpus/NAME.bin with our parser (whole, and byte by byte)
 * and compares with NAME.json; re-encodes with our writer where it applies.
 * Regenerate the files with UPDATE_CORPUS=1 (see make-corpus.ts).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
  frameStream,
  recordTypeName,
  type FcgiRecord,
  type ParseError,
} from '../../src/fcgi/index.js';
import { buildCorpus, corpusJsonText, writeCorpus, type ExpectedParse, type ExpectedRecord } from './corpus/make-corpus.js';

const CORPUS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'corpus');
const PARAMS_TYPES = new Set<number>([RecordType.PARAMS, RecordType.GET_VALUES, RecordType.GET_VALUES_RESULT]);

// Regenerate before the file list below is read, so the new files are the ones tested.
const regenerated = process.env.UPDATE_CORPUS === '1' ? writeCorpus(CORPUS_DIR) : [];

test.runIf(process.env.UPDATE_CORPUS === '1')('UPDATE_CORPUS=1: regenerate the corpus files', () => {
  expect(regenerated).toEqual(buildCorpus().map((c) => c.name));
});

const cases = readdirSync(CORPUS_DIR)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => f.slice(0, -4))
  .sort();

function load(name: string): { bin: Buffer; json: ExpectedParse } {
  return {
    bin: readFileSync(join(CORPUS_DIR, `${name}.bin`)),
    json: JSON.parse(readFileSync(join(CORPUS_DIR, `${name}.json`), 'utf8')) as ExpectedParse,
  };
}

interface Parsed {
  records: Array<{ offset: number; record: FcgiRecord }>;
  /** Every non-null value push() returned. */
  errors: ParseError[];
  error: ParseError | null;
  buffered: number;
}

function parse(chunks: Iterable<Buffer>): Parsed {
  const p = new RecordParser();
  const records: Parsed['records'] = [];
  const errors: ParseError[] = [];
  let offset = 0;
  for (const chunk of chunks) {
    const err = p.push(chunk, (record) => {
      // Records are views into the chunk: copy them, as a caller that keeps them must.
      const frame = Buffer.from(record.frame);
      records.push({
        offset,
        record: { type: record.type, requestId: record.requestId, frame, content: frame.subarray(HEADER_LEN, HEADER_LEN + record.content.length) },
      });
      offset += record.frame.length;
    });
    if (err) errors.push(err);
  }
  return { records, errors, error: p.error, buffered: p.buffered };
}

function* byteByByte(bin: Buffer): Generator<Buffer> {
  for (let i = 0; i < bin.length; i++) yield bin.subarray(i, i + 1);
}

/** Our parse of one record, in the .json's shape. */
function describeRecord(offset: number, r: FcgiRecord, expected: ExpectedRecord): ExpectedRecord {
  const content = r.content;
  const out: ExpectedRecord = {
    offset,
    type: r.type,
    typeName: recordTypeName(r.type),
    requestId: r.requestId,
    contentLength: content.length,
    ...(expected.contentText !== undefined ? { contentText: content.toString('latin1') } : { contentHex: content.toString('hex') }),
    paddingLength: r.frame.length - HEADER_LEN - content.length,
  };
  if (expected.params) {
    const d = decodeParams(content);
    out.params = d.ok ? d.pairs.map(([n, v]) => [n.toString('latin1'), v.toString('latin1')]) : ([['<error>', d.message]] as Array<[string, string]>);
  }
  if (r.type === RecordType.BEGIN_REQUEST) {
    const b = decodeBeginRequest(content);
    if (b) out.begin = b;
  }
  if (r.type === RecordType.END_REQUEST) {
    const e = decodeEndRequest(content);
    if (e) out.end = e;
  }
  if (r.type === RecordType.UNKNOWN_TYPE && content.length === 8) out.unknownType = content[0]!;
  return out;
}

function checkParse(json: ExpectedParse, got: Parsed): void {
  expect(got.records.map(({ offset, record }, i) => describeRecord(offset, record, json.records[i] ?? ({} as ExpectedRecord)))).toEqual(json.records);
  if (json.error) {
    expect(got.error).toMatchObject(json.error);
    expect(got.error!.message).toContain(`at byte ${json.error.offset}`);
    // The first error returned is the parser's error, and every later push returned that same one.
    expect(got.errors.length).toBeGreaterThan(0);
    for (const e of got.errors) expect(e).toBe(got.error);
  } else {
    expect(got.error).toBeNull();
    expect(got.errors).toEqual([]);
  }
  expect(got.buffered).toBe(json.pendingBytes);
}

/** Per request id, the pairs decoded from its PARAMS records concatenated. */
function paramsStreams(records: Parsed['records']): Record<string, Array<[string, string]>> {
  const bodies = new Map<number, Buffer[]>();
  for (const { record } of records) {
    if (record.type !== RecordType.PARAMS) continue;
    bodies.set(record.requestId, [...(bodies.get(record.requestId) ?? []), record.content]);
  }
  const out: Record<string, Array<[string, string]>> = {};
  for (const [id, parts] of bodies) {
    const d = decodeParams(Buffer.concat(parts));
    if (!d.ok) throw new Error(`request ${id}: ${d.message}`);
    out[String(id)] = d.pairs.map(([n, v]) => [n.toString('latin1'), v.toString('latin1')]);
  }
  return out;
}

/** Our writer's encoding of a parsed record, or null where no writer function applies. */
function reencode(r: FcgiRecord, expected: ExpectedRecord): Buffer | null {
  switch (r.type) {
    case RecordType.BEGIN_REQUEST: {
      const b = decodeBeginRequest(r.content);
      return b && encodeBeginRequest(r.requestId, b.role, b.flags);
    }
    case RecordType.END_REQUEST: {
      const e = decodeEndRequest(r.content);
      return e && encodeEndRequest(r.requestId, e.appStatus, e.protocolStatus);
    }
    case RecordType.UNKNOWN_TYPE:
      return r.requestId === 0 && r.content.length === 8 ? encodeUnknownType(r.content[0]!) : null;
    default:
      if (PARAMS_TYPES.has(r.type) && expected.params) return encodeRecord(r.type, r.requestId, encodeParams(expected.params));
      return encodeRecord(r.type, r.requestId, r.content);
  }
}

describe('golden corpus', () => {
  test('the files on disk are what make-corpus.ts builds (run with UPDATE_CORPUS=1 after editing it)', () => {
    const built = buildCorpus();
    expect(cases).toEqual(built.map((c) => c.name).sort());
    for (const c of built) {
      expect(readFileSync(join(CORPUS_DIR, `${c.name}.bin`)).equals(c.bin), `${c.name}.bin`).toBe(true);
      expect(readFileSync(join(CORPUS_DIR, `${c.name}.json`), 'utf8'), `${c.name}.json`).toBe(corpusJsonText(c));
    }
  });

  test('covers every spec record type 1..11, an unknown type, padding, a parse error and a truncated stream', () => {
    const all = cases.map((n) => load(n).json);
    const types = new Set(all.flatMap((j) => j.records.map((r) => r.type)));
    for (let t = 1; t <= 11; t++) expect(types, `type ${t}`).toContain(t);
    expect(types).toContain(0x20);
    expect(all.some((j) => j.records.some((r) => r.paddingLength > 0))).toBe(true);
    expect(all.some((j) => j.records.some((r) => r.begin?.role === 3))).toBe(true);
    expect(all.some((j) => j.error)).toBe(true);
    expect(all.some((j) => !j.error && j.pendingBytes > 0)).toBe(true);
  });

  describe.each(cases)('%s', (name) => {
    const { bin, json } = load(name);

    test('matches its .json header fields', () => {
      expect(bin.length).toBe(json.totalBytes);
      for (const r of json.records) {
        expect(bin[r.offset]).toBe(1);
        expect(bin[r.offset + 1]).toBe(r.type);
        expect(bin.readUInt16BE(r.offset + 2)).toBe(r.requestId);
        expect(bin.readUInt16BE(r.offset + 4)).toBe(r.contentLength);
        expect(bin[r.offset + 6]).toBe(r.paddingLength);
      }
    });

    test('parses whole', () => {
      checkParse(json, parse([bin]));
    });

    test('parses byte by byte', () => {
      checkParse(json, parse(byteByByte(bin)));
    });

    test('parses in uneven chunks (7, 8, 9, 4096 bytes)', () => {
      for (const size of [7, 8, 9, 4096]) {
        const chunks: Buffer[] = [];
        for (let i = 0; i < bin.length; i += size) chunks.push(bin.subarray(i, i + size));
        checkParse(json, parse(chunks));
      }
    });

    test('each frame is the bytes at its offset', () => {
      for (const { offset, record } of parse([bin]).records) {
        expect(record.frame.equals(bin.subarray(offset, offset + record.frame.length))).toBe(true);
      }
    });

    test('params streams decode to the expected pairs', () => {
      expect(paramsStreams(parse([bin]).records)).toEqual(json.params);
    });

    test('re-encodes with our writer to identical bytes (records without padding)', () => {
      const { records } = parse([bin]);
      const pieces: Buffer[] = [];
      let unpadded = true;
      records.forEach(({ record }, i) => {
        const exp = json.records[i]!;
        if (exp.paddingLength > 0) {
          unpadded = false;
          return;
        }
        const again = reencode(record, exp);
        expect(again, `record ${i}`).not.toBeNull();
        expect(again!.toString('hex'), `record ${i} (${exp.typeName})`).toBe(record.frame.toString('hex'));
        pieces.push(again!);
      });
      // Whole-file round trip when every byte of the file is an unpadded record.
      if (unpadded && !json.error && json.pendingBytes === 0) expect(Buffer.concat(pieces).equals(bin)).toBe(true);
      // Each request's whole params body, re-encoded from its pairs, is the concatenated PARAMS content.
      for (const [id, pairs] of Object.entries(json.params)) {
        const body = Buffer.concat(records.filter((r) => r.record.type === RecordType.PARAMS && r.record.requestId === Number(id)).map((r) => r.record.content));
        expect(encodeParams(pairs).equals(body), `params of request ${id}`).toBe(true);
      }
    });
  });

  test('post-70000: frameStream() of the body gives exactly the two STDIN records', () => {
    const { bin, json } = load('post-70000');
    const stdin = json.records.filter((r) => r.type === RecordType.STDIN && r.contentLength > 0);
    expect(stdin.map((r) => r.contentLength)).toEqual([65535, 4465]);
    const body = Buffer.from(stdin.map((r) => r.contentText!).join(''), 'latin1');
    expect(body.length).toBe(70000);
    const first = stdin[0]!.offset;
    const last = stdin[1]!;
    const expected = bin.subarray(first, last.offset + HEADER_LEN + last.contentLength);
    expect(Buffer.concat(frameStream(RecordType.STDIN, 1, body)).equals(expected)).toBe(true);
  });

  test('truncated: the pending record completes when the rest arrives', () => {
    const { bin } = load('truncated');
    const p = new RecordParser();
    const got: FcgiRecord[] = [];
    expect(p.push(bin, (r) => got.push(r))).toBeNull();
    expect(got.length).toBe(1);
    const rest = Buffer.concat([Buffer.alloc(60, 0x78), Buffer.alloc(4, 0xee)]); // the other 60 content bytes, 4 padding
    expect(p.push(rest, (r) => got.push(r))).toBeNull();
    expect(got.length).toBe(2);
    expect(got[1]!.type).toBe(RecordType.STDIN);
    expect(got[1]!.content.length).toBe(100);
    expect(p.buffered).toBe(0);
  });

  test('bad-version: later pushes, even of valid records, return the same error and emit nothing', () => {
    const { bin, json } = load('bad-version');
    const p = new RecordParser();
    let n = 0;
    const err = p.push(bin, () => n++);
    expect(err).toMatchObject(json.error!);
    expect(n).toBe(json.records.length);
    expect(p.push(encodeRecord(RecordType.STDIN, 1), () => n++)).toBe(err);
    expect(p.push(Buffer.alloc(0), () => n++)).toBe(err);
    expect(n).toBe(json.records.length);
    expect(p.error).toBe(err);
    expect(p.buffered).toBe(0);
  });
});
