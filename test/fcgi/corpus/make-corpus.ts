/**
 * Builds the golden FastCGI corpus: NAME.bin (raw bytes) and NAME.json (the expected parse).
 *
 * The bytes are written out by hand here, from the spec (FastCGI 1.0, sections 3.3-3.4 and 5-6).
 * Nothing in this file imports src/: the corpus must stay an independent check of our parser
 * and writer. The expected parse in each .json is taken from the same hand-written description
 * (type, request id, content, padding, decoded pairs), never from parsing the bytes.
 *
 * Regenerate with:  UPDATE_CORPUS=1 npx vitest run test/fcgi/corpus.test.ts
 * (corpus.test.ts also checks that the files on disk match what this script builds.)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

type Bytes = number[];

/** Spec record type names (section 8); anything else is named TYPE_<n>. */
const TYPE_NAMES: Record<number, string> = {
  1: 'BEGIN_REQUEST',
  2: 'ABORT_REQUEST',
  3: 'END_REQUEST',
  4: 'PARAMS',
  5: 'STDIN',
  6: 'STDOUT',
  7: 'STDERR',
  8: 'DATA',
  9: 'GET_VALUES',
  10: 'GET_VALUES_RESULT',
  11: 'UNKNOWN_TYPE',
};
const typeName = (t: number): string => TYPE_NAMES[t] ?? `TYPE_${t}`;

export interface ExpectedRecord {
  /** Byte offset of the record header in the .bin. */
  offset: number;
  type: number;
  typeName: string;
  requestId: number;
  contentLength: number;
  /** Content as latin-1 text, when it is all printable ASCII (plus CR, LF, TAB); else contentHex. */
  contentText?: string;
  contentHex?: string;
  paddingLength: number;
  /** Decoded name-value pairs (latin-1 strings), for a PARAMS / GET_VALUES(_RESULT) record that holds whole pairs. */
  params?: Array<[string, string]>;
  /** BEGIN_REQUEST body. */
  begin?: { role: number; flags: number };
  /** END_REQUEST body. */
  end?: { appStatus: number; protocolStatus: number };
  /** UNKNOWN_TYPE body: the type that was not understood. */
  unknownType?: number;
}

export interface ExpectedParse {
  name: string;
  description: string;
  totalBytes: number;
  records: ExpectedRecord[];
  /** Per request id: the pairs decoded from all its PARAMS records, concatenated (pairs may span records). */
  params: Record<string, Array<[string, string]>>;
  /** The parse error, or null. `offset` is the byte offset of the bad record header. */
  error: { code: string; offset: number } | null;
  /** Bytes the parser holds at the end for an incomplete record (0 after an error). */
  pendingBytes: number;
}

export interface CorpusCase {
  name: string;
  bin: Buffer;
  json: ExpectedParse;
}

// ---------------------------------------------------------------------------------------------
// Hand-rolled byte helpers (independent of src/fcgi).

function latin1(s: string): Bytes {
  const out: Bytes = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new Error(`not latin-1: ${JSON.stringify(s)}`);
    out.push(c);
  }
  return out;
}

function append(dst: Bytes, src: Bytes): void {
  for (const b of src) dst.push(b);
}

/** Section 3.4: lengths 0..127 in one byte, else four bytes with the top bit set. */
function nvLength(n: number): Bytes {
  return n < 128 ? [n] : [0x80 | ((n >>> 24) & 0x7f), (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

/** One name-value pair: nameLength, valueLength, name, value. */
function nv(name: string, value: string): Bytes {
  const n = latin1(name);
  const v = latin1(value);
  const out = [...nvLength(n.length), ...nvLength(v.length)];
  append(out, n);
  append(out, v);
  return out;
}

function pairsBytes(pairs: Array<[string, string]>): Bytes {
  const out: Bytes = [];
  for (const [n, v] of pairs) append(out, nv(n, v));
  return out;
}

function hex(bytes: Bytes): string {
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join('');
}

function isText(bytes: Bytes): boolean {
  return bytes.every((b) => (b >= 0x20 && b <= 0x7e) || b === 0x0a || b === 0x0d || b === 0x09);
}

/** Padding bytes have no defined value (section 3.3); use junk so a parser that reads them is caught. */
const PAD_BYTE = 0xee;

interface RecordExtras {
  padding?: number;
  params?: Array<[string, string]>;
  begin?: { role: number; flags: number };
  end?: { appStatus: number; protocolStatus: number };
  unknownType?: number;
}

/** Accumulates the bytes of one corpus file and, alongside, the parse we expect from them. */
class Stream {
  readonly bytes: Bytes = [];
  readonly records: ExpectedRecord[] = [];
  readonly paramsStreams = new Map<number, Bytes>();
  readonly paramsPairs = new Map<number, Array<[string, string]>>();
  error: { code: string; offset: number } | null = null;
  pendingBytes = 0;

  /**
   * Appends one record: the 8-byte header of section 3.3
   * {version=1, type, requestIdB1, requestIdB0, contentLengthB1, contentLengthB0, paddingLength, reserved=0},
   * then content, then padding.
   */
  record(type: number, requestId: number, content: Bytes, extras: RecordExtras = {}): this {
    const padding = extras.padding ?? 0;
    const len = content.length;
    if (len > 0xffff || padding > 0xff || requestId > 0xffff) throw new Error('field out of range');
    const offset = this.bytes.length;
    append(this.bytes, [0x01, type, requestId >> 8, requestId & 0xff, len >> 8, len & 0xff, padding, 0x00]);
    append(this.bytes, content);
    for (let i = 0; i < padding; i++) this.bytes.push(PAD_BYTE);
    const rec: ExpectedRecord = {
      offset,
      type,
      typeName: typeName(type),
      requestId,
      contentLength: len,
      ...(isText(content) ? { contentText: String.fromCharCode(...content) } : { contentHex: hex(content) }),
      paddingLength: padding,
    };
    if (extras.params) rec.params = extras.params;
    if (extras.begin) rec.begin = extras.begin;
    if (extras.end) rec.end = extras.end;
    if (extras.unknownType !== undefined) rec.unknownType = extras.unknownType;
    this.records.push(rec);
    return this;
  }

  /** A PARAMS record holding whole pairs. */
  params(requestId: number, pairs: Array<[string, string]>, padding = 0): this {
    const content = pairsBytes(pairs);
    this.#addParams(requestId, content, pairs);
    return this.record(4, requestId, content, { padding, params: pairs });
  }

  /** A PARAMS record with raw content (e.g. half a pair); `pairs` are the pairs this piece completes. */
  paramsPiece(requestId: number, content: Bytes, completes: Array<[string, string]>): this {
    this.#addParams(requestId, content, completes);
    return this.record(4, requestId, content);
  }

  #addParams(requestId: number, content: Bytes, pairs: Array<[string, string]>): void {
    const s = this.paramsStreams.get(requestId) ?? [];
    append(s, content);
    this.paramsStreams.set(requestId, s);
    const p = this.paramsPairs.get(requestId) ?? [];
    p.push(...pairs);
    this.paramsPairs.set(requestId, p);
  }

  /** Bytes that are not (or not yet) a whole record. */
  raw(bytes: Bytes): this {
    append(this.bytes, bytes);
    return this;
  }

  build(name: string, description: string): CorpusCase {
    // Cross-check the two descriptions of each params stream against each other.
    for (const [id, s] of this.paramsStreams) {
      const expected = pairsBytes(this.paramsPairs.get(id) ?? []);
      if (hex(expected) !== hex(s)) throw new Error(`${name}: params stream of request ${id} does not match its pairs`);
    }
    const params: Record<string, Array<[string, string]>> = {};
    for (const [id, pairs] of this.paramsPairs) params[String(id)] = pairs;
    return {
      name,
      bin: Buffer.from(this.bytes),
      json: {
        name,
        description,
        totalBytes: this.bytes.length,
        records: this.records,
        params,
        error: this.error,
        pendingBytes: this.pendingBytes,
      },
    };
  }
}

// ---------------------------------------------------------------------------------------------
// The cases.

/** A cookie of exactly 300 bytes: its length needs the 4-byte form 0x8000012c. */
const COOKIE =
  'sessionid=3f9a1c7e5b2d4086a1e3c5b7d9f1a3c5; csrftoken=Zx8Kq2Lm4Np6Rs8Tv0Wx2Yz4Ab6Cd8Ef0Gh2Ij4Kl6Mn8Op0Qr2St4; ' +
  '_ga=GA1.1.1234567890.1700000000; theme=dark; lang=en-GB; consent=analytics%3Dno%26ads%3Dno; ' +
  'cart=eyJpdGVtcyI6W3siaWQiOjQyLCJxdHkiOjF9XX0; tz=Europe%2FLondon; pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxx';

/** What nginx's stock fastcgi_params sends for `GET /caf\xc3\xa9/items?page=2` (raw UTF-8 bytes, read as latin-1). */
const NGINX_GET_PARAMS: Array<[string, string]> = [
  ['QUERY_STRING', 'page=2'],
  ['REQUEST_METHOD', 'GET'],
  ['CONTENT_TYPE', ''],
  ['CONTENT_LENGTH', ''],
  ['SCRIPT_NAME', '/caf\u00c3\u00a9/items'],
  ['REQUEST_URI', '/caf%C3%A9/items?page=2'],
  ['DOCUMENT_URI', '/caf\u00c3\u00a9/items'],
  ['DOCUMENT_ROOT', '/srv/www/html'],
  ['SERVER_PROTOCOL', 'HTTP/1.1'],
  ['REQUEST_SCHEME', 'http'],
  ['GATEWAY_INTERFACE', 'CGI/1.1'],
  ['SERVER_SOFTWARE', 'nginx/1.24.0'],
  ['REMOTE_ADDR', '203.0.113.7'],
  ['REMOTE_PORT', '51724'],
  ['SERVER_ADDR', '192.0.2.10'],
  ['SERVER_PORT', '80'],
  ['SERVER_NAME', 'example.org'],
  ['REDIRECT_STATUS', '200'],
  ['HTTP_HOST', 'example.org'],
  ['HTTP_USER_AGENT', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'],
  ['HTTP_ACCEPT', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'],
  ['HTTP_ACCEPT_LANGUAGE', 'en-GB,en;q=0.5'],
  ['HTTP_ACCEPT_ENCODING', 'gzip, deflate'],
  ['HTTP_COOKIE', COOKIE],
];

/** Literal BEGIN_REQUEST record: id 1, role RESPONDER (0x0001), flags FCGI_KEEP_CONN, 5 reserved bytes. */
const BEGIN_KEEP_CONN_ID1: Bytes = [
  0x01, 0x01, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, // header: v1, BEGIN_REQUEST, id 1, length 8, no padding
  0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // role 1, flags 1, reserved
];

function nginxGet(): CorpusCase {
  if (COOKIE.length !== 300) throw new Error(`cookie is ${COOKIE.length} bytes, want 300`);
  const s = new Stream();
  // The BEGIN record, spelled out byte by byte.
  s.raw(BEGIN_KEEP_CONN_ID1);
  s.records.push({
    offset: 0,
    type: 1,
    typeName: 'BEGIN_REQUEST',
    requestId: 1,
    contentLength: 8,
    contentHex: '0001010000000000',
    paddingLength: 0,
    begin: { role: 1, flags: 1 },
  });
  // The cookie pair, spelled out: name length 11 in one byte, value length 300 in four bytes.
  const cookiePair: Bytes = [0x0b, 0x80, 0x00, 0x01, 0x2c, ...latin1('HTTP_COOKIE'), ...latin1(COOKIE)];
  if (hex(cookiePair) !== hex(nv('HTTP_COOKIE', COOKIE))) throw new Error('nv() disagrees with the literal cookie pair');
  s.params(1, NGINX_GET_PARAMS);
  s.record(4, 1, []); // empty PARAMS: end of params
  s.record(5, 1, []); // empty STDIN: end of body
  return s.build('nginx-get', 'nginx-style GET: BEGIN (RESPONDER, KEEP_CONN), PARAMS with typical CGI variables incl. a 300-byte HTTP_COOKIE (4-byte length) and empty values, empty PARAMS, empty STDIN');
}

/** Deterministic, printable 70000-byte form body. */
function postBody(): Bytes {
  const out: Bytes = [];
  for (let i = 0; out.length < 70000; i++) append(out, latin1(`field${i}=value${(i * 7919) % 100000}&`));
  out.length = 70000;
  return out;
}

function post70000(): CorpusCase {
  const body = postBody();
  const s = new Stream();
  s.record(1, 1, [0x00, 0x01, 0x01, 0, 0, 0, 0, 0], { begin: { role: 1, flags: 1 } });
  s.params(1, [
    ['REQUEST_METHOD', 'POST'],
    ['CONTENT_TYPE', 'application/x-www-form-urlencoded'],
    ['CONTENT_LENGTH', '70000'],
    ['SCRIPT_NAME', '/submit'],
    ['PATH_INFO', ''],
    ['QUERY_STRING', ''],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['HTTP_HOST', 'example.org'],
  ]);
  s.record(4, 1, []);
  s.record(5, 1, body.slice(0, 65535)); // largest possible record
  s.record(5, 1, body.slice(65535)); // the remaining 4465 bytes
  s.record(5, 1, []);
  return s.build('post-70000', 'POST with a 70000-byte body in two STDIN records (65535 + 4465), then the empty STDIN');
}

function padded(): CorpusCase {
  const s = new Stream();
  // 8-byte alignment as the spec recommends: 5 bytes + 3 padding, 13 + 3, 0 + 0...
  s.record(1, 7, [0x00, 0x01, 0x00, 0, 0, 0, 0, 0], { padding: 0, begin: { role: 1, flags: 0 } });
  s.params(7, [['REQUEST_METHOD', 'GET'], ['SCRIPT_NAME', '/x']], 7); // 35 bytes + 5 would align; 7 is allowed too
  s.record(4, 7, [], { padding: 8 }); // empty record with padding
  s.record(5, 7, latin1('hello'), { padding: 3 });
  s.record(5, 7, latin1('padded record'), { padding: 255 }); // largest padding
  s.record(5, 7, [], { padding: 1 });
  s.record(6, 7, latin1('Status: 200 OK\r\n\r\n'), { padding: 6 });
  return s.build('padded', 'records with padding (1, 3, 6, 7, 8 and 255 bytes of junk 0xEE), incl. padded empty records');
}

function getValues(): CorpusCase {
  const s = new Stream();
  // GET_VALUES on the management id 0: names with empty values (section 4.1).
  s.record(
    9,
    0,
    [
      0x0e, 0x00, ...latin1('FCGI_MAX_CONNS'),
      0x0d, 0x00, ...latin1('FCGI_MAX_REQS'),
      0x0f, 0x00, ...latin1('FCGI_MPXS_CONNS'),
    ],
    { params: [['FCGI_MAX_CONNS', ''], ['FCGI_MAX_REQS', ''], ['FCGI_MPXS_CONNS', '']] },
  );
  return s.build('get-values', 'GET_VALUES query for FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS on request id 0');
}

function abortRequest(): CorpusCase {
  const s = new Stream();
  s.record(1, 3, [0x00, 0x01, 0x01, 0, 0, 0, 0, 0], { begin: { role: 1, flags: 1 } });
  s.params(3, [['REQUEST_METHOD', 'PUT'], ['CONTENT_LENGTH', '1000000']]);
  s.record(4, 3, []);
  s.record(5, 3, latin1('partial upload...'));
  s.raw([0x01, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00]); // ABORT_REQUEST id 3, no content
  s.records.push({ offset: s.bytes.length - 8, type: 2, typeName: 'ABORT_REQUEST', requestId: 3, contentLength: 0, contentText: '', paddingLength: 0 });
  return s.build('abort-request', 'a request whose upload is cut short by ABORT_REQUEST');
}

function filterRequest(): CorpusCase {
  const s = new Stream();
  // BEGIN with role FILTER (3), no KEEP_CONN.
  s.record(1, 2, [0x00, 0x03, 0x00, 0, 0, 0, 0, 0], { begin: { role: 3, flags: 0 } });
  s.params(2, [['FCGI_DATA_LAST_MOD', '1700000000'], ['FCGI_DATA_LENGTH', '19'], ['SCRIPT_FILENAME', '/srv/page.tmpl']]);
  s.record(4, 2, []);
  s.record(5, 2, []);
  s.record(8, 2, latin1('<p>{{ greeting }}</p>')); // DATA: the file to filter
  s.record(8, 2, []);
  return s.build('filter-request', 'a FILTER-role request: BEGIN role 3, PARAMS, empty STDIN, DATA, empty DATA');
}

function responses(): CorpusCase {
  const s = new Stream();
  s.record(6, 1, latin1('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n'));
  s.record(7, 1, latin1('warning: something odd\n'));
  s.record(6, 1, [0x00, 0xff, 0x80, 0x7f, 0x0a]); // binary body bytes
  s.record(6, 1, []);
  s.record(7, 1, []);
  // END_REQUEST: appStatus 0xFFFFFFFE (unsigned 32-bit), protocolStatus REQUEST_COMPLETE, 3 reserved bytes.
  s.record(3, 1, [0xff, 0xff, 0xff, 0xfe, 0x00, 0x00, 0x00, 0x00], { end: { appStatus: 0xfffffffe, protocolStatus: 0 } });
  // Another request refused: UNKNOWN_ROLE.
  s.record(3, 2, [0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00], { end: { appStatus: 0, protocolStatus: 3 } });
  return s.build('responses', 'application output: STDOUT (text and binary), STDERR, empty STDOUT/STDERR, END_REQUEST with appStatus 0xFFFFFFFE and one with UNKNOWN_ROLE');
}

function management(): CorpusCase {
  const s = new Stream();
  s.record(
    10,
    0,
    [0x0e, 0x02, ...latin1('FCGI_MAX_CONNS'), ...latin1('10'), 0x0d, 0x02, ...latin1('FCGI_MAX_REQS'), ...latin1('50'), 0x0f, 0x01, ...latin1('FCGI_MPXS_CONNS'), ...latin1('1')],
    { params: [['FCGI_MAX_CONNS', '10'], ['FCGI_MAX_REQS', '50'], ['FCGI_MPXS_CONNS', '1']] },
  );
  // UNKNOWN_TYPE for type 0x20, 7 reserved bytes.
  s.record(11, 0, [0x20, 0, 0, 0, 0, 0, 0, 0], { unknownType: 0x20 });
  return s.build('management', 'management answers on id 0: GET_VALUES_RESULT and UNKNOWN_TYPE (type 0x20)');
}

function unknownType(): CorpusCase {
  const s = new Stream();
  s.record(0x20, 0, latin1('opaque payload')); // a type from a future protocol revision
  s.record(0x20, 5, [0x00, 0x01, 0x02, 0xfe]);
  s.record(9, 0, [0x0f, 0x00, ...latin1('FCGI_MPXS_CONNS')], { params: [['FCGI_MPXS_CONNS', '']] }); // the stream goes on
  return s.build('unknown-type', 'records of the unknown type 0x20 (management and request ids) are framed like any other, and parsing continues');
}

function multiplexed(): CorpusCase {
  const s = new Stream();
  s.record(1, 1, [0x00, 0x01, 0x01, 0, 0, 0, 0, 0], { begin: { role: 1, flags: 1 } });
  s.record(1, 2, [0x00, 0x01, 0x01, 0, 0, 0, 0, 0], { begin: { role: 1, flags: 1 } });
  s.params(1, [['REQUEST_METHOD', 'GET'], ['SCRIPT_NAME', '/one']]);
  // Request 2's params stream is split in the middle of a pair: legal, since PARAMS is a byte stream.
  const p2 = pairsBytes([['REQUEST_METHOD', 'POST'], ['SCRIPT_NAME', '/two'], ['CONTENT_LENGTH', '6']]);
  s.paramsPiece(2, p2.slice(0, 25), [['REQUEST_METHOD', 'POST']]);
  s.record(4, 1, []);
  s.paramsPiece(2, p2.slice(25), [['SCRIPT_NAME', '/two'], ['CONTENT_LENGTH', '6']]);
  s.record(4, 2, []);
  s.record(5, 2, latin1('abc'));
  s.record(5, 1, []);
  s.record(5, 2, latin1('def'));
  s.record(5, 2, []);
  return s.build('multiplexed', 'two requests (ids 1 and 2) interleaved record by record; request 2 splits a params pair across two PARAMS records');
}

function truncated(): CorpusCase {
  const s = new Stream();
  s.record(1, 1, [0x00, 0x01, 0x01, 0, 0, 0, 0, 0], { begin: { role: 1, flags: 1 } });
  // A STDIN header announcing 100 bytes + 4 padding, followed by only 40 of them.
  s.raw([0x01, 0x05, 0x00, 0x01, 0x00, 0x64, 0x04, 0x00]);
  s.raw(latin1('0123456789012345678901234567890123456789'));
  s.pendingBytes = 48;
  return s.build('truncated', 'the stream ends inside a record (header + 40 of 100 content bytes): no error, 48 bytes pending');
}

function truncatedHeader(): CorpusCase {
  const s = new Stream();
  s.record(5, 1, latin1('body'));
  s.raw([0x01, 0x05, 0x00]); // three bytes of the next header
  s.pendingBytes = 3;
  return s.build('truncated-header', 'the stream ends three bytes into a record header: no error, 3 bytes pending');
}

function badVersion(): CorpusCase {
  const s = new Stream();
  s.record(1, 1, [0x00, 0x01, 0x01, 0, 0, 0, 0, 0], { begin: { role: 1, flags: 1 } });
  s.params(1, [['REQUEST_METHOD', 'GET']]);
  const at = s.bytes.length;
  // What an HTTP client talking to the FastCGI port looks like: 'GET / HTTP/1.1' (version byte 0x47).
  s.raw(latin1('GET / HTTP/1.1\r\nHost: example.org\r\n\r\n'));
  s.error = { code: 'BAD_VERSION', offset: at };
  return s.build('bad-version', 'two good records, then HTTP text: BAD_VERSION at the offset of the third header, nothing after it is parsed');
}

function badVersionFirst(): CorpusCase {
  const s = new Stream();
  // Version 2 in the very first header, otherwise a well-formed empty STDIN, then a valid record.
  s.raw([0x02, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]);
  s.raw([0x01, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]);
  s.error = { code: 'BAD_VERSION', offset: 0 };
  return s.build('bad-version-first', 'version byte 2 in the first header: BAD_VERSION at offset 0, the valid record after it is not parsed');
}

export function buildCorpus(): CorpusCase[] {
  return [
    nginxGet(),
    post70000(),
    padded(),
    getValues(),
    abortRequest(),
    filterRequest(),
    responses(),
    management(),
    unknownType(),
    multiplexed(),
    truncated(),
    truncatedHeader(),
    badVersion(),
    badVersionFirst(),
  ];
}

export function corpusJsonText(c: CorpusCase): string {
  return JSON.stringify(c.json, null, 2) + '\n';
}

export function writeCorpus(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  for (const c of buildCorpus()) {
    writeFileSync(join(dir, `${c.name}.bin`), c.bin);
    writeFileSync(join(dir, `${c.name}.json`), corpusJsonText(c));
    names.push(c.name);
  }
  return names;
}
