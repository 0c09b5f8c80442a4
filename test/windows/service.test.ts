/**
 * The corral service as node.exe under Wine, on a TCP FastCGI address the Linux test reaches, with
 * Python workers through unixrun.exe: a killed worker is replaced, a .py edit is served (the
 * Windows watcher), CTRL_C stops it gracefully with a complete log and no worker left, and a
 * TerminateProcess leaves no worker behind.
 */
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/corral.js';
import { fcgiGet, type FcgiResponse } from '../helpers/fcgi-client.js';
import { freePort } from '../helpers/nginx.js';
import {
  cDriveDir, killMarked, logLines, markedPids, cmdline, PYTHON_CMD, pythonWorkers, skipReason, startNodeExe, until, withoutForks, zPath, type WineProcess,
} from './wine.js';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'site_app.py');

interface Started {
  readonly proc: WineProcess;
  readonly port: number;
  readonly logFile: string;
  readonly dir: string;
  readonly windowsDir: string;
}

/** `corral serve` under Wine for a fresh copy of the site; resolves once `workers` workers are ready. */
async function serve(name: string, opts: { env?: Record<string, string>; waitReady?: boolean } = {}): Promise<Started> {
  const [dir, windowsDir] = cDriveDir(name);
  copyFileSync(FIXTURE, path.join(dir, 'site_app.py'));
  const port = await freePort();
  const logFile = path.join(dir, 'logs', 'service.log');
  const proc = startNodeExe(
    [zPath(CLI), 'serve', windowsDir, '--wsgi-app', 'site_app:application', '--listen', `127.0.0.1:${port}`, '--workers', '2', '--python', PYTHON_CMD(),
      '--log-file', zPath(logFile), '--log-level', 'debug'],
    opts.env,
  );
  const s = { proc, port, logFile, dir, windowsDir };
  if (opts.waitReady !== false) await until(() => readyWorkers(s) >= 2 || proc.child.exitCode !== null, 90_000, 'two workers ready');
  if (proc.child.exitCode !== null) throw new Error(`corral serve exited ${proc.child.exitCode}: ${proc.output()}`);
  return s;
}

/** Workers that said READY, from the log file (pino-roll writes it from its own thread). */
function readyWorkers(s: Started): number {
  return logLines(s.logFile).filter((l) => l.msg === 'worker ready').length;
}

async function ask(s: Started): Promise<{ r: FcgiResponse; json: { version: string; pid: number; script_name: string } }> {
  const r = await fcgiGet({ host: '127.0.0.1', port: s.port }, '/hello');
  return { r, json: JSON.parse(r.body.toString()) as { version: string; pid: number; script_name: string } };
}

/** Whether something listens on this local TCP port (node.exe's sockets are the Linux host's). */
function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').some((l) => l.includes(`0100007F${hex}`) && / 0A /.test(l));
}

/** The Linux pid of a node.exe started here (`wine` became it: the same pid; not a fork Wine is starting from it). */
function servicePids(s: Started): number[] {
  return withoutForks(markedPids().filter((p) => cmdline(p).includes('main.js serve') && cmdline(p).includes(s.windowsDir)));
}

/**
 * CTRL_C to the service (a Linux SIGINT to its wine process); resolves with its exit code.
 * Wine under load sometimes drops a CTRL_C: measured with three busy loops beside the tests, 1 of
 * 25 services fully up never logged "stop requested" (all its workers alive 40 s later), and 2 of
 * 25 sent CTRL_C while node.exe was still creating pino-roll's log thread never started that
 * thread or handled the CTRL_C; and in a full suite run (2026-12-07) two CTRL_Cs in a row were
 * dropped. So the CTRL_C waits for the log thread's first line, and is sent again, up to 3 in
 * all, while no "stop requested" is logged within 15 s of the last one (one that was not needed
 * would end the service with exit code 1, not 0: the test would say so). A stop that still does
 * not end fails after 75 s with its log, the state of its threads, the workers left and Wine's
 * output.
 */
async function ctrlC(s: Started): Promise<number | null> {
  await until(() => logLines(s.logFile).length > 0, 60_000, 'the log thread\'s first line');
  const [pid] = servicePids(s);
  if (pid === undefined) throw new Error('no corral serve process');
  const stopping = (): boolean => logLines(s.logFile).some((l) => l.msg === 'stop requested');
  let sent = 0;
  let handled = false;
  while (!handled && sent < 3) {
    process.kill(pid, 'SIGINT');
    sent++;
    handled = await until(() => stopping() || s.proc.child.exitCode !== null, 15_000).then(() => true, () => false);
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 75_000)));
  const code = await Promise.race([s.proc.exited, late]);
  clearTimeout(timer);
  if (code !== 'late') return code;
  let threads = 'gone';
  try {
    threads = readdirSync(`/proc/${pid}/task`)
      .map((t) => readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').split(' ')[2])
      .join('');
  } catch {
    /* exited meanwhile */
  }
  const log = logLines(s.logFile).map((l) => `${String(l.time)} ${String(l.msg)}`).join('\n');
  // Workers still there: the stop never began (CTRL_C not handled); gone: the stop or the exit hangs.
  const workers = markedPids().filter((p) => p !== pid && /corral_worker|unixrun/.test(cmdline(p)));
  throw new Error(
    `corral serve (pid ${pid}) did not exit within 75 s of CTRL_C (sent ${sent} time${sent > 1 ? 's' : ''}${handled ? '' : ', none logged as handled'}); thread states ${threads}; ` +
      `worker processes left: ${workers.map((p) => `${p} ${cmdline(p).slice(0, 60)}`).join('; ') || 'none'}\nlog:\n${log}\nwine output:\n${s.proc.output().slice(-2000)}`,
  );
}

if (skipReason !== null) it.skip(`Windows layer SKIPPED: ${skipReason}`, () => undefined);
else describe('corral serve as node.exe under Wine', () => {
  afterEach(killMarked);

  it('serves through Python workers behind unixrun.exe and replaces a killed worker', async () => {
    const s = await serve('killed');
    const first = await ask(s);
    expect(first.r.status).toBe(200);
    expect(first.json.version).toBe('v1');
    const victim = first.json.pid;
    expect(pythonWorkers()).toContain(victim);
    process.kill(victim, 'SIGKILL');
    // Replaced: two workers again, the killed one not among them.
    await until(() => readyWorkers(s) >= 3, 60_000, 'a third worker ready (the replacement)');
    await until(() => pythonWorkers().length === 2 && !pythonWorkers().includes(victim), 30_000, 'two live workers, the killed one gone');
    const after = await ask(s);
    expect(after.r.status).toBe(200);
    expect(after.json.pid).not.toBe(victim);
  });

  it('serves an edit of a .py file with WATCH_FILE_CHANGES_MASK=*.py (the Windows watcher)', async () => {
    const s = await serve('watch', { env: { WATCH_FILE_CHANGES_MASK: '*.py' } });
    expect((await ask(s)).json.version).toBe('v1');
    const file = path.join(s.dir, 'site_app.py');
    writeFileSync(file, readFileSync(file, 'utf8').replace('VERSION = "v1"', 'VERSION = "v2"'));
    // The rolling reload starts new workers from the edited file; wait for it in the log, then ask.
    await until(() => logLines(s.logFile).some((l) => l.msg === 'reload done'), 90_000, 'reload done');
    const after = await ask(s);
    expect(after.r.status).toBe(200);
    expect(after.json.version).toBe('v2');
  });

  it('stops gracefully on CTRL_C: exit 0, a complete log, no worker left', async () => {
    const s = await serve('ctrlc');
    expect((await ask(s)).r.status).toBe(200);
    expect(pythonWorkers().length).toBe(2);
    // Linux SIGINT to the wine process is CTRL_C for node.exe (SIGTERM would end it at once, no handler).
    expect(await ctrlC(s)).toBe(0);
    const msgs = logLines(s.logFile).map((l) => l.msg);
    expect(msgs).toContain('stop requested');
    expect(msgs).toContain('service stopped');
    await until(() => pythonWorkers().length === 0, 30_000, 'no Python worker left');
  });

  it('keeps the log complete when CTRL_C comes right after the start', async () => {
    const s = await serve('early', { waitReady: false });
    // As early a CTRL_C as Wine takes (see ctrlC): the port listens, the log thread has written its
    // first lines and holds the rest, the workers are still booting: the stop must flush them all.
    await until(() => listening(s.port), 90_000, 'the FastCGI port listening');
    expect(await ctrlC(s)).toBe(0);
    const msgs = logLines(s.logFile).map((l) => l.msg);
    expect(msgs[0]).toBe('corral starting');
    expect(msgs).toContain('stop requested');
    expect(msgs).toContain('service stopped');
    await until(() => pythonWorkers().length === 0, 30_000, 'no Python worker left');
  });

  it('leaves no worker behind when it is terminated (TerminateProcess)', async () => {
    const s = await serve('terminated');
    expect(pythonWorkers().length).toBe(2);
    // SIGKILL of the wine process: no handler runs, as with TerminateProcess or a job object closing.
    process.kill(servicePids(s)[0]!, 'SIGKILL');
    await s.proc.exited;
    await until(() => pythonWorkers().length === 0 && markedPids().every((p) => !cmdline(p).includes('unixrun')), 30_000, 'no worker (unixrun.exe or Python) left');
  });
});
