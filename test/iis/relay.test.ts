/**
 * `corral relay` as IIS runs it, through the IIS emulator: FastCGI management answers, the byte
 * pump to the service (one kept-alive connection, settings injected, STDERR never reaching IIS,
 * 502 when the service goes away), shutdown on stdin EOF, IIS-style load with recycling against a
 * real service and Python pool, and auto-start of exactly one service by concurrent relays.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FCGI_KEEP_CONN, ManagementVar, NULL_REQUEST_ID, RecordType, Role } from '../../src/fcgi/constants.js';
import { decodeParams, encodeParams } from '../../src/fcgi/params.js';
import { RecordParser, type FcgiRecord } from '../../src/fcgi/parser.js';
import { encodeBeginRequest, encodeRecord } from '../../src/fcgi/records.js';
import { CLI, FIXTURES, ROOT, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';
import { SocketPairs, spawnRelay, startIis, type IisEmulator, type IisOptions, type IisResponse, type SpawnedRelay } from './emulator.js';
import { FakeService } from './fake-service.js';
import { childrenOf, running, serveProcesses, terminate } from './procs.js';

const RELAY_CMD = [process.execPath, CLI, 'relay'];

const dirs: string[] = [];
const emulators: IisEmulator[] = [];
const relays: SpawnedRelay[] = [];
const fakes: FakeService[] = [];
const pairSets: SocketPairs[] = [];
/** Socket paths of services that relays may have auto-started (detached: found through /proc). */
const autoStarted: string[] = [];

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.stop()));
  for (const r of relays.splice(0)) {
    r.socket.destroy();
    r.child.kill('SIGKILL');
    await r.exited;
  }
  for (const p of pairSets.splice(0)) p.close();
  await Promise.all(fakes.splice(0).map((f) => f.close()));
  for (const sock of autoStarted.splice(0)) {
    const services = serveProcesses(sock);
    const workers = services.flatMap(childrenOf);
    await terminate(services);
    await terminate(workers);
  }
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'corral-relay-'));
  dirs.push(d);
  return d;
}

/** A temp dir with the service socket path and the relay log path in it. */
function place(): { dir: string; sock: string; log: string } {
  const dir = tempDir();
  return { dir, sock: join(dir, 'corral.sock'), log: join(dir, 'relay.log') };
}

async function iis(opts: Omit<IisOptions, 'relayCmd'>): Promise<IisEmulator> {
  const e = await startIis({ relayCmd: RELAY_CMD, ...opts });
  emulators.push(e);
  return e;
}

/** A relay spawned directly (no emulator), for byte-level checks. */
async function rawRelay(env: Record<string, string>): Promise<SpawnedRelay & { records: RecordReader }> {
  const pairs = new SocketPairs();
  pairSets.push(pairs);
  const r = await spawnRelay(pairs, RELAY_CMD, { ...process.env, ...env }, pairs.dir);
  relays.push(r);
  return { ...r, records: new RecordReader(r.socket) };
}

/** Records arriving on a socket, with a wait for the first matching one. */
class RecordReader {
  readonly all: FcgiRecord[] = [];
  #waiters: Array<{ pred: (r: FcgiRecord) => boolean; resolve: (r: FcgiRecord) => void }> = [];

  constructor(socket: net.Socket) {
    const parser = new RecordParser();
    socket.on('data', (chunk: Buffer) =>
      parser.push(chunk, (raw) => {
        const r = { ...raw, content: Buffer.from(raw.content), frame: Buffer.from(raw.frame) };
        this.all.push(r);
        this.#waiters = this.#waiters.filter((w) => (w.pred(r) ? (w.resolve(r), false) : true));
      }),
    );
  }

  next(pred: (r: FcgiRecord) => boolean): Promise<FcgiRecord> {
    const seen = this.all.find(pred);
    return seen ? Promise.resolve(seen) : new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }
}

function logLines(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

function text(r: IisResponse): string {
  return r.body.toString('utf8');
}

/** A corral service on a unix socket for one fixture app, ready to serve. */
async function service(sock: string, args: string[]): Promise<CorralProcess> {
  const c = startCorral(['serve', ...args, '--listen', sock]);
  await c.waitForMsg('app ready');
  return c;
}

/** Python workers of a service (its direct children). */
function workersOf(c: CorralProcess): number[] {
  return childrenOf(c.child.pid!).sort();
}

/** `n` requests from `concurrency` clients, each waiting for its answer before the next. */
async function load(e: IisEmulator, n: number, concurrency: number, url: string): Promise<IisResponse[]> {
  const out: IisResponse[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        out.push(await e.request({ url }));
      }
    }),
  );
  return out;
}

describe('corral relay: FastCGI with IIS', () => {
  it('answers FCGI_GET_VALUES itself with 1/1/0 and unknown types with FCGI_UNKNOWN_TYPE', async () => {
    const { sock, log } = place();
    const r = await rawRelay({ CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0' });
    const ask = encodeParams([[ManagementVar.MAX_CONNS, ''], [ManagementVar.MAX_REQS, ''], [ManagementVar.MPXS_CONNS, ''], ['SOMETHING_ELSE', '']]);
    r.socket.write(Buffer.concat([encodeRecord(RecordType.GET_VALUES, NULL_REQUEST_ID, ask), encodeRecord(0x55, NULL_REQUEST_ID, Buffer.alloc(3))]));
    const result = await r.records.next((x) => x.type === RecordType.GET_VALUES_RESULT);
    const decoded = decodeParams(result.content);
    expect(decoded.ok && Object.fromEntries(decoded.pairs.map(([k, v]) => [k.toString(), v.toString()]))).toEqual({
      FCGI_MAX_CONNS: '1',
      FCGI_MAX_REQS: '1',
      FCGI_MPXS_CONNS: '0',
    });
    const unknown = await r.records.next((x) => x.type === RecordType.UNKNOWN_TYPE);
    expect(unknown.content[0]).toBe(0x55);
    r.socket.destroy();
    expect(await r.exited).toEqual({ code: 0, signal: null });
  });

  it('exits when IIS closes its stdin, idle or in the middle of a request, and logs start and stop', async () => {
    const { sock, log } = place();
    const fake = await FakeService.listen(sock);
    fakes.push(fake);
    const idle = await rawRelay({ CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log });
    idle.socket.destroy();
    expect(await idle.exited).toEqual({ code: 0, signal: null });

    const busy = await rawRelay({ CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log });
    // BEGIN and PARAMS, but the body never ends: the service has not answered when IIS closes.
    const params = encodeParams([['URL', '/slow'], ['APPL_PHYSICAL_PATH', `${FIXTURES}/`]]);
    busy.socket.write(Buffer.concat([encodeBeginRequest(1, Role.RESPONDER, FCGI_KEEP_CONN), encodeRecord(RecordType.PARAMS, 1, params), encodeRecord(RecordType.PARAMS, 1)]));
    busy.socket.destroy();
    expect(await busy.exited).toEqual({ code: 0, signal: null });

    const lines = logLines(log);
    expect(lines.filter((l) => l.msg === 'relay started').map((l) => l.pid)).toEqual([idle.pid, busy.pid]);
    expect(lines.filter((l) => l.msg === 'relay stopping').map((l) => l.pid)).toEqual([idle.pid, busy.pid]);
  });

  it('forwards over one kept-alive service connection: ids pass through (wrapping at 255), settings injected, STDERR dropped', async () => {
    const { dir, sock, log } = place();
    const fake = await FakeService.listen(sock);
    fakes.push(fake);
    const e = await iis({
      appPhysicalPath: dir,
      maxInstances: 1,
      instanceMaxRequests: 10_000,
      env: {
        CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0',
        WSGI_APP: 'site.wsgi:app', PYTHONPATH: 'C:\\lib;%APPL_PHYSICAL_PATH%\\src', WSGI_RESTART_FILE_REGEX: '', CORRAL_WORKERS: '3',
        // The site's word that this PYTHONPATH is its own, not the machine's (see settingsFromEnv).
        CORRAL_FORWARD_PYTHONPATH: 'true',
      },
    });
    const answers: IisResponse[] = [];
    for (let i = 0; i < 300; i++) answers.push(await e.request({ url: i % 2 === 0 ? '/stderr' : '/params' }));
    const post = await e.request({ method: 'POST', url: '/params', headers: { 'Content-Type': 'application/octet-stream' }, body: Buffer.alloc(200_000, 1) });
    expect(answers.every((a) => a.status === 200 && !a.failed)).toBe(true);
    expect(e.counters.stderrBytes).toBe(0);
    expect(e.counters.failures).toEqual([]);
    expect(e.counters.relaysStarted).toBe(1);

    expect(fake.connections).toBe(1);
    const ids = fake.requests.map((q) => q.id);
    expect(ids.slice(0, 256)).toEqual([...Array.from({ length: 255 }, (_, i) => i + 1), 1]);
    expect(fake.requests.every((q) => (q.flags & FCGI_KEEP_CONN) !== 0)).toBe(true);
    expect(fake.requests.at(-1)!.stdinBytes).toBe(200_000);

    const params = JSON.parse(text(post)) as Record<string, string>;
    expect(params).toMatchObject({
      CORRAL_SETTING_WSGI_APP: 'site.wsgi:app',
      CORRAL_SETTING_PYTHONPATH: 'C:\\lib;%APPL_PHYSICAL_PATH%\\src',
      CORRAL_SETTING_WSGI_RESTART_FILE_REGEX: '',
      CORRAL_SETTING_CORRAL_WORKERS: '3',
      // IIS's own params pass unchanged.
      APPL_PHYSICAL_PATH: `${dir}/`,
      CONTENT_LENGTH: '200000',
      SERVER_SOFTWARE: 'Microsoft-IIS/10.0',
    });
    expect(params).not.toHaveProperty('CORRAL_SETTING_DEPLOY_FILE');
    // A line per start and connection, none per request.
    expect(logLines(log).length).toBeLessThan(6);
  });

  it('answers 502 (as a response, never STDERR) when the service connection drops mid-request, then reconnects', async () => {
    const { dir, sock, log } = place();
    const fake = await FakeService.listen(sock);
    fakes.push(fake);
    const e = await iis({ appPhysicalPath: dir, maxInstances: 1, env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0' } });
    expect((await e.request({ url: '/first' })).status).toBe(200);
    // The service closes the idle kept-alive connection (a restart) as IIS's next request goes out:
    // the GET is sent again on a new connection instead of failing.
    fake.dropConnections();
    expect((await e.request({ url: '/second' })).status).toBe(200);

    // Lost without an answer: a GET is tried once more, then 502; a POST is never sent twice.
    const lost = await e.request({ url: '/die' });
    expect(lost.status).toBe(502);
    expect(lost.failed).toBe(false);
    expect(text(lost)).toContain('CORRAL_SERVICE_UNREACHABLE');
    const post = await e.request({ method: 'POST', url: '/die', body: 'form=1' });
    expect(post.status).toBe(502);
    expect(fake.requests.filter((q) => q.params.get('URL') === '/die').map((q) => q.params.get('REQUEST_METHOD'))).toEqual(['GET', 'GET', 'POST']);

    // Part of the answer already went out: the response ends short instead.
    const cut = await e.request({ url: '/die-after' });
    expect(cut.status).toBe(200);
    expect(text(cut)).toBe('partial');
    expect(fake.requests.filter((q) => q.params.get('URL') === '/die-after')).toHaveLength(1);

    const again = await e.request({ url: '/after' });
    expect(again.status).toBe(200);
    expect(text(again)).toBe('ok /after');
    expect(e.counters.relaysStarted).toBe(1);
    expect(e.counters.stderrBytes).toBe(0);
    expect(e.counters.failures).toEqual([]);
  });

  it('answers 502 quickly when the service it auto-started exits instead of listening', async () => {
    const { sock, log } = place();
    autoStarted.push(sock);
    // The service inherits the app pool's environment; a bad setting there makes it exit before it listens.
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 1, env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_QUEUE_LENGTH: 'lots' } });
    const started = performance.now();
    const r = await e.request({ url: '/' });
    expect(r.status).toBe(502);
    // The client gets the code only; why is in the relay log.
    expect(text(r), text(r)).toContain('CORRAL_SERVICE_UNREACHABLE');
    expect(JSON.stringify(logLines(log).filter((l) => l.msg === 'cannot reach the corral service'))).toMatch(/exited \(code 2/);
    expect(performance.now() - started).toBeLessThan(8_000);
    expect(e.counters.stderrBytes).toBe(0);
    expect(logLines(log).filter((l) => l.msg === 'cannot reach the corral service')).toHaveLength(1);
  });
});

describe('corral relay in front of a real service', () => {
  it('serves requests from an explicitly started service (worker_ok and examples/hello)', async () => {
    const ok = place();
    const c = await service(ok.sock, [FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2']);
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 1, env: { CORRAL_SERVICE: ok.sock, CORRAL_RELAY_LOG: ok.log, CORRAL_AUTOSTART: '0' } });
    const r = await e.request({ url: '/pid' });
    expect(r.status).toBe(200);
    expect(workersOf(c)).toContain(Number(text(r)));

    const hello = place();
    await service(hello.sock, [join(ROOT, 'examples/hello')]);
    const h = await iis({ appPhysicalPath: join(ROOT, 'examples/hello'), maxInstances: 1, env: { CORRAL_SERVICE: hello.sock, CORRAL_RELAY_LOG: hello.log, CORRAL_AUTOSTART: '0' } });
    const page = await h.request({ url: '/', headers: { 'User-Agent': 'iis-emulator' } });
    expect(page.status).toBe(200);
    expect(text(page)).toContain('Hello from wsgi-corral');
    expect(text(page)).toContain('Microsoft-IIS/10.0');
    expect(e.counters.stderrBytes + h.counters.stderrBytes).toBe(0);
  });

  it('4 instances recycled every 50 requests serve 1,000 requests with one service and one stable pool', async () => {
    const { sock, log } = place();
    const c = await service(sock, [FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2']);
    const pool = workersOf(c);
    expect(pool).toHaveLength(2);
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 4, instanceMaxRequests: 50, env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0' } });
    const answers = await load(e, 1000, 4, '/pid');
    expect(answers).toHaveLength(1000);
    expect(answers.filter((a) => a.status !== 200 || a.failed)).toEqual([]);
    expect(e.counters.failures).toEqual([]);
    expect(e.counters.stderrBytes).toBe(0);
    expect(e.counters.unexpectedExits).toBe(0);
    expect(e.counters.relaysStarted).toBeGreaterThanOrEqual(20);
    // Every recycled relay exited by itself once IIS closed its stdin, none had to be killed.
    await e.stop();
    expect(e.counters.killedAfterGrace).toBe(0);
    expect(new Set(answers.map((a) => a.relayPid)).size).toBe(e.counters.relaysStarted);
    // One Python pool, the same workers throughout: relay recycles cost no Python start-up.
    expect([...new Set(answers.map((a) => Number(text(a))))].sort()).toEqual(pool);
    expect(workersOf(c)).toEqual(pool);
    expect(serveProcesses(sock)).toEqual([c.child.pid]);
  });

  it('killing every relay leaves the service and its pool serving', async () => {
    const { sock, log } = place();
    const c = await service(sock, [FIXTURES, '--wsgi-app', 'worker_ok:application', '--workers', '2']);
    const pool = workersOf(c);
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 4, env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0' } });
    const before = await Promise.all(Array.from({ length: 8 }, () => e.request({ url: '/pid' })));
    expect(before.every((a) => a.status === 200)).toBe(true);
    const killed = e.relayPids;
    expect(killed.length).toBeGreaterThan(1);
    await e.killRelays();
    expect(e.relayPids).toEqual([]);
    const after = await Promise.all(Array.from({ length: 8 }, () => e.request({ url: '/pid' })));
    expect(after.every((a) => a.status === 200 && !a.failed)).toBe(true);
    expect(after.some((a) => killed.includes(a.relayPid))).toBe(false);
    expect(workersOf(c)).toEqual(pool);
    expect(new Set(after.map((a) => Number(text(a)))).size).toBeGreaterThan(0);
    expect(after.every((a) => pool.includes(Number(text(a))))).toBe(true);
    expect(c.child.exitCode).toBe(null);
    expect(e.counters.failures).toEqual([]);
  });

  it('never lets FCGI_STDERR reach IIS: app exceptions, prints and wsgi.errors', async () => {
    const { sock, log } = place();
    await service(sock, [FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '1']);
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 2, env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0' } });
    const raised = await e.request({ url: '/raise' });
    expect(raised.status).toBe(500);
    expect(raised.failed).toBe(false);
    const printed = await e.request({ url: '/print' });
    expect(printed.status).toBe(200);
    const after = await e.request({ url: '/raise_after' });
    expect(after.failed).toBe(false);
    expect((await e.request({ url: '/' })).status).toBe(200);
    expect(e.counters.stderrBytes).toBe(0);
    expect(e.counters.failures).toEqual([]);
  });
});

describe('corral relay auto-starting the service', () => {
  const appEnv = (sock: string, log: string): Record<string, string> => ({
    CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, WSGI_APP: 'worker_ok:application', CORRAL_WORKERS: '2',
    CORRAL_LOG_FILE: join(dirname(sock), 'service.log'),
  });

  /** The auto-started service's log lines (pino-roll writes service.1.log, ... in the background). */
  async function serviceLogLines(sock: string, until: (lines: Array<Record<string, unknown>>) => boolean): Promise<Array<Record<string, unknown>>> {
    const dir = dirname(sock);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const lines = readdirSync(dir).filter((f) => /^service\.\d+\.log$/.test(f)).flatMap((f) => logLines(join(dir, f)));
      if (until(lines) || Date.now() > deadline) return lines;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('starts exactly one service when 4 relays find none at once, and it outlives them', async () => {
    const { sock, log } = place();
    autoStarted.push(sock);
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 4, env: appEnv(sock, log) });
    const first = await Promise.all(Array.from({ length: 4 }, () => e.request({ url: '/pid' })));
    expect(first.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    expect(e.counters.relaysStarted).toBe(4);
    const services = serveProcesses(sock);
    expect(services).toHaveLength(1);
    const lock = JSON.parse(readFileSync(`${sock}.lock`, 'utf8')) as { service: number };
    expect(lock.service).toBe(services[0]);
    const starts = logLines(log).filter((l) => l.msg === 'auto-started the corral service');
    expect(starts).toHaveLength(1);
    // The relay's own pid and the service's are separate fields (one JSON key each).
    expect(starts[0]!.servicePid).toBe(services[0]);
    expect(starts[0]!.pid).not.toBe(services[0]);
    // With no stdio, the service logs to CORRAL_LOG_FILE (by default a file in the temp folder).
    const listening = (lines: Array<Record<string, unknown>>): boolean => lines.some((l) => l.msg === 'corral starting' && l.pid === services[0]) && lines.some((l) => l.msg === 'FastCGI front listening');
    expect(listening(await serviceLogLines(sock, listening))).toBe(true);

    // Relays come and go (IIS recycles them); the service and its pool stay.
    const pool = childrenOf(services[0]!).sort();
    await e.killRelays();
    const again = await load(e, 20, 4, '/pid');
    expect(again.every((a) => a.status === 200)).toBe(true);
    expect(serveProcesses(sock)).toEqual(services);
    expect(childrenOf(services[0]!).sort()).toEqual(pool);
    expect(e.counters.stderrBytes).toBe(0);
  });

  it('starts a new service after the auto-started one died (its lock is stale)', async () => {
    const { sock, log } = place();
    autoStarted.push(sock);
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 2, env: appEnv(sock, log) });
    expect((await e.request({ url: '/pid' })).status).toBe(200);
    const [old] = serveProcesses(sock);
    const oldWorkers = childrenOf(old!);
    process.kill(old!, 'SIGKILL');
    await terminate([old!, ...oldWorkers]);
    const answers = await Promise.all([e.request({ url: '/pid' }), e.request({ url: '/pid' })]);
    // The request in flight when the service died (none here) would get a 502; new ones get a new service.
    // On failure, say why: the answers' bodies and the relays' last log lines.
    const why = (): string => JSON.stringify({ bodies: answers.map(text), relayLog: logLines(log).slice(-20) });
    expect(answers.map((a) => a.status), why()).toEqual([200, 200]);
    const now = serveProcesses(sock);
    expect(now).toHaveLength(1);
    expect(now[0]).not.toBe(old);
    expect(running(old!)).toBe(false);
    expect(logLines(log).some((l) => l.msg === 'removed a stale auto-start lock')).toBe(true);
  });

  it('passes the site settings per request: two sites with different WSGI_APP share one service', async () => {
    const { sock, log } = place();
    autoStarted.push(sock);
    const a = await iis({ appPhysicalPath: FIXTURES, maxInstances: 1, env: appEnv(sock, log) });
    const b = await iis({ appPhysicalPath: FIXTURES, maxInstances: 1, env: { ...appEnv(sock, log), WSGI_APP: 'hello_app:application' } });
    const pid = await a.request({ url: '/pid' });
    expect(pid.status).toBe(200);
    expect(Number(text(pid))).toBeGreaterThan(0);
    const hello = await b.request({ url: '/' });
    expect(hello.status).toBe(200);
    expect(text(hello)).toBe('Hello, world');
    expect(serveProcesses(sock)).toHaveLength(1);
  });

  it('pairs with the service it starts through a private secret file; a plain FastCGI client on the same socket chooses nothing', async () => {
    const { sock, log } = place();
    autoStarted.push(sock);
    const e = await iis({ appPhysicalPath: FIXTURES, maxInstances: 1, env: { ...appEnv(sock, log), WSGI_APP: 'hello_app:application' } });
    const page = await e.request({ url: '/env' });
    expect(page.status).toBe(200);
    // The token reached the service (the settings were honoured), never the app.
    const environ = JSON.parse(text(page)) as Record<string, string>;
    expect(Object.keys(environ).filter((k) => k.startsWith('CORRAL_'))).toEqual([]);
    const secretFile = `${sock}.secret`;
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    const starts = logLines(log).filter((l) => l.msg === 'auto-started the corral service');
    expect(starts[0]!.args).toEqual(expect.arrayContaining(['--relay-secret-file', secretFile]));
    // Anyone else who can reach the socket: same params, no secret. The service has no app of its own.
    const [service] = serveProcesses(sock);
    const workersBefore = childrenOf(service!).length;
    const c = await FcgiClient.connect({ path: sock });
    try {
      const r = await c.request(1, cgiParams('GET', '/', { APPL_PHYSICAL_PATH: FIXTURES, CORRAL_SETTING_WSGI_APP: 'worker_ok:application', CORRAL_RELAY_TOKEN: 'guess'.repeat(10) }));
      expect(r.status).toBe(403);
      expect(r.body.toString()).toContain('CORRAL_ROOT_NOT_ALLOWED');
    } finally {
      c.close();
    }
    expect(childrenOf(service!).length).toBe(workersBefore);
  });

  it('refuses an app outside the allowed roots without running any Python', async () => {
    const { dir, sock, log } = place();
    autoStarted.push(sock);
    const site = await iis({ appPhysicalPath: FIXTURES, maxInstances: 1, env: appEnv(sock, log) });
    expect((await site.request({ url: '/pid' })).status).toBe(200);
    // Another directory, not below the root the service was started for; importing its app would leave a marker.
    const other = join(dir, 'other');
    const marker = join(dir, 'imported');
    rmSync(other, { recursive: true, force: true });
    await import('node:fs').then((fs) => fs.mkdirSync(other));
    writeFileSync(join(other, 'wsgi.py'), `open(${JSON.stringify(marker)}, "w").write("x")\ndef application(e, s):\n    s("200 OK", [])\n    return [b"ran"]\n`);
    const [service] = serveProcesses(sock);
    const workersBefore = childrenOf(service!).length;
    const intruder = await iis({ appPhysicalPath: other, maxInstances: 1, env: { ...appEnv(sock, log), WSGI_APP: 'wsgi:application' } });
    const refused = await intruder.request({ url: '/' });
    expect(refused.status).toBe(403);
    expect(text(refused)).toContain('CORRAL_ROOT_NOT_ALLOWED');
    expect(existsSync(marker)).toBe(false);
    expect(childrenOf(service!).length).toBe(workersBefore);
    expect(intruder.counters.stderrBytes).toBe(0);
  });
});

describe('IIS request semantics through the relay', () => {
  it('gives a WSGI app in the virtual application /myapp SCRIPT_NAME=/myapp and PATH_INFO=/env', async () => {
    const { sock, log } = place();
    await service(sock, [FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '1']);
    const e = await iis({
      appPhysicalPath: FIXTURES, appVirtualPath: '/myapp', maxInstances: 1,
      env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0', WSGI_APP: 'hello_app:application' },
    });
    const r = await e.request({ url: '/myapp/env?x=1' });
    expect(r.status).toBe(200);
    const env = JSON.parse(text(r)) as Record<string, string>;
    expect(env).toMatchObject({ SCRIPT_NAME: '/myapp', PATH_INFO: '/env', QUERY_STRING: 'x=1', 'wsgi.url_scheme': 'http' });
    // The relay's settings reach the service, not the app's environ.
    expect(Object.keys(env).filter((k) => k.startsWith('CORRAL_SETTING_'))).toEqual([]);
    const root = await iis({ appPhysicalPath: FIXTURES, maxInstances: 1, env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: log, CORRAL_AUTOSTART: '0' } });
    const atRoot = JSON.parse(text(await root.request({ url: '/env' }))) as Record<string, string>;
    expect(atRoot).toMatchObject({ SCRIPT_NAME: '', PATH_INFO: '/env' });
  });
});
