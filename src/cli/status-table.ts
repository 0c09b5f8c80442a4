/** `corral status` output: the status document as plain-text tables for a terminal. */
import { formatCpu, formatMB, formatUptime } from '../control/format.js';
import type { AppStatus, StatusDocument } from '../control/snapshot.js';

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
    `  state ${a.state}  generation ${a.servingGeneration}  queue ${a.queued}/${l.queueLength}  workers ${t.ready} ready of ${t.workers} (min ${l.minWorkers}, max ${l.maxWorkers})  busy threads ${t.inflight}/${t.threads}`,
  ];
  if (a.workers.length > 0) {
    const rows = [['PID', 'GEN', 'STATE', 'REQUESTS', 'BUSY', 'CPU%', 'RSS MB', 'UPTIME', 'NOTE']];
    for (const w of a.workers) {
      const note = w.recycle ?? (w.generation > a.servingGeneration ? 'new generation booting' : w.generation < a.servingGeneration ? 'previous generation' : '');
      rows.push([String(w.pid), String(w.generation), w.state, String(w.requests), `${w.inflight}/${l.threadsPerWorker}`, formatCpu(w.cpuPercent), formatMB(w.rssBytes), formatUptime(w.uptimeSeconds), note]);
    }
    out.push(...table(rows, new Set([0, 1, 3, 4, 5, 6, 7])).split('\n').map((line) => `  ${line}`));
  } else out.push('  no worker running');
  if (a.failure) out.push(`  FAILED: ${a.failure.message} [${a.failure.code}]`, ...indent(a.failure.detail));
  if (a.lastReloadError) out.push(`  last reload failed: ${a.lastReloadError.message} [${a.lastReloadError.code}]`);
  return out;
}

/** The last lines of a traceback, indented (the whole one is in status.json and on the page). */
function indent(detail: string | null): string[] {
  if (!detail) return [];
  const lines = detail.trimEnd().split('\n');
  const shown = lines.slice(-8).map((l) => `    ${l}`);
  return lines.length > 8 ? ['    ...', ...shown] : shown;
}
