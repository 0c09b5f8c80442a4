// The Python worker's unit tests (test/python/test_<module>.py, one per module of
// src/python/corral_wsgi/, stdlib unittest), each run as its own process under Debian's python
// and under the python3 first on PATH when that is another interpreter: a failure shows the
// module's unittest output.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEBIAN_PYTHON, ROOT } from '../helpers/corral.js';

const TESTS = path.join(ROOT, 'test/python');
const MODULES = readdirSync(TESTS).filter((f) => /^test_\w+\.py$/.test(f)).map((f) => f.slice(0, -3)).sort();

/** The interpreter a command runs (pyenv shims resolve to the real one), or null if it does not run. */
function executable(python: string): string | null {
  const r = spawnSync(python, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout.trim()) return null;
  return realpathSync(r.stdout.trim());
}

function interpreters(): Array<{ name: string; python: string }> {
  const found: Array<{ name: string; python: string }> = [];
  const seen = new Set<string>();
  const candidates = [DEBIAN_PYTHON, process.env.CORRAL_TEST_PYTHON ?? 'python3'];
  for (const python of candidates) {
    if (python === DEBIAN_PYTHON && !existsSync(DEBIAN_PYTHON)) continue;
    const exe = executable(python);
    if (exe === null || seen.has(exe)) continue;
    seen.add(exe);
    found.push({ name: `${python} (${exe})`, python });
  }
  return found;
}

describe('python worker unit tests', () => {
  const found = interpreters();
  it('finds at least one interpreter', () => {
    expect(found.length).toBeGreaterThan(0);
  });

  for (const { name, python } of found) {
    describe(name, () => {
      for (const module of MODULES) {
        it(module, () => {
          const r = spawnSync(python, ['-m', 'unittest', module], {
            cwd: TESTS,
            encoding: 'utf8',
            timeout: 120_000,
            env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
          });
          const output = `${r.stdout}${r.stderr}`;
          expect(r.error, output).toBeUndefined();
          expect(r.status, `${python} -m unittest ${module} (in test/python):\n${output}`).toBe(0);
          expect(output).toMatch(/\nOK/);
        });
      }
    });
  }
});
