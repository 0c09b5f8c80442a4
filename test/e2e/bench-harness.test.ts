/**
 * `npm run bench` (bench/run.mjs) end to end on a tiny plan: nginx, wrk, the standalone worker and
 * nginx static measured, and a candidate that cannot start (corral given an option it does not
 * know) reported as an error row while the others are still measured. Figures are not checked
 * (speed is never asserted); the shape of the output and the clean-up are.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NGINX } from '../helpers/nginx.js';

const ROOT = join(import.meta.dirname, '../..');
const hasWrk = spawnSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' }).status === 0;

interface Row { workload: string; candidate: string; requests: number; errors: number; rps: number; cpu_us_per_req: Record<string, number | null> }
interface Failure { candidate: string; reason: string }

describe.skipIf(!hasWrk || !existsSync(NGINX))('npm run bench, a one-second plan', () => {
  let child: ChildProcess | null = null;
  let out = '';

  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); // the harness stops what it started on SIGTERM
    child = null;
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('measures what starts, gives an error row to what does not, writes JSON and Markdown, leaves nothing behind', async () => {
    out = mkdtempSync(join(tmpdir(), 'corral-bench-'));
    const env = { ...process.env, BENCH_OUT: out, BENCH_NO_INSTALL: '1', BENCH_CORRAL_ARGS: '--no-such-option' };
    const args = ['bench/run.mjs', '--candidates', 'corral-proxy,standalone,nginx-static', '--workloads', 'hello-c16', '--duration', '1', '--reps', '1', '--warmup', '0'];
    child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise<number | null>((resolve) => child!.on('exit', (c) => resolve(c)));
    expect(code, stderr).toBe(0);

    const jsonFile = readdirSync(out).find((f) => /^bench-.*\.json$/.test(f));
    expect(jsonFile, `files: ${readdirSync(out).join(', ')}`).toBeDefined();
    const result = JSON.parse(readFileSync(join(out, jsonFile!), 'utf8')) as { summary: { rows: Row[]; failures: Failure[] } };
    const measured = result.summary.rows.map((r) => r.candidate).sort();
    expect(measured).toEqual(['nginx-static', 'standalone']);
    for (const r of result.summary.rows) {
      expect(r.workload).toBe('hello-c16');
      expect(r.requests).toBeGreaterThan(0);
      expect(r.errors, `${r.candidate} errors`).toBe(0);
      expect(r.cpu_us_per_req.nginx).toBeGreaterThan(0);
    }
    const standalone = result.summary.rows.find((r) => r.candidate === 'standalone')!;
    expect(standalone.cpu_us_per_req.workers).toBeGreaterThan(0);
    expect(standalone.cpu_us_per_req.service).toBeNull();
    expect(result.summary.failures).toHaveLength(1);
    expect(result.summary.failures[0]!.candidate).toBe('corral-proxy');
    expect(result.summary.failures[0]!.reason).toMatch(/^failed to start: corral exited .*no-such-option/s);

    // the table on stdout is the one written next to the JSON, with the command that produced it
    const md = readFileSync(join(out, 'latest.md'), 'utf8');
    expect(stdout).toContain(md.trim());
    expect(md).toContain("`BENCH_CORRAL_ARGS=--no-such-option BENCH_NO_INSTALL=1 BENCH_OUT=");
    expect(md).toMatch(/\| hello-c16 \| standalone \| \d+ \|/);
    expect(md).toMatch(/\| all \| corral-proxy \| \*\*not measured\*\*: failed to start/);
    // nginx's prefix dir (the run's scratch dir) is gone: the clean-up ran
    expect(readdirSync(out).filter((f) => f.startsWith('run-'))).toEqual([]);
  });
});
