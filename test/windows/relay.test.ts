/**
 * IIS's path under Wine, end to end on the Windows side: shim/iisfcgi.exe hands named pipes to
 * `corral relay` instances as IIS does (client end connected first, _FCGI_SHUTDOWN_EVENT_ set),
 * the relays find or auto-start one service, whose Python workers run through unixrun.exe; the
 * site lives on a C:\ path with its web.config there.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { get, launchRelays, type Site } from './iis.js';
import { cDriveDir, cmdline, killMarked, logLines, markedPids, PYTHON_CMD, pythonWorkers, RUN_MARK, skipReason, waitForLine, windowsTemp, withoutForks, zPath } from './wine.js';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'site_app.py');

/** A site under C:\ whose web.config names the app (not corral's default) and sets an app variable. */
function makeSite(name: string): Site & { pool: string } {
  const [dir, windowsDir] = cDriveDir(name);
  copyFileSync(FIXTURE, path.join(dir, 'site_app.py'));
  writeFileSync(
    path.join(dir, 'web.config'),
    `<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <appSettings>
    <add key="WSGI_HANDLER" value="site_app.application" />
    <add key="SITE_GREETING" value="from web.config" />
  </appSettings>
</configuration>
`,
  );
  return { windowsDir, virtualPath: '/myapp', pool: `Wine${name}${RUN_MARK}` };
}

const relayEnv = (pool: string): Record<string, string> => ({ APP_POOL_ID: pool, CORRAL_PYTHON: PYTHON_CMD() });

/** Linux pids of the auto-started services of this run (not a fork Wine is starting from one). */
function services(): number[] {
  return withoutForks(markedPids().filter((p) => / serve --listen \\\\\.\\pipe\\corral-/.test(cmdline(p))));
}

if (skipReason !== null) it.skip(`Windows layer SKIPPED: ${skipReason}`, () => undefined);
else
  describe('corral relay as node.exe under Wine, started as IIS does', () => {
    afterEach(killMarked);

    it('3 relays of one w3wp start exactly one service and serve the app with SCRIPT_NAME from the virtual path; each exits on its pipe close alone', async () => {
      const site = makeSite('three');
      // 'close': the launcher closes each pipe and waits, without setting the shutdown event.
      const l = await launchRelays(relayEnv(site.pool), { instances: 3, mode: 'close', graceMs: 60_000 });
      const answers = await Promise.all(l.clients.map((c) => get(c, site, '/myapp/hello?x=1')));
      for (const r of answers) {
        expect(r.status).toBe(200);
        expect(JSON.parse(r.body.toString())).toMatchObject({ version: 'v1', script_name: '/myapp', path_info: '/hello', greeting: 'from web.config' });
      }
      // Python answered, through unixrun.exe: Linux pids, workers of this run.
      const workerPids = answers.map((r) => (JSON.parse(r.body.toString()) as { pid: number }).pid);
      for (const pid of workerPids) expect(pythonWorkers()).toContain(pid);
      expect(services()).toHaveLength(1);
      const relayLog = path.join(windowsTemp(), `corral-relay-${site.pool}.log`);
      expect(logLines(relayLog).filter((x) => x.msg === 'auto-started the corral service')).toHaveLength(1);

      for (const c of l.clients) c.close();
      for (let i = 0; i < 3; i++) {
        const m = await waitForLine(l.statusFile, new RegExp(`^child-(exited|still-running) ${i} (.*)$`, 'm'), 90_000);
        // Exited by itself within the grace (IIS would have waited signalBeforeTerminateSeconds, then killed it).
        expect(m[0]).toMatch(/^child-exited \d+ code 0 /);
      }
      // The service outlives its relays.
      expect(services()).toHaveLength(1);
    });

    it('a service slower to start than the lock\'s staleness is started once, not again by another relay', async () => {
      const site = makeSite('slow');
      // 4 s more for the service to listen: past the 5 s after which a lock of a service that does
      // not answer counts as hung, unless its relay keeps it fresh while it waits (lock.ts refresh).
      const env = { ...relayEnv(site.pool), NODE_OPTIONS: `--require ${zPath(path.join(import.meta.dirname, 'fixtures', 'slow-serve.cjs'))}` };
      const l = await launchRelays(env, { instances: 3, mode: 'close', graceMs: 60_000 });
      // The answers come once the service listens, or as 502 after the relays' 10 s: either way the relays tried for that long.
      await Promise.all(l.clients.map((c) => get(c, site, '/myapp/hello')));
      const relayLog = logLines(path.join(windowsTemp(), `corral-relay-${site.pool}.log`));
      expect(relayLog.filter((x) => x.msg === 'removed a stale auto-start lock')).toEqual([]);
      expect(relayLog.filter((x) => x.msg === 'auto-started the corral service')).toHaveLength(1);
      expect(services()).toHaveLength(1);
    });

    it('IIS\'s pipe does not leak into the auto-started service: the launcher sees the relay\'s end close while the service runs', async () => {
      const site = makeSite('leak');
      const l = await launchRelays(relayEnv(site.pool), { mode: 'leakprobe', graceMs: 10_000 });
      const r = await get(l.clients[0]!, site, '/myapp/x');
      expect(r.status).toBe(200);
      const [service] = services();
      expect(service).toBeDefined();
      l.clients[0]!.close(); // the launcher then terminates the relay and probes (shim/iisfcgi.c probe())
      await waitForLine(l.statusFile, /^done$/m, 60_000);
      const status = l.status();
      // No process holds the pipe's server end once the relay is gone: ERROR_BROKEN_PIPE (109) at once.
      expect(status).toMatch(/^server-end closed 109$/m);
      const node = /^grandchild \d+ node\.exe event (\S+) pipe (\S+)$/m.exec(status);
      expect(node, status).not.toBeNull();
      expect(node![2]).toBe('not-held');
      // The shutdown event IS inherited: Node has no call to close or un-inherit a raw handle, and
      // libuv starts every child with bInheritHandles=TRUE. Harmless (docs/windows.md); if this
      // changes, say so there.
      expect(node![1]).toBe('inherited');
      // The service was alive while probed, and still is.
      expect(services()).toEqual([service]);
    });
  });
