/**
 * Reaching the corral service: connect, and when nothing answers, start the service (once, across
 * every relay of the app pool, through the lock) and retry with backoff for up to ~10 s.
 */
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../log/logger.js';
import { serveCommand, spawnService, type StartedService } from './autostart.js';
import type { ServiceLocation } from './discover.js';
import { lockIsStale, pidAlive, readLock, removeIfUnchanged, tryLock, type HeldLock } from './lock.js';

/** How the link behaves; the defaults suit IIS. */
export interface LinkOptions {
  readonly location: ServiceLocation;
  readonly autostart: boolean;
  /** The relay's environment, passed (cleaned) to an auto-started service. */
  readonly env: NodeJS.ProcessEnv;
  readonly log: Logger;
  /** Give up on one request after this long without a connection. */
  readonly deadlineMs?: number;
  /** A lock older than this, while the service stays unreachable this long, is stale (hung service, reused pid). */
  readonly staleMs?: number;
  /** Longest wait for one connection attempt. */
  readonly connectTimeoutMs?: number;
  /** The relay secret file, handed to an auto-started service; null when there is none. */
  readonly secretFile?: string | null;
}

/** Connects to the service, starting it when needed. One attempt at a time. */
export class ServiceLink {
  readonly #o: Required<LinkOptions>;
  #inflight: Promise<net.Socket> | null = null;
  /** The lock of the service this relay started and still waits for (refreshed meanwhile: lock.ts refresh). */
  #starting: HeldLock | null = null;
  #warnedNoRoot = false;

  constructor(opts: LinkOptions) {
    this.#o = { deadlineMs: 10_000, staleMs: 5_000, connectTimeoutMs: 2_000, secretFile: null, ...opts };
  }

  /** A connected socket. `root` is the requesting app's directory, needed to auto-start the service. */
  connect(root: string | null): Promise<net.Socket> {
    this.#inflight ??= this.#establish(root).finally(() => {
      this.#inflight = null;
      this.#starting = null; // listening, or given up on: the lock is no longer refreshed
    });
    return this.#inflight;
  }

  async #establish(root: string | null): Promise<net.Socket> {
    const { location, deadlineMs } = this.#o;
    const start = Date.now();
    let delay = 10;
    let started: StartedService | null = null;
    const seen: { exit: { code: number | null; signal: NodeJS.Signals | null } | null } = { exit: null };
    let lastError = '';
    let lastRefresh = Date.now();
    for (;;) {
      try {
        return await this.#connectOnce();
      } catch (err) {
        lastError = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      }
      if (started === null && this.#o.autostart) {
        if (root === null) this.#warnNoRoot();
        else {
          const r = await this.#maybeStart(root, Date.now() - start);
          if (r instanceof net.Socket) return r;
          if (r !== null) {
            started = r;
            void r.exited.then((e) => (seen.exit = e));
          }
        }
      }
      const e = seen.exit;
      if (started !== null && e === null && Date.now() - lastRefresh >= 1000) {
        this.#starting?.refresh();
        lastRefresh = Date.now();
      }
      if (e !== null) {
        // A service that another relay started (judging our lock stale while it was slow to listen)
        // may hold the address: ours then exits with EADDRINUSE, and that one serves.
        try {
          const socket = await this.#connectOnce();
          this.#o.log.warn({ servicePid: started?.pid, code: e.code }, 'the service this relay started exited, but another one answers; using it');
          return socket;
        } catch {
          /* nobody: the start failed */
        }
        throw new Error(`the auto-started service (pid ${started?.pid}) exited (code ${e.code}, signal ${e.signal}) before it listened on ${location.text}`);
      }
      if (Date.now() - start >= deadlineMs) throw new Error(`no corral service answers at ${location.text} after ${deadlineMs} ms (${lastError})`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 1.5, 250);
    }
  }

  /** Starts the service unless another relay does; resolves with a socket if the service turned out to be up. */
  async #maybeStart(root: string, failingForMs: number): Promise<StartedService | net.Socket | null> {
    const { location, log } = this.#o;
    const info = readLock(location.lockPath);
    if (info !== null) {
      if (!lockIsStale(info, Date.now(), failingForMs, this.#o.staleMs)) return null;
      if (!removeIfUnchanged(location.lockPath, info.raw)) return null;
      log.warn({ lock: location.lockPath, service: info.service, relay: info.relay }, 'removed a stale auto-start lock');
    }
    const held = tryLock(location.lockPath);
    if (held === null) return null;
    // Between our failed attempt and the lock, a service may have started listening.
    try {
      const socket = await this.#connectOnce();
      held.release();
      return socket;
    } catch {
      /* nothing there: start it */
    }
    try {
      const cmd = serveCommand(location.text, root, this.#o.env, { secretFile: this.#o.secretFile });
      const started = spawnService(cmd);
      held.keep(started.pid);
      this.#starting = held;
      log.info({ servicePid: started.pid, listen: location.text, root, args: cmd.args }, 'auto-started the corral service');
      this.#sweepOtherGenerations();
      return started;
    } catch (err) {
      held.release();
      throw err;
    }
  }

  /**
   * Each IIS worker process (w3wp) has its own service and lock (discover.ts' generationKey); the
   * lock stays after its service ended with its w3wp. When a new service starts, the locks of
   * services that are gone are removed, so the temp folder does not collect one per w3wp.
   */
  #sweepOtherGenerations(): void {
    const { location, log } = this.#o;
    const g = location.otherGenerations;
    if (!g) return;
    const removed: string[] = [];
    try {
      for (const name of readdirSync(g.dir)) {
        const file = path.join(g.dir, name);
        if (!g.match.test(name) || file === location.lockPath) continue;
        const info = readLock(file);
        const holder = info?.service ?? info?.relay ?? null;
        if (info && holder !== null && !pidAlive(holder) && removeIfUnchanged(file, info.raw)) removed.push(name);
      }
    } catch (err) {
      log.warn({ dir: g.dir, err: (err as NodeJS.ErrnoException).code ?? String(err) }, 'cannot remove the auto-start locks of ended IIS worker processes');
    }
    if (removed.length > 0) log.info({ locks: removed }, 'removed the auto-start locks of ended IIS worker processes');
  }

  #connectOnce(): Promise<net.Socket> {
    const a = this.#o.location.address;
    return new Promise((resolve, reject) => {
      const socket = a.kind === 'tcp' ? net.connect({ host: a.host, port: a.port }) : net.connect({ path: a.kind === 'unix' || a.kind === 'pipe' ? a.path : '' });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
      }, this.#o.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        if (a.kind === 'tcp') socket.setNoDelay(true);
        resolve(socket);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      });
    });
  }

  #warnNoRoot(): void {
    if (this.#warnedNoRoot) return;
    this.#warnedNoRoot = true;
    this.#o.log.warn('cannot auto-start the service: the request has no APPL_PHYSICAL_PATH to allow');
  }
}
