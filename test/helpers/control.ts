/**
 * A corral Service run inside the test process, with its control listener, its log lines kept as
 * objects (tests wait for them, never for a fixed time) and calls to the control API. Every
 * started one is tracked so `stopServices()` in afterEach leaves no worker running.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSettings } from '../../src/config/load.js';
import { parseAddress } from '../../src/config/address.js';
import { createLogger, type Logger } from '../../src/log/logger.js';
import { Service } from '../../src/cli/service.js';
import { startControlServer, type ControlServer } from '../../src/control/server.js';
import type { ControlTarget } from '../../src/control/target.js';
import { readTokenFile } from '../../src/control/token.js';
import { httpRequest, type HttpAnswer } from './e2e.js';
import { ROOT, type LogLine } from './corral.js';

/** Log lines as objects, with waiting on a condition re-checked at each new line. */
export class LogCapture {
  readonly lines: LogLine[] = [];
  #waiters: Array<() => void> = [];
  readonly logger: Logger;

  constructor(level = 'info') {
    this.logger = createLogger({
      level,
      destination: {
        write: (text: string) => {
          for (const l of text.split('\n')) if (l.trim()) this.lines.push(JSON.parse(l) as LogLine);
          for (const w of this.#waiters.slice()) w();
        },
      },
    });
  }

  count(msg: string): number {
    return this.lines.filter((l) => l.msg === msg).length;
  }

  /**
   * Resolves when `cond()` holds, checked now, after every log line and every 50 ms (for state
   * that changes without a log line, such as the queue); rejects after `timeoutMs`.
   */
  until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!cond()) return;
        done();
        resolve();
      };
      const poll = setInterval(check, 50);
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${what}: not within ${timeoutMs} ms; last lines:\n${this.lines.slice(-12).map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        this.#waiters = this.#waiters.filter((w) => w !== check);
      };
      this.#waiters.push(check);
    });
  }
}

/** A service with a control listener, as `corral serve --control` will run it. */
export interface TestService {
  service: Service;
  control: ControlServer;
  logs: LogCapture;
  /** http://host:port of the HTTP front. */
  httpUrl: string;
  /** http://host:port of the control listener. */
  controlUrl: string;
  token: string;
  /** The environment the CLI commands get (CORRAL_CONTROL_TOKEN_FILE pointing at this service's token). */
  env: NodeJS.ProcessEnv;
  /** Whether stop was asked (over the API or by the test). */
  readonly stopAsked: boolean;
}

const started = new Set<TestService>();
const tokenDirs: string[] = [];

/**
 * The control target for a Service. Service gets `draining` from the lead's wiring; until then a
 * stop asked here marks it.
 */
export function targetOf(service: Service): ControlTarget & { stopAsked: boolean } {
  const t = {
    stopAsked: false,
    get apps() {
      return service.apps;
    },
    get draining() {
      return t.stopAsked || (service as unknown as { draining?: boolean }).draining === true;
    },
    stop: () => {
      t.stopAsked = true;
      return service.stop();
    },
  };
  return t;
}

/** Starts `serve APP_DIR ARGS --http 127.0.0.1:0` in-process, with a control listener on a free port. */
export async function startTestService(args: string[], opts: { waitWorkers?: number } = {}): Promise<TestService> {
  const logs = new LogCapture();
  const loaded = loadSettings({ argv: [...args, '--http', '127.0.0.1:0'], env: {}, cwd: ROOT, platform: process.platform });
  const service = new Service(loaded.settings, logs.logger, { version: 'test' });
  const target = targetOf(service);
  // A token file of this test's own, so parallel suites and a real service on this machine never meet.
  const dir = mkdtempSync(join(tmpdir(), 'corral-token-'));
  tokenDirs.push(dir);
  const env = { ...process.env, CORRAL_CONTROL_TOKEN_FILE: join(dir, 'control.token') };
  await service.start();
  let control: ControlServer;
  try {
    control = await startControlServer({ address: parseAddress('127.0.0.1:0'), target, log: logs.logger, version: 'test', env });
  } catch (err) {
    await service.stop();
    throw err;
  }
  const t: TestService = {
    service,
    control,
    logs,
    httpUrl: `http://${service.httpBound ?? ''}`,
    controlUrl: `http://${control.bound}`,
    token: readTokenFile(control.tokenFile),
    env,
    get stopAsked() {
      return target.stopAsked;
    },
  };
  started.add(t);
  const want = opts.waitWorkers ?? 0;
  if (want > 0) await logs.until(() => readyWorkers(t) >= want, `${want} workers ready`);
  return t;
}

/** Workers of all apps in state `ready`. */
export function readyWorkers(t: TestService): number {
  return t.service.apps.reduce((n, a) => n + a.pool.status().filter((w) => w.state === 'ready').length, 0);
}

/** A call to the control API; `token: true` sends the service's token. */
export function controlCall(t: TestService, method: string, path: string, opts: { token?: boolean | string; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token === true ? t.token : opts.token}`;
  return httpRequest(`${t.controlUrl}${path}`, { method, headers, timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** Stops every service a test started, then its control listener. Use in afterEach. */
export async function stopServices(): Promise<void> {
  const all = [...started];
  started.clear();
  await Promise.all(
    all.map(async (t) => {
      await t.service.stop();
      await t.control.close();
    }),
  );
  for (const d of tokenDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
