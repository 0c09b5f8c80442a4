/**
 * The auto-started service across IIS's overlapped recycle and in a web garden. IIS keeps every
 * FastCGI process of a w3wp in that w3wp's job object, and the service a relay starts stays in it,
 * so the service dies with the w3wp whose relay started it. The relays find their service per w3wp
 * (their parent process): the new w3wp's relays start their own service while the old one drains
 * with the old w3wp, and a web garden's w3wps each have their own.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generationKey, locateService } from '../../src/relay/discover.js';
import { CLI, FIXTURES } from '../helpers/corral.js';
import { startIis, type IisEmulator, type IisRequest, type IisResponse } from './emulator.js';
import { running, waitUntil } from './procs.js';

const dirs: string[] = [];
const emulators: IisEmulator[] = [];

afterEach(async () => {
  // stop() exits the w3wps: their jobs take the auto-started services and their workers along.
  await Promise.all(emulators.splice(0).map((e) => e.stop()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** An emulated IIS application with auto-start (no CORRAL_SERVICE), its temp folder private to the test. */
async function site(extra: { maxProcesses?: number } = {}): Promise<{ iis: IisEmulator; dir: string; log: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-recycle-'));
  dirs.push(dir);
  const log = join(dir, 'relay.log');
  const iis = await startIis({
    relayCmd: [process.execPath, CLI, 'relay'],
    appPhysicalPath: FIXTURES,
    w3wp: true,
    maxInstances: 3,
    responseBufferLimit: 0,
    requestTimeoutMs: 90_000,
    env: { TMPDIR: dir, CORRAL_RELAY_LOG: log, CORRAL_LOG_FILE: join(dir, 'service.log'), WSGI_APP: 'recycle_app:application', CORRAL_WORKERS: '2' },
    ...extra,
  });
  emulators.push(iis);
  return { iis, dir, log };
}

function logLines(file: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Resolves once `file` exists (the app's signal; polled, since the app is another process). */
async function until(file: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${file}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A /pause request held open after its first piece ("first <service pid>") reached the client; `release()` lets it finish. */
async function held(iis: IisEmulator, dir: string, name: string, body?: Buffer): Promise<{ done: Promise<IisResponse>; firstPiece: string; release: () => void }> {
  let first: (s: string) => void = () => undefined;
  const firstSeen = new Promise<string>((r) => (first = r));
  let seen = '';
  const req: IisRequest = {
    method: body ? 'POST' : 'GET',
    url: `/pause?dir=${encodeURIComponent(dir)}&name=${name}`,
    onFlush: (p) => {
      seen += p.toString('latin1');
      const m = /first \d+\n/.exec(seen);
      if (m) first(m[0]);
    },
    ...(body ? { body, headers: { 'Content-Type': 'application/octet-stream' } } : {}),
  };
  const done = iis.request(req);
  await until(join(dir, `${name}.sent`));
  const firstPiece = await firstSeen;
  return { done, firstPiece, release: () => writeFileSync(join(dir, `${name}.go`), '') };
}

function body(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) % 251;
  return b;
}

/** POSTs that must come back byte for byte, `n` of them, `width` at a time. */
async function echoLoad(iis: IisEmulator, n: number, width: number, seed: number): Promise<string[]> {
  const problems: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) {
      const k = next++;
      const sent = body(1000 + ((k * 7919) % 150_000), seed + k);
      const r = await iis.request({ method: 'POST', url: '/echo', body: sent, headers: { 'Content-Type': 'application/octet-stream' } });
      if (r.status !== 200 || r.failed || !r.body.equals(sent)) problems.push(`echo ${k}: ${r.status} failed=${r.failed} ${r.body.length}/${sent.length} bytes`);
    }
  }));
  return problems;
}

const servicePid = (r: IisResponse): number => Number(r.body.toString('latin1'));

describe('the auto-started service and IIS worker processes', () => {
  it('survives an overlapped recycle under load: no request lost, each w3wp with its own service, the old one ends with its job', async () => {
    const { iis, dir, log } = await site();
    const [oldW3wp] = iis.w3wpPids;
    const warm = await iis.request({ url: '/ppid' });
    expect(warm.status).toBe(200);
    const oldService = servicePid(warm);
    expect(running(oldService)).toBe(true);

    // In flight on the old w3wp: a streamed response and a POST with a body, both past their first piece.
    const oldGet = await held(iis, dir, 'old-get');
    const oldPost = await held(iis, dir, 'old-post', body(300_000, 1));
    expect(oldGet.firstPiece).toBe(`first ${oldService}\n`);

    // The recycle: a new w3wp takes new requests while the old one finishes its own.
    const recycled = iis.recycle();
    const [newW3wp] = iis.w3wpPids;
    expect(newW3wp).not.toBe(oldW3wp);
    const during = await Promise.all([iis.request({ url: '/ppid' }), iis.request({ url: '/ppid' })]);
    expect(during.map((r) => [r.status, r.failed, r.w3wpPid])).toEqual([[200, false, newW3wp], [200, false, newW3wp]]);
    const newService = servicePid(during[0]!);
    expect(newService).not.toBe(oldService);
    expect(servicePid(during[1]!)).toBe(newService);
    expect(await echoLoad(iis, 12, 2, 100)).toEqual([]);

    // Held open on the new w3wp across the old w3wp's exit, with POSTs running all the while.
    const newGet = await held(iis, dir, 'new-get');
    const newPost = await held(iis, dir, 'new-post', body(200_000, 2));
    expect(newGet.firstPiece).toBe(`first ${newService}\n`);
    let loading = true;
    const background = (async () => {
      const problems: string[] = [];
      for (let round = 0; loading || round === 0; round++) problems.push(...(await echoLoad(iis, 3, 1, 1000 + round * 10)));
      return problems;
    })();

    // The old w3wp's requests end; then it closes its relays and exits, and its job kills the rest.
    oldGet.release();
    oldPost.release();
    const [og, op] = await Promise.all([oldGet.done, oldPost.done]);
    expect([og.status, og.failed, og.body.toString('latin1')]).toEqual([200, false, `first ${oldService}\nsecond 0\n`]);
    expect([op.status, op.failed, op.body.toString('latin1')]).toEqual([200, false, `first ${oldService}\nsecond 300000\n`]);
    const killed = await recycled;
    expect(killed).toContain(oldService);
    expect(running(oldService)).toBe(false);
    expect(running(newService)).toBe(true);

    newGet.release();
    newPost.release();
    const [ng, np] = await Promise.all([newGet.done, newPost.done]);
    loading = false;
    expect(await background).toEqual([]);
    expect([ng.status, ng.failed, ng.body.toString('latin1')]).toEqual([200, false, `first ${newService}\nsecond 0\n`]);
    expect([np.status, np.failed, np.body.toString('latin1')]).toEqual([200, false, `first ${newService}\nsecond 200000\n`]);
    const after = await iis.request({ url: '/ppid' });
    expect([after.status, servicePid(after)]).toEqual([200, newService]);

    // One auto-start per w3wp, each relay naming its w3wp.
    const starts = logLines(log).filter((l) => l.msg === 'auto-started the corral service');
    expect(starts.map((l) => l.servicePid).sort()).toEqual([oldService, newService].sort());
    const relays = logLines(log).filter((l) => l.msg === 'relay started');
    expect(new Set(relays.map((l) => l.w3wp))).toEqual(new Set([String(oldW3wp), String(newW3wp)]));
    expect(iis.counters.failures).toEqual([]);
    expect(iis.counters.stderrBytes).toBe(0);

    // Each w3wp left its lock; the next auto-start removes those whose service is gone.
    const locks = (): string[] => readdirSync(dir).filter((f) => f.endsWith('.sock.lock')).sort();
    const lockOf = (w3wp: number | undefined): string => locks().find((f) => f.includes(`-w${w3wp}-`)) ?? `none for ${w3wp}`;
    const oldLock = lockOf(oldW3wp);
    const newLock = lockOf(newW3wp);
    expect(locks()).toEqual([oldLock, newLock].sort());
    // Killed is not yet gone on Linux: the killed service stays a zombie until init reaps it (on Windows it is gone).
    await waitUntil(() => !existsSync(`/proc/${oldService}`), 60_000, `the old service ${oldService} to be reaped`);
    const third = iis.recycle();
    const [thirdW3wp] = iis.w3wpPids;
    const r3 = await iis.request({ url: '/ppid' });
    expect(r3.status).toBe(200);
    expect(servicePid(r3)).not.toBe(newService);
    expect(await third).toContain(newService);
    expect(locks()).not.toContain(oldLock);
    expect(locks()).toContain(lockOf(thirdW3wp));
    // The second w3wp may have ended too by then (nothing in flight when it was recycled): its lock
    // may go as well; the running w3wp's never.
    const removed = logLines(log).filter((l) => l.msg === 'removed the auto-start locks of ended IIS worker processes').flatMap((l) => l.locks as string[]);
    expect(removed).toContain(oldLock);
    expect(removed).not.toContain(lockOf(thirdW3wp));
    expect(removed.every((f) => f === oldLock || f === newLock)).toBe(true);
  }, 180_000);

  it('gives each w3wp of a web garden (maxProcesses 2) its own service', async () => {
    const { iis, dir } = await site({ maxProcesses: 2 });
    const w3wps = iis.w3wpPids;
    expect(w3wps).toHaveLength(2);
    // Two requests held open at once: one instance in each w3wp.
    const a = await held(iis, dir, 'a');
    const b = await held(iis, dir, 'b');
    a.release();
    b.release();
    const answers = await Promise.all([a.done, b.done]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    expect(new Set(answers.map((r) => r.w3wpPid))).toEqual(new Set(w3wps));
    const services = answers.map((r) => Number(/^first (\d+)/.exec(r.body.toString('latin1'))?.[1]));
    expect(services[0]).not.toBe(services[1]);
    // More load: every answer from a w3wp comes from that w3wp's service.
    const more = await Promise.all(Array.from({ length: 12 }, () => iis.request({ url: '/ppid' })));
    const byW3wp = new Map(answers.map((r, i) => [r.w3wpPid, services[i]]));
    expect(more.every((r) => r.status === 200 && !r.failed)).toBe(true);
    for (const r of more) expect(servicePid(r)).toBe(byW3wp.get(r.w3wpPid));
    expect(iis.counters.failures).toEqual([]);
  }, 120_000);
});

describe('the generation key (which w3wp a default address belongs to)', () => {
  it('is the parent pid with auto-start and no CORRAL_SERVICE, and nothing otherwise', () => {
    expect(generationKey({ APP_POOL_ID: 'Pool' }, 4242)).toBe('4242');
    expect(generationKey({ CORRAL_SERVICE: '\\\\.\\pipe\\corral-myapp' }, 4242)).toBeNull();
    expect(generationKey({ CORRAL_AUTOSTART: '0' }, 4242)).toBeNull();
    expect(generationKey({}, 1)).toBeNull();
  });

  it('goes into the default pipe and socket names, and so into the lock', () => {
    const secret = 'a'.repeat(64);
    const win = locateService({ APP_POOL_ID: 'Pool' }, 'win32', 'C:\\T', secret, '4242');
    expect(win.text).toMatch(/^\\\\\.\\pipe\\corral-Pool-w4242-[0-9a-f]{16}$/);
    expect(win.lockPath).toMatch(/corral-pipe-corral-Pool-w4242-[0-9a-f]{16}\.lock$/);
    expect(locateService({ APP_POOL_ID: 'Pool' }, 'linux', '/tmp', secret, '4242').text).toMatch(/^unix:\/tmp\/corral-Pool-w4242-[0-9a-f]{16}\.sock$/);
    expect(win.otherGenerations?.dir).toBe('C:\\T');
    expect(win.otherGenerations?.match.test(win.lockPath.slice('C:\\T\\'.length).replace('-w4242-', '-w17-'))).toBe(true);
    expect(win.otherGenerations?.match.test(win.lockPath.slice('C:\\T\\'.length).replace('-w4242-', '-wx-'))).toBe(false);
    expect(locateService({ APP_POOL_ID: 'Pool' }, 'win32', 'C:\\T', secret).otherGenerations).toBeUndefined();
    // A long pool name is cut before the generation and the tag, which the lock's name keeps.
    const long = locateService({ APP_POOL_ID: 'P'.repeat(100) }, 'win32', 'C:\\T', secret, '4242');
    expect(long.lockPath).toMatch(new RegExp(`corral-pipe-corral-P{40}-w4242-[0-9a-f]{16}\\.lock$`));
    expect(long.otherGenerations).toBeDefined();
    expect(locateService({ APP_POOL_ID: 'Pool' }, 'win32', 'C:\\T', secret, '4242').text).not.toBe(locateService({ APP_POOL_ID: 'Pool' }, 'win32', 'C:\\T', secret, '4343').text);
  });
});
