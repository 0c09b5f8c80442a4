/**
 * `corral service`: argument validation, the non-Windows answer, and the options handed to
 * node-windows. node-windows itself is never loaded here (it throws off Windows); where the
 * Windows path is exercised, a fake stands in for it.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { parseServiceArgs, runServiceCommand, windowsServiceConfig, type NodeWindows, type ServiceIo, type WindowsServiceConfig } from '../../src/cli/service-cmd.js';

/** Runs the command with captured output; node-windows must not be loaded unless `nw` is given. */
async function run(argv: string[], io: Partial<ServiceIo> = {}, nw?: NodeWindows): Promise<{ code: number; out: string; err: string; loaded: boolean }> {
  let out = '';
  let err = '';
  let loaded = false;
  const code = await runServiceCommand(argv, {
    platform: 'linux',
    cwd: '/srv/corral',
    out: (t) => (out += t),
    err: (t) => (err += t),
    loadNodeWindows: async () => {
      loaded = true;
      if (!nw) throw new Error('node-windows must not be loaded here');
      return nw;
    },
    timeoutMs: 2_000,
    ...io,
  });
  return { code, out, err, loaded };
}

/** A stand-in for node-windows: records what it was given and emits the events a real one would. */
function fakeNodeWindows(opts: { admin?: boolean; exists?: boolean; events?: Partial<Record<string, string[]>> } = {}) {
  const made: WindowsServiceConfig[] = [];
  const calls: string[] = [];
  class Service extends EventEmitter {
    readonly exists = opts.exists ?? true;
    constructor(config: WindowsServiceConfig) {
      super();
      made.push(config);
    }
    #act(action: string): void {
      calls.push(action);
      const events = opts.events?.[action] ?? [action];
      setImmediate(() => {
        for (const e of events) this.emit(e, e === 'error' ? new Error('access denied') : undefined);
      });
    }
    install(): void {
      this.#act('install');
    }
    uninstall(): void {
      this.#act('uninstall');
    }
    start(): void {
      this.#act('start');
    }
    stop(): void {
      this.#act('stop');
    }
  }
  const nw: NodeWindows = { Service, isAdminUser: (cb) => setImmediate(() => cb(opts.admin ?? true)) };
  return { nw, made, calls };
}

describe('corral service: arguments', () => {
  it('prints usage for --help', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('corral service install --config FILE');
    expect(r.loaded).toBe(false);
  });

  it.each([
    [[], 'no action given (expected one of: install, uninstall, start, stop)'],
    [['restart'], 'unknown action "restart" (expected one of: install, uninstall, start, stop)'],
    [['install'], 'install needs --config FILE'],
    [['install', '--config'], '--config needs a value'],
    [['install', '--config', '--name', 'x'], '--config needs a value'],
    [['install', '--config='], '--config needs a value'],
    [['install', '--config', 'a.json', '--config', 'b.json'], '--config given twice'],
    [['install', '--config', 'a.json', '--user', 'me'], 'unknown option "--user"'],
    [['start', 'stop'], 'unexpected argument "stop" (one action: install, uninstall, start, stop)'],
    [['stop', '--name', 'bad"name'], '--name "bad\\"name" is not a service name'],
  ])('refuses %j with exit 2', async (argv, message) => {
    for (const platform of ['linux', 'win32'] as const) {
      const r = await run(argv, { platform });
      expect(r.code).toBe(2);
      expect(r.err).toContain(`corral service: ${message}`);
      expect(r.err).toContain('Usage:');
      expect(r.loaded).toBe(false);
    }
  });

  it('resolves paths against the working directory, with the platform\'s path rules', () => {
    expect(parseServiceArgs(['install', '--config', 'svc.json', '--log-dir=logs'], '/srv/corral', 'linux')).toEqual({
      action: 'install', config: '/srv/corral/svc.json', logDir: '/srv/corral/logs', name: 'corral',
    });
    expect(parseServiceArgs(['install', '--config', 'svc.json', '--name', 'corral-site1'], 'C:\\corral', 'win32')).toEqual({
      action: 'install', config: 'C:\\corral\\svc.json', logDir: null, name: 'corral-site1',
    });
    expect(parseServiceArgs(['--name', 'x', 'stop'], 'C:\\corral', 'win32')).toEqual({ action: 'stop', config: null, logDir: null, name: 'x' });
  });
});

describe('corral service: not on Windows', () => {
  it.each([['install', '--config', 'corral-service.json'], ['uninstall'], ['start'], ['stop', '--name', 'corral']])(
    '%j says it is Windows-only, points to the systemd unit and exits 2',
    async (...argv) => {
      const r = await run(argv);
      expect(r.code).toBe(2);
      expect(r.err).toContain('works only on Windows (this is linux)');
      expect(r.err).toMatch(/config[\\/]systemd[\\/]corral\.service/);
      expect(r.out).toBe('');
      expect(r.loaded).toBe(false);
    },
  );
});

describe('corral service: the node-windows options', () => {
  it('runs `corral serve --config FILE` with a graceful stop', () => {
    const c = windowsServiceConfig('corral', 'C:\\corral\\corral-service.json', 'C:\\corral\\logs', 30);
    expect(c.script).toMatch(/[\\/]cli[\\/]main\.js$/);
    expect(c.scriptOptions).toBe('serve --config C:\\corral\\corral-service.json');
    expect(c.stopparentfirst).toBe(true);
    expect(c.stoptimeout).toBeGreaterThan(30);
    expect(c.logpath).toBe('C:\\corral\\logs');
    expect(c.execPath).toBe(process.execPath);
  });
});

describe('corral service: on Windows (node-windows faked)', () => {
  const win = { platform: 'win32' as const, cwd: 'C:\\corral' };

  it('refuses a config path with a space before touching node-windows', async () => {
    const r = await run(['install', '--config', 'C:\\Program Files\\corral\\corral-service.json'], win);
    expect(r.code).toBe(2);
    expect(r.err).toContain('contains a space');
    expect(r.loaded).toBe(false);
  });

  it('refuses a config file that does not exist', async () => {
    const r = await run(['install', '--config', 'C:\\nowhere\\corral-service.json'], win);
    expect(r.code).toBe(2);
    expect(r.err).toContain('config file C:\\nowhere\\corral-service.json does not exist');
    expect(r.loaded).toBe(false);
  });

  it('needs administrator rights', async () => {
    const fake = fakeNodeWindows({ admin: false });
    const r = await run(['stop'], win, fake.nw);
    expect(r.code).toBe(1);
    expect(r.err).toContain('elevated prompt');
    expect(fake.made).toEqual([]);
  });

  it('stops and starts an installed service by name', async () => {
    const fake = fakeNodeWindows();
    expect((await run(['stop', '--name', 'corral-site1'], win, fake.nw)).out).toBe('service "corral-site1": stopped\n');
    expect((await run(['start', '--name', 'corral-site1'], win, fake.nw)).out).toBe('service "corral-site1": started\n');
    expect(fake.calls).toEqual(['stop', 'start']);
    expect(fake.made.map((c) => [c.name, c.stopparentfirst])).toEqual([['corral-site1', true], ['corral-site1', true]]);
  });

  it('waits for uninstall to finish, not for the stop it does first', async () => {
    const fake = fakeNodeWindows({ events: { uninstall: ['stop', 'uninstall'] } });
    const r = await run(['uninstall'], win, fake.nw);
    expect(r.code).toBe(0);
    expect(r.out).toBe('service "corral": stopped and uninstalled\n');
  });

  it('reports a service that is not installed, and node-windows errors', async () => {
    const missing = fakeNodeWindows({ exists: false });
    const start = await run(['start'], win, missing.nw);
    expect(start.code).toBe(1);
    expect(start.err).toContain('no service "corral" is installed');
    expect((await run(['stop'], win, missing.nw)).code).toBe(0);
    expect(missing.calls).toEqual([]);

    const failing = fakeNodeWindows({ events: { start: ['error'] } });
    const r = await run(['start'], win, failing.nw);
    expect(r.code).toBe(1);
    expect(r.err).toContain('corral service start: error: access denied');
  });
});
