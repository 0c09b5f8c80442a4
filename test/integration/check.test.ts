/**
 * `corral check`: the settings, the interpreter, the app's module and its import in one throwaway
 * worker, with the exit codes its help documents (0 good, 2 settings, 3 interpreter or boot,
 * 4 module or import), and no address bound.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, DEBIAN_PYTHON, FIXTURES, ROOT } from '../helpers/corral.js';

let top: string;
const py = ['--python', DEBIAN_PYTHON];

/** Runs `corral check ARGS` to its end (it starts at most one worker, and stops it itself). */
function check(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'check', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(() => {
  top = realpathSync(mkdtempSync(join(tmpdir(), 'corral-check-')));
  // Importing this app leaves a marker: --no-import must not.
  writeFileSync(join(top, 'marks.py'), `import pathlib\npathlib.Path(__file__).with_name("imported").write_text("yes")\ndef application(e, s):\n    s("200 OK", [])\n    return [b""]\n`);
  mkdirSync(join(top, 'mysite', 'mysite'), { recursive: true });
  writeFileSync(join(top, 'mysite', 'mysite', '__init__.py'), '');
  writeFileSync(join(top, 'mysite', 'mysite', 'wsgi.py'), 'def application(e, s):\n    s("200 OK", [])\n    return [b""]\n');
});
afterAll(() => rmSync(top, { recursive: true, force: true }));

describe('corral check', () => {
  it('reports the interpreter, the module and the import, exits 0, and binds none of the addresses it was given', async () => {
    // We hold the port: serve would fail with "in use"; check must not even try.
    const held = net.createServer();
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    const port = (held.address() as net.AddressInfo).port;
    try {
      const r = await check(FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', `127.0.0.1:${port}`, '--http', `127.0.0.1:${port}`, ...py);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^settings ok: 5 from flags, \d+ from the environment, no config file\n/);
      expect(r.stdout).toContain(`app hello_app:application in ${FIXTURES}\n`);
      expect(r.stdout).toMatch(new RegExp(`\\n  python     ${DEBIAN_PYTHON} \\(Python 3\\.\\d+\\.\\d+\\)\\n`));
      expect(r.stdout).toContain(`  module     hello_app: ${join(FIXTURES, 'hello_app.py')}\n`);
      expect(r.stdout).toMatch(/\n {2}import {5}ok in \d+ ms \(one worker, pid \d+, stopped again\)\nok: corral serve would start this app\n$/);
    } finally {
      held.close();
    }
  });

  it('--no-import finds the module without running any of its code', async () => {
    const r = await check(top, 'marks:application', '--no-import', '--deploy-file', 'deploy.py', ...py);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`  module     marks: ${join(top, 'marks.py')}\n  deploy     deploy.py is not run by check (serve runs it before the first workers)\n  import     skipped (--no-import)\n`);
    expect(existsSync(join(top, 'imported'))).toBe(false);
    // Without it, the app is imported (in a worker that is stopped again).
    expect((await check(top, 'marks:application', ...py)).code).toBe(0);
    expect(existsSync(join(top, 'imported'))).toBe(true);
  });

  it('exits 4 with the error and traceback when the app fails to import', async () => {
    const r = await check(FIXTURES, '--wsgi-app', 'import_fails:application', ...py);
    expect(r.code).toBe(4);
    expect(r.stdout).toContain("  import     FAILED: ModuleNotFoundError: No module named 'no_such_module_for_corral_tests'");
    expect(r.stdout).toMatch(/ {6}Traceback \(most recent call last\):/);
    expect(r.stderr).toBe('corral check: failed (exit code 4)\n');
  });

  it('exits 4 when the module is nowhere, naming where it looked; suggests Django\'s layout', async () => {
    const r = await check(top, 'nomodule:app', '--no-import', ...py);
    expect(r.code, r.stderr).toBe(4);
    expect(r.stdout).toContain(`  module     FAILED: no module nomodule in ${top} nor in ${DEBIAN_PYTHON}'s own directories; if it is installed for another interpreter (a venv), choose that one with --python`);
    const dj = await check(join(top, 'mysite'), '--wsgi-app', 'wsgi:application', ...py);
    expect(dj.code).toBe(4);
    expect(dj.stdout).toContain("this looks like Django's layout: try --wsgi-app mysite.wsgi:application");
  });

  it("finds Django's layout when no app is named", async () => {
    const r = await check(join(top, 'mysite'), ...py);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("  layout     no wsgi.py in the app directory: Django's project layout, so mysite.wsgi:application\n");
  });

  it('exits 3 when the interpreter cannot run', async () => {
    const r = await check(FIXTURES, '--wsgi-app', 'hello_app:application', '--python', join(top, 'no-python'));
    expect(r.code).toBe(3);
    expect(r.stdout).toContain(`  python     FAILED: cannot run ${join(top, 'no-python')}: ENOENT (choose the interpreter with --python)`);
  });

  it('exits 2 for invalid settings, listing every problem', async () => {
    const r = await check(top, '--wrokers', '2', '--threads', 'many');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('--wrokers: is not a known option; did you mean --workers?');
    expect(r.stderr).toContain('--threads');
  });

  it('--help documents --no-import and the exit codes', async () => {
    const r = await check('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: corral check \[APP_DIR\] \[MODULE:CALLABLE\] \[options\]/);
    expect(r.stdout).toContain('--no-import');
    expect(r.stdout).toMatch(/Exit codes: 0 all good; 2 invalid settings or usage; 3 the interpreter cannot\s+run or a worker cannot boot; 4/);
  });
  it('checks an IIS site as IIS runs it: its web.config settings win, its other keys reach the app', async () => {
    const site = join(top, 'iis-site');
    mkdirSync(site);
    // The app imports only with the variable its web.config gives it.
    writeFileSync(join(site, 'site_app.py'), 'import os\nif os.environ.get("MARK") != "from-web-config":\n    raise RuntimeError("MARK missing")\ndef application(e, s):\n    s("200 OK", [])\n    return [b""]\n');
    const config = (extra: string): string =>
      `<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n  <appSettings>\n    <add key="WSGI_APP" value="site_app.application" />\n    <add key="MARK" value="from-web-config" />\n${extra}  </appSettings>\n</configuration>\n`;
    writeFileSync(join(site, 'web.config'), config(''));
    const ok = await check(site, '--wsgi-app', 'other:app', ...py);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`web.config WSGI_APP, MARK from ${join(site, 'web.config')}: they win over flags and environment`);
    expect(ok.stdout).toContain(`app site_app.application in ${site}\n`);
    expect(ok.stdout).toMatch(/import {5}ok in \d+ ms/);
    writeFileSync(join(site, 'web.config'), config('    <add key="CORRAL_THREADS" value="lots" />\n'));
    const bad = await check(site, ...py);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`invalid settings in ${join(site, 'web.config')}`);
    expect(bad.stderr).toContain('CORRAL_THREADS: "lots" is not an integer');
    writeFileSync(join(site, 'web.config'), '<configuration><appSettings>');
    const broken = await check(site, ...py);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/^corral check: .*web\.config:1:\d+: /);
  });
});
