/**
 * One wrk run against one candidate, with the CPU each process spent during it (utime + stime
 * deltas from /proc/PID/stat), and the interleaved schedule of runs.
 */
import { CLK_TCK, cpuTicks, descendantsOf, forget, killGroup, machineTicks, startChild } from './proc.mjs';

/** CPU ticks of each pid now. */
function snapshot(pids) {
  return new Map(pids.map((p) => [p, cpuTicks(p)]));
}

/**
 * Ticks spent between two snapshots. A process that appeared in between counts from zero (it was
 * born during the run); one that vanished is lost (its figures went with it) and is counted in
 * `gone`, so a row built on a partial sum can say so.
 */
export function ticksBetween(before, after) {
  let ticks = 0;
  let gone = 0;
  for (const [pid, t1] of after) {
    if (!Number.isFinite(t1)) {
      if (before.has(pid)) gone++;
      continue;
    }
    const t0 = before.get(pid);
    ticks += Number.isFinite(t0) ? t1 - t0 : t1;
  }
  for (const pid of before.keys()) if (!after.has(pid)) gone++;
  return { ticks, gone };
}

/**
 * The processes of each role for a started candidate, looked up now (workers are replaced and
 * scaled): nginx's worker(s), the service (the candidate's root process if it manages others),
 * and the workers (everything below it, or the root itself when it works alone).
 */
export function rolePids(nginxWorkers, started, hasService) {
  const root = started.entry?.child.pid;
  if (root === undefined) return { nginx: nginxWorkers, service: [], workers: [] };
  const below = descendantsOf(root);
  return { nginx: nginxWorkers, service: hasService ? [root] : [], workers: hasService ? below : [root, ...below] };
}

/**
 * Runs wrk for `seconds` against nginx's port for the candidate; resolves with wrk's numbers
 * (bench/wrk-report.lua's WRKJSON line) and, sampled every 200 ms, wrk's own CPU ticks.
 */
export function runWrk({ port, workload, seconds, script }) {
  return new Promise((resolve, reject) => {
    const args = ['-t1', `-c${workload.connections}`, `-d${seconds}s`, '--latency', '-s', script, `http://127.0.0.1:${port}${workload.path}`];
    if (workload.post) args.push('--', 'post', String(workload.post));
    const wrk = startChild('wrk', 'wrk', args, { stopSignal: 'SIGKILL' });
    let wrkTicks = 0;
    const sampler = setInterval(() => {
      const t = cpuTicks(wrk.child.pid);
      if (Number.isFinite(t)) wrkTicks = t; // the last sample is at most 200 ms before its end
    }, 200);
    const timer = setTimeout(() => killGroup(wrk.child.pid, 'SIGKILL'), (seconds + 15) * 1000);
    void wrk.exited.then(({ code, signal }) => {
      clearInterval(sampler);
      clearTimeout(timer);
      forget(wrk);
      const m = /^WRKJSON (.*)$/m.exec(wrk.output);
      if (code !== 0 || !m) return reject(new Error(`wrk ${args.join(' ')} failed (code ${code}, signal ${signal}):\n${wrk.output.slice(-2000)}`));
      resolve({ ...JSON.parse(m[1]), wrkTicks });
    });
  });
}

/**
 * Measures one candidate on one workload: wrk plus the CPU of each role. Returns a run record
 * (req/s, latency, errors, CPU microseconds per request per role, and the load of everything else
 * on the machine in cores, which says how much a shared machine disturbed this run).
 */
export async function measureOnce({ candidate, started, workload, port, nginxWorkers, seconds, script }) {
  const roles0 = rolePids(nginxWorkers, started, candidate.hasService);
  const before = Object.fromEntries(Object.entries(roles0).map(([k, pids]) => [k, snapshot(pids)]));
  const m0 = machineTicks();
  const t0 = process.hrtime.bigint();
  const r = await runWrk({ port, workload, seconds, script });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const m1 = machineTicks();
  const roles1 = rolePids(nginxWorkers, started, candidate.hasService);
  const cpu = {};
  const procs = {};
  const perProcess = {}; // role -> {pid: µs/req}: shows, e.g., whether two workers sharing a socket share the load
  let gone = 0;
  let trackedTicks = 0;
  for (const role of Object.keys(roles0)) {
    const after = snapshot([...new Set([...roles0[role], ...roles1[role]])]);
    const d = ticksBetween(before[role], after);
    perProcess[role] = Object.fromEntries(
      [...after].filter(([, t]) => Number.isFinite(t) && r.requests > 0).map(([pid, t]) => [pid, Math.round((((t - (before[role].get(pid) ?? 0)) || 0) * 1e6) / CLK_TCK / r.requests)]),
    );
    gone += d.gone;
    trackedTicks += d.ticks;
    procs[role] = roles1[role].length;
    cpu[role] = roles1[role].length === 0 && roles0[role].length === 0 ? null : r.requests > 0 ? (d.ticks * 1e6) / CLK_TCK / r.requests : NaN;
  }
  const otherCores = (m1.busy - m0.busy - trackedTicks - r.wrkTicks) / CLK_TCK / wallS;
  const errors = r.err_connect + r.err_read + r.err_write + r.err_status + r.err_timeout;
  return {
    workload: workload.name,
    candidate: candidate.name,
    requests: r.requests,
    rps: r.requests / (r.duration_us / 1e6),
    p50_ms: r.p50_us / 1000,
    p99_ms: r.p99_us / 1000,
    errors,
    cpu_us_per_req: cpu,
    cpu_us_per_req_by_pid: perProcess,
    processes: procs,
    processes_gone: gone,
    wrk_cores: r.wrkTicks / CLK_TCK / wallS,
    other_cores: otherCores,
    wrk: r,
  };
}

/**
 * The order of runs: round -> workload -> candidate, the candidates rotated by one each round, so
 * that drift on a shared machine hits every candidate alike and none always runs first.
 */
export function schedule(candidateNames, workloadNames, reps) {
  const out = [];
  for (let rep = 0; rep < reps; rep++) {
    for (const w of workloadNames) {
      const n = candidateNames.length;
      for (let i = 0; i < n; i++) out.push({ rep: rep + 1, workload: w, candidate: candidateNames[(i + rep) % n] });
    }
  }
  return out;
}
