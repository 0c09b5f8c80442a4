/** The dev error page's renderer: escaping, caps, frame order and folding, the self-reload script under its CSP. */
import { describe, expect, it } from 'vitest';
import { CAPS, clip, devPageCsp, renderDevPage, type DevPageInput } from '../../src/front/dev-page.js';
import { parseDevTrace, type DevFrame, type DevTrace } from '../../src/devtrace.js';
import { errorBody } from '../../src/front/error-page.js';
import { CorralError } from '../../src/errors.js';

function frame(over: Partial<DevFrame>): DevFrame {
  return { file: '/srv/app/views.py', line: 12, function: 'index', kind: 'app', source: null, locals: null, localsCut: false, ...over };
}

function trace(over: Partial<DevTrace> = {}): DevTrace {
  return {
    exceptions: [
      {
        type: 'ValueError',
        message: 'bad <input> & "quotes"',
        via: null,
        frames: [
          frame({ file: '/usr/lib/python3/dist-packages/flask/app.py', line: 100, function: 'wsgi_app', kind: 'library' }),
          frame({ source: { start: 10, lines: ['def index():', '    x = "<b>"', '    raise ValueError(x)'] }, locals: [['x', "'<script>alert(1)</script>'"]] }),
          frame({ file: '/usr/lib/python3.11/json/decoder.py', line: 5, function: 'decode', kind: 'stdlib' }),
        ],
        syntax: null,
      },
    ],
    request: { method: 'POST', path: '/form', query: 'a=<1>', headers: [['Host', 'x<y>']], environ: [['PATH_INFO', '/form']] },
    python: '/usr/bin/python3 3.11.2',
    cut: [],
    text: 'Traceback (most recent call last):\n  File "<x>"\nValueError: bad <input>',
    ...over,
  };
}

function page(over: Partial<DevPageInput> = {}): string {
  const t = trace();
  return renderDevPage({ status: 500, code: 'CORRAL_APP_EXCEPTION', title: 'ValueError', message: t.exceptions[0]!.message, trace: t, detail: t.text, generation: 3, method: 'GET', path: null, explain: null, nonce: 'N0nce', ...over });
}

describe('dev page', () => {
  it('escapes everything that comes from the app or the request', () => {
    const html = page();
    expect(html).not.toContain('<script>alert(1)');
    expect(html).not.toContain('<input>');
    expect(html).not.toContain('x<y>');
    expect(html).not.toContain('a=<1>');
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;');
    expect(html).toContain('bad &#60;input&#62; &#38; &#34;quotes&#34;');
    // The only script is the page's own, by nonce.
    expect(html.match(/<script/g)).toHaveLength(1);
    expect(html).toContain('<script nonce="N0nce">');
    expect(html).toContain('<style nonce="N0nce">');
  });

  it('shows the app frame first and open, with its source line marked; other frames folded', () => {
    const html = page();
    const firstFrame = html.indexOf('<div class="frame');
    expect(html.slice(firstFrame, firstFrame + 30)).toContain('frame app');
    expect(html).toMatch(/<span class="ln hit"><span class="no">12<\/span> {4}raise ValueError\(x\)<\/span>/);
    // Innermost first, the app's frame before all: the stdlib frame it called folded after it, then the library frame (its caller).
    expect(html).toMatch(/<details class="folded"><summary>1 frame of stdlib, called from here, where it was raised<\/summary>/);
    expect(html).toMatch(/<details class="folded"><summary>1 frame of libraries<\/summary>/);
    expect(html.indexOf('frame app')).toBeLessThan(html.indexOf('1 frame of stdlib'));
    expect(html.indexOf('1 frame of stdlib')).toBeLessThan(html.indexOf('1 frame of libraries'));
    expect(html).toContain('at <code>/srv/app/views.py:12 in index</code>');
  });

  it('shows the code, the request and the chain', () => {
    const t = trace();
    t.exceptions.push({ type: 'KeyError', message: "'id'", via: 'context', frames: [frame({ line: 3 })], syntax: null });
    const html = page({ trace: t });
    expect(html).toContain('<code>CORRAL_APP_EXCEPTION</code>');
    expect(html).toContain('The exception above was raised while handling:');
    expect(html).toContain('<span class="type">KeyError</span>');
    expect(html).toContain('<code>POST /form?a=&#60;1&#62;</code>');
    expect(html).toContain('WSGI environ (1)');
  });

  it('caps what the worker sent: long values, many locals, many frames', () => {
    const long = 'y'.repeat(CAPS.message + 500);
    const many: Array<[string, string]> = Array.from({ length: CAPS.locals + 5 }, (_, i) => [`v${i}`, long]);
    const frames = Array.from({ length: CAPS.frames + 7 }, (_, i) => frame({ line: i + 1, locals: i === CAPS.frames + 6 ? many : null }));
    const t = trace({ exceptions: [{ type: 'RecursionError', message: long, via: null, frames, syntax: null }] });
    const html = page({ trace: t, message: long });
    expect(html).not.toContain('y'.repeat(CAPS.message + 1));
    expect(html).toContain('… (500 more characters)'); // the message
    expect(html).toContain(`… (${CAPS.message + 500 - CAPS.text} more characters)`); // a local's value
    expect(html).toContain('more locals left out');
    expect(html).toContain('v0');
    expect(html).not.toContain(`v${CAPS.locals}<`);
    expect(html).toContain('7 outer frames left out');
    expect(clip('abc', 2)).toBe('ab… (1 more characters)');
  });

  it('marks a syntax error with a caret under the offending column', () => {
    const t = trace({
      exceptions: [{ type: 'SyntaxError', message: "expected ':'", via: null, frames: [], syntax: { file: '/srv/app/wsgi.py', line: 4, offset: 41, endOffset: 42, text: 'def application(environ, start_response)', source: { start: 3, lines: ['', 'def application(environ, start_response)', '    return []'] } } }],
      request: null,
    });
    const html = page({ trace: t, title: 'SyntaxError' });
    expect(html).toContain('/srv/app/wsgi.py</span>:<span class="line">4</span>, column 41');
    expect(html).toContain(`<span class="ln caret"><span class="no"></span>${' '.repeat(40)}^</span>`);
  });

  it('reloads itself only when a generation is given; a POST is reloaded as a GET', () => {
    expect(page({ generation: null })).not.toContain('<script');
    expect(page({ generation: 7 })).toContain('var g=7');
    expect(page({ method: 'GET' })).toContain('location.reload()');
    expect(page({ method: 'POST' })).toContain('location.href=location.href');
    expect(devPageCsp('abc')).toContain("script-src 'nonce-abc'");
    expect(devPageCsp('abc')).toContain("default-src 'none'");
  });

  it('every dev error uses it, with the code, a CSP and no cache; serve mode stays short', () => {
    for (const code of ['CORRAL_WORKER_LOST', 'CORRAL_REQUEST_TIMEOUT', 'CORRAL_APP_IMPORT_FAILED'] as const) {
      const { body, headers } = errorBody(new CorralError(code, 'worker 12 exited <x>', { detail: 'last stderr <y>' }), true, { generation: 2, method: 'GET', path: '/p?<q>' });
      const html = body.toString();
      expect(html).toContain(`<code>${code}</code>`);
      // What the code means, from the catalogue, and the request.
      expect(html).toContain(`<p class="explain"><code>${code}</code>: `);
      expect(html).toContain('<code>GET /p?&#60;q&#62;</code>');
      expect(html).toContain('last stderr &#60;y&#62;');
      expect(headers['Content-Security-Policy']).toMatch(/script-src 'nonce-[A-Za-z0-9+/=]+'/);
      expect(html).toContain(`<script nonce="${/nonce-([^']+)/.exec(headers['Content-Security-Policy']!)![1]}">`);
      expect(headers['Cache-Control']).toBe('no-store');
      const serve = errorBody(new CorralError(code, 'worker 12 exited <x>', { detail: 'last stderr' }), false).body.toString();
      expect(serve).not.toContain('worker 12');
      expect(serve).not.toContain('stderr');
    }
  });

  it('parses only the expected shape', () => {
    expect(parseDevTrace(null)).toBeNull();
    expect(parseDevTrace({ version: 2, exceptions: [] })).toBeNull();
    expect(parseDevTrace({ version: 1, exceptions: [] })).toBeNull();
    const t = parseDevTrace({ version: 1, exceptions: [{ type: 'E', message: 1, frames: [{ file: 'a', line: 'x', kind: 'evil', locals: [['a', 1], ['b', 'c']] }, 7] }], request: 'no', cut: 'x' });
    expect(t).toEqual({
      exceptions: [{ type: 'E', message: '', via: null, frames: [{ file: 'a', line: 0, function: '', kind: 'app', source: null, locals: [['b', 'c']], localsCut: false }], syntax: null }],
      request: null,
      python: '',
      cut: [],
      text: '',
    });
  });
});
