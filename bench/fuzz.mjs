#!/usr/bin/env node
/**
 * `npm run fuzz`: hostile FastCGI input against a live `corral serve` with real Python workers
 * (test/fixtures/python/hello_app.py, Debian's /usr/bin/python3), on loopback, for FUZZ_SECONDS
 * (default 15). FUZZ_CONNECTIONS (6) loops each open connection after connection and send one of:
 * random bytes, a mutated valid nginx-like stream, records with bad versions / types / ids /
 * lengths, 2 GiB name-value length prefixes, a valid request cut off (closed, half-closed or
 * ABORTed) at each phase, or a half-sent request left hanging a moment. Meanwhile a checker sends
 * valid requests all along. Prints inputs tried, valid requests answered / failed, worker exits
 * caused by client input (must be 0), service crashes (must be 0), and the service's RSS at the
 * start, peak and end; exits 1 if a worker exited or the service crashed.
 *
 * Environment: FUZZ_SECONDS=15, FUZZ_CONNECTIONS=6, FUZZ_SEED (default: time), FUZZ_PYTHON=/usr/bin/python3,
 * FUZZ_CORRAL_ARGS="--params-timeout 2" (more options for corral serve, split on spaces).
 * `npm run fuzz` builds dist/ first (tsc); `node bench/fuzz.mjs` needs a build.
 */
import net from 'node:net';
import {
  FIXTURES, RecordType, Rng, Service, atInterrupt, cgiParams, cleanup, encodeBeginRequest, encodeParams, encodeRecord,
  envNum, fcgiRequest, isWorkerLoss, mib, requestBytes, rss, say, sleep, splitHostPort,
} from './live.mjs';

const SECONDS = envNum('FUZZ_SECONDS', 15);
const CONNECTIONS = Math.max(1, envNum('FUZZ_CONNECTIONS', 6));
const SEED = envNum('FUZZ_SEED', Date.now() % 0x7fffffff);
const PYTHON = process.env.FUZZ_PYTHON ?? '/usr/bin/python3';
const EXTRA = (process.env.FUZZ_CORRAL_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
const log = (m) => say('fuzz', m);

const stats = { inputs: 0, byKind: {}, answered: 0, failed: 0, failures: [], workerLosses: [], crashed: null, rss: { start: 0, peak: 0, end: 0 } };

// ---------------------------------------------------------------- inputs

const PATHS = ['/', '/env', '/echo', '/sha256', '/cookies', '/nope', '/raise', '/stream?n=1000'];

function validRequest(rng, id = 1 + rng.int(3)) {
  const body = rng.chance(0.5) ? rng.bytes(rng.int(3000)) : Buffer.alloc(0);
  const extra = body.length ? { CONTENT_LENGTH: String(body.length) } : {};
  if (rng.chance(0.3)) extra.HTTP_COOKIE = 'c'.repeat(rng.int(3000));
  return requestBytes(id, cgiParams(rng.pick(['GET', 'POST', 'HEAD', 'PUT']), rng.pick(PATHS), extra), body, rng.chance(0.5));
}

function mutate(rng, b) {
  b = Buffer.from(b);
  const n = 1 + rng.int(4);
  for (let k = 0; k < n && b.length > 0; k++) {
    const at = rng.int(b.length);
    switch (rng.int(8)) {
      case 0: b[at] = rng.int(256); break;
      case 1: b[at] ^= 1 << rng.int(8); break;
      case 2: b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(24)), b.subarray(at)]); break;
      case 3: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(32))]); break;
      case 4: b = b.subarray(0, at); break;
      case 5: b = Buffer.concat([b.subarray(0, at + 16), b.subarray(at, at + 16), b.subarray(at + 16)]); break;
      case 6: if (at + 2 <= b.length) b.writeUInt16BE(rng.pick([0, 1, 7, 8, 9, 0x7fff, 0xffff]), at); break;
      default: if (at + 4 <= b.length) b.writeUInt32BE(rng.pick([0x80000000, 0xffffffff, 0xfffffff0]) >>> 0, at);
    }
  }
  return b;
}

function hostileRecord(rng) {
  const version = rng.chance(0.85) ? 1 : rng.int(256);
  const type = rng.chance(0.7) ? rng.int(13) : rng.int(256);
  const id = rng.pick([0, 1, 2, 0xffff, rng.int(0x10000)]);
  const length = rng.pick([0, 1, 7, 8, 9, 0xffff, rng.int(300)]);
  const padding = rng.chance(0.7) ? 0 : rng.int(256);
  const send = rng.chance(0.6) ? length + padding : rng.int(length + padding + 1);
  return Buffer.concat([Buffer.from([version, type, id >> 8, id & 0xff, length >> 8, length & 0xff, padding, 0]), rng.bytes(send)]);
}

function hugeParams(rng, id = 1) {
  const b = Buffer.alloc(8 + rng.int(64));
  b.writeUInt32BE((rng.pick([0x7fffffff, 0x7ffffff0, 0x40000000, 65536]) | 0x80000000) >>> 0, 0);
  b.writeUInt32BE((rng.pick([0x7fffffff, 5, 0]) | 0x80000000) >>> 0, 4);
  return Buffer.concat([encodeBeginRequest(id, 1, 1), encodeRecord(RecordType.PARAMS, id, b), encodeRecord(RecordType.PARAMS, id), encodeRecord(RecordType.STDIN, id)]);
}

/** One input: the bytes, and how the connection ends after them. */
function makeInput(rng) {
  const kind = rng.pick(['random', 'mutated', 'hostile-records', 'huge-params', 'cut-close', 'cut-halfclose', 'cut-abort', 'half-sent-hang', 'mixed']);
  switch (kind) {
    case 'random': {
      const b = rng.bytes(1 + rng.int(4000));
      if (rng.chance(0.5)) b[0] = 1;
      return { kind, bytes: b, end: 'wait' };
    }
    case 'mutated':
      return { kind, bytes: mutate(rng, Buffer.concat([validRequest(rng), rng.chance(0.5) ? validRequest(rng, 7) : Buffer.alloc(0)])), end: 'wait' };
    case 'hostile-records':
      return { kind, bytes: Buffer.concat(Array.from({ length: 1 + rng.int(6) }, () => hostileRecord(rng))), end: 'wait' };
    case 'huge-params':
      return { kind, bytes: hugeParams(rng), end: 'wait' };
    case 'cut-close':
    case 'cut-halfclose':
    case 'cut-abort': {
      const v = validRequest(rng, 1);
      const cut = rng.int(v.length);
      const bytes = kind === 'cut-abort' ? Buffer.concat([v.subarray(0, cut), encodeRecord(RecordType.ABORT_REQUEST, 1)]) : v.subarray(0, cut);
      return { kind, bytes, end: kind === 'cut-close' ? 'destroy' : kind === 'cut-halfclose' ? 'halfclose' : 'wait' };
    }
    case 'half-sent-hang': {
      const v = validRequest(rng, 1);
      return { kind, bytes: v.subarray(0, rng.int(v.length)), end: 'hang' };
    }
    default:
      return { kind, bytes: Buffer.concat([validRequest(rng), hostileRecord(rng), validRequest(rng, 9), rng.bytes(rng.int(100))]), end: 'wait' };
  }
}

/** Sends one input on a fresh connection, in random pieces, and ends the connection as it says. */
function sendInput(addr, rng, input) {
  return new Promise((resolve) => {
    const s = net.connect(addr);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve();
    };
    const linger = input.end === 'hang' ? 300 + rng.int(1200) : 200 + rng.int(400);
    const timer = setTimeout(finish, linger + 2000);
    s.on('error', finish);
    s.on('close', finish);
    s.on('data', () => undefined);
    s.on('connect', async () => {
      let off = 0;
      while (off < input.bytes.length && !done) {
        const n = 1 + rng.int(rng.chance(0.3) ? 16 : 4096);
        s.write(input.bytes.subarray(off, off + n));
        off += n;
        if (rng.chance(0.2)) await sleep(rng.int(5));
      }
      if (done) return;
      if (input.end === 'destroy') finish();
      else if (input.end === 'halfclose') {
        s.end();
        setTimeout(finish, linger);
      } else setTimeout(finish, linger);
    });
  });
}

// ---------------------------------------------------------------- run

function report() {
  const kinds = Object.entries(stats.byKind).map(([k, n]) => `${k} ${n}`).join(', ');
  const lines = [
    `seed                      ${SEED} (FUZZ_SEED=${SEED} repeats these inputs)`,
    `inputs tried              ${stats.inputs} (${kinds})`,
    `valid requests answered   ${stats.answered}`,
    `valid requests failed     ${stats.failed}${stats.failures.length ? ` (${[...new Set(stats.failures)].slice(0, 3).join('; ')})` : ''}`,
    `worker exits (by input)   ${stats.workerLosses.length}${stats.workerLosses.length ? ` (${stats.workerLosses.slice(0, 3).map((l) => `${l.msg} pid ${l.pid}`).join('; ')})` : ''}`,
    `service crashes           ${stats.crashed ? `1 (${JSON.stringify(stats.crashed)})` : 0}`,
    `service RSS               start ${mib(stats.rss.start)}, peak ${mib(stats.rss.peak)}, end ${mib(stats.rss.end)}`,
  ];
  process.stdout.write(`\ncorral fuzz, ${SECONDS} s, ${CONNECTIONS} connections\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
}

async function main() {
  log(`starting corral serve (hello_app, 2 workers x 4 threads, ${PYTHON}); seed ${SEED}`);
  const svc = new Service(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', '127.0.0.1:0', '--workers', '2', '--threads', '4', '--python', PYTHON, ...EXTRA]);
  const listening = await svc.waitFor((l) => l.msg === 'FastCGI front listening', 'the FastCGI listener');
  const addr = splitHostPort(String(listening.listen));
  let ready = 0;
  await svc.waitFor((l) => l.msg === 'worker ready' && ++ready >= 2, 'two workers READY');
  svc.onLog((l) => {
    if (!isWorkerLoss(l)) return;
    // Once the report is out the service is being stopped: a worker it kills then (a request the
    // fuzzer left half sent outlived the stop's grace) is the stop working, not a loss the input caused.
    if (stopping) log(`during the stop: ${l.msg} pid ${l.pid}`);
    else stats.workerLosses.push(l);
  });
  void svc.exited.then((st) => {
    if (!stopping) stats.crashed = st;
  });
  const pid = svc.child.pid;
  stats.rss.start = stats.rss.peak = rss(pid) ?? 0;
  const sampler = setInterval(() => {
    const r = rss(pid);
    if (r !== null) stats.rss.peak = Math.max(stats.rss.peak, r);
  }, 250);
  atInterrupt(report);

  log(`fuzzing ${addr.host}:${addr.port} for ${SECONDS} s`);
  const until = performance.now() + SECONDS * 1000;
  let stopping = false;
  const fuzzers = Array.from({ length: CONNECTIONS }, async (_, i) => {
    const rng = new Rng(SEED * 31 + i + 1);
    while (performance.now() < until && !stats.crashed) {
      const input = makeInput(rng);
      stats.inputs++;
      stats.byKind[input.kind] = (stats.byKind[input.kind] ?? 0) + 1;
      await sendInput(addr, rng, input);
    }
  });
  const checker = (async () => {
    let n = 0;
    while (performance.now() < until && !stats.crashed) {
      const path = n++ % 2 === 0 ? '/' : '/sha256';
      try {
        const body = path === '/' ? Buffer.alloc(0) : Buffer.from('checker body');
        const r = await fcgiRequest(addr, path === '/' ? 'GET' : 'POST', path, body, 15_000);
        const ok = path === '/' ? r.status === 200 && r.body.toString() === 'Hello, world' : r.status === 200 && r.body.toString().endsWith(` ${body.length}`);
        if (ok) stats.answered++;
        else {
          stats.failed++;
          stats.failures.push(`status ${r.status}`);
        }
      } catch (err) {
        stats.failed++;
        stats.failures.push(err.message);
      }
      await sleep(20);
    }
  })();
  await Promise.all([...fuzzers, checker]);
  // One more valid request after the storm.
  try {
    const r = await fcgiRequest(addr, 'GET', '/', undefined, 15_000);
    if (r.status === 200) stats.answered++;
    else stats.failed++;
  } catch (err) {
    stats.failed++;
    stats.failures.push(`after: ${err.message}`);
  }
  clearInterval(sampler);
  stats.rss.end = rss(pid) ?? 0;
  stopping = true;
  report();
  await cleanup();
  const bad = stats.crashed || stats.workerLosses.length > 0;
  if (stats.failed > 0) log(`${stats.failed} valid request(s) failed during the fuzzing`);
  process.exitCode = bad ? 1 : 0;
}

main().catch(async (err) => {
  process.stderr.write(`fuzz: ${err.message}\n`);
  await cleanup();
  process.exitCode = 2;
});
