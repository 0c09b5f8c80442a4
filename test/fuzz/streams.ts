/**
 * Arbitraries shared by the fuzz suites: nginx-like FastCGI request streams, mutations of them,
 * and hostile record headers (bad versions, types, lengths, ids). Deterministic under fcOptions.
 */
import fc from 'fast-check';
import { FCGI_KEEP_CONN, RecordType, Role } from '../../src/fcgi/constants.js';
import { encodeParams } from '../../src/fcgi/params.js';
import { encodeBeginRequest, encodeRecord, frameStream } from '../../src/fcgi/records.js';

/** One request as a web server sends it, before it is laid out on the wire. */
export interface WireRequest {
  id: number;
  keepConn: boolean;
  role: number;
  params: Array<[string, string]>;
  /** Where the params body is cut into PARAMS records. */
  paramsCuts: number[];
  body: Buffer;
  bodyCuts: number[];
  /** Send ABORT_REQUEST after the params. */
  abort: boolean;
}

const nameArb = fc.oneof(
  fc.constantFrom('REQUEST_METHOD', 'REQUEST_URI', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'CONTENT_LENGTH', 'CONTENT_TYPE', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL', 'REMOTE_ADDR', 'HTTP_HOST', 'APPL_PHYSICAL_PATH'),
  fc.string({ maxLength: 20 }),
);
const valueArb = fc.oneof({ weight: 4, arbitrary: fc.string({ maxLength: 40 }) }, { weight: 1, arbitrary: fc.integer({ min: 120, max: 3000 }).map((n) => 'v'.repeat(n)) });

export const requestArb: fc.Arbitrary<WireRequest> = fc.record({
  id: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 0xffff })),
  keepConn: fc.boolean(),
  role: fc.oneof({ weight: 8, arbitrary: fc.constant(Role.RESPONDER as number) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
  params: fc.array(fc.tuple(nameArb, valueArb), { maxLength: 12 }),
  paramsCuts: fc.array(fc.nat(), { maxLength: 4 }),
  body: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  bodyCuts: fc.array(fc.nat(), { maxLength: 4 }),
  abort: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

function cutInto(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (data.length === 0 ? 0 : c % data.length)))].filter((c) => c > 0).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(data.subarray(prev, p));
    prev = p;
  }
  if (prev < data.length) out.push(data.subarray(prev));
  return out;
}

/** The records of one request, in order, each a separate buffer. */
export function requestRecords(r: WireRequest): Buffer[] {
  const out: Buffer[] = [encodeBeginRequest(r.id, r.role, r.keepConn ? FCGI_KEEP_CONN : 0)];
  const body = encodeParams(r.params);
  for (const piece of cutInto(body, r.paramsCuts)) out.push(...joinFrames(frameStream(RecordType.PARAMS, r.id, piece)));
  out.push(encodeRecord(RecordType.PARAMS, r.id));
  if (r.abort) {
    out.push(encodeRecord(RecordType.ABORT_REQUEST, r.id));
    return out;
  }
  for (const piece of cutInto(r.body, r.bodyCuts)) out.push(...joinFrames(frameStream(RecordType.STDIN, r.id, piece)));
  out.push(encodeRecord(RecordType.STDIN, r.id));
  return out;
}

function joinFrames(parts: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < parts.length; i += 2) out.push(Buffer.concat([parts[i]!, parts[i + 1]!]));
  return out;
}

/** Several requests, sequential or interleaved record by record (as a multiplexing client would). */
export const requestStreamArb: fc.Arbitrary<Buffer> = fc
  .tuple(fc.array(requestArb, { minLength: 1, maxLength: 4 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 30 }))
  .map(([reqs, interleave, picks]) => {
    const lists = reqs.map(requestRecords);
    if (!interleave) return Buffer.concat(lists.flat());
    const out: Buffer[] = [];
    let k = 0;
    while (lists.some((l) => l.length > 0)) {
      const open = lists.filter((l) => l.length > 0);
      out.push(open[(picks[k++ % Math.max(1, picks.length)] ?? 0) % open.length]!.shift()!);
    }
    return Buffer.concat(out);
  });

/** One edit of a byte stream; positions are taken modulo the length when applied. */
export type Mutation =
  | { op: 'set'; at: number; value: number }
  | { op: 'flip'; at: number; bit: number }
  | { op: 'insert'; at: number; bytes: Buffer }
  | { op: 'delete'; at: number; length: number }
  | { op: 'truncate'; at: number }
  | { op: 'duplicate'; at: number; length: number }
  /** Overwrite a 16-bit field with an extreme value (a record length, id or role if it lands on one). */
  | { op: 'u16'; at: number; value: number }
  /** Overwrite 4 bytes with a long-form name-value length (top bit set), e.g. 2 GiB. */
  | { op: 'u32'; at: number; value: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }).map((a) => Buffer.from(a)) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 32 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('u16' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 7, 8, 9, 0x7fff, 0x8000, 0xfffe, 0xffff) }),
  fc.record({ op: fc.constant('u32' as const), at: fc.nat(), value: fc.constantFrom(0x80000000, 0xffffffff, 0x80000080, 0xfffffff0, 0x8000ffff) }),
);

/** Applies `muts` in order to a copy of `data`. */
export function mutate(data: Buffer, muts: readonly Mutation[]): Buffer {
  let b = Buffer.from(data);
  for (const m of muts) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    switch (m.op) {
      case 'set':
        if (b.length) b[at] = m.value;
        break;
      case 'flip':
        if (b.length) b[at] = b[at]! ^ (1 << m.bit);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.length)]);
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'duplicate':
        b = Buffer.concat([b.subarray(0, at + m.length), b.subarray(at, at + m.length), b.subarray(at + m.length)]);
        break;
      case 'u16':
        if (at + 2 <= b.length) b.writeUInt16BE(m.value, at);
        break;
      case 'u32':
        if (at + 4 <= b.length) b.writeUInt32BE(m.value >>> 0, at);
        break;
    }
  }
  return b;
}

/** A header with any version, type, id, lengths, and as much content as we care to send (maybe less than claimed). */
export const hostileRecordArb: fc.Arbitrary<Buffer> = fc
  .record({
    version: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    type: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 255 })),
    id: fc.oneof(fc.constantFrom(0, 1, 2, 0xffff), fc.integer({ min: 0, max: 0xffff })),
    length: fc.oneof(fc.constantFrom(0, 1, 7, 8, 9, 0xffff), fc.integer({ min: 0, max: 300 })),
    padding: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
    send: fc.oneof(fc.constant(Infinity), fc.nat({ max: 400 })),
    content: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  })
  .map(({ version, type, id, length, padding, send, content }) => {
    const head = Buffer.from([version, type, id >> 8, id & 0xff, length >> 8, length & 0xff, padding, 0]);
    const want = length + padding;
    const bodyLen = Math.min(want, send);
    const body = Buffer.alloc(bodyLen);
    content.copy(body, 0, 0, Math.min(content.length, bodyLen));
    return Buffer.concat([head, body]);
  });

/** Any input a hostile or broken client might send: random bytes, mutated valid streams, hostile records, mixes. */
export const hostileInputArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)),
  fc.tuple(requestStreamArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 })).map(([s, m]) => mutate(s, m)),
  fc.array(hostileRecordArb, { minLength: 1, maxLength: 6 }).map((rs) => Buffer.concat(rs)),
  fc.tuple(requestStreamArb, fc.array(hostileRecordArb, { maxLength: 3 }), requestStreamArb).map(([a, h, b]) => Buffer.concat([a, ...h, b])),
  requestStreamArb,
);
