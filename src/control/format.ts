/** How figures read on the status page and in `corral status`: short, with units, `–` when unknown. */

/** `45 s`, `12 min`, `3 h 05 min`, `2 d 4 h`. */
export function formatUptime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** Mebibytes with one decimal: `23.4`. */
export function formatMB(bytes: number | null): string {
  return bytes === null ? '–' : (bytes / 1048576).toFixed(1);
}

/** Percent of one CPU with one decimal: `3.5`. */
export function formatCpu(percent: number | null): string {
  return percent === null ? '–' : percent.toFixed(1);
}

/** Milliseconds as people read latency: `0.8 ms`, `12 ms`, `1.25 s`; `–` when unknown. */
export function formatMs(ms: number | null): string {
  if (ms === null) return '–';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** Requests per second: `0`, `0.35`, `12.4`, `1250`. */
export function formatRate(perSecond: number): string {
  if (perSecond === 0) return '0';
  if (perSecond < 1) return perSecond.toFixed(2);
  if (perSecond < 100) return perSecond.toFixed(1);
  return String(Math.round(perSecond));
}

/** A share 0..1 as a percent: `0 %`, `0.4 %`, `12 %`, `100 %`. */
export function formatPercent(share: number): string {
  const p = share * 100;
  if (p === 0) return '0 %';
  if (p < 10) return `${p.toFixed(1)} %`;
  return `${Math.round(p)} %`;
}

/** The UTC time of day of an ISO timestamp: `12:04:31`. */
export function formatClock(iso: string): string {
  return iso.slice(11, 19);
}
