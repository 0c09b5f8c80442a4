/** `corral status` output: the status document as plain-text tables for a terminal. */
import { formatClock, formatCpu, formatMB, formatMs, formatPercent, formatRate, formatUptime } from '../control/format.js';
import { groupErrors, type AppStatus, type StatusDocument, type WorkerInfo } from '../control/snapshot.js';

/** Columns padded to their widest cell; numbers right-aligned. */
export function table(rows: string[][], rightAligned: ReadonlySet<number>): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The whole status as text. */
export function renderStatusTable(doc: StatusDocument): string {
  const s = doc.service;
  const lines = [`corral ${s.version}  pid ${s.pid}  up ${formatUptime(s.uptimeSeconds)}  ${s.draining ? 'DRAINING (stopping)' : 'serving'}`];
  if (doc.apps.length === 0) lines.push('', 'no app is running');
  for (const a of doc.apps) lines.push('', ...renderApp(a));
  return `${lines.join('\n')}\n`;
}

function renderApp(a: AppStatus): string[] {
  const t = a.totals;
  const l = a.limits;
  const out = [
    `app ${a.name}  ${a.root ?? '(directory hidden: no control token)'}`,
    `  state ${a.state}  generation ${a.servingGeneration}  ${queueLine(a)}  workers ${t.ready} ready of ${t.workers} (min ${l.minWorkers}, max ${l.maxWorkers})  busy threads ${t.inflight}/${t.threads}`,
    ...trafficLines(a),
  ];
  if (a.workers.length > 0) out.push(...workerTable(a, a.workers).map((line) => `  ${line}`));
  else out.push('  no worker running');
  if (a.failure) out.push(`  FAILED: ${a.failure.message} [${a.failure.code}]`, ...indent(a.failure.detail));
  if (a.answerer) out.push(`  answerer pid ${a.answerer.pid} (${a.answerer.state}) answers the ${a.answerer.code ?? 'error'} page: ${a.answerer.requests} requests`);
  if (a.lastReloadError) out.push(`  last reload failed: ${a.lastReloadError.message} [${a.lastReloadError.code}]`);
  out.push(...recentErrorLines(a, 5), ...recentReloadLines(a, 3));
  return out;
}

/** `queue 3/100 (high 12, oldest 0.4 s, max workers reached 2x)`. */
export function queueLine(a: AppStatus): string {
  const extra = [`high ${a.queueHighWater}`, ...(a.queued > 0 ? [`oldest ${a.longestWaitSeconds} s`] : []), ...(a.maxWorkersReached > 0 ? [`max workers reached ${a.maxWorkersReached}x`] : [])];
  return `queue ${a.queued}/${a.limits.queueLength} (${extra.join(', ')})`;
}

/** Rates, error rate and latency over the last minute, and lifetime counts; none without figures. */
export function trafficLines(a: AppStatus): string[] {
  const tr = a.traffic;
  if (!tr) return [`  requests ${a.totals.requests}`];
  const c = tr.byClass;
  const codes = Object.entries(tr.byErrorCode).map(([code, n]) => `${code} ${n}`);
  return [
    `  ${formatRate(tr.perSecond)} req/s (${formatRate(tr.perSecondMinute)} over ${tr.windowSeconds} s)  5xx ${formatPercent(tr.errorRate)}  p50 ${formatMs(tr.latencyMs.p50)}  p95 ${formatMs(tr.latencyMs.p95)}  p99 ${formatMs(tr.latencyMs.p99)}  max ${formatMs(tr.latencyMs.max)}`,
    `  last ${tr.windowSeconds} s: 2xx ${c['2xx']}  3xx ${c['3xx']}  4xx ${c['4xx']}  5xx ${c['5xx']}  |  since start: ${a.totals.requests} requests, ${tr.slow} slow (> 1 s)${codes.length > 0 ? `, answered by corral: ${codes.join(', ')}` : ''}`,
  ];
}

/** The workers as a table (header first), with each one's current request. */
export function workerTable(a: AppStatus, workers: readonly WorkerInfo[]): string[] {
  const rows = [['PID', 'GEN', 'STATE', 'REQUESTS', 'BUSY', 'CPU%', 'CPU S', 'RSS MB', 'UPTIME', 'CURRENT REQUEST / NOTE']];
  for (const w of workers) {
    const running = w.current.map((r) => `${r.method} ${r.path ?? '(path hidden)'} ${r.ageSeconds} s`).join('; ');
    const why = w.recycle ?? (w.generation > a.servingGeneration ? 'new generation booting' : w.generation < a.servingGeneration ? 'previous generation' : '');
    rows.push([String(w.pid), String(w.generation), w.state, String(w.requests), `${w.inflight}/${a.limits.threadsPerWorker}`, formatCpu(w.cpuPercent), w.cpuSeconds === null ? '–' : w.cpuSeconds.toFixed(1), formatMB(w.rssBytes), formatUptime(w.uptimeSeconds), [running, why].filter((p) => p !== '').join(' · ')]);
  }
  return table(rows, new Set([0, 1, 3, 4, 5, 6, 7, 8])).split('\n');
}

/** The last `n` requests answered 5xx. */
export function recentErrorLines(a: AppStatus, n: number): string[] {
  if (a.recentErrors.length === 0) return [];
  const rows = groupErrors(a.recentErrors)
    .slice(0, n)
    .map(({ latest: e, count }) => [formatClock(e.at), `${count}x`, String(e.status), `${e.method} ${e.path ?? '(path hidden)'}`, e.pid === null ? '–' : String(e.pid), [e.code, e.exception].filter((x) => x !== null).join(' ')]);
  return [`  recent errors (UTC, last ${a.recentErrors.length}, repeats folded):`, ...table(rows, new Set([1, 2, 4])).split('\n').map((line) => `    ${line}`)];
}

/** The last `n` reload results. */
export function recentReloadLines(a: AppStatus, n: number): string[] {
  if (a.recentReloads.length === 0) return [];
  return ['  recent reloads (UTC):', ...a.recentReloads.slice(0, n).map((r) => `    ${formatClock(r.at)}  ${r.ok ? 'ok    ' : 'FAILED'}  generation ${r.generation}  ${r.reason}${r.ok ? '' : `: ${r.message ?? ''} [${r.code ?? ''}]`}`)];
}

/** The last lines of a traceback, indented (the whole one is in status.json and on the page). */
function indent(detail: string | null): string[] {
  if (!detail) return [];
  const lines = detail.trimEnd().split('\n');
  const shown = lines.slice(-8).map((l) => `    ${l}`);
  return lines.length > 8 ? ['    ...', ...shown] : shown;
}
