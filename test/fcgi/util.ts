/** Helpers shared by the FastCGI codec tests. */
import fc from 'fast-check';
import { HEADER_LEN, RecordParser, writeHeader, type ParseError } from '../../src/fcgi/index.js';

/** Fixed seed: every property test is deterministic. Override with FC_SEED=n to explore. */
export const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : 0x0fc9;

export function fcOptions(numRuns = 300): { seed: number; numRuns: number } {
  return { seed: SEED, numRuns };
}

/** `len` deterministic bytes (fast to build, unlike a per-byte arbitrary for 64 KiB+). */
export function fill(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Bytes of an arbitrary length, biased to the lengths where encodings change. */
export const sizedBytes = (lengths: fc.Arbitrary<number>): fc.Arbitrary<Buffer> =>
  fc.tuple(lengths, fc.nat()).map(([len, seed]) => fill(len, seed));

/** How to cut a byte stream into chunks. */
export type Chunking = { kind: 'points'; points: number[] } | { kind: 'size'; size: number } | { kind: 'bytes' };

export const chunkingArb: fc.Arbitrary<Chunking> = fc.oneof(
  fc.record({ kind: fc.constant('points' as const), points: fc.array(fc.nat(), { maxLength: 40 }) }),
  fc.record({ kind: fc.constant('size' as const), size: fc.integer({ min: 1, max: 4096 }) }),
  fc.constant({ kind: 'bytes' as const }),
);

/**
 * Cuts `data` into chunks. Split points may repeat (giving empty chunks). 'bytes' (1-byte chunks)
 * and small fixed sizes are capped at 20000 chunks per stream to keep the suite fast.
 */
export function split(data: Buffer, c: Chunking, maxChunks = 20000): Buffer[] {
  if (c.kind === 'points') {
    const cuts = c.points.map((p) => (data.length === 0 ? 0 : p % (data.length + 1))).sort((a, b) => a - b);
    const out: Buffer[] = [];
    let prev = 0;
    for (const cut of cuts) {
      out.push(data.subarray(prev, cut));
      prev = cut;
    }
    out.push(data.subarray(prev));
    return out;
  }
  const wanted = c.kind === 'bytes' ? 1 : c.size;
  const size = Math.max(wanted, Math.ceil(data.length / maxChunks));
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

/** A record as the tests describe it. */
export interface Rec {
  type: number;
  requestId: number;
  content: Buffer;
  padding: number;
}

/** Encodes with our writer's writeHeader (which supports padding, unlike encodeRecord). */
export function encodeWithPadding(r: Rec, padByte = 0xa5): Buffer {
  const b = Buffer.alloc(HEADER_LEN + r.content.length + r.padding, padByte);
  writeHeader(b, 0, r.type, r.requestId, r.content.length, r.padding);
  r.content.copy(b, HEADER_LEN);
  return b;
}

export interface ParseResult {
  records: Rec[];
  /** Index of the chunk at which push() first returned an error, or -1. */
  firstErrorChunk: number;
  /** Every value push() returned, per chunk. */
  results: Array<ParseError | null>;
  parser: RecordParser;
}

/** Feeds chunks to a fresh parser; copies each record (they are views into the chunks). */
export function parseChunks(chunks: Iterable<Buffer>, parser = new RecordParser()): ParseResult {
  const records: Rec[] = [];
  const results: Array<ParseError | null> = [];
  let firstErrorChunk = -1;
  for (const chunk of chunks) {
    const r = parser.push(chunk, (rec) => {
      records.push({
        type: rec.type,
        requestId: rec.requestId,
        content: Buffer.from(rec.content),
        padding: rec.frame.length - HEADER_LEN - rec.content.length,
      });
    });
    if (r && firstErrorChunk < 0) firstErrorChunk = results.length;
    results.push(r);
  }
  return { records, firstErrorChunk, results, parser };
}

/** Comparable form (hex content) for toEqual with readable diffs. */
export function show(recs: Rec[]): Array<{ type: number; requestId: number; content: string; padding: number }> {
  return recs.map((r) => ({ type: r.type, requestId: r.requestId, content: r.content.toString('hex'), padding: r.padding }));
}
