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
