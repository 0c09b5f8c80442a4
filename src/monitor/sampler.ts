/**
 * CPU and memory of worker processes, sampled with pidusage (/proc on Linux, wmic or PowerShell on
 * Windows). Each pid is sampled on its own, so a worker that just exited does not spoil the rest.
 */
import pidusage from 'pidusage';
import type { Usage } from '../pool/pool.js';

/** Samples the given pids; pids that are gone are left out. */
export async function sampleUsage(pids: number[]): Promise<Map<number, Usage>> {
  const results = await Promise.allSettled(pids.map((pid) => pidusage(pid)));
  const out = new Map<number, Usage>();
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') out.set(pids[i]!, { cpu: r.value.cpu, memory: r.value.memory, cpuSeconds: r.value.ctime / 1000 });
  });
  return out;
}
