/**
 * Streaming through IIS: the handler's responseBufferLimit (4 MiB by default) holds a streamed
 * response back until that many bytes or its end; responseBufferLimit="0", as the templates in
 * config/iis set it, lets each piece through as the app yields it. Emulator + relay + a real service.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, FIXTURES, ROOT, startCorral, stopAll } from '../helpers/corral.js';
import { IIS_RESPONSE_BUFFER_LIMIT, startIis, type IisEmulator, type IisResponse } from './emulator.js';

const dirs: string[] = [];
const emulators: IisEmulator[] = [];

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.stop()));
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A service for streaming_app.py and an emulated IIS application in front of it. */
async function site(responseBufferLimit?: number): Promise<{ iis: IisEmulator; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-stream-'));
  dirs.push(dir);
  const sock = join(dir, 'corral.sock');
  // The proxy path, as for every service IIS relays talk to: the relay speaks to the service, not to
  // a worker (one a relay starts has allowedRoots, and Windows always takes the proxy path).
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'streaming_app:application', '--workers', '1', '--listen', sock, '--data-plane', 'proxy']);
  await c.waitForMsg('app ready');
  const iis = await startIis({
    relayCmd: [process.execPath, CLI, 'relay'],
    appPhysicalPath: FIXTURES,
    maxInstances: 1,
    env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: join(dir, 'relay.log'), CORRAL_AUTOSTART: '0' },
    ...(responseBufferLimit === undefined ? {} : { responseBufferLimit }),
  });
  emulators.push(iis);
  return { iis, dir };
}

/** Resolves once `file` exists (the app's signal; polled, since the app is another process). */
async function until(file: string): Promise<void> {
  while (!existsSync(file)) await new Promise((r) => setTimeout(r, 10));
}

/** Resolves with the text the client has received once it contains `needle`. */
function arrival(pieces: Buffer[], needle: string): { piece: (p: Buffer) => void; seen: Promise<string> } {
  let resolve: (s: string) => void = () => undefined;
  const seen = new Promise<string>((r) => (resolve = r));
  return {
    piece: (p) => {
      pieces.push(p);
      const text = Buffer.concat(pieces).toString('latin1');
      if (text.includes(needle)) resolve(text);
    },
    seen,
  };
}

describe('a streamed response through IIS', () => {
  it('with responseBufferLimit="0" reaches the client piece by piece, the first before the app finished', async () => {
    const { iis, dir } = await site(0);
    const pieces: Buffer[] = [];
    const first = arrival(pieces, 'first\n');
    let finished = false;
    const response = iis.request({ url: `/pause?dir=${encodeURIComponent(dir)}`, onFlush: first.piece }).then((r) => ((finished = true), r));
    // The app yields "second" only after the test creates D/go, which it does only now.
    const soFar = await first.seen;
    expect(soFar).not.toContain('second');
    expect(finished).toBe(false);
    writeFileSync(join(dir, 'go'), '');
    const r: IisResponse = await response;
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('first\nsecond\n');
    expect(r.flushes.length).toBeGreaterThanOrEqual(2);
    expect(Buffer.concat(pieces).toString('latin1')).toMatch(/first\nsecond\n$/);
  }, 60_000);

  it('with IIS\'s default responseBufferLimit (4 MiB) stalls: nothing reaches the client until the response ends', async () => {
    const { iis, dir } = await site();
    expect(iis.responseBufferLimit).toBe(IIS_RESPONSE_BUFFER_LIMIT);
    const pieces: Buffer[] = [];
    const response = iis.request({ url: `/pause?dir=${encodeURIComponent(dir)}`, onFlush: (p) => pieces.push(p) });
    // The app has handed over its first piece and now waits for us: the client has seen nothing.
    await until(join(dir, 'sent-first'));
    expect(pieces).toEqual([]);
    writeFileSync(join(dir, 'go'), '');
    const r = await response;
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('first\nsecond\n');
    // One piece, at the end, with both chunks in it.
    expect(r.flushes).toHaveLength(1);
    expect(pieces[0]!.toString('latin1')).toMatch(/first\nsecond\n$/);
  }, 60_000);

  it('a 10 MB streamed response arrives in small pieces with 0, and in 4 MiB pieces with the default', async () => {
    const n = 10_000_000;
    const unbuffered = await site(0);
    const a = await unbuffered.iis.request({ url: `/big?n=${n}` });
    expect(a.status).toBe(200);
    expect(a.body.length).toBe(n);
    expect(a.flushes.length).toBeGreaterThan(10);
    expect(a.flushes[0]!).toBeLessThan(1024 * 1024);

    const buffered = await site();
    const b = await buffered.iis.request({ url: `/big?n=${n}` });
    expect(b.status).toBe(200);
    expect(b.body.length).toBe(n);
    // Two full buffers, then the rest at the end.
    expect(b.flushes.length).toBeLessThanOrEqual(3);
    expect(b.flushes[0]!).toBeGreaterThanOrEqual(IIS_RESPONSE_BUFFER_LIMIT);
    expect(b.flushes.slice(0, -1).every((s) => s >= IIS_RESPONSE_BUFFER_LIMIT)).toBe(true);
  }, 120_000);

  it('the templates turn IIS\'s buffering off on every handler they add', () => {
    const webConfig = readFileSync(join(ROOT, 'config/iis/web.config'), 'utf8');
    const handlers = [...webConfig.matchAll(/<add name="corral"[^>]*>/g)].map((m) => m[0]);
    expect(handlers).toHaveLength(1);
    expect(handlers[0]).toContain('responseBufferLimit="0"');
    const appcmd = readFileSync(join(ROOT, 'config/iis/appcmd.txt'), 'utf8');
    const adds = appcmd.split('\n').filter((l) => l.includes('system.webServer/handlers /+'));
    expect(adds.length).toBeGreaterThan(0);
    for (const l of adds) expect(l).toContain("responseBufferLimit='0'");
  });
});
