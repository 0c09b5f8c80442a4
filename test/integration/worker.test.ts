// Integration tests of the Python worker (src/python/corral_worker.py): the real process, driven
// byte by byte over its stdin/stdout (stdio mode) or over TCP (standalone mode).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  begin, decodePairs, pairs, record, request, T, windowRecord,
  type CgiResponse, type Rec,
} from '../helpers/rawfcgi.js';
import { Peer, ProcessPeer } from '../helpers/worker-peer.js';
import { DEVTRACE_TYPE, parseDevTraceJson } from '../../src/devtrace.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WORKER = path.join(ROOT, 'src/python/corral_worker.py');
const FIXTURES = path.join(ROOT, 'test/fixtures/python');
const PYTHON = process.env.CORRAL_TEST_PYTHON ?? 'python3';

const started: ChildProcess[] = [];
const sockets: net.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const p of started.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

function params(pathAndQuery: string, extra: Record<string, string> = {}): Record<string, string> {
  const [pathInfo = '/', query = ''] = pathAndQuery.split('?');
  return {
    REQUEST_METHOD: 'GET', SCRIPT_NAME: '', PATH_INFO: pathInfo, QUERY_STRING: query,
    REQUEST_URI: pathAndQuery, SERVER_NAME: 'localhost', SERVER_PORT: '8080',
    SERVER_PROTOCOL: 'HTTP/1.1', CONTENT_TYPE: '', CONTENT_LENGTH: '', HTTP_HOST: 'localhost', ...extra,
  };
}

const header = (r: CgiResponse, name: string): string[] =>
  r.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);

class Worker extends ProcessPeer {
  async get(id: number, pathAndQuery: string, extra: Record<string, string> = {}, body: Buffer = Buffer.alloc(0)): Promise<CgiResponse & { end: Rec }> {
    this.send(request(id, params(pathAndQuery, extra), body));
    return this.response(id);
  }
}

function spawnWorker(args: string[] = [], env: Record<string, string> = {}, app = 'hello_app:application'): Worker {
  const proc = spawn(PYTHON, [WORKER, '--root', FIXTURES, '--app', app, ...args], {
    env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  started.push(proc);
  const worker = new Worker(proc);
  worker.autoCredit = true;
  return worker;
}

// --threads 1 (the worker's default) runs each request inline on the reader thread, where the
// pipe's hang-up can be watched (not on Windows); more threads hand requests to app threads.
const INLINE = process.platform !== 'win32';
const MODES = [
  { mode: 'default (--threads 1: inline)', args: [] as string[], threads: 1, inline: INLINE },
  { mode: '--threads 1 (inline)', args: ['--threads', '1'], threads: 1, inline: INLINE },
  { mode: '--threads 4 (app threads)', args: ['--threads', '4'], threads: 4, inline: false },
];

/** Where a record is in w.records (-1: not there). */
const indexOf = (w: Peer, type: number, id: number): number => w.records.findIndex((r) => r.type === type && r.id === id);

describe.each(MODES)('worker over stdio, $mode', ({ args: modeArgs, threads, inline }) => {
  // The mode's arguments first: a test's own arguments win (argparse keeps the last).
  const startWorker = (args: string[] = [], env: Record<string, string> = {}, app?: string): Worker =>
    spawnWorker([...modeArgs, ...args], env, app);

  it('keeps large freed blocks on glibc (malloc_tuned in READY), unless MALLOC_* tunables are set', async () => {
    const glibc = process.platform === 'linux' && (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime !== undefined;
    expect((await startWorker().ready()).malloc_tuned).toBe(glibc);
    expect((await startWorker([], { MALLOC_ARENA_MAX: '2' }).ready()).malloc_tuned).toBe(false);
  });

  it('reports its threads and whether it runs requests inline in READY', async () => {
    const w = startWorker();
    expect(await w.ready()).toMatchObject({ threads, inline });
  });

  it('answers a GET', async () => {
    const w = startWorker();
    await w.ready();
    const r = await w.get(1, '/');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('Hello, world');
    expect(header(r, 'Content-Length')).toEqual(['12']);
    expect(r.end.content.readUInt32BE(0)).toBe(0); // appStatus
    expect(r.end.content[4]).toBe(0); // REQUEST_COMPLETE
  });

  it('builds a PEP 3333 environ from the params', async () => {
    const w = startWorker();
    await w.ready();
    // No PATH_INFO: derived from REQUEST_URI, percent-decoded, minus SCRIPT_NAME.
    const extra = { HTTPS: 'On', SCRIPT_NAME: '/app', REQUEST_URI: '/app/%65nv?q=1', QUERY_STRING: 'q=1' };
    const p = params('/ignored', extra);
    delete p.PATH_INFO;
    w.send(request(1, p));
    const env = JSON.parse((await w.response(1)).body.toString()) as Record<string, unknown>;
    expect(env).toMatchObject({ 'wsgi.url_scheme': 'https', PATH_INFO: '/env', SCRIPT_NAME: '/app', 'wsgi.multithread': threads > 1 });
    expect(env).not.toHaveProperty('CONTENT_LENGTH'); // sent empty: removed
    expect(env.CONTENT_TYPE).toBe('');
  });

  it('takes a 5 MiB upload within the STDIN window and returns credit', async () => {
    const window = 65536;
    const w = startWorker(['--window', String(window)]);
    expect((await w.ready()).window).toBe(window);
    const body = randomBytes(5 * 1024 * 1024);
    w.send(request(1, params('/sha256', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length) }), null));
    const granted = (): number => w.records.filter((r) => r.type === T.WINDOW && r.id === 1).reduce((n, r) => n + r.content.readUInt32BE(0), 0);
    let sent = 0;
    while (sent < body.length) {
      const credit = await w.until(() => { const c = window + granted() - sent; return c > 0 ? c : undefined; }, 'credit');
      expect(granted()).toBeLessThanOrEqual(sent); // credit only for bytes the app has read
      const n = Math.min(credit, 0xffff, body.length - sent);
      w.send(record(T.STDIN, 1, body.subarray(sent, sent + n)));
      sent += n;
    }
    w.send(record(T.STDIN, 1));
    const r = await w.response(1);
    expect(r.body.toString()).toBe(`${createHash('sha256').update(body).digest('hex')} ${body.length}`);
  }, 30_000);

  it('stops writing a response at the STDOUT window until credit arrives', async () => {
    const window = 65536;
    const total = 300_000;
    const w = startWorker(['--window', String(window)]);
    w.autoCredit = false;
    await w.ready();
    w.send(request(1, params(`/stream?n=${total}`)));
    await w.until(() => (w.stdoutBytes(1) >= window ? true : undefined), 'a window of STDOUT');
    // PING/PONG as a barrier: the worker's output before PONG is all it wrote so far.
    w.send(record(T.PING, 0, Buffer.from('barrier')));
    await w.find(T.PONG, 0);
    expect(w.stdoutBytes(1)).toBe(window);
    expect(w.records.some((r) => r.type === T.END)).toBe(false);
    w.send(windowRecord(1, 1000));
    await w.until(() => (w.stdoutBytes(1) >= window + 1000 ? true : undefined), 'more STDOUT');
    w.send(record(T.PING, 0, Buffer.from('barrier2')));
    await w.until(() => w.records.find((r) => r.type === T.PONG && r.content.toString() === 'barrier2'), 'PONG');
    expect(w.stdoutBytes(1)).toBe(window + 1000);
    w.send(windowRecord(1, 10 * total));
    const r = await w.response(1);
    expect(r.body.length).toBe(total);
  });

  it('sends large bodies byte for byte across credit boundaries, whole or in pieces', async () => {
    const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));
    // 3 MiB + 7 in one piece (headers and body cut by the window at odd places), in a list of
    // 100 000-byte pieces (beyond JOIN_LIMIT: sent piece by piece), and 1 MiB under the limit (joined).
    // A 64 KiB window makes every write a small joined one; a 4 MiB window, writev of many parts.
    const cases = ['/pattern?n=3145735', '/pattern?n=3145735&piece=100000', '/pattern?n=1048576&piece=4099'];
    for (const window of [65536, 4 << 20]) {
      const w = startWorker(['--window', String(window)]);
      await w.ready();
      for (const [i, path] of cases.entries()) {
        const r = await w.get(i + 1, path);
        const n = Number(new URLSearchParams(path.split('?')[1]).get('n'));
        expect(r.body.length, `${path} window ${window}`).toBe(n);
        expect(r.body.equals(pattern(n)), `${path} window ${window}`).toBe(true);
      }
    }
  });

  it('ends an aborted request and frees its id', async () => {
    const w = startWorker();
    await w.ready();
    // The app blocks reading a body that never comes, until the ABORT.
    w.send(request(1, params('/sha256', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: '100' }), null));
    w.send(record(T.STDIN, 1, Buffer.alloc(10, 1)));
    w.send(record(T.ABORT, 1));
    const aborted = await w.exchange(1);
    expect(aborted.stdout.length).toBe(0); // its answer went nowhere
    const again = await w.get(1, '/');
    expect(again.body.toString()).toBe('Hello, world');
  });

  it('stops a response streamed within its credit at ABORT', async () => {
    const total = 200 * 1024 * 1024;
    const w = startWorker();
    w.autoCredit = false;
    await w.ready();
    // Credit for all of it up front: the worker never waits for credit while it streams.
    w.send(Buffer.concat([request(1, params(`/stream?n=${total}`)), windowRecord(1, total + 4096)]));
    await w.find(T.STDOUT, 1);
    w.send(record(T.ABORT, 1));
    await w.exchange(1);
    expect(w.stdoutBytes(1)).toBeLessThan(total / 4);
    w.records.length = 0; // let go of the bytes
    expect((await w.get(2, '/')).body.toString()).toBe('Hello, world');
  });

  it('sends headers but no body for HEAD', async () => {
    const w = startWorker();
    await w.ready();
    const r = await w.get(1, '/head', { REQUEST_METHOD: 'HEAD' });
    expect(r.status).toBe(200);
    expect(header(r, 'Content-Length')).toEqual(['30']);
    expect(r.body.length).toBe(0);
  });

  it('turns an app exception into a 500 and keeps serving', async () => {
    const w = startWorker();
    await w.ready();
    const r = await w.get(1, '/raise');
    expect(r.status).toBe(500);
    expect(r.body.toString()).toBe('Internal Server Error\n');
    await w.until(() => (w.stderr.includes('RuntimeError: boom before start_response') ? true : undefined), 'traceback');
    const late = await w.get(2, '/raise_after');
    expect(late.status).toBe(200);
    expect(late.body.toString()).toBe('first chunk\n'); // truncated, then END_REQUEST
    expect(late.end.content.readUInt32BE(0)).toBe(1); // appStatus: the app failed mid-body
    expect((await w.get(3, '/')).status).toBe(200);
  });

  it('with CORRAL_DEV_ERRORS=1 answers the exception\'s facts as devtrace JSON for the front to render', async () => {
    const w = startWorker([], { CORRAL_DEV_ERRORS: '1' });
    await w.ready();
    const r = await w.get(1, '/raise');
    expect(r.status).toBe(500);
    expect(header(r, 'Content-Type')[0]).toBe(DEVTRACE_TYPE);
    expect(header(r, 'X-Corral-Error')[0]).toBe('CORRAL_APP_EXCEPTION');
    const trace = parseDevTraceJson(r.body);
    expect(trace).not.toBeNull();
    const first = trace!.exceptions[0]!;
    expect(first.type).toBe('RuntimeError');
    expect(first.message).toBe('boom before start_response');
    // The innermost frame is the fixture's, an app frame with its source and locals.
    const inner = first.frames[first.frames.length - 1]!;
    expect(inner.file).toMatch(/hello_app\.py$/);
    expect(inner.kind).toBe('app');
    expect(inner.source?.lines.join('\n')).toContain('boom before start_response');
    expect(inner.locals).not.toBeNull();
    expect(trace!.request).toMatchObject({ method: 'GET', path: '/raise' });
    expect(trace!.text).toContain('Traceback (most recent call last)');
  });

  it('without CORRAL_DEV_ERRORS the 500 is plain text with the code, no detail', async () => {
    const w = startWorker();
    await w.ready();
    const r = await w.get(1, '/raise');
    expect(r.status).toBe(500);
    expect(header(r, 'X-Corral-Error')[0]).toBe('CORRAL_APP_EXCEPTION');
    expect(r.body.toString()).toBe('Internal Server Error\n');
  });

  it('calls close() of the response, also when iterating it fails', async () => {
    const w = startWorker();
    await w.ready();
    expect((await w.get(1, '/closing')).body.toString()).toBe('part one,part two');
    const failed = await w.get(2, '/closing?fail');
    expect(failed.body.toString()).toBe('part one,');
    expect(failed.end.content.readUInt32BE(0)).toBe(1);
    // close() runs just after END_REQUEST: with app threads the next request may overtake it.
    let closed = (await w.get(3, '/closed')).body.toString();
    for (let tries = 0; threads > 1 && closed !== '2' && tries < 20; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      closed = (await w.get(3, '/closed')).body.toString();
    }
    expect(closed).toBe('2');
  });

  it('keeps both Set-Cookie headers', async () => {
    const w = startWorker();
    await w.ready();
    expect(header(await w.get(1, '/cookies'), 'Set-Cookie')).toEqual(['a=1; Path=/', 'b=2; Path=/']);
  });

  it('serves write(), file_wrapper and streamed bodies', async () => {
    const w = startWorker();
    await w.ready();
    expect((await w.get(1, '/write')).body.toString()).toBe('written by write()');
    expect((await w.get(2, '/filewrapper')).body.equals(Buffer.from('0123456789'.repeat(20000)))).toBe(true);
    expect((await w.get(3, '/stream?n=200000')).body.length).toBe(200000);
    const body = randomBytes(200_000);
    const echo = await w.get(4, '/echo', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length) }, body);
    expect(echo.body.equals(body)).toBe(true);
  });

  it('sends print() and wsgi.errors to stderr, never to the protocol stream', async () => {
    const w = startWorker();
    await w.ready();
    expect((await w.get(1, '/print')).body.toString()).toBe('printed');
    await w.until(() => (w.stderr.includes('PRINTED-TO-STDOUT') && w.stderr.includes('WRITTEN-TO-WSGI-ERRORS') ? true : undefined), 'stderr lines');
    expect(w.records.every((r) => !r.content.includes('PRINTED'))).toBe(true);
  });

  it('gives the app a sane sys.argv', async () => {
    const w = startWorker();
    await w.ready();
    expect((await w.get(1, '/argv')).body.toString()).toMatch(/^\['.*hello_app\.py'\]$/);
  });

  it('passes wsgiref.validate on a batch of requests', async () => {
    const w = startWorker([], {}, 'validated_app:application');
    await w.ready();
    const body = randomBytes(100_000);
    const post = { REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length), CONTENT_TYPE: 'application/octet-stream' };
    const results = [
      await w.get(1, '/'), await w.get(2, '/env'), await w.get(3, '/cookies'), await w.get(4, '/write'),
      await w.get(5, '/filewrapper'), await w.get(6, '/stream?n=70000'), await w.get(7, '/head', { REQUEST_METHOD: 'HEAD' }),
      await w.get(8, '/echo', post, body), await w.get(9, '/sha256', post, body),
    ];
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    expect(w.stderr).not.toMatch(/AssertionError|WSGIWarning/);
  });

  it('accepts module.callable, module.callable() and pkg.mod:factory()', async () => {
    for (const app of ['hello_app.application', 'hello_app.Holder.app', 'hello_app.make_app()', 'pkg.factory:create()']) {
      const w = startWorker([], {}, app);
      expect((await w.ready()).app).toBe(app);
      expect((await w.get(1, '/')).body.toString()).toBe('Hello, world');
    }
  });

  it('accepts a call in the middle of a dotted handler, as wfastcgi does (a.f().g)', async () => {
    for (const app of ['pkg.chain.make().app', 'pkg.chain.Site().wsgi()', 'pkg.chain:make().app']) {
      const w = startWorker([], {}, app);
      expect((await w.ready()).app).toBe(app);
      expect((await w.get(1, '/')).body.toString()).toBe('Hello, world');
    }
  });

  it('refuses a call on a call (mod.make()()) as a bad app spec, exit 3', async () => {
    const w = startWorker([], {}, 'pkg.chain.make()()');
    expect(await w.exited).toBe(3);
    expect(JSON.parse((await w.find(T.FATAL, 0)).content.toString())).toMatchObject({ kind: 'boot' });
    expect(w.stderr).toContain('bad app spec');
  });

  it('exits 0 on stdin EOF', async () => {
    const w = startWorker();
    await w.ready();
    w.proc.stdin!.end();
    expect(await w.exited).toBe(0);
  });

  it('finishes running requests after stdin EOF, then exits 0', async () => {
    const w = startWorker(['--eof-grace', '10']);
    await w.ready();
    w.send(request(1, params('/sleep?s=0.3')));
    w.proc.stdin!.end();
    expect((await w.response(1)).body.toString()).toBe('slept 0.3');
    expect(await w.exited).toBe(0);
  });

  it('aborts a request whose body is incomplete at stdin EOF, then exits 0', async () => {
    const w = startWorker();
    await w.ready();
    // The app waits for 90 more body bytes; EOF means they never come: its reads end.
    w.send(request(1, params('/sha256', { REQUEST_METHOD: 'POST', CONTENT_LENGTH: '100' }), null));
    w.send(record(T.STDIN, 1, Buffer.alloc(10, 1)));
    await w.find(T.WINDOW, 1); // credit for the 10 bytes: the app has read them and waits
    w.proc.stdin!.end();
    expect((await w.exchange(1)).stdout.length).toBe(0); // aborted: its answer goes nowhere
    expect(await w.exited).toBe(0);
  });

  it('exits --eof-grace seconds after stdin EOF when a request is still running', async () => {
    const w = startWorker(['--eof-grace', '0.5']);
    await w.ready();
    w.send(request(1, params('/sleep?s=30')));
    await new Promise((resolve) => setTimeout(resolve, 200)); // the app is asleep
    const t0 = performance.now();
    w.proc.stdin!.end();
    expect(await w.exited).toBe(0);
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(w.stderr).toMatch(/1 request\(s\) still running after 0\.5s/);
    expect(w.records.some((r) => r.type === T.END)).toBe(false);
  });

  it('exits 3 on a malformed record stream', async () => {
    const w = startWorker();
    await w.ready();
    const bad = begin(1);
    bad[0] = 2; // version byte
    w.send(bad);
    expect(await w.exited).toBe(3);
    expect(w.stderr).toContain('bad FastCGI version byte 2');
  });

  it('exits 4 with FATAL when the import fails', async () => {
    const w = startWorker([], {}, 'import_fails:application');
    expect(await w.exited).toBe(4);
    const fatal = JSON.parse((await w.find(T.FATAL, 0)).content.toString()) as Record<string, unknown>;
    // The error line, then apphints' words: where the import looked, and with which interpreter.
    expect(fatal).toMatchObject({ kind: 'import', error: expect.stringMatching(/^ModuleNotFoundError: No module named 'no_such_module_for_corral_tests' \(searched .+; the interpreter is .+ \(Python 3\.\d+\.\d+\); .*--python\)$/), line: 2 });
    expect(fatal.file).toBe(path.join(FIXTURES, 'import_fails.py'));
    expect(w.stderr).toContain('Traceback (most recent call last)');
    expect(w.stderr).toContain('import_fails.py');
    expect(w.records.some((r) => r.type === T.READY)).toBe(false);
  });

  it('exits 4 with file and line of a SyntaxError', async () => {
    const w = startWorker([], {}, 'syntax_error:application');
    expect(await w.exited).toBe(4);
    const fatal = JSON.parse((await w.find(T.FATAL, 0)).content.toString()) as Record<string, unknown>;
    expect(fatal).toMatchObject({ kind: 'import', file: path.join(FIXTURES, 'syntax_error.py'), line: 3 });
    expect(fatal.error).toMatch(/^SyntaxError: /);
  });

  it('exits 4 when the callable is missing and 3 on a bad flag', async () => {
    const missing = startWorker([], {}, 'hello_app:nope');
    expect(await missing.exited).toBe(4);
    expect((JSON.parse((await missing.find(T.FATAL, 0)).content.toString()) as { error: string }).error).toMatch(/^AttributeError: .*nope/);
    const bad = startWorker(['--no-such-flag']);
    expect(await bad.exited).toBe(3);
    expect(bad.stderr).toContain('--no-such-flag');
    expect(JSON.parse((await bad.find(T.FATAL, 0)).content.toString())).toMatchObject({ kind: 'boot' });
  });
});

describe('worker over stdio: threads', () => {
  it('reports READY with the protocol fields', async () => {
    const w = spawnWorker(['--threads', '3', '--window', '65536']);
    const ready = await w.ready();
    expect(ready).toMatchObject({ pid: w.proc.pid, app: 'hello_app:application', threads: 3, window: 65536, protocol: 1, inline: false });
    expect(ready.python).toMatch(/^3\.\d+\.\d+/);
  });

  it('runs two interleaved requests at once with --threads 2', async () => {
    const w = spawnWorker(['--threads', '2']);
    expect((await w.ready()).threads).toBe(2);
    const [a, b] = [7, 3];
    const pa = pairs(params('/barrier'));
    const pb = pairs(params('/barrier'));
    w.send(Buffer.concat([
      begin(a), begin(b), record(T.PARAMS, b, pb), record(T.PARAMS, a, pa.subarray(0, 10)),
      record(T.PARAMS, a, pa.subarray(10)), record(T.PARAMS, a), record(T.PARAMS, b),
      record(T.STDIN, b), record(T.STDIN, a),
    ]));
    const [ra, rb] = await Promise.all([w.response(a), w.response(b)]);
    expect([ra.status, ra.body.toString(), rb.status, rb.body.toString()]).toEqual([200, 'passed', 200, 'passed']);
  });

  it('answers PING while every app thread is busy', async () => {
    const w = spawnWorker(['--threads', '2']);
    await w.ready();
    w.send(Buffer.concat([request(1, params('/sleep?s=1')), request(2, params('/sleep?s=1'))]));
    await new Promise((resolve) => setTimeout(resolve, 200)); // both threads are asleep
    w.send(record(T.PING, 0, Buffer.from('are you there')));
    const pong = await w.find(T.PONG, 0);
    expect(pong.content.toString()).toBe('are you there');
    expect(w.records.some((r) => r.type === T.END)).toBe(false);
    expect((await w.response(1)).status).toBe(200);
    expect((await w.response(2)).status).toBe(200);
  });
});

// With --threads 1 the reader thread runs the app; while the app waits for body bytes or STDOUT
// credit it reads and dispatches records itself. A PING is answered during such a wait, or
// after the request when the app just computes or sleeps (the service pings only idle workers).
describe.runIf(INLINE)('worker over stdio: inline requests (--threads 1)', () => {
  const startInline = (args: string[] = []): Worker => spawnWorker(['--threads', '1', ...args]);
  const post = (length: number): Record<string, string> => ({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(length) });

  it('answers a PING that arrives while the app sleeps once the request has ended', async () => {
    const w = startInline();
    expect((await w.ready()).inline).toBe(true);
    w.send(request(1, params('/sleep?s=0.6')));
    await new Promise((resolve) => setTimeout(resolve, 200)); // the app is asleep
    w.send(record(T.PING, 0, Buffer.from('are you there')));
    const pong = await w.find(T.PONG, 0);
    expect(pong.content.toString()).toBe('are you there');
    expect((await w.response(1)).body.toString()).toBe('slept 0.6');
    expect(indexOf(w, T.END, 1)).toBeLessThan(indexOf(w, T.PONG, 0));
  });

  it('answers PING while the app waits for its body', async () => {
    const w = startInline();
    await w.ready();
    const body = randomBytes(20);
    w.send(request(1, params('/sha256', post(body.length)), null));
    w.send(record(T.STDIN, 1, body.subarray(0, 10)));
    w.send(record(T.PING, 0, Buffer.from('while reading')));
    expect((await w.find(T.PONG, 0)).content.toString()).toBe('while reading');
    expect(w.records.some((r) => r.type === T.END)).toBe(false);
    w.send(Buffer.concat([record(T.STDIN, 1, body.subarray(10)), record(T.STDIN, 1)]));
    expect((await w.response(1)).body.toString()).toBe(`${createHash('sha256').update(body).digest('hex')} 20`);
  });

  it('queues requests pipelined behind a running one and answers them in order', async () => {
    const w = startInline();
    await w.ready();
    const a = randomBytes(100_000);
    const c = randomBytes(30_000);
    // A waits for the rest of its body while B and C (with its whole body) arrive.
    w.send(request(1, params('/echo', post(a.length)), null));
    w.send(record(T.STDIN, 1, a.subarray(0, 50_000)));
    w.send(Buffer.concat([
      request(2, params('/')), request(3, params('/sha256', post(c.length)), c),
      record(T.PING, 0, Buffer.from('meanwhile')),
    ]));
    await w.find(T.PONG, 0);
    expect(w.records.some((r) => r.type === T.END)).toBe(false);
    w.send(Buffer.concat([record(T.STDIN, 1, a.subarray(50_000)), record(T.STDIN, 1)]));
    const [ra, rb, rc] = await Promise.all([w.response(1), w.response(2), w.response(3)]);
    expect(ra.body.equals(a)).toBe(true);
    expect(rb.body.toString()).toBe('Hello, world');
    expect(rc.body.toString()).toBe(`${createHash('sha256').update(c).digest('hex')} ${c.length}`);
    const ends = [1, 2, 3].map((id) => indexOf(w, T.END, id));
    expect(ends).toEqual([...ends].sort((x, y) => x - y)); // one at a time, in arrival order
  });

  it('ends a request that waits for STDOUT credit at stdin EOF, without waiting --eof-grace', async () => {
    const window = 65536;
    const w = startInline(['--window', String(window), '--eof-grace', '30']);
    w.autoCredit = false;
    await w.ready();
    w.send(request(1, params('/stream?n=300000')));
    await w.until(() => (w.stdoutBytes(1) >= window ? true : undefined), 'a window of STDOUT');
    w.proc.stdin!.end(); // no credit can come any more
    const { stdout } = await w.exchange(1);
    expect(stdout.length).toBe(window);
    expect(await w.exited).toBe(0);
  });
});

describe('worker as a standalone FastCGI server', () => {
  async function listen(): Promise<{ worker: Worker; port: number }> {
    const proc = spawn(PYTHON, [WORKER, '--root', FIXTURES, '--app', 'hello_app:application', '--listen', '127.0.0.1:0'], { stdio: ['pipe', 'pipe', 'pipe'] });
    started.push(proc);
    const worker = new Worker(proc);
    const port = await worker.until(() => /listening on 127\.0\.0\.1:(\d+)/.exec(worker.stderr)?.[1], 'the listening line');
    return { worker, port: Number(port) };
  }

  async function connect(port: number): Promise<{ peer: Peer; socket: net.Socket }> {
    const socket = net.connect(port, '127.0.0.1');
    sockets.push(socket);
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const peer = new Peer(socket, socket);
    socket.on('close', () => { peer.closed = true; peer.notify(); });
    return { peer, socket };
  }

  it('serves sequential requests on a kept connection and closes without KEEP_CONN', async () => {
    const { worker, port } = await listen();
    const { peer } = await connect(port);
    for (const id of [1, 2, 3]) {
      peer.send(request(id, params('/')));
      expect((await peer.response(id)).body.toString()).toBe('Hello, world');
    }
    expect(peer.closed).toBe(false);
    peer.send(request(4, params('/cookies'), Buffer.alloc(0), false));
    expect((await peer.response(4)).status).toBe(200);
    await peer.until(() => (peer.closed ? true : undefined), 'the connection to close');
    worker.proc.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });

  it('answers GET_VALUES, UNKNOWN_TYPE and UNKNOWN_ROLE', async () => {
    const { port } = await listen();
    const { peer } = await connect(port);
    peer.send(record(T.GET_VALUES, 0, pairs({ FCGI_MAX_CONNS: '', FCGI_MAX_REQS: '', FCGI_MPXS_CONNS: '' })));
    const values = decodePairs((await peer.find(T.GET_VALUES_RESULT, 0)).content);
    expect(values.FCGI_MPXS_CONNS).toBe('0'); // one request at a time per connection
    expect(Number(values.FCGI_MAX_CONNS)).toBeGreaterThan(0);
    expect(Number(values.FCGI_MAX_REQS)).toBeGreaterThan(0);
    peer.send(record(99, 0, Buffer.from('x')));
    expect((await peer.find(T.UNKNOWN_TYPE, 0)).content[0]).toBe(99);
    peer.send(begin(5, true, 2)); // role AUTHORIZER
    const end = await peer.find(T.END, 5);
    expect(end.content[4]).toBe(3); // FCGI_UNKNOWN_ROLE
    peer.send(request(6, params('/')));
    expect((await peer.response(6)).status).toBe(200);
  });
});
