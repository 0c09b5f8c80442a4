/**
 * The relay's pieces without processes: where the service is (Windows and POSIX), the auto-start
 * lock and its races, the settings record, the answers the relay makes itself, write batching and
 * the service command line.
 */
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ProtocolStatus, RecordType } from '../../src/fcgi/constants.js';
import { decodeParams, encodeParams, paramsToMap } from '../../src/fcgi/params.js';
import { RecordParser, type FcgiRecord } from '../../src/fcgi/parser.js';
import { decodeEndRequest, encodeBeginRequest, encodeRecord, frameStream } from '../../src/fcgi/records.js';
import { serveCommand } from '../../src/relay/autostart.js';
import { WriteBatch } from '../../src/relay/batch.js';
import { autostartEnabled, locateService, sanitizeName } from '../../src/relay/discover.js';
import { SettingsInjector, settingsFromEnv } from '../../src/relay/inject.js';
import { lockIsStale, readLock, removeIfUnchanged, tryLock } from '../../src/relay/lock.js';
import { gatewayFailure, getValuesAnswer } from '../../src/relay/management.js';
import { relayLogPath } from '../../src/relay/log.js';
import { REPLAY_LIMIT, Replay } from '../../src/relay/replay.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'corral-relay-parts-'));
  dirs.push(d);
  return d;
}

function records(b: Buffer): FcgiRecord[] {
  const out: FcgiRecord[] = [];
  expect(new RecordParser().push(b, (r) => out.push(r))).toBeNull();
  return out;
}

describe('locateService', () => {
  it('defaults to a named pipe per app pool on Windows, with the lock in the temp folder', () => {
    const loc = locateService({ APP_POOL_ID: 'My Site (Pool)' }, 'win32', 'C:\\Windows\\Temp');
    expect(loc.address).toEqual({ kind: 'pipe', path: '\\\\.\\pipe\\corral-My_Site__Pool_' });
    expect(loc.text).toBe('\\\\.\\pipe\\corral-My_Site__Pool_');
    expect(loc.lockPath).toBe('C:\\Windows\\Temp\\corral-pipe-corral-My_Site__Pool_.lock');
  });

  it('defaults to a unix socket in the temp dir elsewhere, with the lock next to it', () => {
    expect(locateService({}, 'linux', '/tmp')).toEqual({
      address: { kind: 'unix', path: '/tmp/corral-default.sock' },
      text: 'unix:/tmp/corral-default.sock',
      lockPath: '/tmp/corral-default.sock.lock',
    });
    expect(locateService({ APP_POOL_ID: 'site1' }, 'darwin', '/var/tmp').lockPath).toBe('/var/tmp/corral-site1.sock.lock');
  });

  it('takes CORRAL_SERVICE as a pipe, socket path or host:port, and refuses stdin and fd:N', () => {
    expect(locateService({ CORRAL_SERVICE: '//./pipe/shared' }, 'win32', 'C:\\T').address).toEqual({ kind: 'pipe', path: '\\\\.\\pipe\\shared' });
    expect(locateService({ CORRAL_SERVICE: '/run/corral.sock' }, 'linux', '/tmp').lockPath).toBe('/run/corral.sock.lock');
    const tcp = locateService({ CORRAL_SERVICE: '127.0.0.1:9000' }, 'linux', '/tmp');
    expect(tcp.address).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9000 });
    expect(tcp.lockPath).toBe('/tmp/corral-tcp-127.0.0.1-9000.lock');
    expect(() => locateService({ CORRAL_SERVICE: 'stdin' }, 'linux', '/tmp')).toThrow(/needs a pipe, socket path or host:port/);
    expect(() => locateService({ CORRAL_SERVICE: 'fd:0' }, 'linux', '/tmp')).toThrow(/CORRAL_SERVICE/);
  });

  it('sanitizes names and reads CORRAL_AUTOSTART', () => {
    expect(sanitizeName('..')).toBe('default');
    expect(sanitizeName('')).toBe('default');
    expect(sanitizeName('a/b\\c')).toBe('a_b_c');
    expect(autostartEnabled({})).toBe(true);
    expect(autostartEnabled({ CORRAL_AUTOSTART: '1' })).toBe(true);
    for (const off of ['0', 'false', 'No', 'OFF']) expect(autostartEnabled({ CORRAL_AUTOSTART: off })).toBe(false);
  });

  it('names the relay log after the app pool, or the pid without one', () => {
    expect(relayLogPath({ APP_POOL_ID: 'Pool A' }, 'win32', 'C:\\T', 7)).toBe('C:\\T\\corral-relay-Pool_A.log');
    expect(relayLogPath({}, 'linux', '/tmp', 7)).toBe('/tmp/corral-relay-7.log');
    expect(relayLogPath({ CORRAL_RELAY_LOG: '/var/log/r.log' }, 'linux', '/tmp', 7)).toBe('/var/log/r.log');
  });
});

describe('the auto-start lock', () => {
  it('is exclusive, records the service pid and can be released', () => {
    const lock = join(tempDir(), 's.sock.lock');
    const held = tryLock(lock)!;
    expect(held).not.toBeNull();
    expect(tryLock(lock)).toBeNull();
    expect(readLock(lock)).toMatchObject({ service: null, relay: process.pid });
    held.keep(4242);
    expect(readLock(lock)).toMatchObject({ service: 4242, relay: process.pid });
    expect(tryLock(lock)).toBeNull();
    rmSync(lock);
    const again = tryLock(lock)!;
    again.release();
    expect(readLock(lock)).toBeNull();
  });

  it('is stale when its process is gone, or when old while the service stays unreachable', () => {
    const now = 1_000_000;
    const info = { service: 10, relay: 9, at: now - 1_000, raw: '' };
    expect(lockIsStale(info, now, 0, 3_000, () => true)).toBe(false);
    expect(lockIsStale(info, now, 0, 3_000, (pid) => pid !== 10)).toBe(true);
    // A live pid (a reused one after a reboot, or a hung service) stops counting once both are old.
    const old = { ...info, at: now - 60_000 };
    expect(lockIsStale(old, now, 1_000, 3_000, () => true)).toBe(false);
    expect(lockIsStale(old, now, 4_000, 3_000, () => true)).toBe(true);
    // Half-written by a relay that died: stale by age alone.
    expect(lockIsStale({ service: null, relay: null, at: now - 1_000, raw: '' }, now, 0, 3_000)).toBe(false);
    expect(lockIsStale({ service: null, relay: null, at: now - 5_000, raw: '' }, now, 0, 3_000)).toBe(true);
  });

  it('is refreshed by its relay while the service starts, and only while it is still that relay\'s lock', () => {
    const lock = join(tempDir(), 's.sock.lock');
    const held = tryLock(lock)!;
    held.keep(4242);
    // As if written long ago: a slow start (node.exe under Wine, a virus scan) would look hung.
    writeFileSync(lock, JSON.stringify({ service: 4242, relay: process.pid, at: 1 }));
    held.refresh();
    const after = readLock(lock)!;
    expect(after).toMatchObject({ service: 4242, relay: process.pid });
    expect(after.at).toBeGreaterThan(1);
    expect(lockIsStale(after, after.at + 1_000, 10_000, 5_000, () => true)).toBe(false);
    // Replaced by another relay's lock (it judged ours stale): left alone.
    const theirs = JSON.stringify({ service: 777, relay: 1, at: 1 });
    writeFileSync(lock, theirs);
    held.refresh();
    expect(readLock(lock)!.raw).toBe(theirs);
  });

  it('removes a stale lock only if it is still the one judged stale (two relays racing)', () => {
    const lock = join(tempDir(), 's.sock.lock');
    writeFileSync(lock, JSON.stringify({ service: 999_999_999, relay: 1, at: 1 }));
    const staleSeen = readLock(lock)!;
    // Relay A removes it and takes a fresh lock; relay B, which saw the same stale content, must not remove A's.
    expect(removeIfUnchanged(lock, staleSeen.raw)).toBe(true);
    const fresh = tryLock(lock)!;
    fresh.keep(1234);
    expect(removeIfUnchanged(lock, staleSeen.raw)).toBe(true);
    expect(readLock(lock)?.service).toBe(1234);
  });

  it('backs off while another relay holds the breaker, and clears a breaker left by a dead relay', () => {
    const lock = join(tempDir(), 's.sock.lock');
    writeFileSync(lock, 'x');
    writeFileSync(`${lock}.break`, '');
    expect(removeIfUnchanged(lock, 'x')).toBe(false);
    expect(readFileSync(lock, 'utf8')).toBe('x');
    const past = new Date(Date.now() - 60_000);
    utimesSync(`${lock}.break`, past, past);
    expect(removeIfUnchanged(lock, 'x')).toBe(false); // clears the old breaker
    expect(removeIfUnchanged(lock, 'x')).toBe(true);
    expect(readLock(lock)).toBeNull();
  });
});

describe('settings injection', () => {
  it('forwards the known settings present (empty ones too) as CORRAL_SETTING_* in PARAMS records for the request id', () => {
    const settings = settingsFromEnv({ WSGI_APP: 'app:wsgi', WSGI_RESTART_FILE_REGEX: '', PATH: '/bin', CORRAL_THREADS: '4' });
    expect(settings).toEqual([['WSGI_APP', 'app:wsgi'], ['WSGI_RESTART_FILE_REGEX', ''], ['CORRAL_THREADS', '4']]);
    const inj = new SettingsInjector(settings);
    const recs = records(inj.recordsFor(7));
    expect(recs.map((r) => [r.type, r.requestId])).toEqual([[RecordType.PARAMS, 7]]);
    expect(Object.fromEntries(paramsToMap(recs[0]!.content)!)).toEqual({
      CORRAL_SETTING_WSGI_APP: 'app:wsgi',
      CORRAL_SETTING_WSGI_RESTART_FILE_REGEX: '',
      CORRAL_SETTING_CORRAL_THREADS: '4',
    });
    expect(inj.recordsFor(7)).toBe(inj.recordsFor(7));
    expect(new SettingsInjector([]).empty).toBe(true);
  });

  it('splits settings larger than one record', () => {
    const inj = new SettingsInjector([['PYTHONPATH', 'p'.repeat(70_000)]]);
    const recs = records(inj.recordsFor(1));
    expect(recs).toHaveLength(2);
    expect(paramsToMap(Buffer.concat(recs.map((r) => r.content)))!.get('CORRAL_SETTING_PYTHONPATH')).toHaveLength(70_000);
  });
});

describe('answers the relay makes itself', () => {
  it('GET_VALUES: 1 connection, 1 request, no multiplexing; unknown names left out', () => {
    const answer = getValuesAnswer(encodeParams([['FCGI_MPXS_CONNS', ''], ['X', ''], ['FCGI_MAX_REQS', '']]))!;
    const [r] = records(answer);
    expect(r!.type).toBe(RecordType.GET_VALUES_RESULT);
    const d = decodeParams(r!.content);
    expect(d.ok && d.pairs.map(([k, v]) => `${k}=${v}`)).toEqual(['FCGI_MPXS_CONNS=0', 'FCGI_MAX_REQS=1']);
    expect(getValuesAnswer(Buffer.from([5, 0]))).toBeNull();
  });

  it('a lost request: a whole 502 response if nothing was sent yet, else a cut-short END_REQUEST; never STDERR', () => {
    const whole = records(gatewayFailure(3, false, 'service gone'));
    expect(whole.map((r) => r.type)).toEqual([RecordType.STDOUT, RecordType.STDOUT, RecordType.END_REQUEST]);
    // The client gets the code only; the reason ('service gone') is for the relay log.
    expect(whole[0]!.content.toString()).toMatch(/^Status: 502 Bad Gateway\r\n[\s\S]*CORRAL_SERVICE_UNREACHABLE: /);
    expect(whole[0]!.content.toString()).not.toContain('service gone');
    expect(whole[1]!.content.length).toBe(0);
    expect(decodeEndRequest(whole[2]!.content)).toEqual({ appStatus: 0, protocolStatus: ProtocolStatus.REQUEST_COMPLETE });
    const cut = records(gatewayFailure(3, true, 'x'));
    expect(cut.map((r) => r.type)).toEqual([RecordType.END_REQUEST]);
    expect(decodeEndRequest(cut[0]!.content)!.appStatus).toBe(1);
  });
});

describe('Replay', () => {
  const request = (method: string, body = Buffer.alloc(0)): Buffer[] => [
    encodeBeginRequest(1, 1, 1),
    encodeRecord(RecordType.PARAMS, 1, encodeParams([['REQUEST_METHOD', method], ['URL', '/']])),
    encodeRecord(RecordType.PARAMS, 1),
    ...frameStream(RecordType.STDIN, 1, body),
    encodeRecord(RecordType.STDIN, 1),
  ];
  const replayOf = (frames: Buffer[]): Replay => {
    const r = new Replay();
    for (const f of frames) r.keep(f);
    return r;
  };

  it('resends small requests with a method safe to repeat, never POST, PATCH or a large body', () => {
    const get = request('GET');
    expect(replayOf(get).resendable()).toEqual(get);
    expect(replayOf(request('DELETE')).resendable()).not.toBeNull();
    expect(replayOf(request('POST')).resendable()).toBeNull();
    expect(replayOf(request('PATCH')).resendable()).toBeNull();
    expect(replayOf(request('PUT', Buffer.alloc(REPLAY_LIMIT))).resendable()).toBeNull();
  });
});

describe('WriteBatch', () => {
  it('writes adjacent views of one chunk back as that chunk, and other parts in one write', () => {
    const out = new PassThrough();
    const writes: Buffer[] = [];
    const write = out.write.bind(out);
    out.write = ((chunk: Buffer, ...rest: never[]) => (writes.push(chunk), write(chunk, ...rest))) as typeof out.write;
    const chunk = Buffer.from('abcdefghij');
    const batch = new WriteBatch(out);
    batch.push(chunk.subarray(0, 4));
    batch.push(chunk.subarray(4, 10));
    expect(batch.flush()).toBe(true);
    expect(writes).toHaveLength(1);
    expect(writes[0]!.buffer).toBe(chunk.buffer);
    expect(writes[0]!.toString()).toBe('abcdefghij');
    batch.push(chunk.subarray(0, 2));
    batch.push(Buffer.from('XY'));
    batch.push(chunk.subarray(2, 4));
    batch.flush();
    expect(writes).toHaveLength(2);
    expect(writes[1]!.toString()).toBe('abXYcd');
    expect(batch.flush()).toBe(true);
    expect(writes).toHaveLength(2);
  });
});

describe('serveCommand', () => {
  const places = { execPath: 'C:\\node\\node.exe', cli: 'C:\\corral\\dist\\cli\\main.js', tmpDir: 'C:\\Windows\\Temp', platform: 'win32' as const };

  it('starts `serve --listen ADDR --allowed-roots ROOT` without IIS\'s private variables, the relay\'s own, or per-site settings', () => {
    const cmd = serveCommand('\\\\.\\pipe\\corral-Pool', 'C:\\inetpub\\site', {
      PATH: 'C:\\Windows', _FCGI_X_PIPE_: '\\\\.\\pipe\\IISFCGI-1', _fcgi_shutdown_event_: '123', CORRAL_SERVICE: 'x', CORRAL_RELAY_LOG: 'y',
      WSGI_APP: 'a:b', PYTHONPATH: 'C:\\lib', CORRAL_WORKERS: '3', CORRAL_PYTHON: 'C:\\py\\python.exe', CORRAL_LOG_FILE: 'C:\\logs\\corral.log',
    }, places);
    expect(cmd.command).toBe('C:\\node\\node.exe');
    expect(cmd.args).toEqual(['C:\\corral\\dist\\cli\\main.js', 'serve', '--listen', '\\\\.\\pipe\\corral-Pool', '--allowed-roots', 'C:\\inetpub\\site']);
    expect(cmd.env).toEqual({ PATH: 'C:\\Windows', CORRAL_PYTHON: 'C:\\py\\python.exe', CORRAL_LOG_FILE: 'C:\\logs\\corral.log' });
  });

  it('adds the app pool\'s other sites from CORRAL_ALLOWED_ROOTS, and logs to a file named after the app pool', () => {
    const cmd = serveCommand('\\\\.\\pipe\\corral-Pool', 'C:\\inetpub\\site', {
      APP_POOL_ID: 'My Pool', CORRAL_ALLOWED_ROOTS: 'C:\\inetpub\\site\\; D:\\sites\\shop;',
    }, places);
    expect(cmd.args.slice(2)).toEqual([
      '--listen', '\\\\.\\pipe\\corral-Pool', '--allowed-roots', 'C:\\inetpub\\site;D:\\sites\\shop',
      '--log-file', 'C:\\Windows\\Temp\\corral-service-My_Pool.log',
    ]);
    expect(cmd.env).toEqual({ APP_POOL_ID: 'My Pool' });
  });
});
