/**
 * Medians, ratios and the Markdown table of a bench run. Pure functions of the run records, so the
 * table can be rebuilt from bench/out/*.json and tested without running anything.
 */

/** The references every row is compared with. */
export const REFS = { uwsgi: 'uwsgi-fcgi-2p', standalone: 'standalone' };

export function median(xs) {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const sumRoles = (cpu) => ['nginx', 'service', 'workers'].reduce((n, k) => n + (cpu[k] ?? 0), 0);

/**
 * One row per workload x candidate that has runs (medians over its rounds), with ratios of its
 * median req/s to the references' in the same workload (null when a reference has no runs).
 * `failures` ({candidate, workload?, reason}) pass through for the error rows.
 */
export function summarize(runs, candidateNames, workloadNames, failures = []) {
  const rows = [];
  for (const w of workloadNames) {
    for (const c of candidateNames) {
      const mine = runs.filter((r) => r.workload === w && r.candidate === c);
      if (mine.length === 0) continue;
      const cpu = (role) => (mine.every((r) => r.cpu_us_per_req[role] === null) ? null : median(mine.map((r) => r.cpu_us_per_req[role])));
      rows.push({
        workload: w,
        candidate: c,
        reps: mine.length,
        rps: median(mine.map((r) => r.rps)),
        rps_min: Math.min(...mine.map((r) => r.rps)),
        rps_max: Math.max(...mine.map((r) => r.rps)),
        p50_ms: median(mine.map((r) => r.p50_ms)),
        p99_ms: median(mine.map((r) => r.p99_ms)),
        errors: mine.reduce((n, r) => n + r.errors, 0),
        requests: mine.reduce((n, r) => n + r.requests, 0),
        cpu_us_per_req: { nginx: cpu('nginx'), service: cpu('service'), workers: cpu('workers'), total: median(mine.map((r) => sumRoles(r.cpu_us_per_req))) },
        processes: mine[mine.length - 1].processes,
        processes_gone: mine.reduce((n, r) => n + (r.processes_gone ?? 0), 0),
        other_cores: median(mine.map((r) => r.other_cores)),
      });
    }
  }
  for (const r of rows) {
    const ref = (name) => rows.find((x) => x.workload === r.workload && x.candidate === name)?.rps;
    const ratio = (name) => {
      const v = ref(name);
      return v === undefined || !(v > 0) ? null : r.rps / v;
    };
    r.x_uwsgi_fcgi = ratio(REFS.uwsgi);
    r.x_standalone = ratio(REFS.standalone);
  }
  return { rows, failures };
}

export function fmt(x, digits = 0) {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

const oneLine = (s) => String(s).replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim().slice(0, 300);

/**
 * The Markdown the README takes as is: the command and conditions, one table (a row per workload x
 * candidate, an error row per candidate that could not be measured), what each candidate is.
 */
export function markdown(summary, meta) {
  const L = [];
  L.push(`\`${meta.command}\` on ${meta.date.slice(0, 16).replace('T', ' ')} UTC: ${meta.cpus} CPUs, node ${meta.node}, ${meta.python}, nginx ${meta.nginx}${meta.uwsgi ? `, uWSGI ${meta.uwsgi}` : ''}${meta.gunicorn ? `, gunicorn ${meta.gunicorn}` : ''}.`);
  L.push(`Medians of ${meta.reps} interleaved round${meta.reps === 1 ? '' : 's'} of ${meta.duration_s} s per candidate and workload (wrk -t1, candidate order rotated each round), behind one nginx (1 worker). ${meta.note ?? ''}`.trim());
  L.push('');
  L.push('| workload | candidate | req/s | req/s min-max | p50 ms | p99 ms | errors | x uwsgi-fcgi-2p | x standalone | nginx CPU µs/req | service CPU µs/req | workers CPU µs/req | total CPU µs/req | other load (cores) |');
  L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of summary.rows) {
    const c = r.cpu_us_per_req;
    L.push(
      `| ${r.workload} | ${r.candidate} | ${fmt(r.rps)} | ${fmt(r.rps_min)}-${fmt(r.rps_max)} | ${fmt(r.p50_ms, 2)} | ${fmt(r.p99_ms, 2)} | ${r.errors} | ${fmt(r.x_uwsgi_fcgi, 2)} | ${fmt(r.x_standalone, 2)} | ${fmt(c.nginx)} | ${fmt(c.service)} | ${fmt(c.workers)} | ${fmt(c.total)} | ${fmt(r.other_cores, 2)} |`,
    );
  }
  for (const f of summary.failures) {
    L.push(`| ${f.workload ?? 'all'} | ${f.candidate} | **not measured**: ${oneLine(f.reason)} | | | | | | | | | | | |`);
  }
  L.push('');
  if (meta.skipped?.length) {
    L.push(`Skipped (not installed here): ${meta.skipped.map((s) => `\`${s.candidate}\` (${s.reason})`).join('; ')}.`);
    L.push('');
  }
  L.push('Candidates: ' + meta.candidates.map((c) => `\`${c.name}\` = ${c.what}`).join('; ') + '.');
  L.push('');
  L.push('Workloads: ' + meta.workloads.map((w) => `\`${w.name}\` = ${w.what}, ${w.connections} connections`).join('; ') + '.');
  return L.join('\n');
}
