/**
 * A site's web.config read again when it changes, through the IIS emulator, the relay and a real
 * service: an edit reloads the app with its new settings under load with no failed request; a
 * broken edit (malformed XML, or an app that does not start) keeps the old app serving and the log
 * says why; a refusal (a typo in web.config)
 * lasts only until the file is fixed.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureSecretFile } from '../../src/relay/secret.js';
import { CLI, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { startIis, type IisEmulator, type IisResponse } from './emulator.js';

const dirs: string[] = [];
const emulators: IisEmulator[] = [];

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.stop()));
  await stopAll();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** An app answering `word` and its pid. */
const sayer = (word: string): string =>
  `import os\ndef application(environ, start_response):\n    body = ("${word} %d" % os.getpid()).encode()\n    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])\n    return [body]\n`;

function webConfig(settings: Record<string, string>): string {
  const adds = Object.entries(settings).map(([k, v]) => `      <add key="${k}" value="${v}" />`).join('\n');
  return `<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n  <appSettings>\n${adds}\n  </appSettings>\n</configuration>\n`;
}

/** A site with two apps and a web.config, a service allowed to run it, and IIS in front of it. */
async function setup(settings: Record<string, string>): Promise<{ site: string; service: CorralProcess; iis: IisEmulator }> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'corral-webconfig-')));
  dirs.push(dir);
  const site = join(dir, 'site');
  mkdirSync(site);
  writeFileSync(join(site, 'says_a.py'), sayer('A'));
  writeFileSync(join(site, 'says_b.py'), sayer('B'));
  writeFileSync(join(site, 'web.config'), webConfig(settings));
  const secret = join(dir, 'relay.secret');
  expect(ensureSecretFile(secret).ok).toBe(true);
  const sock = join(dir, 'corral.sock');
  const service = startCorral(['serve', '--listen', sock, '--allowed-roots', site, '--relay-secret-file', secret]);
  await service.waitForMsg('FastCGI front listening');
  const iis = await startIis({
    relayCmd: [process.execPath, CLI, 'relay'],
    appPhysicalPath: site,
    maxInstances: 3,
    env: { CORRAL_SERVICE: sock, CORRAL_RELAY_LOG: join(dir, 'relay.log'), CORRAL_AUTOSTART: '0', CORRAL_RELAY_SECRET_FILE: secret },
  });
  emulators.push(iis);
  return { site, service, iis };
}

const text = (r: IisResponse): string => r.body.toString('utf8');

/** Requests from `concurrency` clients while `during` runs (its own requests, through `get`, count too); every answer kept. */
async function underLoad(iis: IisEmulator, concurrency: number, during: (get: () => Promise<IisResponse>) => Promise<void>): Promise<IisResponse[]> {
  const out: IisResponse[] = [];
  const get = async (): Promise<IisResponse> => {
    const r = await iis.request({ url: '/' });
    out.push(r);
    return r;
  };
  let done = false;
  const clients = Array.from({ length: concurrency }, async () => {
    while (!done) await get();
  });
  try {
    await during(get);
  } finally {
    done = true;
    await Promise.all(clients);
  }
  return out;
}

describe('web.config changes', () => {
  it('an edit reloads the app with the new settings under load, no request failing; a broken edit or an app that does not start keeps the old app', async () => {
    const { site, service, iis } = await setup({ WSGI_APP: 'says_a:application', CORRAL_WORKERS: '2' });
    expect(text(await iis.request({ url: '/' }))).toMatch(/^A \d+$/);
    await service.waitForMsg('watching web.config');

    const answers = await underLoad(iis, 3, async (get) => {
      // Some traffic before the edit, then the edit, then traffic until the new app answers.
      for (let i = 0; i < 5; i++) expect(text(await get())).toMatch(/^A /);
      writeFileSync(join(site, 'web.config'), webConfig({ WSGI_APP: 'says_b:application', CORRAL_WORKERS: '2' }));
      const reloaded = await service.waitForMsg('web.config changed: app reloaded with the new settings, the old one draining', 60_000);
      expect(reloaded.wsgiApp).toBe('says_b:application');
      for (let i = 0; i < 100; i++) if (text(await get()).startsWith('B')) break;
    });
    expect(answers.length).toBeGreaterThan(3);
    expect(answers.filter((r) => r.status !== 200 || r.failed).map(text)).toEqual([]);
    const words = new Set(answers.map((r) => text(r)[0]));
    expect([...words].sort()).toEqual(['A', 'B']);
    expect(iis.counters.failures).toEqual([]);
    expect(iis.counters.stderrBytes).toBe(0);
    expect(text(await iis.request({ url: '/' }))).toMatch(/^B \d+$/);

    // A broken file (an unclosed <add>): the old settings stay and the log names the file and line.
    writeFileSync(join(site, 'web.config'), '<configuration>\n  <appSettings>\n    <add key="WSGI_APP" value="says_a:application">\n  </appSettings>\n</configuration>\n');
    const kept = await service.waitForMsg('web.config changed but its settings are not usable: keeping the old ones', 60_000);
    expect(kept.code).toBe('CORRAL_BAD_APP_SETTINGS');
    expect(String(kept.err)).toContain(`${join(site, 'web.config')}:4:`);
    const after = await Promise.all(Array.from({ length: 6 }, () => iis.request({ url: '/' })));
    expect(after.map((r) => [r.status, text(r)[0]])).toEqual(Array.from({ length: 6 }, () => [200, 'B']));
    expect(iis.counters.failures).toEqual([]);

    // Well-formed, but its app does not import: the new pool fails to start, the old app serves on.
    writeFileSync(join(site, 'web.config'), webConfig({ WSGI_APP: 'no_such_module:application', CORRAL_WORKERS: '2' }));
    await service.waitForMsg('web.config changed but the app does not start with the new settings: keeping the old app serving', 60_000);
    const still = await Promise.all(Array.from({ length: 6 }, () => iis.request({ url: '/' })));
    expect(still.map((r) => [r.status, text(r)[0]])).toEqual(Array.from({ length: 6 }, () => [200, 'B']));
    expect(iis.counters.failures).toEqual([]);
  });

  it('a refused app (a typo in web.config) runs as soon as web.config is fixed, without a restart', async () => {
    const { site, service, iis } = await setup({ WSGI_APP: 'says_a:application', CORRAL_THREADS: 'four' });
    const refused = await iis.request({ url: '/' });
    expect(refused.status).toBe(500);
    expect(text(refused)).toContain('CORRAL_BAD_APP_SETTINGS');
    await service.waitForMsg('app refused');
    // Asked again, unchanged: still refused (remembered, not re-read per request).
    expect((await iis.request({ url: '/' })).status).toBe(500);
    writeFileSync(join(site, 'web.config'), webConfig({ WSGI_APP: 'says_a:application', CORRAL_THREADS: '4' }));
    const fixed = await iis.request({ url: '/' });
    expect(fixed.status, text(fixed)).toBe(200);
    expect(text(fixed)).toMatch(/^A \d+$/);
  });
});
