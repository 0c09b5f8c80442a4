/**
 * `GET /status`: the status document as one HTML page a person reads at a glance. Self-contained
 * (inline CSS, no script, no external asset, served with a CSP that forbids them), every value
 * escaped: app paths, reasons and Python tracebacks are not ours to trust.
 */
import { renderChart } from './chart.js';
import { formatClock, formatCpu, formatMB, formatMs, formatPercent, formatRate, formatUptime } from './format.js';
import { groupErrors, HIDDEN_MESSAGE, type AppStatus, type ErrorInfo, type StatusDocument, type TrafficStatus, type WorkerInfo } from './snapshot.js';

/** Escapes text for HTML content and quoted attribute values. */
export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Colour class per pool or worker state. */
const TONE: Record<string, string> = {
  running: 'ok',
  ready: 'ok',
  starting: 'busy',
  reloading: 'busy',
  draining: 'idle',
  stopping: 'idle',
  stopped: 'idle',
  exited: 'idle',
  failed: 'bad',
};

const CSS = `
:root{color-scheme:light;--ok:#1a7f37;--bad:#cf222e;--busy:#9a6700;--idle:#57606a;--line:#d0d7de;--soft:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#fff}
header{display:flex;flex-wrap:wrap;gap:.4em 1.5em;align-items:baseline;padding:.8em 1.5em;background:#24292f;color:#fff}
header h1{font-size:1.25em;margin:0 .5em 0 0}
header .meta{color:#d0d7de}
header a{color:#9ecbff}
main{padding:0 1.5em 1.5em}
section.app{border:1px solid var(--line);border-radius:8px;margin:1.2em 0;padding:.9em 1.2em}
section.app h2{font-size:1.15em;margin:0;display:flex;gap:.6em;align-items:center}
.root{font-family:ui-monospace,Consolas,monospace;color:var(--idle);margin:.2em 0 .8em;word-break:break-all}
.badge{display:inline-block;padding:.05em .6em;border-radius:1em;font-size:.85em;font-weight:600;color:#fff;background:var(--idle)}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}.badge.busy{background:var(--busy)}
.figures{display:flex;flex-wrap:wrap;gap:.6em;margin:0 0 .9em;padding:0}
.figures div{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.35em .8em;min-width:8.5em}
.figures dt{font-size:.78em;text-transform:uppercase;letter-spacing:.04em;color:var(--idle)}
.figures dd{margin:0;font-size:1.25em;font-weight:600;font-variant-numeric:tabular-nums}
.figures dd small{font-size:.65em;font-weight:400;color:var(--idle)}
.figures .warn dd{color:var(--bad)}
table{border-collapse:collapse;width:auto;min-width:50%;font-variant-numeric:tabular-nums}
th,td{padding:.3em 1em;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:var(--soft);font-size:.8em;text-transform:uppercase;letter-spacing:.04em;color:var(--idle)}
th:nth-child(3),td:nth-child(3),td.note,th.note{text-align:left}
table.errors td:nth-child(3){text-align:right}
td.note{white-space:normal;color:var(--idle)}
tr.old td{color:var(--idle)}
.none{color:var(--idle);font-style:italic}
.error{border-left:4px solid var(--bad);background:#fff5f5;padding:.5em .8em;margin:.8em 0 0;border-radius:0 6px 6px 0}
.error.past{border-left-color:var(--busy);background:#fff8e5}
.error summary{cursor:pointer;font-weight:600}
.error code{font-weight:400;color:var(--idle)}
.error pre{overflow:auto;max-height:28em;background:#fff;border:1px solid var(--line);padding:.6em;font-size:12.5px}
.traffic{display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:flex-start;margin:0 0 .9em}
.traffic .classes{margin:.2em 0;color:var(--idle);font-variant-numeric:tabular-nums}
.traffic .classes b{color:#1f2328}.traffic .classes .c5 b{color:var(--bad)}
svg.chart{border:1px solid var(--line);border-radius:6px;background:#fff;max-width:100%;height:auto}
table.workers td,table.workers th,table.events td,table.events th{padding:.12em .7em}
table.events{margin:.4em 0 .8em}
td.path,td.exc{text-align:left;white-space:normal;word-break:break-all;font-family:ui-monospace,Consolas,monospace;font-size:.92em}
td.exc{color:var(--bad)}
td.current{text-align:left;white-space:normal;font-family:ui-monospace,Consolas,monospace;font-size:.92em}
h3{font-size:.85em;text-transform:uppercase;letter-spacing:.04em;color:var(--idle);margin:1em 0 .2em}
.ok-text{color:var(--ok)}.bad-text{color:var(--bad)}
`;

/** The page for `doc`; `refreshSeconds` adds a meta refresh (0: none); `token` (given as ?token=) is kept in its links. */
export function renderStatusPage(doc: StatusDocument, refreshSeconds = 0, token: string | null = null): string {
  const keep = token === null ? '' : `token=${encodeURIComponent(token)}`;
  const q = (...parts: string[]): string => esc(`?${[...parts, keep].filter((p) => p !== '').join('&')}`);
  const s = doc.service;
  const health = s.draining ? '<span class="badge idle">draining</span>' : '<span class="badge ok">serving</span>';
  const refresh = refreshSeconds > 0 ? `<meta http-equiv="refresh" content="${refreshSeconds}">` : '';
  const toggle = refreshSeconds > 0 ? `<a href="${q()}">stop auto-refresh</a>` : `<a href="${q('refresh=5')}">auto-refresh every 5 s</a>`;
  const apps = doc.apps.length > 0 ? doc.apps.map(renderApp).join('\n') : '<p class="none">No app is running (apps that requests name start on their first request).</p>';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><meta name="viewport" content="width=device-width,initial-scale=1">${refresh}
<title>corral status${doc.apps.length === 1 ? ` · ${esc(doc.apps[0]!.name)}` : ''}</title><style>${CSS}</style></head>
<body>
<header><h1>corral status</h1>${health}
<span class="meta">version ${esc(s.version)} · pid ${esc(s.pid)} · up ${esc(formatUptime(s.uptimeSeconds))} · node ${esc(s.node)} on ${esc(s.platform)}</span>
<span class="meta">as of <time datetime="${esc(doc.generatedAt)}">${esc(doc.generatedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'))}</time> · ${toggle} · <a href="status.json${keep ? q() : ''}">status.json</a> · <a href="metrics${keep ? q() : ''}">metrics</a></span></header>
<main>
${doc.redacted ? '<p class="none redacted">App directories, error messages and tracebacks are hidden: this request carried no control token. <code>corral status</code> sends it and shows them.</p>\n' : ''}${apps}
</main></body></html>
`;
}

function renderApp(a: AppStatus): string {
  const t = a.totals;
  const l = a.limits;
  const figure = (label: string, value: string, warn = false): string => `<div${warn ? ' class="warn"' : ''}><dt>${esc(label)}</dt><dd>${value}</dd></div>`;
  const tr = a.traffic;
  const figures = [
    ...(tr
      ? [
          figure('requests/s', `${esc(formatRate(tr.perSecond))} <small>${esc(formatRate(tr.perSecondMinute))} over ${esc(tr.windowSeconds)} s</small>`),
          figure('5xx errors', `${esc(formatPercent(tr.errorRate))} <small>${esc(tr.byClass['5xx'])} of ${esc(tr.requests)}</small>`, tr.errorRate > 0),
          figure('latency p50 · p95 · p99', `${esc(formatMs(tr.latencyMs.p50))} <small>· ${esc(formatMs(tr.latencyMs.p95))} · ${esc(formatMs(tr.latencyMs.p99))}</small>`),
        ]
      : []),
    figure('generation', esc(a.servingGeneration)),
    figure('queue', `${esc(a.queued)} <small>/ ${esc(l.queueLength)} · high ${esc(a.queueHighWater)}${a.queued > 0 ? ` · oldest ${esc(a.longestWaitSeconds)} s` : ''}</small>`, a.queued > 0),
    figure('workers ready', `${esc(t.ready)} <small>of ${esc(t.workers)} · min ${esc(l.minWorkers)} max ${esc(l.maxWorkers)}</small>`, t.ready === 0),
    figure('busy threads', `${esc(t.inflight)} <small>/ ${esc(t.threads)}</small>`, t.threads > 0 && t.inflight >= t.threads),
    figure('requests', esc(t.requests)),
    figure('max workers reached', esc(a.maxWorkersReached), a.maxWorkersReached > 0),
    ...(tr ? [figure('slow (> 1 s)', esc(tr.slow), tr.slow > 0)] : []),
    figure('memory', `${esc(formatMB(t.rssBytes))} <small>MB</small>`),
  ].join('');
  // An app that answers mostly errors is not "running" to its users: say so next to its state.
  const errorBadge = tr && tr.requests > 0 && tr.errorRate >= 0.05 ? ` <span class="badge bad" data-error-rate="${esc(tr.errorRate)}">${esc(formatPercent(tr.errorRate))} errors</span>` : '';
  return `<section class="app" data-app="${esc(a.name)}">
<h2>${esc(a.name)} <span class="badge ${TONE[a.state] ?? 'idle'}" data-state="${esc(a.state)}">${esc(a.state)}</span>${errorBadge}</h2>
${a.root === null ? '' : `<p class="root" title="app directory">${esc(a.root)}</p>`}
<dl class="figures">${figures}</dl>
${tr ? renderTraffic(tr) : ''}
${renderWorkers(a)}
${renderError('Pool failed', a.failure, false)}${renderError('Last reload failed', a.lastReloadError, true)}${renderAnswerer(a)}
${renderRecentErrors(a)}${renderReloads(a)}${renderExits(a)}
</section>`;
}

function renderTraffic(tr: TrafficStatus): string {
  const classes = (['2xx', '3xx', '4xx', '5xx'] as const).map((c) => `<span class="c${c[0]}">${c} <b>${esc(tr.byClass[c])}</b></span>`).join(' · ');
  const codes = Object.entries(tr.byErrorCode);
  const byCode = codes.length > 0 ? `<p class="classes">answered by corral since start: ${codes.map(([code, n]) => `${esc(code)} <b>${esc(n)}</b>`).join(' · ')}</p>` : '';
  return `<div class="traffic">${renderChart(tr.series)}<div><p class="classes">last ${esc(tr.windowSeconds)} s: ${classes} · max ${esc(formatMs(tr.latencyMs.max))}</p>${byCode}</div></div>`;
}

function renderRecentErrors(a: AppStatus): string {
  if (a.recentErrors.length === 0) return '';
  const rows = groupErrors(a.recentErrors)
    .map(
      ({ latest: e, count }) =>
        `<tr><td>${esc(formatClock(e.at))}</td><td>${esc(count)}×</td><td>${esc(e.status)}</td><td class="path">${esc(e.method)} ${e.path === null ? '<span class="none">(hidden)</span>' : esc(e.path)}</td><td>${esc(e.pid ?? '–')}</td><td class="exc">${esc([e.code, e.exception].filter((x) => x !== null).join(' '))}</td></tr>`,
    )
    .join('\n');
  return eventTable(
    `Recent errors <small>(last ${esc(a.recentErrors.length)}, repeats folded; the newest shown)</small>`,
    'errors',
    '<th>newest (UTC)</th><th>times</th><th>status</th><th class="note">request</th><th>pid</th><th class="note">error</th>',
    rows,
  );
}

/** One table of recent events: its heading (HTML), its class, its head cells and its rows (HTML). */
function eventTable(title: string, kind: string, heads: string, rows: string): string {
  return `<h3>${title}</h3><table class="events ${kind}"><thead><tr>${heads}</tr></thead><tbody>
${rows}
</tbody></table>\n`;
}

function renderReloads(a: AppStatus): string {
  if (a.recentReloads.length === 0) return '';
  const rows = a.recentReloads
    .slice(0, 5)
    .map((r) => `<tr><td>${esc(formatClock(r.at))}</td><td class="${r.ok ? 'ok-text' : 'bad-text'}">${r.ok ? 'ok' : 'failed'}</td><td>${esc(r.generation)}</td><td class="note">${esc(r.reason)}${r.ok ? '' : ` — ${esc(r.message ?? '')} <code>${esc(r.code ?? '')}</code>`}</td></tr>`)
    .join('\n');
  return eventTable('Recent reloads', 'reloads', '<th>time (UTC)</th><th>result</th><th>generation</th><th class="note">why</th>', rows);
}

function renderExits(a: AppStatus): string {
  if (a.recentExits.length === 0) return '';
  const rows = a.recentExits
    .slice(0, 5)
    .map((e) => `<tr><td>${esc(formatClock(e.at))}</td><td>${esc(e.pid ?? '–')}</td><td class="note">${esc(e.reason)}</td></tr>`)
    .join('\n');
  return eventTable('Recent worker exits', 'exits', '<th>time (UTC)</th><th>pid</th><th class="note">reason</th>', rows);
}

function renderWorkers(a: AppStatus): string {
  if (a.workers.length === 0) return '<p class="none">No worker running.</p>';
  const rows = a.workers.map((w) => renderWorker(w, a)).join('\n');
  return `<table class="workers"><thead><tr><th>pid</th><th>gen</th><th>state</th><th>requests</th><th>in flight</th><th>CPU %</th><th>CPU s</th><th>RSS MB</th><th>uptime</th><th class="note">current request · note</th></tr></thead>
<tbody>
${rows}
</tbody></table>`;
}

function renderWorker(w: WorkerInfo, a: AppStatus): string {
  const running = w.current.map((c) => `${c.method} ${c.path ?? '(path hidden)'} ${c.ageSeconds} s`).join('; ');
  const why = w.recycle ?? (w.generation > a.servingGeneration ? 'new generation booting' : w.generation < a.servingGeneration ? 'previous generation' : '');
  const note = [running, why].filter((p) => p !== '').join(' · ');
  return `<tr class="worker${w.generation < a.servingGeneration ? ' old' : ''}" data-pid="${esc(w.pid)}"><td>${esc(w.pid)}</td><td>${esc(w.generation)}</td><td><span class="badge ${TONE[w.state] ?? 'idle'}">${esc(w.state)}</span></td><td>${esc(w.requests)}</td><td>${esc(w.inflight)} / ${esc(a.limits.threadsPerWorker)}</td><td>${esc(formatCpu(w.cpuPercent))}</td><td>${esc(w.cpuSeconds === null ? '–' : w.cpuSeconds.toFixed(1))}</td><td>${esc(formatMB(w.rssBytes))}</td><td>${esc(formatUptime(w.uptimeSeconds))}</td><td class="note current">${esc(note)}</td></tr>`;
}

/** Direct data plane, pool failed: who answers the error page meanwhile. */
function renderAnswerer(a: AppStatus): string {
  const x = a.answerer;
  if (!x) return '';
  return `<p class="answerer" data-pid="${esc(x.pid)}">Answering on the socket meanwhile: the answerer, pid ${esc(x.pid)} (${esc(x.state)}, up ${esc(formatUptime(x.uptimeSeconds))}), with the ${esc(x.code ?? 'error')} page; ${esc(x.requests)} requests answered.</p>\n`;
}

function renderError(title: string, e: ErrorInfo | null, past: boolean): string {
  if (!e) return '';
  const detail = e.detail ? `<pre>${esc(e.detail)}</pre>` : e.message === HIDDEN_MESSAGE ? '' : '<p class="none">No traceback or output was captured.</p>';
  // The pool's own failure is why it answers 503 now: open. A past reload failure stays folded.
  return `<details class="error${past ? ' past' : ''}"${past ? '' : ' open'}><summary>${esc(title)}: ${esc(e.message)} <code>${esc(e.code)}</code></summary>${detail}</details>\n`;
}
