// The proxy reads each worker's stdout into reused memory (src/pool/reused-reads.ts) and passes
// responses on as views of it. Whatever is read into that memory next, every response must reach
// its client intact: also one that a stalled client leaves queued in the service while other
// responses stream through the same worker pipes. The web server's connections are read the same
// way: every request body must reach the app intact, also one that waits for a busy worker or
// goes to an app that reads it slowly.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll } from '../helpers/corral.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';

let dir: string | null = null;
afterEach(async () => {
  await stopAll();
  if (dir !== null) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

/** What hello_app's /pattern answers: byte i is (i + seed) % 251. */
function pattern(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = (i + seed) % 251;
  return out;
}

/** Index of the first byte where `got` differs from `want` (-1: equal), for a readable failure. */
function firstDifference(got: Buffer, want: Buffer): number {
  if (got.equals(want)) return -1;
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) if (got[i] !== want[i]) return i;
  return n;
}

/** corral on the proxy path, 2 workers of `threads` threads, on a unix socket in a new directory; once both workers are ready. */
async function startProxy(threads: number): Promise<{ c: ReturnType<typeof startCorral>; sock: string }> {
  dir = mkdtempSync(path.join(tmpdir(), 'corral-reads-'));
  const sock = path.join(dir, 'fcgi.sock');
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--data-plane', 'proxy', '--workers', '2', '--threads', String(threads), '--listen', sock]);
  await c.waitForMsg('app ready');
  let seen = 0;
  await c.waitForLog((l) => l.msg === 'worker ready' && ++seen === 2);
  return { c, sock };
}

describe('proxy: responses read into reused memory', () => {
  it('arrive intact, in every size, while a stalled client keeps two large ones queued in the service', async () => {
    // A unix socket: its small buffers (about 200 KiB) make the service queue most of a large
    // response for a client that does not read, with the views of the read memory in it.
    const { c, sock } = await startProxy(2);

    const slow = await FcgiClient.connect({ path: sock });
    slow.socket.pause();
    const big = 3 << 20;
    const stalled = [1, 2].map((id) => slow.request(id, cgiParams('GET', `/pattern?n=${big}&seed=${id * 17}&piece=65536`)));

    const sizes = [0, 1, 100, 4095, 65535, 65536, 65537, 100_000, 262_147];
    const fast = await Promise.all([0, 1, 2].map(() => FcgiClient.connect({ path: sock })));
    let served = 0;
    let resumed = false;
    await Promise.all(
      fast.map(async (client, k) => {
        for (let j = 0; j < 36; j++) {
          const n = sizes[(j + k) % sizes.length]!;
          const seed = (k * 37 + j * 5) % 251;
          const piece = j % 3 === 0 ? '&piece=4099' : '';
          const r = await client.request(1, cgiParams('GET', `/pattern?n=${n}&seed=${seed}${piece}`));
          expect(r.status).toBe(200);
          expect(firstDifference(r.body, pattern(n, seed)), `n=${n} seed=${seed}${piece}`).toBe(-1);
          // Half of the fast ones while the stalled responses sit queued, half after.
          if (++served === 54 && !resumed) {
            resumed = true;
            slow.socket.resume();
          }
        }
      }),
    );
    const answers = await Promise.all(stalled);
    answers.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(firstDifference(r.body, pattern(big, (i + 1) * 17)), `stalled response ${i + 1}`).toBe(-1);
    });
    for (const client of [slow, ...fast]) client.close();
    expect(c.child.exitCode).toBeNull();
  });

  it('request bodies reach the app intact: waiting for a busy worker, streaming, and to a slow reader', async () => {
    // 2 workers of 1 thread for 5 clients: most requests wait in the queue with the start of their
    // body read; the slow ones keep the service's end of a worker's pipe full.
    const { c, sock } = await startProxy(1);

    const sizes = [0, 1, 40_000, 65_543, 300_001, (1 << 20) + 13, 2_500_000];
    const clients = await Promise.all([0, 1, 2, 3, 4].map(() => FcgiClient.connect({ path: sock })));
    await Promise.all(
      clients.map(async (client, k) => {
        for (let j = 0; j < 5; j++) {
          const n = sizes[(k * 3 + j) % sizes.length]!;
          const seed = (k * 41 + j * 7) % 251;
          const slow = (j + k) % 3 === 0 ? '?slow=1' : '';
          const body = pattern(n, seed);
          const r = await client.request(1, cgiParams('POST', `/sha256${slow}`, { CONTENT_LENGTH: String(n) }), body);
          expect(r.status, `n=${n} seed=${seed}${slow}`).toBe(200);
          expect(r.body.toString(), `n=${n} seed=${seed}${slow}`).toBe(`${createHash('sha256').update(body).digest('hex')} ${n}`);
        }
      }),
    );
    for (const client of clients) client.close();
    expect(c.child.exitCode).toBeNull();
  });
});
