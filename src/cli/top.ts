/**
 * `corral top`: the status refreshed in the terminal, as uwsgitop does for uWSGI. Plain ANSI
 * (the alternate screen, cursor home, clear to end of line), no dependency. `q` or Ctrl-C quits
 * and gives the terminal back as it was: main screen, cursor shown, cooked mode.
 */
import { formatUptime } from '../control/format.js';
import type { AppStatus, StatusDocument } from '../control/snapshot.js';
import { queueLine, recentErrorLines, trafficLines, workerTable } from './status-table.js';

const ESC = '\x1b[';
const ENTER = `${ESC}?1049h${ESC}?25l`;
const LEAVE = `${ESC}?25h${ESC}?1049l`;
const RED = `${ESC}31m`;
const BOLD = `${ESC}1m`;
const INVERSE = `${ESC}7m`;
const RESET = `${ESC}0m`;

/** One screen for `doc`, at most `rows` lines of at most `cols` characters (before colour). */
export function renderTop(doc: StatusDocument, where: string, cols: number, rows: number, intervalMs: number): string[] {
  const s = doc.service;
  const lines: Array<{ text: string; tone?: string }> = [
    { text: `corral top  ${where}  corral ${s.version}  up ${formatUptime(s.uptimeSeconds)}  ${doc.generatedAt.slice(11, 19)} UTC  every ${intervalMs / 1000} s  q quits`, tone: INVERSE },
  ];
  if (s.draining) lines.push({ text: 'DRAINING: the service is stopping', tone: RED });
  if (doc.apps.length === 0) lines.push({ text: '' }, { text: 'no app is running' });
  // Each app's summary first, so none is pushed off the screen by another's workers.
  const budget = Math.max(3, Math.floor((rows - lines.length) / Math.max(1, doc.apps.length)));
  for (const a of doc.apps) lines.push(...appBlock(a, budget));
  return lines.slice(0, rows).map((l) => {
    const text = l.text.length > cols ? `${l.text.slice(0, Math.max(0, cols - 1))}…` : l.text;
    return l.tone ? `${l.tone}${text}${RESET}` : text;
  });
}

function appBlock(a: AppStatus, budget: number): Array<{ text: string; tone?: string }> {
  const t = a.totals;
  const failing = a.state === 'failed' || (a.traffic !== null && a.traffic.errorRate >= 0.05);
  const head = [
    { text: '' },
    { text: `${a.name}  ${a.state.toUpperCase()}  gen ${a.servingGeneration}  workers ${t.ready}/${t.workers} ready  busy ${t.inflight}/${t.threads}  ${queueLine(a)}`, tone: failing ? `${BOLD}${RED}` : BOLD },
    ...trafficLines(a).map((text, i) => ({ text, ...(i === 0 && failing ? { tone: RED } : {}) })),
  ];
  if (a.failure) head.push({ text: `  FAILED: ${a.failure.message.split('\n')[0] ?? ''} [${a.failure.code}]`, tone: RED });
  const errors = recentErrorLines(a, 3).map((text) => ({ text, tone: RED }));
  // Busy workers first: the ones with a current request are what top is for.
  const workers = [...a.workers].sort((x, y) => y.inflight - x.inflight || x.pid - y.pid);
  const room = Math.max(2, budget - head.length - errors.length);
  const table = workers.length > 0 ? workerTable(a, workers) : ['no worker running'];
  const shown = table.length > room ? [...table.slice(0, room - 1), `... ${table.length - room + 1} more workers`] : table;
  return [...head, ...shown.map((text) => ({ text: `  ${text}` })), ...errors];
}

/** What the loop needs: where it reads, and the terminal. */
export interface TopOptions {
  /** Shown in the header. */
  where: string;
  intervalMs: number;
  /** One read of the status: the document, or why there is none (shown, and tried again). */
  load(): Promise<StatusDocument | string>;
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
}

/** Refreshes until q, Ctrl-C, SIGINT or SIGTERM; resolves with the exit code. */
export function runTop(o: TopOptions): Promise<number> {
  const out = o.stdout;
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    let last: StatusDocument | string = 'connecting...';
    const paint = (): void => {
      const cols = out.columns || 120;
      const rows = out.rows || 40;
      const lines = typeof last === 'string' ? [`${INVERSE}corral top  ${o.where}  q quits${RESET}`, '', last] : renderTop(last, o.where, cols, rows, o.intervalMs);
      // Home, each line cleared to its end, then the rest of the screen cleared: no flicker.
      out.write(`${ESC}H${lines.map((l) => `${l}${ESC}K`).join('\r\n')}${ESC}J`);
    };
    const refresh = async (): Promise<void> => {
      try {
        last = await o.load();
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (done) return;
      paint();
      timer = setTimeout(() => void refresh(), o.intervalMs);
    };
    const quit = (): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      o.stdin.off('data', onKey);
      process.off('SIGINT', quit);
      process.off('SIGTERM', quit);
      out.off('resize', paint);
      if (o.stdin.isTTY) o.stdin.setRawMode(false);
      o.stdin.pause();
      out.write(LEAVE);
      resolve(0);
    };
    const onKey = (key: Buffer): void => {
      // q, Q, Ctrl-C (raw mode delivers it as a byte, not a signal), Ctrl-D.
      if (key.includes(0x71) || key.includes(0x51) || key.includes(0x03) || key.includes(0x04)) quit();
    };
    out.write(ENTER);
    if (o.stdin.isTTY) o.stdin.setRawMode(true);
    o.stdin.on('data', onKey);
    o.stdin.resume();
    process.on('SIGINT', quit);
    process.on('SIGTERM', quit);
    out.on('resize', paint);
    void refresh();
  });
}
