/**
 * The Windows layer's set-up: Wine, node.exe and the shim/ helpers through setup.sh (idempotent;
 * about 30 s cold plus the apt install). If that fails (no root, no network, no Debian), every test
 * of the layer is skipped with the reason, and the reason is printed: never a silent pass.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import type { WineSetup } from './wine.js';

const SETUP = fileURLToPath(new URL('./setup.sh', import.meta.url));

function runSetup(): WineSetup {
  if (process.env.CORRAL_SKIP_WINE) return { ok: false, reason: `CORRAL_SKIP_WINE=${process.env.CORRAL_SKIP_WINE}`, env: {} };
  if (process.platform !== 'linux' || process.arch !== 'x64') return { ok: false, reason: `Wine layer needs linux x64, this is ${process.platform} ${process.arch}`, env: {} };
  const out = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'corral-wine');
  let log = '';
  try {
    log = execFileSync('bash', [SETUP], { env: { ...process.env, WP_OUT: out }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const tail = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ');
    return { ok: false, reason: `Wine set-up failed (${SETUP}): ${tail || e.message}`, env: {} };
  }
  const envFile = path.join(out, 'env.sh');
  if (!existsSync(envFile)) return { ok: false, reason: `Wine set-up wrote no ${envFile}`, env: {} };
  const env: Record<string, string> = {};
  for (const m of readFileSync(envFile, 'utf8').matchAll(/^export (\w+)=(.*)$/gm)) env[m[1]!] = m[2]!;
  process.stdout.write(`[windows] ${log.split('\n').filter((l) => /total|node.exe says/.test(l)).join('; ')}\n`);
  return { ok: true, reason: '', env };
}

export default function setup(project: TestProject): void {
  const wine = runSetup();
  if (!wine.ok) process.stdout.write(`\n[windows] Windows layer SKIPPED: ${wine.reason}\n`);
  project.provide('wine', wine);
}
