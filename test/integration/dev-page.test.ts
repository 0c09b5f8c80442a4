/**
 * Issue 14: the one dev error page, in headless Chromium against real `corral dev` processes. The
 * four cases of the issue (import error, syntax error, a view's exception, an exception in a
 * generator after the response started) are screenshotted to test/artifacts/dev-*.png, each with
 * the app's frame first and its source line shown; the page reloads itself once the fix is saved;
 * a Flask view's exception reaches the page; past the hold-back cap a marker ends the HTML.
 */
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startCorral, stopAll } from '../helpers/corral.js';
import { FcgiClient, cgiParams } from '../helpers/fcgi-client.js';
import { freePort } from '../helpers/nginx.js';
import { CHROMIUM, closeBrowser, newPage, screenshot } from '../helpers/browser.js';
import { startDev, waitForPretty } from '../helpers/dev.js';
import { AppDir } from '../helpers/reload.js';

const dirs: string[] = [];
const pages: Page[] = [];

afterEach(async () => {
  for (const p of pages.splice(0)) await p.context().close();
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(closeBrowser);

/** A temp app dir with wsgi.py = `source`. */
function appDir(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'corral-devpage-'));
  writeFileSync(join(dir, 'wsgi.py'), source);
  dirs.push(dir);
  return dir;
}

async function open(url: string): Promise<{ page: Page; status: number; code: string | undefined; csp: string | undefined }> {
  const page = await newPage();
  pages.push(page);
  const r = await page.goto(url);
  const headers = r?.headers() ?? {};
  return { page, status: r?.status() ?? 0, code: headers['x-corral-error'], csp: headers['content-security-policy'] };
}

/** The page's first frame is the app's, and its marked line is `line`. */
async function expectAppFrameFirst(page: Page, line: string | RegExp): Promise<void> {
  const first = page.locator('main .frame').first();
  expect(await first.getAttribute('class')).toMatch(/\bapp\b/);
  expect(await first.isVisible()).toBe(true);
  const hit = first.locator('.ln.hit');
  expect(await hit.isVisible()).toBe(true);
  const text = await hit.innerText();
  if (typeof line === 'string') expect(text).toContain(line);
  else expect(text).toMatch(line);
}

const GENERATOR_APP = `"""An HTML page produced by a generator that fails part way."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    if environ["PATH_INFO"] == "/big":
        return big_rows()
    return rows()


def rows():
    yield b"<h1>Orders</h1>"
    for n in range(3):
        yield b"<p>order %d</p>" % n
    total = sum(n for n in range(3))
    raise RuntimeError("the totals row broke at %d" % total)


def big_rows():
    yield b"<h1>Big</h1>" + b"x" * (1100 * 1024)
    raise RuntimeError("broke after a megabyte")
`;

describe.skipIf(CHROMIUM === null)('the dev error page in a browser', () => {
  it('import error: ModuleNotFoundError, the import line of the app first', async () => {
    const dev = await startDev(appDir('"""An app whose import fails."""\nimport os\n\nLIMIT = 3\nimport corral_no_such_module\n'));
    const { page, status, code, csp } = await open(`${dev.url}/`);
    expect(status).toBe(500);
    expect(code).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(csp).toMatch(/default-src 'none'/);
    expect(await page.locator('header h1').innerText()).toBe('ModuleNotFoundError');
    await expectAppFrameFirst(page, 'import corral_no_such_module');
    // corral's and importlib's frames are there, folded.
    const folded = page.locator('details.folded').first();
    expect(await folded.getAttribute('open')).toBeNull();
    expect(await folded.locator('summary').innerText()).toMatch(/frames of .*(corral|importlib)/);
    await screenshot(page, 'dev-import-error');
  });

  it('syntax error: the file, line and caret', async () => {
    const app = new AppDir('v1');
    dirs.push(app.dir);
    app.writeBroken('v1');
    const dev = await startDev(app.dir);
    const { page, status, code } = await open(`${dev.url}/`);
    expect(status).toBe(500);
    expect(code).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(await page.locator('header h1').innerText()).toBe('SyntaxError');
    await expectAppFrameFirst(page, 'def application(environ, start_response)');
    expect(await page.locator('main .frame').first().locator('.where').innerText()).toContain(`${app.file}:4`);
    expect(await page.locator('.ln.caret').innerText()).toMatch(/\^/);
    await screenshot(page, 'dev-syntax-error');
  });

  it("a view's exception: the raising line, locals and the request", async () => {
    const app = new AppDir('v1');
    dirs.push(app.dir);
    const dev = await startDev(app.dir);
    const { page, status, code } = await open(`${dev.url}/boom?x=<1>`);
    expect(status).toBe(500);
    expect(code).toBe('CORRAL_APP_EXCEPTION');
    expect(await page.locator('header h1').innerText()).toBe('ValueError');
    expect(await page.locator('header .msg').innerText()).toBe('boom from version v1');
    await expectAppFrameFirst(page, 'raise ValueError("boom from version " + VERSION)');
    expect(await page.locator('main .frame').first().locator('.locals').innerText()).toContain('environ');
    expect(await page.locator('section.request').innerText()).toContain('GET /boom?x=%3C1%3E');
    await screenshot(page, 'dev-view-exception');
  });

  it('an exception in a generator after the response started: the held-back page is replaced by the error page', async () => {
    const dev = await startDev(appDir(GENERATOR_APP));
    const { page, status, code } = await open(`${dev.url}/`);
    expect(status).toBe(500);
    expect(code).toBe('CORRAL_APP_EXCEPTION');
    expect(await page.locator('header .msg').innerText()).toBe('the totals row broke at 3');
    await expectAppFrameFirst(page, 'raise RuntimeError("the totals row broke at %d" % total)');
    expect(await page.locator('main .frame').first().locator('.locals').innerText()).toMatch(/total\s+3/);
    await screenshot(page, 'dev-generator-exception');
  });

  it('reloads itself once the fix is saved', async () => {
    const app = new AppDir('v1');
    dirs.push(app.dir);
    app.writeBroken('v1');
    const dev = await startDev(app.dir);
    const { page } = await open(`${dev.url}/`);
    expect(await page.locator('header h1').innerText()).toBe('SyntaxError');
    // The page is polling (its script runs under the CSP): it says it waits.
    await page.waitForFunction(() => /save a fix|save it/.test(document.getElementById('live')?.textContent ?? ''));
    app.write('v2');
    await page.waitForFunction(() => /^v2 \d+$/.test(document.body.innerText.trim()), null, { timeout: 20_000 });
  });

  it("a Flask view's exception reaches the page (PROPAGATE_EXCEPTIONS in dev)", async () => {
    const dir = appDir(
      '"""A Flask app whose view raises."""\nfrom flask import Flask\n\napplication = Flask(__name__)\n\n\n@application.route("/")\ndef index():\n    items = {"a": 1}\n    return str(items["missing"])\n',
    );
    const dev = await startDev(dir, ['--python', '/usr/bin/python3']);
    const { page, status, code } = await open(`${dev.url}/`);
    expect(status).toBe(500);
    expect(code).toBe('CORRAL_APP_EXCEPTION');
    expect(await page.locator('header h1').innerText()).toBe('KeyError');
    await expectAppFrameFirst(page, 'return str(items["missing"])');
    // Flask's own frames are folded as a library's.
    expect(await page.locator('details.folded summary').allInnerTexts()).toEqual(expect.arrayContaining([expect.stringMatching(/libraries/)]));
  });
});

describe('without a browser', () => {
  it('behind a FastCGI web server (corral dev --listen) a request exception gets the same page, rendered by the front', async () => {
    const app = new AppDir('v1');
    dirs.push(app.dir);
    const port = await freePort();
    const corral = startCorral(['dev', app.dir, '--listen', `127.0.0.1:${port}`], { env: { PYTHONDONTWRITEBYTECODE: undefined } });
    await waitForPretty(corral, /\bINFO\b.*: watching files$/);
    const c = await FcgiClient.connect({ host: '127.0.0.1', port });
    try {
      const r = await c.request(1, cgiParams('GET', '/boom'));
      expect(r.status).toBe(500);
      const head = new Map(r.headers.map(([n, v]) => [n.toLowerCase(), v]));
      expect(head.get('content-type')).toBe('text/html; charset=utf-8');
      expect(head.get('x-corral-error')).toBe('CORRAL_APP_EXCEPTION');
      expect(head.get('content-security-policy')).toMatch(/default-src 'none'/);
      const text = r.body.toString('utf8');
      expect(text).toContain('<h1>ValueError</h1>');
      expect(text).toContain('raise ValueError(&#34;boom from version &#34; + VERSION)');
      // No generation poll there: that path is the HTTP front's.
      expect(text).not.toContain('<script');
    } finally {
      c.close();
    }
  });


  it("a worker that dies mid-request: the crash page shows the worker's last stderr lines", async () => {
    const dir = appDir(
      '"""Dies on any request after a word on stderr."""\nimport os\nimport sys\n\n\ndef application(environ, start_response):\n    sys.stderr.write("native library says: corrupted heap\\n")\n    sys.stderr.flush()\n    os._exit(7)\n',
    );
    const port = await freePort();
    const corral = startCorral(['dev', dir, '--listen', `127.0.0.1:${port}`]);
    await waitForPretty(corral, /\bINFO\b.*: watching files$/);
    const c = await FcgiClient.connect({ host: '127.0.0.1', port });
    try {
      const r = await c.request(1, cgiParams('GET', '/crash'));
      expect(r.status).toBe(502);
      expect(new Map(r.headers.map(([n, v]) => [n.toLowerCase(), v])).get('x-corral-error')).toBe('CORRAL_WORKER_LOST');
      const text = r.body.toString('utf8');
      expect(text).toContain('exited (exit code 7) during the request');
      expect(text).toContain('native library says: corrupted heap');
    } finally {
      c.close();
    }
  });

  it('past the hold-back cap, an HTML response that raises after 1 MiB streams on and ends with a visible marker', async () => {
    const dev = await startDev(appDir(GENERATOR_APP));
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get(`${dev.url}/big`, (res) => {
          expect(res.statusCode).toBe(200);
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          // The response is cut (the app failed mid-body): what arrived counts.
          const done = (): void => resolve(Buffer.concat(chunks).toString('utf8'));
          res.on('end', done);
          res.on('aborted', done);
          res.on('error', done);
          res.on('close', done);
        })
        .on('error', reject);
    });
    expect(body.startsWith('<h1>Big</h1>')).toBe(true);
    expect(body).toMatch(/corral dev:<\/b> the app raised RuntimeError: broke after a megabyte after this response had started/);
  });
});
