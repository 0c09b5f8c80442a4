/**
 * A log reader that stops reading (a paused `| less`, a stuck collector) must not stop the
 * service: its stdout is made non-blocking, lines wait in the service (bounded) and come out
 * whole and in order once the reader reads again. Before, the service answered about 280
 * requests and then nothing, health checks included, once the pipe's buffer was full.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll } from '../helpers/corral.js';

afterEach(() => stopAll());

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${path.slice(0, 40)}… in 5 s: the service is stalled`)));
    req.on('error', reject);
  });
}

describe('a log reader that stops reading', () => {
  it('costs no request: lines wait and come out whole, in order, once it reads again', async () => {
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'worker_ok:application', '--http', '127.0.0.1:0', '--workers', '1', '--data-plane', 'proxy']);
    const { port } = await c.httpAddress();
    await c.waitForMsg('app ready');
    const before = c.logs.length;
    // Stop reading the service's stdout. Access lines of ~3 KiB (the path is in them): 600 of them
    // are ~1.8 MiB, far more than the socket pair between the two processes holds.
    c.child.stdout!.pause();
    const pad = 'x'.repeat(3000);
    const n = 600;
    for (let i = 0; i < n; i++) expect(await get(port, `/pid?i=${i}&pad=${pad}`)).toBe(200);
    c.child.stdout!.resume();
    await c.waitForLog((l) => l.msg === 'request' && String(l.path).startsWith(`/pid?i=${n - 1}&`));
    const access = c.logs.slice(before).filter((l) => l.msg === 'request');
    expect(access.map((l) => String(l.path).split('&')[0])).toEqual(Array.from({ length: n }, (_, i) => `/pid?i=${i}`));
    expect(c.nonJson).toEqual([]); // no line cut by a partial write
    expect((await c.stop()).code).toBe(0);
  });
});
