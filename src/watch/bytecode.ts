/**
 * Stale bytecode after a quick save. Python reuses `__pycache__/NAME.TAG.pyc` when the source's
 * mtime (in whole seconds) and size recorded in it still match the file: a save within the same
 * second that keeps the length (`v1` -> `v2`) looks unchanged, and the new generation would import
 * the old code. Before a reload, the cached bytecode of the changed `.py` files is removed, so the
 * new workers compile what is on disk (and cache it again).
 */
import { readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Where Python keeps the bytecode of a source in `dir`: `__pycache__`, or under PYTHONPYCACHEPREFIX. */
function cacheDirs(dir: string, env: NodeJS.ProcessEnv): string[] {
  const dirs = [join(dir, '__pycache__')];
  const prefix = env.PYTHONPYCACHEPREFIX;
  // Python mirrors the source's absolute directory under the prefix (the drive's colon dropped on Windows).
  if (prefix) dirs.push(join(prefix, dir.replace(/^([a-zA-Z]):/, '$1').replace(/^[\\/]+/, '')));
  return dirs;
}

/** Removes the cached bytecode of each changed `.py`/`.pyw` file; returns the files removed. */
export function invalidateBytecode(paths: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const removed: string[] = [];
  for (const path of paths) {
    const m = /^(.*)\.pyw?$/i.exec(basename(path));
    if (!m) continue;
    // NAME.TAG.pyc or NAME.TAG.opt-N.pyc (PEP 3147, PEP 488).
    const cached = new RegExp(`^${escapeRegExp(m[1]!)}\\.[^.]+(\\.opt-\\d+)?\\.pyc$`);
    for (const dir of cacheDirs(dirname(path), env)) {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue; // no cache there
      }
      for (const name of names) {
        if (!cached.test(name)) continue;
        try {
          rmSync(join(dir, name), { force: true });
          removed.push(join(dir, name));
        } catch {
          /* not ours to remove (permissions): Python will still check mtime and size */
        }
      }
    }
  }
  return removed;
}
