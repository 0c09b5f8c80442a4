/**
 * Issue 14, `corral top` in a real terminal: tmux runs it against `corral serve --control`; the
 * pane shows the app, its live rate and the failing request as they happen, `q` quits with exit
 * 0 and the terminal is given back (the main screen with the shell's output, not top's screen).
 * A test-only tmux server (-L) keeps the user's sessions out of reach.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, FIXTURES, startCorral, stopAll } from '../helpers/corral.js';
import { httpRequest } from '../helpers/e2e.js';

const TMUX = ['/usr/bin/tmux', '/usr/local/bin/tmux'].find((p) => existsSync(p)) ?? null;
const sockets: string[] = [];
const tmp: string[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) {
    try {
      execFileSync(TMUX!, ['-L', s, 'kill-server'], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
  await stopAll();
  for (const d of tmp.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmux(socket: string, ...args: string[]): string {
  return execFileSync(TMUX!, ['-L', socket, ...args], { encoding: 'utf8' });
}

/** The pane's text, re-read until `pred` holds (top repaints every 0.3 s here); rejects with the last screen. */
async function paneUntil(socket: string, pred: (text: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < until) {
    text = tmux(socket, 'capture-pane', '-p', '-t', 'top');
    if (pred(text)) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not on the screen within ${timeoutMs} ms; it shows:\n${text}`);
}

describe.skipIf(TMUX === null)('corral top under tmux', () => {
  it('shows the app, its rate and the failing request live; q quits with 0 and restores the terminal', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-top-'));
    tmp.push(dir);
    const tokenFile = join(dir, 'control.token');
    const c = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--workers', '2', '--http', '127.0.0.1:0', '--control', '127.0.0.1:0', '--access-log', 'false'], {
      env: { CORRAL_CONTROL_TOKEN_FILE: tokenFile },
    });
    const control = String((await c.waitForMsg('control listener ready')).control);
    const h = await c.httpAddress();
    await c.waitForLog(() => c.liveWorkerPids().length === 2);

    const socket = `corral-top-${process.pid}-${Date.now()}`;
    sockets.push(socket);
    // The shell prints top's exit code after it: what the user sees once top has given the terminal back.
    const command = `CORRAL_CONTROL_TOKEN_FILE='${tokenFile}' '${process.execPath}' '${CLI}' top --control ${control} --interval 0.3; echo "top exited $?"; sleep 600`;
    tmux(socket, 'new-session', '-d', '-s', 'top', '-x', '150', '-y', '40', command);
    const first = await paneUntil(socket, (t) => t.includes('hello_app:application') && t.includes('q quits'), 'the app');
    expect(first).toMatch(/corral top\s+127\.0\.0\.1:\d+/);
    expect(first).toMatch(/RUNNING\s+gen 1\s+workers 2\/2 ready/);

    for (let i = 0; i < 20; i++) expect((await httpRequest(`http://${h.host}:${h.port}/`)).status).toBe(200);
    expect((await httpRequest(`http://${h.host}:${h.port}/raise`)).status).toBe(500);
    const live = await paneUntil(socket, (t) => t.includes('GET /raise'), 'the failing request');
    expect(live).toMatch(/\d+(\.\d+)? req\/s/);
    expect(live).toMatch(/5xx \d+(\.\d)? %/);
    expect(live).toMatch(/since start: 21 requests/);
    expect(live).toContain('RuntimeError: boom before start_response');

    tmux(socket, 'send-keys', '-t', 'top', 'q');
    const after = await paneUntil(socket, (t) => t.includes('top exited'), 'the exit');
    expect(after).toContain('top exited 0');
    // The alternate screen is gone: top's header is not on the restored screen.
    expect(after).not.toContain('q quits');
  });

  it('refuses to run without a terminal, pointing at corral status', () => {
    let code = 0;
    let stderr = '';
    try {
      execFileSync(process.execPath, [CLI, 'top', '--control', '127.0.0.1:1'], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    } catch (err) {
      code = (err as { status: number }).status;
      stderr = String((err as { stderr: string }).stderr);
    }
    expect(code).toBe(2);
    expect(stderr).toContain('corral status');
  });
});
