/**
 * Issue 5, `corral dev` with real workers: the banner, a broken import answered with a 500 HTML
 * page naming the SyntaxError and the file, a request's exception shown with its message and
 * traceback, and fixes served without restarting `corral dev`. Dev logs are pino-pretty lines,
 * not JSON: these tests wait on the banner (stderr), on pretty lines (stdout) and on responses.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startCorral, stopAll } from '../helpers/corral.js';
import { mark, saveAndReload, startDev as startDevIn, waitForPretty } from '../helpers/dev.js';
import { httpRequest, type HttpAnswer } from '../helpers/e2e.js';
import { AppDir } from '../helpers/reload.js';

const apps: AppDir[] = [];

afterEach(async () => {
  await stopAll();
  for (const a of apps.splice(0)) a.remove();
});

function text(r: HttpAnswer): string {
  return r.body.toString('utf8');
}

/** `corral dev` on a reload test app. */
function startDev(app: AppDir, extra: string[] = []): ReturnType<typeof startDevIn> {
  return startDevIn(app.dir, extra);
}

describe('corral dev', () => {
  it('prints a banner saying what it serves, where, and what it watches; the app answers there', async () => {
    const app = new AppDir('v1');
    apps.push(app);
    const dev = await startDev(app);
    expect(dev.banner).toContain(`corral dev: wsgi:application from ${app.dir}`);
    expect(dev.banner).toMatch(/serving\s+http:\/\/127\.0\.0\.1:\d+\//);
    expect(dev.banner).toContain(`watching   *.py under ${app.dir}`);
    expect(dev.banner).toMatch(/1 worker × 4 threads/);
    // The interpreter as the workers run it: its full path and version, not just "python3".
    expect(dev.banner).toMatch(/python {5}\/\S+ \(Python 3\.\d+\.\d+/);
    // The terminal is not flooded with the resolved settings before the banner (they are at debug level).
    expect(dev.corral.nonJson.some((l) => l.includes('watchFileChangesMask'))).toBe(false);
    const r = await httpRequest(`${dev.url}/`);
    expect(r.status).toBe(200);
    expect(text(r)).toMatch(/^v1 \d+$/);
    // Pretty lines, not JSON.
    expect(dev.corral.logs.filter((l) => typeof l === 'object' && l !== null && 'msg' in l)).toEqual([]);
  });

  it('a broken import gives a 500 HTML page with SyntaxError and the file; fixing it serves the new code without a restart', async () => {
    const app = new AppDir('v1');
    app.writeBroken('v1');
    apps.push(app);
    const dev = await startDev(app);
    const broken = await httpRequest(`${dev.url}/`);
    expect(broken.status).toBe(500);
    expect(broken.headers['content-type']).toMatch(/^text\/html/);
    expect(text(broken)).toContain('SyntaxError');
    expect(text(broken)).toContain('wsgi.py');
    expect(text(broken)).toMatch(/line 4/);

    await saveAndReload(dev, () => app.write('v2'));
    const fixed = await httpRequest(`${dev.url}/`);
    expect(fixed.status).toBe(200);
    expect(text(fixed)).toMatch(/^v2 \d+$/);

    // Broken again while serving: dev shows the error rather than yesterday's code...
    const from = mark(dev.corral);
    app.writeBroken('v3');
    await waitForPretty(dev.corral, /: pool failed/, from);
    const again = await httpRequest(`${dev.url}/`);
    expect(again.status).toBe(500);
    expect(text(again)).toContain('SyntaxError');
    expect(text(again)).toContain('wsgi.py');
    // In the terminal the traceback is one ERROR record named by its exception, not a line per frame.
    expect(dev.corral.nonJson.some((l) => /ERROR.*worker traceback: SyntaxError/.test(l))).toBe(true);
    expect(dev.corral.nonJson.some((l) => /^\s+line: ".*File \\"/.test(l))).toBe(false);
    // ...and the next fix is served.
    await saveAndReload(dev, () => app.write('v4'));
    const refixed = await httpRequest(`${dev.url}/`);
    expect(refixed.status).toBe(200);
    expect(text(refixed)).toMatch(/^v4 \d+$/);

    // All of it in one corral dev process.
    expect(dev.corral.child.exitCode).toBeNull();
    expect(dev.corral.nonJson.filter((l) => /: corral starting$/.test(l))).toHaveLength(1);
  });

  it("an exception in a request shows its message and traceback as HTML; an edit changes it without a restart", async () => {
    const app = new AppDir('v1');
    apps.push(app);
    const dev = await startDev(app);
    const boom = await httpRequest(`${dev.url}/boom`);
    expect(boom.status).toBe(500);
    expect(boom.headers['content-type']).toMatch(/^text\/html/);
    const page = text(boom);
    expect(page).toContain('ValueError');
    expect(page).toContain('boom from version v1');
    expect(page).toContain('Traceback (most recent call last)');
    // The frame that raised: the app's file and the line of the raise.
    expect(page).toMatch(/wsgi\.py(&quot;|&#34;|&#x27;|&#39;|"|')?, line 9/);
    expect(page).toContain('raise ValueError(');

    await saveAndReload(dev, () => app.write('v2'));
    const boom2 = await httpRequest(`${dev.url}/boom`);
    expect(boom2.status).toBe(500);
    expect(text(boom2)).toContain('boom from version v2');
    const ok = await httpRequest(`${dev.url}/`);
    expect(text(ok)).toMatch(/^v2 \d+$/);
    expect(dev.corral.child.exitCode).toBeNull();
  });

  it('a fix saved while the failed app is being retried is served once it boots (the retry failing must not cancel it)', async () => {
    // A large app: its import takes a while, and the broken version fails 1 s into it.
    const app = new AppDir('v1');
    app.writeText('import sys, time\nsys.stderr.write("importing the broken version\\n")\ntime.sleep(1)\nraise RuntimeError("config missing")\n');
    apps.push(app);
    const dev = await startDev(app);
    await waitForPretty(dev.corral, /: pool failed/);
    const broken = await httpRequest(`${dev.url}/`);
    expect(broken.status).toBe(500);
    expect(text(broken)).toContain('config missing');
    // The pool retries the broken code by itself (after failedRetryMs); the fix lands while that
    // retry is importing the broken code, and boots more slowly than the retry takes to fail.
    const from = mark(dev.corral);
    await waitForPretty(dev.corral, /: retrying failed pool$/, from, 15_000);
    await waitForPretty(dev.corral, /importing the broken version/, from);
    app.write('v2', 2);
    await waitForPretty(dev.corral, /: reload done$/, from, 8_000);
    const fixed = await httpRequest(`${dev.url}/`);
    expect(fixed.status, text(fixed).slice(0, 300)).toBe(200);
    expect(text(fixed)).toMatch(/^v2 \d+$/);
  });

  it("a failed pool's retries that fail the same way print the traceback once, and the pool record does not repeat it escaped", async () => {
    const app = new AppDir('v1');
    app.writeText('raise RuntimeError("config missing")\n');
    apps.push(app);
    const dev = await startDev(app);
    await waitForPretty(dev.corral, /: pool failed/);
    await waitForPretty(dev.corral, /worker failed to boot again, same traceback: RuntimeError: config missing$/, 0, 20_000);
    expect(dev.corral.nonJson.filter((l) => /ERROR.*worker traceback: RuntimeError: config missing/.test(l))).toHaveLength(1);
    expect(dev.corral.nonJson.some((l) => /^\s+traceback: "Traceback/.test(l))).toBe(false);
  });

  it('serve mode never shows the traceback to the client: a plain 500', async () => {
    const app = new AppDir('v1');
    apps.push(app);
    const corral = startCorral(['serve', app.dir, '--http', '127.0.0.1:0', '--workers', '1']);
    const { host, port } = await corral.httpAddress();
    await corral.waitForMsg('app ready');
    const boom = await httpRequest(`http://${host}:${port}/boom`);
    expect(boom.status).toBe(500);
    expect(boom.headers['content-type']).not.toMatch(/html/);
    expect(text(boom)).not.toContain('boom from version');
    expect(text(boom)).not.toContain('Traceback');
    expect(boom.headers['x-corral-error']).toBe('CORRAL_APP_EXCEPTION');
    // The traceback goes to the log instead.
    await corral.waitForLog((l) => typeof l.line === 'string' && l.line.includes('boom from version v1'));
    // The dev page's generation poll is `corral dev`'s alone: in serve the path is the app's.
    const poll = await httpRequest(`http://${host}:${port}/.corral/dev/generation`);
    expect(text(poll)).toMatch(/^v1 \d+$/);
  });
});
