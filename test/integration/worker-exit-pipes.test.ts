/**
 * Node may report a child's exit before it has read the child's last bytes: a worker whose import
 * failed writes FATAL (with the dev page's facts) and exits at once, and under load the service
 * saw the exit first, lost the record, and the dev page said "The app failed to start" instead of
 * the SyntaxError. Here the order is forced: the child exits at once and a grandchild holding the
 * same pipes writes FATAL and a stderr line 150 ms later. The Worker must report them with the exit.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Worker } from '../../src/pool/worker.js';
import type { WorkerHandle } from '../../src/pool/handle.js';

const PYTHON = process.env.CORRAL_TEST_PYTHON ?? 'python3';

/** Exits 4 at once; its forked child writes a CORRAL_FATAL record and a stderr line afterwards. */
const LATE_FATAL = `
import json, os, struct, sys, time
if os.fork() != 0:
    os._exit(4)
time.sleep(0.15)
body = json.dumps({"kind": "import", "error": "SyntaxError: late words", "line": 4}).encode()
pad = (8 - len(body) % 8) % 8
sys.stdout.buffer.write(struct.pack(">BBHHBx", 1, 0xC4, 0, len(body), pad) + body + b"\\0" * pad)
sys.stdout.buffer.flush()
sys.stderr.write("the last words on stderr\\n")
sys.stderr.flush()
os._exit(0)
`;

describe('a worker whose exit is seen before its last output', () => {
  it.skipIf(process.platform === 'win32')('reports the FATAL record and stderr lines that arrive after the exit event', async () => {
    const stderr: string[] = [];
    const exited = new Promise<{ w: WorkerHandle; code: number | null }>((resolve) => {
      new Worker(
        { command: [PYTHON], args: ['-c', LATE_FATAL], cwd: process.cwd(), env: process.env, responseWindow: 65536 },
        1,
        {
          ready: () => {},
          idle: () => {},
          pong: () => {},
          stderr: (_w, line) => stderr.push(line),
          exit: (w, code) => resolve({ w, code }),
        },
        pino({ level: 'silent' }),
        Date.now(),
      );
    });
    const { w, code } = await exited;
    expect(code).toBe(4);
    expect(w.fatal).toMatchObject({ kind: 'import', error: 'SyntaxError: late words', line: 4 });
    expect(stderr).toContain('the last words on stderr');
    expect(w.lastStderr).toContain('the last words on stderr');
  });
});
