// Micro-benchmark: our FastCGI codec (dist/fcgi, build first with `npx tsc -p .`) vs fastcgi-stream.
//
//   npm run build && npm run bench:codec
//
// Parsing: the same byte streams, pre-cut into chunks, go to both parsers. To do comparable work,
// our side also decodes what fastcgi-stream decodes for every record: BEGIN_REQUEST's role/flags
// and PARAMS into latin-1 strings (fastcgi-stream: UTF-8 strings). Stream content (STDOUT) stays a
// view into the chunk on our side; fastcgi-stream copies it into a new Buffer (that is its design).
// Writing: both build each record as one contiguous Buffer (ours: encode* functions; theirs:
// writeRecord into a sink that only counts bytes).
// Each case: warm-up runs, then the median of 5 timed runs. MB = 10^6 bytes.
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const distUrl = new URL('../dist/fcgi/index.js', import.meta.url);
if (!existsSync(distUrl)) {
  console.error('dist/fcgi/index.js is missing: run `npx tsc -p .` (or `npm run build`) first.');
  process.exit(1);
}
const ours = await import(distUrl.href);
const fastcgi = createRequire(import.meta.url)('fastcgi-stream');
const { RecordParser, RecordType, encodeBeginRequest, encodeRecord, encodeParams, decodeParams, decodeBeginRequest } = ours;

const RUNS = 5;
const WARMUP = 2;

// ---------------------------------------------------------------------------------------------
// Inputs (identical bytes for both implementations).

/** ~600 bytes of nginx-style params. */
const PARAMS = [
  ['QUERY_STRING', 'page=2&sort=name'],
  ['REQUEST_METHOD', 'GET'],
  ['CONTENT_TYPE', ''],
  ['CONTENT_LENGTH', ''],
  ['SCRIPT_NAME', '/items'],
  ['REQUEST_URI', '/items?page=2&sort=name'],
  ['DOCUMENT_URI', '/items'],
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
  ['HTTP_ACCEPT_LANGUAGE', 'en-GB,en;q=0.5'],
  ['HTTP_ACCEPT_ENCODING', 'gzip, deflate'],
  ['HTTP_COOKIE', 'sessionid=3f9a1c7e5b2d40; theme=dark'],
];
const PARAMS_BODY = encodeParams(PARAMS);

function nginxGet(id) {
  return [encodeBeginRequest(id, 1, 1), encodeRecord(RecordType.PARAMS, id, PARAMS_BODY), encodeRecord(RecordType.PARAMS, id), encodeRecord(RecordType.STDIN, id)];
}

function smallStream(bytes) {
  const parts = [];
  let size = 0;
  let records = 0;
  for (let i = 0; size < bytes; i++) {
    for (const r of nginxGet((i % 1000) + 1)) {
      parts.push(r);
      size += r.length;
      records++;
    }
  }
  return { data: Buffer.concat(parts), records };
}

const STDOUT_CONTENT = Buffer.alloc(65535, 0x61);
function largeStream(bytes) {
  const rec = encodeRecord(RecordType.STDOUT, 1, STDOUT_CONTENT);
  const n = Math.ceil(bytes / rec.length);
  return { data: Buffer.concat(Array.from({ length: n }, () => rec)), records: n };
}

function chunk(data, size) {
  const out = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Runners: each returns the number of records seen.

function parseOurs(chunks) {
  const p = new RecordParser();
  let n = 0;
  let sink = 0;
  const onRecord = (r) => {
    n++;
    if (r.type === RecordType.PARAMS) {
      const d = decodeParams(r.content);
      if (d.ok) for (const [k, v] of d.pairs) sink += k.toString('latin1').length + v.toString('latin1').length;
    } else if (r.type === RecordType.BEGIN_REQUEST) {
      sink += decodeBeginRequest(r.content).role;
    } else {
      sink += r.content.length;
    }
  };
  for (const c of chunks) if (p.push(c, onRecord)) throw new Error('parse error');
  if (sink < 0) console.log(sink);
  return n;
}

function parseTheirs(chunks) {
  const source = new EventEmitter();
  source.write = () => true;
  const s = new fastcgi.FastCGIStream(source);
  let n = 0;
  s.on('record', () => n++);
  for (const c of chunks) source.emit('data', c);
  return n;
}

function writeOursSmall(n) {
  let bytes = 0;
  let records = 0;
  for (let i = 0; i < n; i++) {
    const id = (i % 1000) + 1;
    const out = [encodeBeginRequest(id, 1, 1), encodeRecord(RecordType.PARAMS, id, encodeParams(PARAMS)), encodeRecord(RecordType.PARAMS, id), encodeRecord(RecordType.STDIN, id)];
    for (const b of out) bytes += b.length;
    records += out.length;
  }
  return { records, bytes };
}

function theirWriter() {
  const sink = new EventEmitter();
  const stat = { bytes: 0, records: 0 };
  sink.write = (b) => {
    stat.bytes += b.length;
    stat.records++;
    return true;
  };
  return { s: new fastcgi.FastCGIStream(sink), stat };
}

function writeTheirsSmall(n) {
  const { s, stat } = theirWriter();
  const R = fastcgi.records;
  for (let i = 0; i < n; i++) {
    const id = (i % 1000) + 1;
    s.writeRecord(id, new R.BeginRequest(1, 1));
    s.writeRecord(id, new R.Params(PARAMS));
    s.writeRecord(id, new R.Params());
    s.writeRecord(id, new R.StdIn());
  }
  return stat;
}

function writeOursLarge(n) {
  let bytes = 0;
  for (let i = 0; i < n; i++) bytes += encodeRecord(RecordType.STDOUT, 1, STDOUT_CONTENT).length;
  return { records: n, bytes };
}

function writeTheirsLarge(n) {
  const { s, stat } = theirWriter();
  for (let i = 0; i < n; i++) s.writeRecord(1, new fastcgi.records.StdOut(STDOUT_CONTENT));
  return stat;
}

// ---------------------------------------------------------------------------------------------

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median seconds of RUNS runs of fn (after WARMUP), and fn's last result. */
function time(fn) {
  let result;
  for (let i = 0; i < WARMUP; i++) result = fn();
  const t = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    result = fn();
    t.push((performance.now() - t0) / 1000);
  }
  return { seconds: median(t), result };
}

const fmt = (x) => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toPrecision(3));

const rows = [];
function parseCase(label, stream, chunkSize) {
  const chunks = chunk(stream.data, chunkSize);
  const a = time(() => parseOurs(chunks));
  const b = time(() => parseTheirs(chunks));
  if (a.result !== stream.records || b.result !== stream.records) throw new Error(`${label}: record counts differ: ${a.result} / ${b.result} / ${stream.records}`);
  rows.push({ label, records: stream.records, bytes: stream.data.length, a: a.seconds, b: b.seconds });
}
function writeCase(label, oursFn, theirsFn, n) {
  const a = time(() => oursFn(n));
  const b = time(() => theirsFn(n));
  if (a.result.records !== b.result.records) throw new Error(`${label}: record counts differ`);
  // Bytes differ slightly (fastcgi-stream pads); report each side's own byte rate on our byte count.
  rows.push({ label, records: a.result.records, bytes: a.result.bytes, bytesTheirs: b.result.bytes, a: a.seconds, b: b.seconds });
}

const started = performance.now();
const small = smallStream(4 * 1024 * 1024);
const large = largeStream(32 * 1024 * 1024);
const smallForBigChunks = smallStream(1024 * 1024);

parseCase(`(a) parse: nginx GET (BEGIN + ${PARAMS_BODY.length} B PARAMS + 2 empty), 64 KiB chunks`, small, 64 * 1024);
parseCase('(b) parse: 64 KiB STDOUT records, 64 KiB chunks', large, 64 * 1024);
parseCase('(c) parse: nginx GET, 1 KiB chunks', small, 1024);
parseCase('(c) parse: 64 KiB STDOUT records, 1 KiB chunks', large, 1024);
parseCase('(extra) parse: nginx GET, 256 KiB chunks', smallForBigChunks, 256 * 1024);
writeCase('(w) write: nginx GET requests (4 records each)', writeOursSmall, writeTheirsSmall, 20000);
writeCase('(w) write: 64 KiB STDOUT records', writeOursLarge, writeTheirsLarge, 500);

console.log(`\nFastCGI codec benchmark: node ${process.version}, ${process.platform}/${process.arch}, median of ${RUNS} runs after ${WARMUP} warm-up runs`);
console.log(`inputs: nginx GET stream ${(small.data.length / 1e6).toFixed(2)} MB / ${small.records} records (${PARAMS_BODY.length} B params); STDOUT stream ${(large.data.length / 1e6).toFixed(2)} MB / ${large.records} records\n`);
console.log('| case | ours records/s | ours MB/s | fastcgi-stream records/s | fastcgi-stream MB/s | ratio ours / fastcgi-stream |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const ra = r.records / r.a;
  const rb = r.records / r.b;
  const mba = r.bytes / r.a / 1e6;
  const mbb = (r.bytesTheirs ?? r.bytes) / r.b / 1e6;
  console.log(`| ${r.label} | ${fmt(ra)} | ${fmt(mba)} | ${fmt(rb)} | ${fmt(mbb)} | ${(ra / rb).toFixed(2)}x |`);
}
console.log(`\n(total ${((performance.now() - started) / 1000).toFixed(1)} s)`);
