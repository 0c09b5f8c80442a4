/**
 * Issue 6, "the status page is tested in a real browser": headless Chromium (Debian `chromium`)
 * loads /status of a service with two real workers and a failed reload (so the page shows an
 * error with its traceback); the test asserts on the DOM Chromium built, and keeps the
 * screenshot as test/artifacts/status-page.png.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ARTIFACTS, CHROMIUM, closeBrowser, newPage } from '../helpers/browser.js';
import { controlCall, startTestService, stopServices } from '../helpers/control.js';
import { httpRequest } from '../helpers/e2e.js';
import { AppDir } from '../helpers/reload.js';

const cleanup: Array<() => void> = [];
afterEach(async () => {
  await stopServices();
  for (const c of cleanup.splice(0)) c();
});
afterAll(closeBrowser);

describe('status page in headless Chromium', () => {
  it.skipIf(CHROMIUM === null)('shows the app, its workers and the last reload error; the screenshot is kept', async () => {
    const app = new AppDir('A');
    cleanup.push(() => app.remove());
    const t = await startTestService([app.dir, '--workers', '2', '--threads', '2'], { waitWorkers: 2 });
    for (let i = 0; i < 5; i++) expect((await httpRequest(`${t.httpUrl}/`)).status).toBe(200);
    // A reload whose code does not compile: the old generation keeps serving, the page shows why.
    app.writeBroken('B');
    const reload = await controlCall(t, 'POST', '/reload', { token: true });
    expect(reload.status).toBe(500);
    // The failed generation's other worker is killed; wait until only the serving ones are left.
    await t.logs.until(() => t.service.pool.workers.every((w) => w.generation === 1), 'failed generation gone');
    const pids = t.service.pool.workers.map((w) => w.pid);
    expect(pids).toHaveLength(2);
    // The token as ?token= (a browser cannot send the header): directories and tracebacks are shown only with it.
    const url = `${t.controlUrl}/status?token=${t.token}`;

    const page = await newPage(1280, 900);
    await page.goto(url);
    const dom = await page.content();
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(join(ARTIFACTS, 'status-page.dom.html'), dom);
    expect(dom).toContain('<h1>corral status</h1>');
    expect(dom).toContain('data-app="wsgi:application"');
    expect(dom).toContain(app.dir);
    expect(dom).toContain('data-state="running"');
    for (const pid of pids) expect(dom).toMatch(new RegExp(`<tr class="worker" data-pid="${pid}"><td>${pid}</td><td>1</td>`));
    expect(dom).toContain('Last reload failed');
    expect(dom).toContain('SyntaxError');

    const png = join(ARTIFACTS, 'status-page.png');
    rmSync(png, { force: true });
    await page.screenshot({ path: png }); // the viewport, not the full page
    const bytes = readFileSync(png);
    expect(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'PNG signature').toBe(true);
    // IHDR: width and height as asked.
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([1280, 900]);
    expect(statSync(png).size).toBeGreaterThan(20_000);
  });
});
