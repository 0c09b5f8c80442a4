/**
 * The answerer's page directory and the handoff sockets' are named with the service's pid; one left by a service that was
 * killed (SIGKILL, a crash: no stop() ran) is removed by the next service that makes its own.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ANSWER_DIR_PREFIX, HANDOFF_DIR_PREFIX, removeOrphanDirs } from '../../src/cli/app.js';

const made: string[] = [];
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('removeOrphanDirs', () => {
  it('removes the directories of services that are gone, and nothing else', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-orphans-'));
    made.push(dir);
    // A pid that was alive a moment ago and is not now.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(gone.stdout);
    const names = {
      dead: `corral-answer-${deadPid}-AbC123`,
      mine: `corral-answer-${process.pid}-AbC123`,
      living: `corral-answer-${process.ppid}-AbC123`,
      unrelated: 'corral-answer-deploy-AbC123',
      oldStyle: 'corral-answer-AbC123',
      otherKind: `corral-handoff-${deadPid}-AbC123`,
    };
    for (const n of Object.values(names)) {
      mkdirSync(join(dir, n));
      writeFileSync(join(dir, n, 'page'), 'Status: 503\r\n\r\n');
    }
    const lines: string[] = [];
    removeOrphanDirs(dir, ANSWER_DIR_PREFIX, pino({ base: null }, { write: (l: string) => void lines.push(l) }));
    expect(existsSync(join(dir, names.dead))).toBe(false);
    for (const n of [names.mine, names.living, names.unrelated, names.oldStyle, names.otherKind]) expect(existsSync(join(dir, n))).toBe(true);
    expect(lines).toHaveLength(1);
    removeOrphanDirs(dir, HANDOFF_DIR_PREFIX, pino({ level: 'silent' }));
    expect(existsSync(join(dir, names.otherKind))).toBe(false);
    expect(JSON.parse(lines[0]!)).toMatchObject({ pid: deadPid, msg: 'removed the temporary directory of a corral service that is gone' });
  });

  it('does nothing when the directory cannot be read', () => {
    expect(() => removeOrphanDirs(join(tmpdir(), 'corral-no-such-dir-here'), ANSWER_DIR_PREFIX, pino({ level: 'silent' }))).not.toThrow();
  });
});
