/**
 * The one page `corral dev` shows for every error: an import failure, a syntax error, a request's
 * exception (also one raised while a page was being produced), a lost worker, a timeout. The app's
 * frames come first and open, with the code around each line and their locals; corral's,
 * importlib's, the standard library's and installed packages' frames are folded, one click away;
 * then the exception chain, the request, and the traceback as text. Everything from the app or the
 * request is escaped and cut to size here, whatever the worker already did. A small script (the
 * CSP allows only it, by nonce) polls the dev front and reloads the page once a new generation of
 * the app is serving: fix, save, and the browser shows the app again.
 *
 * Dev only: serve mode's pages (error-page.ts) carry the code and a sentence, nothing else.
 */
import type { DevException, DevFrame, DevTrace, SourceLines } from '../devtrace.js';

/** Where the page asks which generation serves (the HTTP front answers it in dev only). */
export const DEV_GENERATION_PATH = '/.corral/dev/generation';

/** What the generation endpoint answers. */
export interface DevGeneration {
  generation: number;
  state: string;
}

export interface DevPageInput {
  status: number;
  /** The error code (also in X-Corral-Error). */
  code: string;
  /** Heading: the exception's type, or the error's title. */
  title: string;
  message: string;
  trace: DevTrace | null;
  /** Plain text detail (a traceback, the worker's last stderr lines). */
  detail: string | null;
  /** The generation serving when the page was made: the page reloads once another one serves. Null: no reload. */
  generation: number | null;
  /** The request method, so that reloading a POST's page does not send the POST again. */
  method: string;
  /** The request's path, shown when the trace has no request of its own (null: none). */
  path: string | null;
  /** What the error code means (the catalogue's text, `code` spans in backticks); null: nothing. */
  explain: string | null;
  nonce: string;
}

/** Caps, whatever the worker sent. */
export const CAPS = { text: 2000, message: 8000, frames: 200, locals: 100, environ: 400, headers: 200, detail: 100_000, chain: 10 } as const;

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** s cut to n characters, with a visible mark. */
export function clip(s: string, n: number = CAPS.text): string {
  return s.length <= n ? s : `${s.slice(0, n)}… (${s.length - n} more characters)`;
}

const e = (s: string, n?: number): string => escapeHtml(clip(s, n));

/** The Content-Security-Policy of the page: nothing but its own style and script, and polls to itself. */
export function devPageCsp(nonce: string): string {
  return `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
}

const KIND_NAMES: Record<string, string> = { corral: 'corral', frozen: 'importlib', stdlib: 'stdlib', library: 'libraries' };

function code(src: SourceLines | null, line: number, caret: { from: number; to: number } | null = null): string {
  if (!src || src.lines.length === 0) return '<p class="nosrc">source not available</p>';
  let out = '<pre class="code">';
  src.lines.forEach((text, i) => {
    const n = src.start + i;
    const hit = n === line;
    out += `<span class="ln${hit ? ' hit' : ''}"><span class="no">${n}</span>${e(text) || ' '}</span>`;
    if (hit && caret) {
      const pad = ' '.repeat(Math.max(0, caret.from - 1));
      out += `<span class="ln caret"><span class="no"></span>${pad}${'^'.repeat(Math.max(1, caret.to - caret.from))}</span>`;
    }
  });
  return `${out}</pre>`;
}

function locals(f: DevFrame): string {
  if (f.locals === null) return '';
  if (f.locals.length === 0) return '<p class="nolocals">no locals</p>';
  const rows = f.locals.slice(0, CAPS.locals).map(([k, v]) => `<tr><th>${e(k, 200)}</th><td><code>${e(v)}</code></td></tr>`);
  const more = f.locals.length > CAPS.locals || f.localsCut ? '<tr><td colspan="2" class="cut">more locals left out (size cap)</td></tr>' : '';
  return `<details class="locals" open><summary>locals</summary><table>${rows.join('')}${more}</table></details>`;
}

function frameHtml(f: DevFrame): string {
  return (
    `<div class="frame ${f.kind}"><div class="where"><b>${e(f.function, 200)}</b> <span class="file">${e(f.file, 500)}</span>:<span class="line">${f.line}</span>` +
    `${f.kind === 'app' ? '' : ` <span class="kind">${KIND_NAMES[f.kind] ?? f.kind}</span>`}</div>${code(f.source, f.line)}${locals(f)}</div>`
  );
}

/**
 * Frames, innermost first, the app's open and the others folded (one <details> per run). App
 * frames come first: when the exception was raised inside code the app called (json, a library),
 * those innermost frames follow the app frame that called them.
 */
function framesHtml(frames: DevFrame[]): string {
  const list = frames.slice(-CAPS.frames).reverse();
  const left = frames.length - list.length;
  const firstApp = list.findIndex((f) => f.kind === 'app');
  const inner = firstApp > 0 ? list.slice(0, firstApp) : [];
  const rest = firstApp > 0 ? list.slice(firstApp) : list;
  let out = '';
  let run: DevFrame[] = [];
  const flush = (note = ''): void => {
    if (run.length === 0) return;
    const kinds = [...new Set(run.map((f) => KIND_NAMES[f.kind] ?? f.kind))].join(', ');
    out += `<details class="folded"><summary>${run.length} frame${run.length === 1 ? '' : 's'} of ${kinds}${note}</summary>${run.map(frameHtml).join('')}</details>`;
    run = [];
  };
  rest.forEach((f, i) => {
    if (f.kind === 'app') {
      flush();
      out += frameHtml(f);
      if (i === 0 && inner.length > 0) {
        run = inner;
        flush(', called from here, where it was raised');
      }
    } else run.push(f);
  });
  flush();
  if (left > 0) out += `<p class="cut">${left} outer frames left out</p>`;
  return out;
}

function exceptionHtml(x: DevException, i: number): string {
  const heading = i === 0 ? '' : `<p class="via">${x.via === 'cause' ? 'The exception above was directly caused by:' : 'The exception above was raised while handling:'}</p>`;
  let syntax = '';
  if (x.syntax) {
    const s = x.syntax;
    const from = s.offset ?? 1;
    const to = s.endOffset !== null && s.endOffset > from ? s.endOffset : from + 1;
    const src: SourceLines | null = s.source ?? (s.text ? { start: s.line, lines: [s.text] } : null);
    syntax = `<div class="frame app syntax"><div class="where"><span class="file">${e(s.file, 500)}</span>:<span class="line">${s.line}</span>${s.offset !== null ? `, column ${s.offset}` : ''}</div>${code(src, s.line, { from, to })}</div>`;
  }
  return `<section class="exc">${heading}<h2><span class="type">${e(x.type, 300)}</span>${x.message ? `: ${e(x.message, CAPS.message)}` : ''}</h2>${syntax}${framesHtml(x.frames)}</section>`;
}

function table(rows: Array<[string, string]>, cap: number): string {
  const body = rows.slice(0, cap).map(([k, v]) => `<tr><th>${e(k, 200)}</th><td><code>${e(v)}</code></td></tr>`);
  if (rows.length > cap) body.push(`<tr><td colspan="2" class="cut">${rows.length - cap} more left out</td></tr>`);
  return `<table>${body.join('')}</table>`;
}

function requestHtml(t: DevTrace): string {
  const r = t.request;
  if (!r) return '';
  return (
    `<section class="request"><h2>Request</h2><p><code>${e(r.method, 40)} ${e(r.path)}${r.query ? `?${e(r.query)}` : ''}</code></p>` +
    `<h3>Headers</h3>${table(r.headers, CAPS.headers)}` +
    (r.environ.length > 0 ? `<details><summary>WSGI environ (${r.environ.length})</summary>${table(r.environ, CAPS.environ)}</details>` : '') +
    `</section>`
  );
}

/** The innermost app frame (or the syntax error's place): what the headline points at. */
function where(t: DevTrace): string | null {
  const first = t.exceptions[0]!;
  if (first.syntax) return `${first.syntax.file}:${first.syntax.line}`;
  for (const x of t.exceptions) {
    const f = [...x.frames].reverse().find((fr) => fr.kind === 'app');
    if (f) return `${f.file}:${f.line} in ${f.function}`;
  }
  return null;
}

const STYLE = `
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;background:#f4f4f6}
header{background:#8b1a1a;color:#fff;padding:1.2em 2em}header h1{margin:0;font-size:1.6em;word-break:break-word}
header .msg{margin:.3em 0 0;font-size:1.15em;white-space:pre-wrap;word-break:break-word}
header .meta{margin-top:.7em;font-size:.9em;opacity:.9}header code{background:rgba(255,255,255,.15);padding:.1em .4em;border-radius:3px}
#live{display:block;margin:0;background:#fff7d6;color:#5c4400;padding:.5em 2em;border-bottom:1px solid #e8d9a0;font-size:.9em}
main{padding:1em 2em 3em;max-width:1200px}h2{font-size:1.2em;margin:1.2em 0 .6em;word-break:break-word}h2 .type{color:#8b1a1a}
.via{margin:2em 0 0;color:#555;font-style:italic}
.frame{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6em 0;overflow:hidden}
.frame.app{border-left:5px solid #c0392b}.where{padding:.45em .8em;background:#fafafa;border-bottom:1px solid #eee;font-size:.92em;word-break:break-all}
.where .file{color:#444}.kind{font-size:.8em;color:#777;border:1px solid #ccc;border-radius:3px;padding:0 .3em}
pre.code{margin:0;padding:.4em 0;font:13px/1.5 ui-monospace,Menlo,Consolas,monospace;overflow-x:auto;background:#fff}
.ln{display:block;padding:0 .8em;white-space:pre}.ln .no{display:inline-block;width:3.5em;color:#999;user-select:none}
.ln.hit{background:#ffe3e0;font-weight:600}.ln.caret{color:#c0392b;font-weight:700}
.nosrc,.nolocals{margin:.4em .8em;color:#888;font-size:.9em}
details.folded{margin:.6em 0}details.folded>summary{cursor:pointer;color:#555;padding:.35em .8em;background:#ececef;border-radius:6px;font-size:.9em}
details.folded .frame{opacity:.85}
.locals{border-top:1px solid #eee}.locals>summary{cursor:pointer;padding:.3em .8em;font-size:.85em;color:#555}
table{border-collapse:collapse;width:100%;font-size:.85em;background:#fff}th,td{text-align:left;vertical-align:top;padding:.25em .8em;border-top:1px solid #f0f0f0}
th{width:14em;font-weight:600;word-break:break-all}td code{white-space:pre-wrap;word-break:break-all}.cut{color:#888;font-style:italic}
section.request,section.text{margin-top:2em}pre.detail{background:#fff;border:1px solid #ddd;padding:1em;overflow:auto;font-size:13px}
footer{color:#888;font-size:.85em;margin-top:3em}.explain{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em 1em;max-width:60em}
`;

function pollScript(generation: number, method: string): string {
  // Reload once the app's generation differs from the one that failed and it is running.
  const get = method === 'GET' || method === 'HEAD';
  return `(function(){var g=${generation},live=document.getElementById("live");function again(ms){setTimeout(poll,ms)}function poll(){fetch(${JSON.stringify(DEV_GENERATION_PATH)},{cache:"no-store"}).then(function(r){return r.json()}).then(function(s){if(s.generation!==g&&s.state==="running"){live.textContent="A new generation is serving: reloading…";${get ? 'location.reload()' : 'location.href=location.href'};return}live.textContent=s.state==="failed"?"Still failing: save a fix and this page reloads itself.":"Waiting for a fix: save it and this page reloads itself ("+s.state+").";again(500)},function(){live.textContent="corral dev is not answering; retrying…";again(1500)})}again(300)})();`;
}

/** The whole page (UTF-8 HTML). */
export function renderDevPage(p: DevPageInput): string {
  const t = p.trace;
  const place = t ? where(t) : null;
  const chain = t ? t.exceptions.slice(0, CAPS.chain) : [];
  const meta = [`<code>${e(p.code, 80)}</code>`, `HTTP ${p.status}`];
  if (t?.request) meta.push(`<code>${e(t.request.method, 40)} ${e(t.request.path, 300)}</code>`);
  else if (p.path !== null) meta.push(`<code>${e(p.method, 40)} ${e(p.path, 300)}</code>`);
  if (place) meta.push(`at <code>${e(place, 600)}</code>`);
  const live = p.generation !== null ? '<p id="live">Waiting for a fix: save it and this page reloads itself.</p>' : '';
  const text = p.detail ? `<details class="text"${t ? '' : ' open'}><summary>${t ? 'Traceback as text' : 'Details'}</summary><pre class="detail">${e(p.detail, CAPS.detail)}</pre></details>` : '';
  const cut = t && t.cut.length > 0 ? `<p class="cut">To keep the page small the worker left out: ${e(t.cut.join(', '))}.</p>` : '';
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">` +
    `<title>${e(`${p.title}: ${p.message}`, 140)}</title><style nonce="${p.nonce}">${STYLE}</style></head><body>` +
    `<header><h1>${e(p.title, 300)}</h1>${p.message ? `<p class="msg">${e(p.message, CAPS.message)}</p>` : ''}<div class="meta">${meta.join(' · ')}</div></header>${live}<main>` +
    (p.explain ? `<p class="explain"><code>${e(p.code, 80)}</code>: ${e(p.explain).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>` : '') +
    chain.map(exceptionHtml).join('') +
    (t && t.exceptions.length > chain.length ? `<p class="cut">${t.exceptions.length - chain.length} more exceptions in the chain left out</p>` : '') +
    cut +
    (t ? requestHtml(t) : '') +
    text +
    `<footer>corral dev${t?.python ? ` · ${e(t.python, 300)}` : ''} · this page is shown by <code>corral dev</code> only; <code>corral serve</code> answers with the code alone.</footer>` +
    `</main>` +
    (p.generation !== null ? `<script nonce="${p.nonce}">${pollScript(p.generation, p.method)}</script>` : '') +
    `</body></html>\n`
  );
}
