/**
 * Helicon Zoo's DEPLOY_FILE: a Python script run once before the first worker of a generation
 * starts (migrations, collectstatic...). It runs with the app's interpreter, directory and
 * environment; its output goes to DEPLOY_LOG (appended, with a header per run) or to the log.
 * A non-zero exit, a crash or a timeout fails the step, with the output's last lines as detail.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/** How to run the step. */
export interface DeploySpec {
  command: readonly string[];
  /** Absolute path of the script. */
  script: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Absolute path of DEPLOY_LOG, or null for the log. */
  logFile: string | null;
  timeoutMs: number;
}

const TAIL_LINES = 30;

/** Runs the deploy script; resolves with null on success or the error that blocks the generation. */
export function runDeploy(spec: DeploySpec, generation: number, log: Logger): Promise<CorralError | null> {
  return new Promise((resolve) => {
    const started = Date.now();
    const [cmd, ...pre] = spec.command;
    const tail: string[] = [];
    const out = (text: string): void => {
      if (spec.logFile) appendFileSync(spec.logFile, text);
      for (const line of text.split(/\r?\n/)) {
        if (line === '') continue;
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        if (!spec.logFile) log.info({ line, gen: generation }, 'deploy output');
      }
    };
    if (spec.logFile) {
      mkdirSync(dirname(spec.logFile), { recursive: true });
      appendFileSync(spec.logFile, `=== ${new Date().toISOString()} generation ${generation}: ${spec.script}\n`);
    }
    const child = spawn(cmd!, [...pre, spec.script], { cwd: spec.cwd, env: spec.env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    child.stdout.setEncoding('utf8').on('data', out);
    child.stderr.setEncoding('utf8').on('data', out);
    const timer = setTimeout(() => child.kill('SIGKILL'), spec.timeoutMs);
    let settled = false;
    const finish = (error: CorralError | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (spec.logFile) appendFileSync(spec.logFile, `=== ${error ? `failed: ${error.message}` : 'ok'} after ${Date.now() - started} ms\n`);
      resolve(error);
    };
    child.on('error', (err) => finish(new CorralError('CORRAL_DEPLOY_FAILED', `deploy script ${spec.script} could not start: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return finish(null);
      const why = signal ? `was killed (${signal}${signal === 'SIGKILL' ? `, timeout ${spec.timeoutMs / 1000} s?` : ''})` : `exited with code ${code}`;
      finish(new CorralError('CORRAL_DEPLOY_FAILED', `deploy script ${spec.script} ${why}`, { detail: tail.join('\n') }));
    });
  });
}
