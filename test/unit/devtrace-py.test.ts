/**
 * The worker's side of the dev page (src/python/corral_wsgi/devtrace.py), run by Python itself:
 * whose frame is whose, the size fitting, Flask's switch left alone when the app set it, and the
 * hold-back of HTML responses (released at the end, streamed past the cap, never for other types).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/corral.js';

const PY = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Runs `body` with devtrace imported; returns its stdout lines as JSON values. */
function py(body: string): unknown[] {
  const code = `import json, sys\nsys.path.insert(0, ${JSON.stringify(join(ROOT, 'src', 'python'))})\nfrom corral_wsgi import devtrace\ndef out(v): print(json.dumps(v))\n${body}\n`;
  const r = spawnSync(PY, ['-c', code], { encoding: 'utf8', env: { ...process.env, CORRAL_DEV_ERRORS: '1' } });
  expect(r.stderr).toBe('');
  return r.stdout.trim().split('\n').filter((l) => l).map((l) => JSON.parse(l) as unknown);
}

describe('devtrace.py', () => {
  it("tells the app's frames from corral's, importlib's, the stdlib's and installed packages'", () => {
    const [kinds] = py(`
import os, json as j
out([devtrace.frame_kind(p, ["/srv/app"]) for p in ("/srv/app/views.py", devtrace.__file__, "<frozen importlib._bootstrap>", j.__file__, "/usr/lib/python3/dist-packages/flask/app.py", "/srv/app/.venv/lib/python3.11/site-packages/x.py", "/elsewhere/mod.py")])`);
    expect(kinds).toEqual(['app', 'corral', 'frozen', 'stdlib', 'library', 'library', 'app']);
  });

  it('fits the facts into a byte budget, cutting locals and environ first, and says what it cut', () => {
    const [small, cut, none] = py(`
# Compiled under a file name of its own: frames of "<string>" (python -c) have no locals shown.
exec(compile('def deep(n, big):\\n    if n == 0:\\n        raise ValueError("deep")\\n    return deep(n - 1, big)\\n', "/nonexistent/app.py", "exec"))
try:
    deep(60, "x" * 5000)
except ValueError as e:
    full = devtrace.report(e, [], {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X": "y" * 3000})
    whole = len(devtrace.fitted(json.loads(json.dumps(full)), 10**9))
    body = devtrace.fitted(full, 12000)
    out([whole, len(body) <= 12000])
    out(json.loads(body)["cut"])
    out(devtrace.fitted(devtrace.report(e, []), 10) is None)`);
    expect((small as [number, boolean])[0]).toBeGreaterThan(12000);
    expect((small as [number, boolean])[1]).toBe(true);
    expect((cut as string[]).slice(0, 2)).toEqual(['traceback text', 'locals']);
    expect(none).toBe(true);
  });

  it("caps a local's repr and survives a __repr__ that raises", () => {
    const [values] = py(`
class Bad:
    def __repr__(self): raise RuntimeError("no")
out([len(devtrace.safe_repr("z" * 10000)), devtrace.safe_repr(Bad())])`);
    const [length, bad] = values as [number, string];
    expect(length).toBeLessThanOrEqual(devtraceMaxValue() + 3);
    expect(bad).toMatch(/^<(Bad instance at|repr raised)/);
  });

  it('holds an HTML body back until it is whole, streams other types, and re-raises before anything is sent', () => {
    const [html, plain, failed] = py(`
calls = []
def start_response(status, headers, exc_info=None):
    calls.append(("start", status))
    return lambda data: calls.append(("write", data))
def page(environ, sr):
    sr("200 OK", [("Content-Type", "text/html")])
    yield b"a"
    calls.append(("yielded", "a"))
    yield b"b"
def text(environ, sr):
    sr("200 OK", [("Content-Type", "text/plain")])
    calls.append(("app", "after start"))
    return [b"t"]
def broken(environ, sr):
    sr("200 OK", [("Content-Type", "text/html")])
    yield b"half"
    raise KeyError("k")
body = devtrace.dev_app(page)({}, start_response)
chunks = [c.decode() for c in body]
out([calls, chunks]); calls.clear()
list(devtrace.dev_app(text)({}, start_response)); out(calls); calls.clear()
try:
    list(devtrace.dev_app(broken)({}, start_response))
except KeyError:
    out(calls)`);
    // start_response reaches the server only once the page is whole, with the body in one piece.
    expect(html).toEqual([[['yielded', 'a'], ['start', '200 OK']], ['ab']]);
    expect(plain).toEqual([['start', '200 OK'], ['app', 'after start']]);
    expect(failed).toEqual([]); // nothing went out: the worker answers with the error page
  });

  it('the legacy write() sends what was held first, then streams', () => {
    const [order] = py(`
sent = []
def start_response(status, headers, exc_info=None):
    sent.append("start")
    return lambda data: sent.append(data.decode())
def app(environ, sr):
    write = sr("200 OK", [("Content-Type", "text/html")])
    def body():
        yield b"a"
        write(b"w")
        yield b"b"
    return body()
for chunk in devtrace.dev_app(app)({}, start_response):
    sent.append(chunk.decode())
out(sent)`);
    expect(order).toEqual(['start', 'a', 'w', 'b']);
  });

  it('past the cap streams on and ends a failing HTML body with the marker', () => {
    const [result] = py(`
def big(environ, sr):
    sr("200 OK", [("Content-Type", "text/html")])
    yield b"x" * 10
    yield b"y" * 10
    raise ValueError("late <b>")
got = []
try:
    for c in devtrace.dev_app(big, cap=15)({}, lambda s, h, e=None: None):
        got.append(c.decode())
except ValueError:
    out(got)`);
    const got = result as string[];
    expect(got[0]).toBe(`${'x'.repeat(10)}${'y'.repeat(10)}`);
    expect(got[1]).toContain('the app raised ValueError: late &lt;b&gt; after this response had started');
  });

  it("sets Flask's PROPAGATE_EXCEPTIONS only when the app left it unset", () => {
    const r = spawnSync(PY, ['-c', 'import flask'], { encoding: 'utf8' });
    if (r.status !== 0) return; // no Flask for this interpreter
    const [flags] = py(`
from flask import Flask
a = Flask("a"); b = Flask("b"); b.config["PROPAGATE_EXCEPTIONS"] = False
out([devtrace.flask_propagate(a), a.config["PROPAGATE_EXCEPTIONS"], devtrace.flask_propagate(b), b.config["PROPAGATE_EXCEPTIONS"], devtrace.flask_propagate(lambda e, s: None)])`);
    expect(flags).toEqual([true, true, false, false, false]);
  });
});

function devtraceMaxValue(): number {
  const [n] = py('out(devtrace.MAX_VALUE)');
  return n as number;
}
