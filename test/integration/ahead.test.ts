// On the proxy path the service gives a busy worker of a fast app one request ahead of a free
// thread (src/pool/pool.ts, AHEAD), so the worker finds it in its pipe when it ends the one it
// runs. With real workers: the request runs after the one before it, whole (a body too), shows on
// the status page as given but not running, waits behind it (access log), and a client that gives
// up on it before it runs costs nothing else.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { StatusDocument } from '../../src/control/snapshot.js';
import { FIXTURES, showLogOnFailure, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { httpRequest } from '../helpers/e2e.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';

let dir: string | null = null;
afterEach(async () => {
  await stopAll();
  if (dir !== null) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

/** corral on the proxy path, one worker of `threads` threads, on a unix socket, with a control listener; once ready. */
async function start(threads: number): Promise<{ c: CorralProcess; sock: string; control: string }> {
  dir = mkdtempSync(path.join(tmpdir(), 'corral-ahead-'));
  const sock = path.join(dir, 'fcgi.sock');
  const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--data-plane', 'proxy', '--workers', '1', '--threads', String(threads), '--listen', sock, '--control', '127.0.0.1:0'], {
    env: { ...process.env, CORRAL_CONTROL_TOKEN_FILE: path.join(dir, 'control.token') },
  });
  showLogOnFailure(c);
  const ready = await c.waitForMsg('control listener ready');
  await c.waitForMsg('app ready');
  return { c, sock, control: `http://${String(ready.control)}` };
}

/** The app's figures in the status document: requests waiting (`queued`) and its one worker's row. */
async function figures(control: string): Promise<{ queued: number; worker: StatusDocument['apps'][number]['workers'][number] }> {
  const doc = JSON.parse((await httpRequest(`${control}/status.json`)).body.toString()) as StatusDocument;
  return { queued: doc.apps[0]!.queued, worker: doc.apps[0]!.workers[0]! };
}

/** The figures once a request waits on the busy worker (given ahead), or the last ones seen. */
async function oneAhead(control: string): Promise<Awaited<ReturnType<typeof figures>>> {
  let f = await figures(control);
  for (let i = 0; i < 50 && f.queued < 1; i++) f = await figures(control);
  return f;
}

/** Shows the pool the app is fast: a few quick requests, one after the other. */
async function warm(client: FcgiClient): Promise<void> {
  for (let i = 0; i < 5; i++) expect((await client.request(1, cgiParams('GET', '/'))).status).toBe(200);
}

describe('proxy: a request given ahead of a busy worker', () => {
  it('runs after the one before it, body intact, waiting behind it; the next waits in the queue', async () => {
    const { c, sock, control } = await start(1);
    const client = await FcgiClient.connect({ path: sock });
    await warm(client);

    // One connection, requests sent together (the service multiplexes): the first runs, the
    // second goes ahead of it (the first is 0 ms old).
    const body = Buffer.alloc(300_001, 7);
    const first = client.request(1, cgiParams('GET', '/sleep?s=0.6'));
    const second = client.request(2, cgiParams('POST', '/sha256', { CONTENT_LENGTH: String(body.length) }), body);

    // While the first sleeps: it runs on the worker's one thread; the second waits on the worker.
    const f = await oneAhead(control);
    expect(f.queued).toBe(1);
    expect(f.worker.inflight).toBe(1);
    expect(f.worker.current).toHaveLength(1);
    // One more now waits in the queue (a worker gets one ahead, no more).
    const other = await FcgiClient.connect({ path: sock });
    const third = other.request(1, cgiParams('GET', '/'));

    const [a, b, d] = await Promise.all([first, second, third]);
    expect(a.body.toString()).toBe('slept 0.6');
    expect(b.body.toString()).toBe(`${createHash('sha256').update(body).digest('hex')} ${body.length}`);
    expect(d.status).toBe(200);

    // The access log: the second waited for the first (on the worker), the third in the queue.
    // (Access lines are batched: wait for them.)
    const post = await c.waitForLog((l) => l.kind === 'access' && l.path === '/sha256');
    expect(Number(post.queueMs)).toBeGreaterThan(400);
    await c.waitForLog((l) => l.kind === 'access' && l.path === '/' && Number(l.queueMs) > 200);
    client.close();
    other.close();
    expect(c.child.exitCode).toBeNull();
  });

  it('is not run when its client aborts it before it starts, and costs nothing else', async () => {
    const { c, sock, control } = await start(1);
    const client = await FcgiClient.connect({ path: sock });
    await warm(client);

    const first = client.request(1, cgiParams('GET', '/sleep?s=0.5'));
    const aborted = client.request(2, cgiParams('GET', '/print'));
    expect((await oneAhead(control)).queued).toBe(1);
    client.abort(2); // the service passes the ABORT on to the worker, which has not started it
    expect((await first).body.toString()).toBe('slept 0.5');
    const r = await aborted;
    expect(r.body.toString()).not.toBe('printed');

    // The worker serves on; /print now runs once, and its line is the only one in the log
    // (the worker's stderr keeps its order: had the aborted one run, its line would come first).
    expect((await client.request(3, cgiParams('GET', '/print'))).body.toString()).toBe('printed');
    await c.waitForLog((l) => String(l.line).includes('PRINTED-TO-STDOUT'));
    expect(c.logs.filter((l) => String(l.line).includes('PRINTED-TO-STDOUT'))).toHaveLength(1);
    const end = await figures(control);
    expect([end.queued, end.worker.inflight]).toEqual([0, 0]);
    client.close();
    expect(c.child.exitCode).toBeNull();
  });
});
