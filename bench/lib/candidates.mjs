/**
 * What `npm run bench` measures: a list of candidates, each a backend behind the one nginx (or
 * nginx itself). A candidate says how nginx talks to it (`upstream`), why it cannot run here
 * (`unavailable`, checked before anything starts: the run skips it and says why), and how to start
 * it (`start`, which resolves once its port accepts, or rejects with the reason: the candidate then
 * gets an error row and the run goes on). Adding a stack to the comparison is adding an entry here.
 *
 * CPU is attributed per role: `service` is the process that manages (corral's node, uWSGI's
 * master, gunicorn's arbiter), `workers` every process below it (or the process itself when there
 * is no manager, as for the standalone worker).
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { freePort, startChild, waitForPort } from './proc.mjs';

export const APP = 'wsgi_apps:application';
const UWSGI = '/usr/bin/uwsgi-core';
const UWSGI_PLUGIN = '/usr/lib/uwsgi/plugins/python3_plugin.so';
export const UWSGI_PARAMS = '/etc/nginx/uwsgi_params';

/** How nginx reaches a backend: FastCGI with kept connections, FastCGI one connection per request, uwsgi, HTTP, or none. */
export const UPSTREAM = {
  fastcgiKeep: { module: 'fastcgi', keepalive: true },
  fastcgiClose: { module: 'fastcgi', keepalive: false },
  uwsgi: { module: 'uwsgi', keepalive: false },
  http: { module: 'http', keepalive: true },
  static: { module: 'static', keepalive: false },
};

/** A clean environment for the peers, as ../shared/bench/run-peers.sh gives them. */
function peerEnv() {
  return { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8' };
}

/** Starts a backend that binds a port it is given; retries on a port taken between pick and bind. */
async function startOnFreePort(name, makeArgs, ctx, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const [cmd, ...args] = makeArgs(port);
    const entry = startChild(name, cmd, args, { cwd: ctx.apps, env: opts.env, stopSignal: opts.stopSignal });
    try {
      await waitForPort(port, entry, opts.timeoutMs ?? 20_000);
      return { entry, port };
    } catch (err) {
      if (attempt < 4 && /in use/i.test(entry.output)) {
        await ctx.stop(entry);
        continue;
      }
      await ctx.stop(entry);
      throw err;
    }
  }
}

/**
 * corral serve with 2 workers x 1 thread on a port it picks; resolves when it listens and both
 * workers are READY, rejects with the service's own error (its last error-level log line) if it
 * fails first: e.g. a worker that does not know the direct data plane's options yet.
 */
function startCorral(name, plane, ctx) {
  return new Promise((resolve, reject) => {
    let buf = '';
    let port = 0;
    let ready = 0;
    let lastError = '';
    let settled = false;
    const args = [ctx.cli, 'serve', ctx.apps, '--wsgi-app', APP, '--listen', '127.0.0.1:0', '--workers', '2', '--threads', '1', '--python', ctx.python, '--data-plane', plane, '--log-level', 'info', ...ctx.corralArgs];
    const entry = startChild(name, process.execPath, args, {
      cwd: ctx.root,
      onData: (text) => {
        buf += text;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let o;
          try {
            o = JSON.parse(line);
          } catch {
            continue;
          }
          if (o.msg === 'FastCGI front listening') port = Number(String(o.listen).split(':').pop());
          if (o.msg === 'worker ready') ready++;
          if (o.level >= 50 || o.level === 'error' || o.level === 'fatal') lastError = String(o.err?.message ?? o.err ?? o.msg).split('\n')[0];
          // A pool that failed to boot stays up (it retries on a change); for a bench that is the end.
          if (o.msg === 'pool state' && o.to === 'failed') fail(`the pool failed to start: ${lastError || 'no reason logged'}`);
          if (port && ready >= 2 && !settled) {
            settled = true;
            clearTimeout(timer);
            entry.discardStdout();
            resolve({ entry, port });
          }
        }
      },
    });
    const fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void ctx.stop(entry).then(() => reject(new Error(why)));
    };
    const timer = setTimeout(() => fail(`not ready in 30 s${lastError ? `: ${lastError}` : ''}`), 30_000);
    void entry.exited.then((x) => fail(`corral exited (${x.signal ?? `code ${x.code}`})${lastError ? `: ${lastError}` : `:\n${entry.output.slice(-1500)}`}`));
  });
}

/** Whether the standalone worker can run several processes on one socket (an option the worker may grow). */
export function standaloneProcessesFlag(ctx) {
  const help = spawnSync(ctx.python, [ctx.worker, '--help'], { encoding: 'utf8' }).stdout ?? '';
  return /--processes\b/.test(help) ? '--processes' : null;
}

/** The candidates, in table order. */
export function candidates(ctx) {
  const procsFlag = standaloneProcessesFlag(ctx);
  const python = (args) => (port) => [ctx.python, ...args(port)];
  return [
    {
      name: 'corral-direct',
      what: 'corral serve --data-plane direct, 2 workers x 1 thread: the workers accept on the shared socket',
      upstream: UPSTREAM.fastcgiKeep,
      hasService: true,
      unavailable: () => null,
      start: () => startCorral('corral-direct', 'direct', ctx),
    },
    {
      name: 'corral-proxy',
      what: 'corral serve --data-plane proxy, 2 workers x 1 thread: node accepts and relays over the workers\' pipes',
      upstream: UPSTREAM.fastcgiKeep,
      hasService: true,
      unavailable: () => null,
      start: () => startCorral('corral-proxy', 'proxy', ctx),
    },
    {
      name: 'standalone',
      what: procsFlag
        ? 'src/python/corral_worker.py --listen, 2 processes x 1 thread on one socket, no node'
        : 'src/python/corral_worker.py --listen, 1 process x 2 threads, no node (the worker has no --processes option)',
      upstream: UPSTREAM.fastcgiKeep,
      hasService: false,
      unavailable: () => (existsSync(ctx.worker) ? null : `${ctx.worker} is missing`),
      start: () =>
        startOnFreePort(
          'standalone',
          python((port) => [ctx.worker, '--listen', `127.0.0.1:${port}`, '--app', APP, '--root', ctx.apps, ...(procsFlag ? [procsFlag, '2', '--threads', '1'] : ['--threads', '2'])]),
          ctx,
        ),
    },
    ...['fcgi', 'native'].map((proto) => ({
      name: `uwsgi-${proto}-2p`,
      what: proto === 'fcgi' ? 'uWSGI --fastcgi-socket, master + 2 processes (closes each FastCGI connection: nginx opens one per request)' : 'uWSGI --socket (its uwsgi protocol, uwsgi_pass), master + 2 processes',
      upstream: proto === 'fcgi' ? UPSTREAM.fastcgiClose : UPSTREAM.uwsgi,
      hasService: true,
      unavailable: () => {
        if (!existsSync(UWSGI) || !existsSync(UWSGI_PLUGIN)) return 'uWSGI is not installed (Debian: apt-get install uwsgi-core uwsgi-plugin-python3)';
        if (proto === 'native' && !existsSync(UWSGI_PARAMS)) return `${UWSGI_PARAMS} is missing (Debian: nginx-common)`;
        return null;
      },
      start: () =>
        startOnFreePort(
          `uwsgi-${proto}-2p`,
          (port) => [UWSGI, '--plugin', 'python3', '--strict', '--master', '--processes', '2', '--die-on-term', '--need-app', '--chdir', ctx.apps, '--module', APP, '--disable-logging', proto === 'fcgi' ? '--fastcgi-socket' : '--socket', `127.0.0.1:${port}`],
          ctx,
          { env: peerEnv() },
        ),
    })),
    {
      name: 'gunicorn-sync-2w',
      what: 'gunicorn, 2 sync workers, nginx proxy_pass over HTTP/1.1 (it answers Connection: close)',
      upstream: UPSTREAM.http,
      hasService: true,
      unavailable: () =>
        spawnSync(ctx.peerPython, ['-c', 'import gunicorn'], { stdio: 'ignore' }).status === 0 ? null : `gunicorn is not importable by ${ctx.peerPython} (Debian: apt-get install gunicorn)`,
      start: () =>
        startOnFreePort(
          'gunicorn-sync-2w',
          (port) => [ctx.peerPython, '-m', 'gunicorn', '--workers', '2', '--worker-class', 'sync', '--bind', `127.0.0.1:${port}`, '--chdir', ctx.apps, '--worker-tmp-dir', '/dev/shm', '--graceful-timeout', '2', '--log-level', 'warning', APP],
          ctx,
          { env: peerEnv() },
        ),
    },
    {
      name: 'nginx-static',
      what: 'nginx answering itself (return / static files): the limit of nginx + wrk here',
      upstream: UPSTREAM.static,
      hasService: false,
      unavailable: () => null,
      start: async () => ({ entry: null, port: 0 }),
    },
  ];
}

