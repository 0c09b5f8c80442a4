import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { AddressError, formatAddress, parseAddress, type ListenAddress } from '../../src/config/address.js';
import { wantsHelp } from '../../src/config/argv.js';
import { CommandSyntaxError, splitCommand } from '../../src/config/command.js';
import { renderHelp } from '../../src/config/help.js';
import { command } from '../../src/config/kinds.js';
import { loadSettings, type LoadOptions } from '../../src/config/load.js';
import { ConfigError, formatProblem } from '../../src/config/problems.js';
import { SETTINGS, listenAddresses, type Settings } from '../../src/config/settings.js';

/** What the "unknown" messages list, derived from the table (so adding a setting does not break these tests). */
const KNOWN_FLAGS = ['--help', '--reload', '--access-logfile', ...SETTINGS.flatMap((r) => [r.flag, ...(r.aliases ?? [])].filter((f): f is string => f !== null && f.startsWith('--')))].join(', ');
const KNOWN_KEYS = SETTINGS.filter((r) => r.key !== 'config').map((r) => r.key).join(', ');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'corral-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const load = (o: Partial<LoadOptions> = {}) => loadSettings({ argv: [], env: {}, cwd: dir, platform: 'linux', ...o });
const writeConfig = (data: unknown, name = 'corral.json'): string => {
  const file = join(dir, name);
  writeFileSync(file, typeof data === 'string' ? data : JSON.stringify(data));
  return file;
};
/** The formatted problems of the ConfigError that `run` throws. */
const problemsOf = (run: () => unknown): string[] => {
  try {
    run();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(formatProblem);
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('parseAddress', () => {
  it.each<[string, ListenAddress]>([
    ['127.0.0.1:9000', { kind: 'tcp', host: '127.0.0.1', port: 9000 }],
    ['localhost:0', { kind: 'tcp', host: 'localhost', port: 0 }],
    [':9000', { kind: 'tcp', host: '0.0.0.0', port: 9000 }],
    ['9000', { kind: 'tcp', host: '127.0.0.1', port: 9000 }],
    ['[::1]:9000', { kind: 'tcp', host: '::1', port: 9000 }],
    ['/run/corral.sock', { kind: 'unix', path: '/run/corral.sock' }],
    ['./corral.sock', { kind: 'unix', path: './corral.sock' }],
    ['unix:corral.sock', { kind: 'unix', path: 'corral.sock' }],
    ['unix:/tmp/a:9000', { kind: 'unix', path: '/tmp/a:9000' }],
    ['\\\\.\\pipe\\corral', { kind: 'pipe', path: '\\\\.\\pipe\\corral' }],
    ['//./pipe/corral', { kind: 'pipe', path: '\\\\.\\pipe\\corral' }],
    ['\\\\.\\PIPE\\corral', { kind: 'pipe', path: '\\\\.\\pipe\\corral' }],
    ['fd:0', { kind: 'listen-fd', fd: 0 }],
    ['stdin', { kind: 'stdin' }],
    [' 127.0.0.1:80 ', { kind: 'tcp', host: '127.0.0.1', port: 80 }],
  ])('%s', (text, expected) => {
    expect(parseAddress(text)).toEqual(expected);
    expect(parseAddress(formatAddress(expected))).toEqual(expected);
  });

  it.each([
    ['', 'is empty'],
    ['localhost', 'has no port'],
    ['host:', 'invalid port'],
    ['host:70000', 'out of range'],
    ['::1:9000', 'needs brackets'],
    ['[::1]', 'has no port'],
    ['[nope]:80', 'invalid IPv6 host'],
    ['bad_host!:80', 'invalid host'],
    ['999.1.1.1:80', 'invalid host'],
    ['/tmp/sock:9000', 'unix:PATH'],
    ['fd:x', 'invalid file descriptor'],
    ['unix:', 'no socket path'],
    ['\\\\.\\pipe\\', 'no port'],
  ])('refuses %j (%s)', (text, reason) => {
    const err = (() => {
      try {
        parseAddress(text);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(AddressError);
    expect((err as AddressError).reason).toContain(reason);
    expect((err as AddressError).message).toContain('expected host:port');
  });
});

describe('python command', () => {
  it.each([
    ['py -3.12', ['py', '-3.12']],
    ['"/opt/my python/bin/python3" -X utf8', ['/opt/my python/bin/python3', '-X', 'utf8']],
    ["'C:\\Program Files\\Python312\\python.exe'", ['C:\\Program Files\\Python312\\python.exe']],
    ['python3 --opt="a b" ""', ['python3', '--opt=a b', '']],
    ['  python3  ', ['python3']],
  ])('splits %j', (text, argv) => expect(splitCommand(text)).toEqual(argv));

  it('refuses an unclosed quote', () => expect(() => splitCommand('"py -3')).toThrow(CommandSyntaxError));

  it('makes a relative program path absolute, leaves a bare name for PATH', () => {
    const kind = command();
    expect(kind.fromText('./venv/bin/python -u', { baseDir: '/srv/app', platform: 'linux' })).toEqual({ ok: true, value: ['/srv/app/venv/bin/python', '-u'] });
    expect(kind.fromText('venv\\Scripts\\python.exe', { baseDir: 'C:\\app', platform: 'win32' })).toEqual({ ok: true, value: ['C:\\app\\venv\\Scripts\\python.exe'] });
    expect(kind.fromJson(['py', '-3.12'], { baseDir: 'C:\\app', platform: 'win32' })).toEqual({ ok: true, value: ['py', '-3.12'] });
  });

  it('defaults to python3, python on Windows', () => {
    const row = SETTINGS.find((r) => r.key === 'python');
    expect(typeof row?.default === 'function' && [row.default('linux'), row.default('win32')]).toEqual(['python3', 'python']);
    expect(load().settings.python).toEqual(['python3']);
  });
});

describe('loadSettings precedence', () => {
  const setup = () => {
    mkdirSync(join(dir, 'app'));
    const config = writeConfig({ root: 'app', workers: 3, threads: 3, logLevel: 'warn', wsgiApp: 'cfg:app', http: ':8000' });
    return load({
      argv: ['--config', config, '--log-level', 'debug', '--listen', '9001', '--listen=unix:/tmp/x.sock'],
      env: { CORRAL_THREADS: '4', CORRAL_LOG_LEVEL: 'error', WSGI_HANDLER: 'handler.app()', CORRAL_MAX_PARAMS_BYTES: '' },
    });
  };
  it.each<[string, unknown, string]>([
    ['root', 'app', 'config'],
    ['workers', 3, 'config'],
    ['threads', 4, 'env'],
    ['logLevel', 'debug', 'flag'],
    ['wsgiApp', 'handler.app()', 'env'],
    ['maxParamsBytes', 1048576, 'default'],
    ['http', { kind: 'tcp', host: '0.0.0.0', port: 8000 }, 'config'],
    ['listen', [{ kind: 'tcp', host: '127.0.0.1', port: 9001 }, { kind: 'unix', path: '/tmp/x.sock' }], 'flag'],
    ['config', 'corral.json', 'flag'],
  ])('%s = %j from %s', (key, value, source) => {
    const { settings, sources } = setup();
    const got = (settings as Record<string, unknown>)[key];
    if (key === 'root' || key === 'config') expect(got).toBe(join(dir, String(value)));
    else expect(got).toEqual(value);
    expect(sources[key as keyof typeof sources]).toBe(source);
  });

  it('uses the first environment name set: WSGI_APP before WSGI_HANDLER', () => {
    expect(load({ env: { WSGI_APP: 'a:b', WSGI_HANDLER: 'c.d' } }).settings.wsgiApp).toBe('a:b');
  });

  it('defaults: APP_DIR is the working directory, no addresses (serve then uses 127.0.0.1:9000)', () => {
    const { settings, sources } = load();
    expect(settings.root).toBe(dir);
    expect(Object.values(sources).every((s) => s === 'default')).toBe(true);
    expect(listenAddresses(settings)).toEqual([{ kind: 'tcp', host: '127.0.0.1', port: 9000 }]);
    expect(listenAddresses({ listen: [], http: { kind: 'tcp', host: '127.0.0.1', port: 8000 } })).toEqual([]);
  });

  it('splits PYTHONPATH on : and ; (only ; on Windows) and CORRAL_LISTEN on commas', () => {
    const { settings } = load({ env: { PYTHONPATH: 'lib:/opt/x;vendor', CORRAL_LISTEN: '9000, stdin' }, argv: ['--python', './bin/py'] });
    expect(settings.pythonPath).toEqual([join(dir, 'lib'), '/opt/x', join(dir, 'vendor')]);
    expect(settings.listen).toEqual([{ kind: 'tcp', host: '127.0.0.1', port: 9000 }, { kind: 'stdin' }]);
    expect(settings.python).toEqual([join(dir, 'bin/py')]);
  });

  it("reads the app folder's own corral.json when no config file is named, and only then", () => {
    mkdirSync(join(dir, 'app'));
    writeFileSync(join(dir, 'app', 'corral.json'), JSON.stringify({ workers: 4, wsgiApp: 'site:app', pythonPath: ['lib'] }));
    const own = load({ argv: ['app'] });
    expect(own.settings).toMatchObject({ root: join(dir, 'app'), workers: 4, wsgiApp: 'site:app', pythonPath: [join(dir, 'app', 'lib')] });
    expect(own.sources.workers).toBe('config');
    // The environment and flags still win over it.
    expect(load({ argv: ['app', '--workers', '6'], env: { CORRAL_WORKERS: '5' } }).settings.workers).toBe(6);
    expect(load({ env: { CORRAL_APP_DIR: join(dir, 'app') } }).settings.workers).toBe(4);
    // A named config file replaces it, it is not merged with it.
    const other = writeConfig({ threads: 3 }, 'other.json');
    const named = load({ argv: ['app', '--config', other] });
    expect(named.settings).toMatchObject({ workers: 2, threads: 3, wsgiApp: 'wsgi:application' });
    // A broken one is reported under its name; a missing APP_DIR is reported once.
    writeFileSync(join(dir, 'app', 'corral.json'), '{"workers": "lots"}');
    expect(problemsOf(() => load({ argv: ['app'] })).join('\n')).toMatch(/workers/);
    expect(problemsOf(() => load({ argv: ['nowhere'] })).filter((p) => p.includes('nowhere'))).toHaveLength(1);
  });

  it('accepts a BOM and "$schema" in the config file', () => {
    const file = writeConfig(`\uFEFF${JSON.stringify({ $schema: './corral.schema.json', workers: 5 })}`);
    expect(load({ env: { CORRAL_CONFIG: file } }).settings.workers).toBe(5);
  });

  it('types Settings from the table', () => {
    expectTypeOf<Settings['workers']>().toEqualTypeOf<number>();
    expectTypeOf<Settings['http']>().toEqualTypeOf<ListenAddress | null>();
    expectTypeOf<Settings['python']>().toEqualTypeOf<readonly string[]>();
    expectTypeOf<Settings['logLevel']>().toEqualTypeOf<'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'>();
  });

  it('deep-freezes the result', () => {
    const result = load({ argv: ['--listen', '9000'] });
    expect(Object.isFrozen(result.settings)).toBe(true);
    expect(Object.isFrozen(result.settings.listen)).toBe(true);
    expect(Object.isFrozen(result.settings.listen[0])).toBe(true);
    expect(Object.isFrozen(result.sources)).toBe(true);
    expect(() => {
      (result.settings as { workers: number }).workers = 9;
    }).toThrow(TypeError);
  });
});

describe('loadSettings problems', () => {
  it('names the flag, setting, value and expectation', () => {
    expect(problemsOf(() => load({ argv: ['--workers', 'lots'] }))).toEqual(['--workers: "lots" is not an integer (workers: expected an integer 1..256)']);
    expect(problemsOf(() => load({ env: { CORRAL_WORKERS: '0' } }))).toEqual(['CORRAL_WORKERS: "0" is out of range (workers: expected an integer 1..256)']);
  });

  it('reports every problem at once, from every source', () => {
    const config = writeConfig({ wrokers: 2, listen: ['127.0.0.1:9000', 'nope'], threads: '2', config: 'other.json' });
    const problems = problemsOf(() =>
      load({
        argv: ['--config', config, '--workers', 'lots', '--log-level', 'loud', '--bogus', '-x', 'missing-dir', 'extra', '--http', 'stdin', '--threads'],
        env: { CORRAL_MAX_PARAMS_BYTES: '12', WSGI_APP: 'not an app' },
      }),
    );
    expect(problems).toEqual([
      `--bogus: is not a known option (expected one of ${KNOWN_FLAGS})`,
      `-x: is not a known option (expected one of ${KNOWN_FLAGS})`,
      '--threads: is missing its value (threads: expected --threads N; write --threads=VALUE for a value starting with -)',
      'argument: "extra" is unexpected (expected at most one APP_DIR)',
      `${config} $.wrokers: is not a known setting; did you mean workers? (expected one of ${KNOWN_KEYS})`,
      `${config} $.config: cannot be set inside a config file (expected one of ${KNOWN_KEYS})`,
      `APP_DIR: "missing-dir" does not exist (resolved to ${join(dir, 'missing-dir')}) (root: expected an existing directory)`,
      'WSGI_APP: "not an app" is not a WSGI app reference (wsgiApp: expected module:callable or module.callable, optionally followed by ())',
      expect.stringMatching(/^[^:]+corral\.json \$\.listen\[1\]: "nope" has no port \(host:port\) \(listen: expected host:port, .* or stdin\)$/),
      expect.stringMatching(/^--http: "stdin" cannot be used here \(http: expected host:port, .*, a named pipe .* or fd:N \(inherited listening socket\)\)$/),
      '--workers: "lots" is not an integer (workers: expected an integer 1..256)',
      `${config} $.threads: "2" is not an integer (threads: expected an integer 1..256)`,
      '--log-level: "loud" is not a valid choice (logLevel: expected one of trace, debug, info, warn, error, fatal, silent)',
      'CORRAL_MAX_PARAMS_BYTES: "12" is out of range (maxParamsBytes: expected an integer 1024..1073741824)',
    ]);
  });

  it('reports a config file that cannot be read or is not a JSON object', () => {
    expect(problemsOf(() => load({ env: { CORRAL_CONFIG: 'absent.json' } }))).toEqual([
      `CORRAL_CONFIG: "${join(dir, 'absent.json')}" cannot be read (ENOENT) (config: expected a readable JSON file)`,
    ]);
    expect(problemsOf(() => load({ argv: ['--config', writeConfig('{"workers": 2,}')] }))[0]).toMatch(/corral\.json: is not valid JSON \(.*\) \(expected a JSON object of settings\)$/);
    expect(problemsOf(() => load({ argv: ['--config', writeConfig([1])] }))[0]).toMatch(/corral\.json: \[1\] is not a JSON object/);
  });

  it('knows gunicorn\'s spellings, suggests the flag a typo meant, and places a JSON error by line and column', () => {
    const s = load({ argv: ['-w', '3', '-b', '127.0.0.1:9100', '--bind', '127.0.0.1:9101', '--timeout', '7', '--reload', '--chdir', dir] }).settings;
    expect(s.workers).toBe(3);
    expect(s.listen.map((a) => (a.kind === 'tcp' ? a.port : 0))).toEqual([9100, 9101]);
    expect(s.requestTimeout).toBe(7);
    expect(s.watchFileChangesMask).toBe('*.py');
    expect(s.root).toBe(dir);
    expect(problemsOf(() => load({ argv: ['--wrokers', '2'] }))).toEqual([expect.stringMatching(/^--wrokers: is not a known option; did you mean --workers\? \(expected an option that corral serve --help lists\)$/)]);
    expect(problemsOf(() => load({ argv: ['--chdir', dir, dir] }))[0]).toMatch(/^argument: ".*" is given twice/);
    // A positional module:callable is the app (gunicorn's APP_MODULE), beside or instead of APP_DIR.
    expect(load({ argv: ['mysite.wsgi:application'] }).settings.wsgiApp).toBe('mysite.wsgi:application');
    const both = load({ argv: [dir, 'app:make_app()'] }).settings;
    expect([both.root, both.wsgiApp]).toEqual([dir, 'app:make_app()']);
    expect(problemsOf(() => load({ argv: ['a:b', '--wsgi-app', 'c:d'] }))[0]).toMatch(/^argument: "a:b" is given twice/);
    expect(problemsOf(() => load({ argv: ['--config', writeConfig('{\n  "workers": 2,\n  "threads": 3,,\n}')] }))[0]).toMatch(/is not valid JSON \(line 3, column 16: /);
  });

  it('refuses an APP_DIR that is a file, and a missing value taken from the next flag', () => {
    writeFileSync(join(dir, 'file'), '');
    expect(problemsOf(() => load({ argv: ['file'] }))[0]).toMatch(/^APP_DIR: "file" is not a directory/);
    expect(problemsOf(() => load({ argv: ['--workers', '--threads', '2'] }))[0]).toMatch(/^--workers: is missing its value/);
    expect(load({ argv: ['--workers=4'] }).settings.workers).toBe(4);
  });

  it('throws ConfigError with a readable message and a stable code', () => {
    expect(() => load({ argv: ['--workers', '0'] })).toThrow(/^invalid configuration \(1 problem\):\n {2}- --workers: "0" is out of range/);
    expect(() => load({ argv: ['--workers', '0'] })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it.each(['app:application', 'pkg.mod:app', 'pkg.wsgi.application', 'django.core.wsgi.get_wsgi_application()', 'módulo:aplicação'])(
    'accepts wsgiApp %j',
    (spec) => expect(load({ argv: ['--wsgi-app', spec] }).settings.wsgiApp).toBe(spec),
  );
  it.each(['wsgi', 'wsgi:', ':app', 'a:b:c', 'a-b:c', 'a:b(x)', '1mod:app', 'a..b'])('refuses wsgiApp %j', (spec) => {
    expect(problemsOf(() => load({ argv: ['--wsgi-app', spec] }))).toHaveLength(1);
  });
});

describe('help', () => {
  it('is asked for by -h or --help before --', () => {
    expect(wantsHelp(['--workers', '2', '-h'])).toBe(true);
    expect(wantsHelp(['--help'])).toBe(true);
    expect(wantsHelp(['--', '--help'])).toBe(false);
    expect(load({ argv: ['--help'] }).settings.workers).toBe(2);
  });

  it('lists every flag, environment variable and default', () => {
    const help = renderHelp('serve');
    expect(help).toMatch(/^Usage: corral serve \[APP_DIR\] \[MODULE:CALLABLE\] \[options\]/);
    for (const row of SETTINGS) {
      if (row.flag !== null) expect(help).toContain(row.flag);
      for (const name of row.env) expect(help).toContain(name);
    }
    expect(help).toContain('default: 2]');
    expect(help.split('\n').every((line) => line.length <= 80)).toBe(true);
  });
});

describe('the config file\'s apps list', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'corral-apps-'));
    mkdirSync(join(dir, 'shop'));
    mkdirSync(join(dir, 'blog'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const load = (config: object, argv: string[] = [], env: Record<string, string> = {}) => {
    const file = join(dir, 'corral.json');
    writeFileSync(file, JSON.stringify(config));
    return loadSettings({ argv: ['--config', file, ...argv], env, cwd: dir, platform: process.platform });
  };

  it('merges each entry over the service settings, relative roots from the file\'s directory', () => {
    const r = load({ workers: 3, apps: [{ root: 'shop', wsgiApp: 'shop.wsgi:application', listen: ['127.0.0.1:9401'] }, { root: 'blog', threads: 4 }] }, ['--threads', '2']);
    expect(r.apps).toHaveLength(2);
    expect(r.apps[0]).toMatchObject({ root: join(dir, 'shop'), wsgiApp: 'shop.wsgi:application', workers: 3, threads: 2 });
    expect(r.apps[0]!.listen).toEqual([{ kind: 'tcp', host: '127.0.0.1', port: 9401 }]);
    expect(r.apps[1]).toMatchObject({ root: join(dir, 'blog'), wsgiApp: 'wsgi:application', threads: 4, http: null });
    expect(r.apps[1]!.listen).toEqual([]);
    expect(Object.isFrozen(r.apps[0])).toBe(true);
  });

  it('reports every problem of every entry with its JSON path', () => {
    let err: unknown;
    try {
      load({ apps: [{ root: 'nope', workerz: 2 }, { wsgiApp: 'x:y' }, 5, { root: 'shop', logLevel: 'debug' }, { root: 'shop', workers: 'many' }] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const lines = (err as ConfigError).problems.map(formatProblem).join('\n');
    expect(lines).toContain('$.apps[0].root: "nope" does not exist');
    expect(lines).toContain('$.apps[0].workerz: is not a known setting');
    expect(lines).toContain('$.apps[1]: has no root');
    expect(lines).toContain('$.apps[2]: 5 is not an object');
    expect(lines).toContain('$.apps[3].logLevel: cannot be set per app');
    expect(lines).toContain('$.apps[4].workers: "many" is not an integer');
  });

  it('refuses apps that is not a list, and the same app twice', () => {
    expect(() => load({ apps: { root: 'shop' } })).toThrow(/\$\.apps: .* is not a list/);
    expect(() => load({ apps: [{ root: 'shop' }, { root: 'shop' }] })).toThrow(/\$\.apps\[1\]: .*repeats apps\[0\]/);
  });

  it('is empty without an apps key', () => {
    expect(load({ workers: 2 }).apps).toEqual([]);
  });
});

describe('booleans and gunicorn\'s --access-logfile', () => {
  it('a config file takes JSON true/false; "yes" there is refused without claiming yes is accepted', () => {
    expect(load({ argv: ['--config', writeConfig({ accessLog: false }, 'c.json')] }).settings.accessLog).toBe(false);
    const [yes] = problemsOf(() => load({ argv: ['--config', writeConfig({ accessLog: 'yes' }, 'c.json')] }));
    expect(yes).toMatch(/\$\.accessLog: "yes" is a string, not a boolean \(accessLog: expected true or false, JSON booleans without quotes; on\/off, yes\/no and 1\/0 are for flags and environment variables\)$/);
    expect(problemsOf(() => load({ argv: ['--config', writeConfig({ accessLog: 3 }, 'c.json')] }))[0]).toMatch(/3 is not a boolean \(accessLog: expected true or false, JSON booleans without quotes\)$/);
    // Flags and the environment are text, where the words are accepted.
    expect(load({ argv: ['--access-log', 'no'] }).settings.accessLog).toBe(false);
    expect(load({ env: { CORRAL_ACCESS_LOG: 'off' } }).settings.accessLog).toBe(false);
  });
  it('--access-logfile - turns access lines on, where the log goes; a file of their own is refused with the reason', () => {
    expect(load({ argv: ['--access-logfile', '-'], env: { CORRAL_ACCESS_LOG: 'false' } }).settings.accessLog).toBe(true);
    expect(problemsOf(() => load({ argv: ['--access-logfile', '/var/log/access.log'] }))).toEqual([
      '--access-logfile: "/var/log/access.log" is not supported for a file (accessLog: expected - (access lines go into corral\'s log: stdout, or the file of --log-file))',
    ]);
  });
});
