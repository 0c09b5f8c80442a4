/**
 * The relay/service pairing secret and the pieces around it, without processes: the secret file
 * (created once by racing relays, private, refused when another user could read it), the constant-
 * time check with re-reading, the address derived from it (Windows and POSIX), the token in the
 * settings record, %VAR% expansion on the relay's side, the service command line, and the named
 * pipe options and pre-existing pipe refusal (Windows branches, with the connection injected).
 */
import { chmodSync, chownSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { paramsToMap } from '../../src/fcgi/params.js';
import { RecordParser, type FcgiRecord } from '../../src/fcgi/parser.js';
import { serveCommand } from '../../src/relay/autostart.js';
import { locateService, secretPathFor } from '../../src/relay/discover.js';
import { SettingsInjector, settingsFromEnv } from '../../src/relay/inject.js';
import { ensureSecretFile, readSecretFile, RELAY_TOKEN_PARAM, SecretCheck, secretTag } from '../../src/relay/secret.js';
import { pipeListenOptions, refuseExistingPipe } from '../../src/front/pipe-access.js';
import { realPathOf } from '../../src/cli/router.js';
import { appSettings, expandVars } from '../../src/config/app-settings.js';
import { silentLogger } from '../../src/log/logger.js';
import { loadSettings } from '../../src/config/load.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), 'corral-secret-')));
  dirs.push(d);
  return d;
}

describe('the secret file', () => {
  it('is created once, private (mode 600), and every relay reads the same secret', () => {
    const file = join(tempDir(), 'corral-pool.secret');
    const results = Array.from({ length: 5 }, () => ensureSecretFile(file, 'linux'));
    expect(results.every((r) => r.ok)).toBe(true);
    const secrets = new Set(results.map((r) => (r.ok ? r.secret : '')));
    expect(secrets.size).toBe(1);
    expect([...secrets][0]).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe([...secrets][0]);
  });

  it('refuses a file every user may read or that another user owns (POSIX), and one too short', () => {
    const dir = tempDir();
    const open = join(dir, 'open.secret');
    writeFileSync(open, 'x'.repeat(64), { mode: 0o644 });
    chmodSync(open, 0o644);
    const r = readSecretFile(open, 'linux');
    expect(r.ok === false && r.reason).toMatch(/every user may read or change it/);
    // A group the operator chose (service account and relays) is fine.
    const group = join(dir, 'group.secret');
    writeFileSync(group, 'x'.repeat(64), { mode: 0o640 });
    chmodSync(group, 0o640);
    expect(readSecretFile(group, 'linux').ok).toBe(true);
    // It is not replaced either: someone may have planted it.
    expect(ensureSecretFile(open, 'linux').ok).toBe(false);
    const foreign = join(dir, 'foreign.secret');
    writeFileSync(foreign, 'x'.repeat(64), { mode: 0o600 });
    // Owned by someone else (root's files are trusted like one's own, so as root give it away first).
    if (statSync(foreign).uid === 0) chownSync(foreign, 4242, 4242);
    const owner = statSync(foreign).uid;
    expect(readSecretFile(foreign, 'linux', owner + 1)).toMatchObject({ ok: false, reason: expect.stringMatching(/owned by uid/) });
    expect(readSecretFile(foreign, 'linux', owner).ok).toBe(true);
    const short = join(dir, 'short.secret');
    writeFileSync(short, 'abc', { mode: 0o600 });
    expect(readSecretFile(short, 'linux').ok).toBe(false);
    expect(readSecretFile(join(dir, 'none'), 'linux')).toMatchObject({ ok: false, missing: true });
    // Windows: Node sees no owner or ACL; the folder (the identity's %TEMP%) keeps it private.
    expect(readSecretFile(open, 'win32').ok).toBe(true);
  });

  it('is checked in constant time against a presented token, re-reading a replaced file at most once a second', () => {
    const file = join(tempDir(), 's');
    writeFileSync(file, 'a'.repeat(40), { mode: 0o600 });
    let now = 0;
    const check = new SecretCheck(file, silentLogger(), 'linux', () => now);
    expect(check.matches('a'.repeat(40))).toBe(true);
    expect(check.matches('a'.repeat(39))).toBe(false);
    expect(check.matches('')).toBe(false);
    writeFileSync(file, 'b'.repeat(40), { mode: 0o600 });
    expect(check.matches('b'.repeat(40))).toBe(false); // read less than a second ago
    now += 1000;
    expect(check.matches('b'.repeat(40))).toBe(true);
    expect(check.matches('a'.repeat(40))).toBe(false);
    const missing = new SecretCheck(join(tempDir(), 'none'), silentLogger(), 'linux', () => now);
    expect(missing.matches('')).toBe(false);
  });
});

describe('where relays find the service and its secret', () => {
  const secret = 'c'.repeat(64);

  it('derives the default pipe and socket names from the secret, so other accounts cannot predict them', () => {
    const tag = secretTag(secret);
    expect(tag).toMatch(/^[0-9a-f]{16}$/);
    expect(secret).not.toContain(tag);
    const win = locateService({ APP_POOL_ID: 'Pool' }, 'win32', 'C:\\Windows\\Temp', secret);
    expect(win.address).toEqual({ kind: 'pipe', path: `\\\\.\\pipe\\corral-Pool-${tag}` });
    expect(win.lockPath).toBe(`C:\\Windows\\Temp\\corral-pipe-corral-Pool-${tag}.lock`);
    const posix = locateService({ APP_POOL_ID: 'Pool' }, 'linux', '/tmp', secret);
    expect(posix.address).toEqual({ kind: 'unix', path: `/tmp/corral-Pool-${tag}.sock` });
    // An explicit CORRAL_SERVICE is the operator's choice and stays as given.
    expect(locateService({ CORRAL_SERVICE: '//./pipe/shared' }, 'win32', 'C:\\T', secret).address).toEqual({ kind: 'pipe', path: '\\\\.\\pipe\\shared' });
  });

  it('keeps the secret in the temp folder per app pool, next to an explicit service\'s lock, or where CORRAL_RELAY_SECRET_FILE says', () => {
    expect(secretPathFor({ APP_POOL_ID: 'My Pool' }, 'win32', 'C:\\Users\\pool\\AppData\\Local\\Temp')).toBe('C:\\Users\\pool\\AppData\\Local\\Temp\\corral-My_Pool.secret');
    expect(secretPathFor({ CORRAL_SERVICE: '/run/corral/x.sock' }, 'linux', '/tmp')).toBe('/run/corral/x.sock.secret');
    expect(secretPathFor({ CORRAL_SERVICE: '\\\\.\\pipe\\shared' }, 'win32', 'C:\\T')).toBe('C:\\T\\corral-pipe-shared.secret');
    expect(secretPathFor({ CORRAL_RELAY_SECRET_FILE: 'C:\\corral\\relay.secret', CORRAL_SERVICE: 'x.sock' }, 'win32', 'C:\\T')).toBe('C:\\corral\\relay.secret');
  });

  it('hands the secret file to the service it starts', () => {
    const cmd = serveCommand('\\\\.\\pipe\\corral-Pool-x', 'C:\\site', { CORRAL_RELAY_SECRET_FILE: 'C:\\s' }, { execPath: 'node', cli: 'main.js', tmpDir: 'C:\\T', platform: 'win32', secretFile: 'C:\\T\\corral-Pool.secret' });
    expect(cmd.args.slice(1, 7)).toEqual(['serve', '--listen', '\\\\.\\pipe\\corral-Pool-x', '--allowed-roots', 'C:\\site', '--relay-secret-file']);
    expect(cmd.args[7]).toBe('C:\\T\\corral-Pool.secret');
    expect(cmd.env).toEqual({});
  });
});

describe('what the relay sends', () => {
  function records(b: Buffer): FcgiRecord[] {
    const out: FcgiRecord[] = [];
    expect(new RecordParser().push(b, (r) => out.push(r))).toBeNull();
    return out;
  }

  it('sends the token first, then the settings', () => {
    const inj = new SettingsInjector([['WSGI_APP', 'a:b']], 'd'.repeat(64));
    const params = paramsToMap(records(inj.recordsFor(3))[0]!.content)!;
    expect([...params.keys()]).toEqual([RELAY_TOKEN_PARAM, 'CORRAL_SETTING_WSGI_APP']);
    expect(params.get(RELAY_TOKEN_PARAM)).toBe('d'.repeat(64));
    expect(new SettingsInjector([], 'd'.repeat(64)).empty).toBe(false);
  });

  it('expands %VAR% against its own environment (the IIS worker\'s), leaving APPL_PHYSICAL_PATH for the service and other unknown names empty', () => {
    const env = { PYTHONPATH: '%SITE_LIBS%;%APPL_PHYSICAL_PATH%\\src;%nope%', site_libs: 'D:\\libs', WSGI_APP: '%APP%', APP: 'site.wsgi:app', CORRAL_FORWARD_PYTHONPATH: 'true' };
    expect(settingsFromEnv(env, 'win32')).toEqual([['WSGI_APP', 'site.wsgi:app'], ['PYTHONPATH', 'D:\\libs;%APPL_PHYSICAL_PATH%\\src;']]);
    expect(settingsFromEnv({ ...env, CORRAL_FORWARD_PYTHONPATH: 'false' }, 'win32')).toEqual([['WSGI_APP', 'site.wsgi:app']]);
    // POSIX names are case-sensitive.
    expect(settingsFromEnv(env, 'linux')).toEqual([['WSGI_APP', 'site.wsgi:app'], ['PYTHONPATH', ';%APPL_PHYSICAL_PATH%\\src;']]);
  });
});

describe('the service side of %VAR%', () => {
  it('expands only the names it is given (APPL_PHYSICAL_PATH), never its own environment', () => {
    process.env.CORRAL_TEST_LEAK = 'leaked';
    try {
      expect(expandVars('%CORRAL_TEST_LEAK%/%APPL_PHYSICAL_PATH%', 'linux', { APPL_PHYSICAL_PATH: '/srv/a' })).toBe('%CORRAL_TEST_LEAK%//srv/a');
      const r = appSettings(loadSettings({ argv: [], env: {}, cwd: '/srv', platform: 'linux' }).settings, '/srv/a', [{ origin: 'IIS environment', values: new Map([['CORRAL_WORKERS', '%CORRAL_TEST_LEAK%']]) }], 'linux');
      expect(r.problems).toHaveLength(1);
      expect(JSON.stringify(r.problems)).not.toContain('leaked');
    } finally {
      delete process.env.CORRAL_TEST_LEAK;
    }
  });
});

describe('real paths for allowedRoots', () => {
  it('resolves symlinks, and for a path not there yet its nearest existing ancestor', () => {
    const dir = tempDir();
    const target = join(dir, 'target');
    mkdirSync(target);
    symlinkSync(target, join(dir, 'link'));
    expect(realPathOf(join(dir, 'link'), 'linux')).toBe(target);
    expect(realPathOf(join(dir, 'link', 'not', 'yet.log'), 'linux')).toBe(join(target, 'not', 'yet.log'));
    expect(realPathOf(join(dir, 'plain'), 'linux')).toBe(join(dir, 'plain'));
  });
});

describe('named pipes (Windows branches)', () => {
  it('keeps the default DACL unless every account is to be let in', () => {
    expect(pipeListenOptions('\\\\.\\pipe\\corral-x', false)).toEqual({ path: '\\\\.\\pipe\\corral-x' });
    expect(pipeListenOptions('\\\\.\\pipe\\corral-x', true)).toEqual({ path: '\\\\.\\pipe\\corral-x', readableAll: true, writableAll: true });
  });

  /** A socket that fails with `code`, connects, or never answers. */
  function fakeConnect(outcome: string | 'connect' | 'hang'): (path: string) => net.Socket {
    return () => {
      const s = new net.Socket();
      if (outcome === 'connect') setImmediate(() => s.emit('connect'));
      else if (outcome !== 'hang') setImmediate(() => s.emit('error', Object.assign(new Error(outcome), { code: outcome })));
      return s;
    };
  }

  it('refuses a pipe of our name that already exists: listening, busy, or not ours to open', async () => {
    await expect(refuseExistingPipe('\\\\.\\pipe\\corral-x', fakeConnect('ENOENT'))).resolves.toBeUndefined();
    await expect(refuseExistingPipe('\\\\.\\pipe\\corral-x', fakeConnect('connect'))).rejects.toThrow(/refusing to listen on .*corral-x: a process is already listening/);
    await expect(refuseExistingPipe('\\\\.\\pipe\\corral-x', fakeConnect('EACCES'))).rejects.toThrow(/it exists \(EACCES\)/);
    await expect(refuseExistingPipe('\\\\.\\pipe\\corral-x', fakeConnect('hang'))).rejects.toThrow(/every instance is busy/);
  });

  it('refuses for real when something already listens on the name (a unix socket standing in for the pipe)', async () => {
    const path = join(tempDir(), 'taken.sock');
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(path, r));
    try {
      await expect(refuseExistingPipe(path)).rejects.toThrow(/already listening/);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    await expect(refuseExistingPipe(join(tempDir(), 'free.sock'))).resolves.toBeUndefined();
  });
});
