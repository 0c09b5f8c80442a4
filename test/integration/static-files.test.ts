/**
 * `--static /static/=DIR` (repeatable): the HTTP front serves those files itself (below the
 * mount), as Django's runserver serves STATIC_URL, in `corral dev` and `corral serve --http`, and
 * nothing outside DIR, however the path is spelled; other paths go to the app.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll } from '../helpers/corral.js';
import { startDev, type Dev } from '../helpers/dev.js';
import { httpRequest } from '../helpers/e2e.js';

let top: string;
let dev: Dev;

/** One request with the path sent exactly as written (no client-side normalisation); the status line's code. */
function rawStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.end(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    let head = '';
    s.setEncoding('latin1');
    s.on('data', (t: string) => (head += t));
    s.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)));
    s.on('error', reject);
  });
}

beforeAll(async () => {
  top = realpathSync(mkdtempSync(join(tmpdir(), 'corral-devstatic-')));
  mkdirSync(join(top, 'static', 'css'), { recursive: true });
  writeFileSync(join(top, 'static', 'css', 'site.css'), 'body { color: teal }\n');
  writeFileSync(join(top, 'secret.txt'), 'outside the static dir\n');
  symlinkSync(join(top, 'secret.txt'), join(top, 'static', 'out.txt'));
  mkdirSync(join(top, 'media'));
  writeFileSync(join(top, 'media', 'a.txt'), 'media file\n');
  dev = await startDev(FIXTURES, ['--wsgi-app', 'hello_app:application', '--mount', '/app', '--static', `/static/=${join(top, 'static')}`, '--static', `/static/media=${join(top, 'media')}`]);
});

afterAll(async () => {
  await stopAll();
  rmSync(top, { recursive: true, force: true });
});

describe('corral dev --static', () => {
  it('serves a file below the mount with its type, length, ETag and Last-Modified; HEAD without the body; 304 when unchanged', async () => {
    const r = await httpRequest(`${dev.url}/app/static/css/site.css`);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('body { color: teal }\n');
    expect(r.headers).toMatchObject({ 'content-type': 'text/css; charset=utf-8', 'content-length': '21', 'cache-control': 'no-cache' });
    expect(String(r.headers.etag)).toMatch(/^W\/"15-[0-9a-f]+"$/);
    const head = await httpRequest(`${dev.url}/app/static/css/site.css`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(head.headers.etag).toBe(r.headers.etag);
    const again = await httpRequest(`${dev.url}/app/static/css/site.css`, { headers: { 'if-modified-since': String(r.headers['last-modified']) } });
    expect(again.status).toBe(304);
    const tagged = await httpRequest(`${dev.url}/app/static/css/site.css`, { headers: { 'if-none-match': String(r.headers.etag) } });
    expect(tagged.status).toBe(304);
    expect(tagged.headers.etag).toBe(r.headers.etag);
    // A stale tag wins over a fresh date: the file is sent.
    const stale = await httpRequest(`${dev.url}/app/static/css/site.css`, { headers: { 'if-none-match': 'W/"0-0"', 'if-modified-since': String(r.headers['last-modified']) } });
    expect(stale.status).toBe(200);
    expect(stale.body.toString()).toBe('body { color: teal }\n');
  });

  it('takes the longest matching URL path when mappings nest', async () => {
    const r = await httpRequest(`${dev.url}/app/static/media/a.txt`);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('media file\n');
  });

  it('answers 404 for anything outside the directory however it is spelled, and 405 for POST', async () => {
    const port = Number(new URL(dev.url).port);
    for (const p of ['/app/static/../../secret.txt', '/app/static/%2e%2e/%2e%2e/secret.txt', '/app/static/..%2f..%2fsecret.txt', '/app/static/..%5c..%5csecret.txt', '/app/static/out.txt', '/app/static/nope.css', '/app/static/css'])
      expect(await rawStatus(port, p), p).toBe(404);
    const post = await httpRequest(`${dev.url}/app/static/css/site.css`, { method: 'POST', body: Buffer.from('x') });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('leaves every other path to the app, under the mount', async () => {
    const r = await httpRequest(`${dev.url}/app/env`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString())).toMatchObject({ SCRIPT_NAME: '/app', PATH_INFO: '/env' });
    expect((await httpRequest(`${dev.url}/app/staticky`)).body.toString()).toBe('not found');
  });

  it('corral serve --http serves them too (also by the old --dev-static spelling); other paths reach the app', async () => {
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '1', '--http', '127.0.0.1:0', '--dev-static', `/static=${join(top, 'static')}`]);
    const { port } = await c.httpAddress();
    await c.waitForMsg('app ready');
    const r = await httpRequest(`http://127.0.0.1:${port}/static/css/site.css`);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('body { color: teal }\n');
    expect(await rawStatus(port, '/static/../secret.txt')).toBe(404);
    const app = await httpRequest(`http://127.0.0.1:${port}/env`);
    expect(JSON.parse(app.body.toString())).toMatchObject({ SCRIPT_NAME: '', PATH_INFO: '/env' });
  });
});
