/**
 * IIS's side under Wine: shim/iisfcgi.exe starts `corral relay` instances (node.exe) the way
 * iisfcgi.dll does (named pipe as stdin, client end connected first, _FCGI_SHUTDOWN_EVENT_), and
 * bridges each pipe to a TCP connection the Linux test speaks FastCGI on (FcgiClient).
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { CLI } from '../helpers/corral.js';
import { FcgiClient, type FcgiResponse } from '../helpers/fcgi-client.js';
import { iisParams } from '../iis/emulator.js';
import { BIN, NODE_EXE, startWine, tempFile, waitForLine, zPath, type WineProcess } from './wine.js';

export interface Launch {
  readonly proc: WineProcess;
  readonly statusFile: string;
  /** One FastCGI connection per instance, in instance order. */
  readonly clients: FcgiClient[];
  /** Windows pids of the relays. */
  readonly relayPids: number[];
  status(): string;
}

/**
 * Starts `instances` relays from one launcher (one w3wp). `mode` says what the launcher does when a
 * connection is closed (shim/iisfcgi.c): IIS's stop sequence with `graceMs` ('stop'), the same
 * without setting the shutdown event ('close'), or the handle-leak probe.
 */
export async function launchRelays(env: Record<string, string>, opts: { instances?: number; mode?: 'stop' | 'close' | 'leakprobe'; graceMs?: number } = {}): Promise<Launch> {
  const n = opts.instances ?? 1;
  const statusFile = tempFile('corral-iisfcgi');
  const proc = startWine(path.join(BIN, 'iisfcgi.exe'), [zPath(statusFile), String(opts.graceMs ?? 30_000), opts.mode ?? 'stop', String(n)], {
    ...env,
    IISFCGI_CMD: `"${zPath(NODE_EXE)}" "${zPath(CLI)}" relay`,
  });
  const port = Number((await waitForLine(statusFile, /^port (\d+)$/m, 60_000))[1]);
  const clients: FcgiClient[] = [];
  for (let i = 0; i < n; i++) {
    clients.push(await FcgiClient.connect({ host: '127.0.0.1', port }));
    await waitForLine(statusFile, new RegExp(`^tcp-connected ${i}$`, 'm'), 30_000);
  }
  const text = readFileSync(statusFile, 'utf8');
  const relayPids = [...text.matchAll(/^child \d+ pid (\d+)/gm)].map((m) => Number(m[1]));
  return { proc, statusFile, clients, relayPids, status: () => (existsSync(statusFile) ? readFileSync(statusFile, 'utf8') : '') };
}

/** A site's place on both sides: its Windows directory (APPL_PHYSICAL_PATH) and IIS's virtual path. */
export interface Site {
  readonly windowsDir: string;
  readonly virtualPath: string;
}

/** IIS's parameters for a GET of `url` on `site`, with Windows paths. */
export function iisGetParams(site: Site, url: string): Record<string, string> {
  const params = Object.fromEntries(iisParams({ appPhysicalPath: '/placeholder/', appVirtualPath: site.virtualPath, siteId: 1 }, { url }, 0));
  const physical = site.windowsDir.endsWith('\\') ? site.windowsDir : `${site.windowsDir}\\`;
  const rest = url.split('?')[0]!.slice(site.virtualPath.length).split('/').filter((s) => s !== '');
  return { ...params, APPL_PHYSICAL_PATH: physical, PATH_TRANSLATED: physical + rest.join('\\') };
}

let nextId = 1;
/** One request on an instance's connection (ids 1..255, as IIS). */
export function get(client: FcgiClient, site: Site, url: string): Promise<FcgiResponse> {
  const id = nextId;
  nextId = (nextId % 255) + 1;
  return client.request(id, iisGetParams(site, url));
}
