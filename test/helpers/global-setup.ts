/** Builds dist/ once before the suites, so black-box tests run the same CLI a user runs. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  // Both projects (main, windows) list this set-up; global set-ups share one process: build once.
  if (process.env.CORRAL_TEST_DIST_BUILT === '1') return;
  const root = fileURLToPath(new URL('../..', import.meta.url));
  execFileSync(process.execPath, [fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url)), '-p', root], {
    cwd: root,
    stdio: 'inherit',
  });
  process.env.CORRAL_TEST_DIST_BUILT = '1';
}
