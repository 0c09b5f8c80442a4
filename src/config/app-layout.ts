/**
 * Where an app's module is, found from the files alone (no Python runs): for `corral check
 * --no-import`, and for Django's startproject layout, where `corral serve mysite/` finds
 * `mysite/mysite/wsgi.py` rather than the `wsgi.py` the default `wsgi:application` names.
 */
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const IDENTIFIER = /^[\p{L}_][\p{L}\p{N}_]*$/u;

/** stat that answers undefined for anything unreadable: ENOTDIR (a file where a directory was looked for), EACCES. */
function stat(p: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(p, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}
const isFile = (p: string): boolean => stat(p)?.isFile() ?? false;
const isDir = (p: string): boolean => stat(p)?.isDirectory() ?? false;

/** The top-level module a WSGI app spec imports first (`mysite` of `mysite.wsgi:application`). */
export function topModule(spec: string): string {
  return spec.split(/[:.]/)[0] ?? spec;
}

/**
 * The file or package directory of a top-level module in one of `dirs`, as Python's path finder
 * looks (a package, a module, or a namespace directory); null if none has it.
 */
export function findModule(name: string, dirs: readonly string[]): string | null {
  for (const dir of dirs) {
    const pkg = path.join(dir, name);
    if (isFile(path.join(pkg, '__init__.py'))) return pkg;
    if (isFile(`${pkg}.py`)) return `${pkg}.py`;
  }
  // A directory without __init__.py is a namespace package, found only after every regular one.
  for (const dir of dirs) if (isDir(path.join(dir, name))) return path.join(dir, name);
  return null;
}

/** `X.wsgi:application` when exactly one subdirectory X of root holds a wsgi.py (Django's layout), else null. */
export function djangoLayout(root: string): string | null {
  let names: string[];
  try {
    names = readdirSync(root).sort();
  } catch {
    return null;
  }
  const found = names.filter((n) => IDENTIFIER.test(n) && isFile(path.join(root, n, 'wsgi.py')));
  return found.length === 1 ? `${found[0]}.wsgi:application` : null;
}

/**
 * The app to use when the user named none: the default if its module is in root, else Django's
 * layout when root has it (null: keep the default, whose failure will say what was searched).
 */
export function detectDefaultApp(root: string, defaultSpec: string): string | null {
  if (findModule(topModule(defaultSpec), [root]) !== null) return null;
  return djangoLayout(root);
}
