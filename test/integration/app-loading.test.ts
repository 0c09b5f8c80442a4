/**
 * Apps that do not load, as a new user meets them: failFast (`corral serve` exits 4 for an import
 * failure, 3 for any other boot failure, as gunicorn's "Worker failed to boot"; without it, or in
 * dev, corral keeps retrying), the app-loading messages of corral_wsgi/apphints.py, and Django's
 * startproject layout found when no app is named.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEBIAN_PYTHON, startCorral, stopAll } from '../helpers/corral.js';
import { waitForPretty, waitForStderr } from '../helpers/dev.js';
import { httpRequest } from '../helpers/e2e.js';

let top: string;
const py = ['--python', DEBIAN_PYTHON];

beforeAll(() => {
  top = realpathSync(mkdtempSync(join(tmpdir(), 'corral-apploading-')));
  writeFileSync(join(top, 'page.py'), `PAGE = "<html>" + "x" * 840 + "</html>"\ndef application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"ok"]\n`);
  mkdirSync(join(top, 'mysite', 'mysite'), { recursive: true });
  writeFileSync(join(top, 'mysite', 'manage.py'), '');
  writeFileSync(join(top, 'mysite', 'mysite', '__init__.py'), '');
  writeFileSync(join(top, 'mysite', 'mysite', 'wsgi.py'), `def application(environ, start_response):\n    start_response("200 OK", [("Content-Type", "text/plain")])\n    return [b"django layout"]\n`);
});
afterEach(stopAll);
afterAll(() => rmSync(top, { recursive: true, force: true }));

describe('failFast', () => {
  it('serve exits 4 with the reason on stderr when the app cannot be imported', async () => {
    const c = startCorral(['serve', top, '--wsgi-app', 'nomodule:app', '--fail-fast', 'true', '--listen', '127.0.0.1:0', ...py]);
    const { code } = await c.exited;
    expect(code).toBe(4);
    expect(c.stderr).toMatch(/^corral serve: worker failed to boot, stopping \(failFast, exit code 4\): app nomodule:app: import failed: ModuleNotFoundError: No module named 'nomodule'/m);
    expect(c.logs.some((l) => l.msg === 'worker failed to boot: stopping (failFast)' && l.level === 'fatal')).toBe(true);
  });

  it('serve exits 3 when the interpreter cannot boot a worker at all', async () => {
    const c = startCorral(['serve', top, '--wsgi-app', 'page:application', '--listen', '127.0.0.1:0', '--python', '/bin/false'], { env: { CORRAL_FAIL_FAST: 'yes' } });
    const { code } = await c.exited;
    expect(code).toBe(3);
    expect(c.stderr).toMatch(/worker failed to boot, stopping \(failFast, exit code 3\): app page:application: worker boot failed/);
  });

  it('without it serve keeps the listener, answers 503 with the reason and retries', async () => {
    const c = startCorral(['serve', top, '--wsgi-app', 'nomodule:app', '--http', '127.0.0.1:0', ...py]);
    const { port } = await c.httpAddress();
    await c.waitForMsg('pool failed: answering 503 and retrying slowly');
    const r = await httpRequest(`http://127.0.0.1:${port}/`);
    expect(r.status).toBe(503);
    expect(r.headers['x-corral-error']).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(c.child.exitCode).toBeNull();
  });

  it('dev ignores it: the developer is editing, so it keeps watching', async () => {
    const c = startCorral(['dev', top, '--wsgi-app', 'nomodule:app', '--fail-fast', 'true', '--http', '127.0.0.1:0', ...py]);
    const [, url] = await waitForStderr(c, /serving {4}(http:\/\/\S+)/);
    await waitForPretty(c, /pool failed/);
    // Dev's error page names the failure (its status is dev's choice; the code is the contract).
    expect((await httpRequest(url!)).headers['x-corral-error']).toBe('CORRAL_APP_IMPORT_FAILED');
    expect(c.child.exitCode).toBeNull();
  });
});

describe('app-loading messages', () => {
  it('a spec naming a str says its type and length, not its whole repr', async () => {
    const c = startCorral(['serve', top, '--wsgi-app', 'page:PAGE', '--fail-fast', 'true', '--listen', '127.0.0.1:0', ...py]);
    expect((await c.exited).code).toBe(4);
    const line = c.stderr.split('\n').find((l) => l.startsWith('corral serve:'))!;
    expect(line).toMatch(/TypeError: page:PAGE resolves to a str of 853 characters, which is not callable; name the WSGI application object/);
    expect(line.length).toBeLessThan(300);
    expect(line).not.toContain('xxxxxxxxxx');
  });

  it('a missing module names the directories searched and the interpreter (path and version), and hints --python', async () => {
    const c = startCorral(['serve', top, '--wsgi-app', 'nomodule:app', '--fail-fast', 'true', '--listen', '127.0.0.1:0', ...py]);
    expect((await c.exited).code).toBe(4);
    expect(c.stderr).toMatch(new RegExp(`searched ${top} and \\d+ director(y|ies) of the interpreter; the interpreter is ${DEBIAN_PYTHON} \\(Python 3\\.\\d+\\.\\d+\\); if 'nomodule' is installed in another environment \\(a venv\\), choose its python with --python`));
  });

  it("a named app missing from Django's layout suggests X.wsgi:application", async () => {
    const c = startCorral(['serve', join(top, 'mysite'), '--wsgi-app', 'wsgi:application', '--fail-fast', 'true', '--listen', '127.0.0.1:0', ...py]);
    expect((await c.exited).code).toBe(4);
    expect(c.stderr).toContain("No module named 'wsgi' (searched ");
    expect(c.stderr).toContain("this looks like Django's layout: try --wsgi-app mysite.wsgi:application");
  });

  it("with no app named, Django's layout is used (and said so)", async () => {
    const c = startCorral(['serve', join(top, 'mysite'), '--http', '127.0.0.1:0', '--workers', '1', ...py]);
    const { port } = await c.httpAddress();
    const said = await c.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('no wsgi.py in the app directory'));
    expect(said).toMatchObject({ app: 'mysite.wsgi:application' });
    await c.waitForMsg('app ready');
    const r = await httpRequest(`http://127.0.0.1:${port}/`);
    expect(r.body.toString()).toBe('django layout');
  });
});
