/**
 * Headless Chromium (Debian's `chromium`) driven by playwright-core, for tests of the pages people
 * look at: screenshots kept under test/artifacts/, DOM assertions, clicks, pages that reload
 * themselves. playwright-core never downloads a browser; `CHROMIUM` is null where Debian's is
 * missing, and such tests skip with that reason.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium as playwright, type Browser, type Page } from 'playwright-core';
import { ROOT } from './corral.js';

export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p)) ?? null;
export const ARTIFACTS = join(ROOT, 'test', 'artifacts');

let shared: Browser | null = null;

/** One browser per test file (launching costs ~0.5 s); close it with `closeBrowser` in afterAll. */
export async function browser(): Promise<Browser> {
  if (CHROMIUM === null) throw new Error('Debian chromium is not installed (apt-get install chromium)');
  shared ??= await playwright.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI containers: Chromium refuses to start sandboxed as root. The rest keeps it off the
    // closed network (it would otherwise try Google's hosts at every start).
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return shared;
}

export async function closeBrowser(): Promise<void> {
  const b = shared;
  shared = null;
  await b?.close();
}

/** A fresh page (its own context: no cookies shared between tests) of the given viewport size. */
export async function newPage(width = 1200, height = 900): Promise<Page> {
  const context = await (await browser()).newContext({ viewport: { width, height } });
  return context.newPage();
}

/** Saves a full-page screenshot as test/artifacts/NAME.png and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
