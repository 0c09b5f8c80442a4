/**
 * The status page's last-minute chart as inline SVG: requests per second as bars (the 5xx part
 * red) and the p95 latency of each second as a line on its own scale. No script and no external
 * asset, so it draws under the page's CSP; every number is ours (no text from the app).
 */
import type { SecondPoint } from '../monitor/window.js';
import { formatMs } from './format.js';

const W = 360;
const H = 90;
const PAD = 14;

/** A bar chart of requests per second with the p95 line over it, for the last 60 seconds. */
export function renderChart(series: readonly SecondPoint[]): string {
  const n = Math.max(1, series.length);
  const bw = W / n;
  const maxReq = Math.max(1, ...series.map((p) => p.requests));
  const lat = series.map((p) => p.p95Ms).filter((v): v is number => v !== null);
  const maxLat = Math.max(1, ...lat);
  const y = (v: number, max: number): number => H - PAD - ((H - 2 * PAD) * v) / max;
  const bars: string[] = [];
  const line: string[] = [];
  series.forEach((p, i) => {
    const x = (i * bw).toFixed(1);
    const w = Math.max(1, bw - 1).toFixed(1);
    if (p.requests > 0) {
      const top = y(p.requests, maxReq);
      const errTop = y(p.errors, maxReq);
      bars.push(`<rect x="${x}" y="${top.toFixed(1)}" width="${w}" height="${(H - PAD - top).toFixed(1)}" fill="#8fb8e8"/>`);
      if (p.errors > 0) bars.push(`<rect x="${x}" y="${errTop.toFixed(1)}" width="${w}" height="${(H - PAD - errTop).toFixed(1)}" fill="#cf222e"/>`);
    }
    if (p.p95Ms !== null) line.push(`${(i * bw + bw / 2).toFixed(1)},${y(p.p95Ms, maxLat).toFixed(1)}`);
  });
  const path = line.length > 1 ? `<polyline points="${line.join(' ')}" fill="none" stroke="#9a6700" stroke-width="1.5"/>` : line.length === 1 ? `<circle cx="${line[0]!.split(',')[0]}" cy="${line[0]!.split(',')[1]}" r="2" fill="#9a6700"/>` : '';
  const label = `requests per second over the last minute (peak ${maxReq}), 5xx in red; p95 latency per second (peak ${formatMs(lat.length ? maxLat : null)})`;
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${label}"><title>${label}</title>
<line x1="0" y1="${H - PAD}" x2="${W}" y2="${H - PAD}" stroke="#d0d7de"/>${bars.join('')}${path}
<text x="2" y="10" font-size="9" fill="#57606a">${maxReq} req/s</text><text x="${W - 2}" y="10" font-size="9" fill="#9a6700" text-anchor="end">p95 ${formatMs(lat.length ? maxLat : null)}</text><text x="2" y="${H - 2}" font-size="9" fill="#57606a">−60 s</text><text x="${W - 2}" y="${H - 2}" font-size="9" fill="#57606a" text-anchor="end">now</text></svg>`;
}
