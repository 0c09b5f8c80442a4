/**
 * Tools for the reload tests (issue 5): a tiny WSGI app written into a fresh temp dir whose
 * answer names its version and the worker's pid, edits of it (plain, broken, editor-style safe
 * write), and a load of N clients looping requests that records every answer, so a test can wait
 * for "the first answer with version X" and check that none failed.
 */
import http from 'node:http';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopAll } from './corral.js';
import { httpRequest } from './e2e.js';
import { stopAllNginx } from './nginx.js';

/**
 * The app: `VERSION PID` on /, a ValueError with a known message on /boom. `bootSeconds` makes
 * its import take that long (a large app), appended after the code so line numbers stay put.
 */
export function appSource(version: string, bootSeconds = 0): string {
  return `"""Reload test app, version ${version}."""
import os

VERSION = ${JSON.stringify(version)}


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/boom":
        raise ValueError("boom from version " + VERSION)
    body = ("%s %d" % (VERSION, os.getpid())).encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
${bootSeconds > 0 ? `\n\nimport time\ntime.sleep(${bootSeconds})\n` : ''}`;
}

/** A version of the app that does not compile (SyntaxError on line 4: the missing colon). */
export function brokenSource(version: string): string {
  return `"""Reload test app, version ${version}, broken."""
import os

def application(environ, start_response)
    return [b"never"]
`;
}

/** A fresh app dir with wsgi.py at `version`; `remove()` deletes it. */
export class AppDir {
  readonly dir: string;
  readonly file: string;

  constructor(version: string) {
    this.dir = mkdtempSync(join(tmpdir(), 'corral-reload-'));
    this.file = join(this.dir, 'wsgi.py');
    writeFileSync(this.file, appSource(version));
  }

  /** Overwrites wsgi.py in place (what most editors and `echo >` do). */
  write(version: string, bootSeconds = 0): void {
    writeFileSync(this.file, appSource(version, bootSeconds));
  }

  /** Writes wsgi.py with an arbitrary text. */
  writeText(text: string): void {
    writeFileSync(this.file, text);
  }

  /**
   * Vim's default save (backupcopy=auto): the original is renamed to wsgi.py~, the new text
   * written to a new wsgi.py, the backup deleted. For a moment there is no wsgi.py at all.
   */
  vimWrite(version: string): void {
    const backup = `${this.file}~`;
    renameSync(this.file, backup);
    writeFileSync(this.file, appSource(version));
    rmSync(backup);
  }

  writeBroken(version: string): void {
    writeFileSync(this.file, brokenSource(version));
  }

  /** An editor's safe write: the new text goes to wsgi.py.tmp, which is renamed over wsgi.py. */
  safeWrite(version: string): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, appSource(version));
    renameSync(tmp, this.file);
  }

  /** Writes another file of the app dir. */
  writeOther(name: string, text: string): void {
    writeFileSync(join(this.dir, name), text);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** What one request returned. */
export interface Sample {
  client: number;
  /** performance.now() when the request was sent and when its answer was complete. */
  sentAt: number;
  at: number;
  status: number;
  version: string | null;
  pid: number | null;
  /** Why this answer counts as failed (bad status, unknown version, transport error); null if fine. */
  failure: string | null;
}

/** One request as the load sees it: the HTTP status and the body text, or a thrown error. */
export type Requester = (client: number) => Promise<{ status: number; body: string }>;

/**
 * `clients` loops, each sending its next request as soon as the previous answer arrived. Every
 * answer must be 200 with a body `VERSION PID` whose version is in `known` (the test adds a
 * version before writing it), or it is recorded as a failure.
 */
export class Load {
  readonly samples: Sample[] = [];
  readonly known = new Set<string>();
  #stopping = false;
  #loops: Promise<void>[] = [];
  #waiters: Array<{ pred: (s: Sample) => boolean; resolve: (s: Sample) => void }> = [];

  constructor(
    readonly clients: number,
    readonly request: Requester,
  ) {}

  start(): void {
    for (let i = 0; i < this.clients; i++) this.#loops.push(this.#loop(i));
  }

  async #loop(client: number): Promise<void> {
    while (!this.#stopping) {
      const sentAt = performance.now();
      let sample: Sample;
      try {
        const r = await this.request(client);
        const m = /^(\S+) (\d+)$/.exec(r.body);
        const version = m ? m[1]! : null;
        const pid = m ? Number(m[2]) : null;
        let failure: string | null = null;
        if (r.status !== 200) failure = `status ${r.status}: ${r.body.slice(0, 300)}`;
        else if (version === null || !this.known.has(version)) failure = `unexpected body: ${r.body.slice(0, 300)}`;
        sample = { client, sentAt, at: performance.now(), status: r.status, version, pid, failure };
      } catch (err) {
        sample = { client, sentAt, at: performance.now(), status: 0, version: null, pid: null, failure: `error: ${(err as Error).message}` };
      }
      this.samples.push(sample);
      this.#waiters = this.#waiters.filter((w) => (w.pred(sample) ? (w.resolve(sample), false) : true));
      // A transport error would otherwise spin: the failure is recorded, pace the retry a little.
      if (sample.status === 0) await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The first answer from now on matching `pred`; rejects after `timeoutMs`. */
  next(pred: (s: Sample) => boolean, timeoutMs = 10_000, what = 'a matching answer'): Promise<Sample> {
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (s: Sample) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        reject(new Error(`no ${what} within ${timeoutMs} ms; last answers: ${JSON.stringify(this.samples.slice(-4))}`));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  /** Resolves once `n` more answers (of any kind) have arrived; returns them. */
  async more(n: number, timeoutMs = 10_000): Promise<Sample[]> {
    const from = this.samples.length;
    let seen = 0;
    await this.next(() => ++seen >= n, timeoutMs, `${n} more answers`);
    return this.samples.slice(from);
  }

  /** The first answer from now on with this version, from a request sent at or after `since`. */
  served(version: string, since: number, timeoutMs = 10_000): Promise<Sample> {
    return this.next((s) => s.version === version && s.sentAt >= since, timeoutMs, `answer with version ${version}`);
  }

  /** Answers with `version` from at least `n` distinct pids; resolves with those pids. */
  async pidsOf(version: string, n: number, timeoutMs = 10_000): Promise<Set<number>> {
    const pids = new Set<number>();
    for (const s of this.samples) if (s.version === version && s.pid !== null) pids.add(s.pid);
    if (pids.size >= n) return pids;
    await this.next(
      (s) => {
        if (s.version === version && s.pid !== null) pids.add(s.pid);
        return pids.size >= n;
      },
      timeoutMs,
      `answers with version ${version} from ${n} workers`,
    );
    return pids;
  }

  failures(): Sample[] {
    return this.samples.filter((s) => s.failure !== null);
  }

  /** Stops the loops after their current request. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#loops);
  }
}

/** Request latencies (send to complete answer) of these samples: median, p99 and max, in ms. */
export function latencies(samples: readonly Sample[]): { median: number; p99: number; max: number } {
  const ms = samples.map((s) => s.at - s.sentAt).sort((a, b) => a - b);
  const at = (q: number): number => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0);
  return { median: Math.round(median(ms)), p99: at(0.99), max: Math.round(ms[ms.length - 1] ?? 0) };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * `n` HTTP clients looping GETs of `url`, each on one keep-alive connection (as browsers and load
 * balancers hold them). The caller stops the load and destroys the agents.
 */
export function keepAliveLoad(url: string, n: number): { load: Load; agents: http.Agent[] } {
  const agents = Array.from({ length: n }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const load = new Load(n, async (client) => {
    const r = await httpRequest(url, { agent: agents[client]!, timeoutMs: 10_000 });
    return { status: r.status, body: r.body.toString('utf8') };
  });
  return { load, agents };
}

/**
 * What a load test made besides its services: app dirs, loads and the loads' HTTP agents. Its
 * afterEach calls cleanup(): the loads stop (their agents destroyed) first, then every nginx and
 * corral the test started, then the app dirs go, so that no request of a load runs into a server
 * being stopped.
 */
export class LoadTestKit {
  readonly apps: AppDir[] = [];
  readonly loads: Load[] = [];
  readonly agents: http.Agent[] = [];

  /** Stops the loads, their agents, every nginx and corral the test started, then removes the app dirs. */
  async cleanup(): Promise<void> {
    await Promise.all(this.loads.splice(0).map((l) => l.stop()));
    for (const a of this.agents.splice(0)) a.destroy();
    await stopAllNginx();
    await stopAll();
    for (const a of this.apps.splice(0)) a.remove();
  }
}
