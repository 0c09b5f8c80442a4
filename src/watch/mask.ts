/**
 * Which file changes reload an app. WATCH_FILE_CHANGES_MASK in Helicon Zoo's form (shell
 * patterns like `*.py`, several separated by `;`, `,` or `|`; iisnode's `watchedFiles` is the
 * same list), or wfastcgi's WSGI_RESTART_FILE_REGEX (a regular expression on the path). Files in
 * caches, VCS and virtualenv folders and editors' temporary files never count.
 */
import { fromPythonRegex } from '../config/py-regex.js';

/** Decides whether a changed path (absolute) under the app root should reload it. */
export type ChangeFilter = (absolutePath: string) => boolean;

/** Folders whose contents never trigger a reload. */
export const IGNORED_DIRS = new Set([
  '__pycache__', '.git', '.hg', '.svn', 'node_modules', 'venv', '.venv', 'env', '.tox', '.nox',
  '.mypy_cache', '.pytest_cache', '.ruff_cache', '.idea', '.vscode', 'site-packages',
]);

/** Editors' swap, backup and safe-write temporary files. */
const TEMP_FILE = /(^\.#)|(^#.*#$)|(~$)|(\.sw[a-p x]$)|(\.tmp$)|(\.temp$)|(^4913$)|(___jb_(tmp|old)___$)|(\.crswap$)|(^\.~lock\.)|(\.bak$)|(\.orig$)/i;

function toSlashes(p: string): string {
  return p.replace(/\\/g, '/');
}

/** The path relative to the root with `/` separators, or null if outside it. */
export function relativeTo(root: string, absolutePath: string): string | null {
  const r = toSlashes(root).replace(/\/+$/, '');
  const p = toSlashes(absolutePath);
  if (p === r) return '';
  const win = /^[a-zA-Z]:/.test(r);
  const prefix = `${r}/`;
  const matches = win ? p.toLowerCase().startsWith(prefix.toLowerCase()) : p.startsWith(prefix);
  return matches ? p.slice(prefix.length) : null;
}

/** True for paths inside ignored folders or naming editor temp files. */
export function isIgnored(relativePath: string): boolean {
  const parts = relativePath.split('/');
  const name = parts[parts.length - 1] ?? '';
  for (let i = 0; i < parts.length - 1; i++) if (IGNORED_DIRS.has(parts[i]!)) return true;
  return TEMP_FILE.test(name);
}

/** Turns one shell pattern (`*`, `?`, `[abc]`, `**` across folders) into an anchored regex. */
export function globToRegExp(pattern: string, caseInsensitive: boolean): RegExp {
  let src = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        src += '.*';
        i++;
        if (pattern[i + 1] === '/') i++;
      } else src += '[^/]*';
    } else if (c === '?') src += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) src += '\\[';
      else {
        const body = pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\');
        src += `[${body}]`;
        i = end;
      }
    } else src += /[.+^${}()|\\]/.test(c) ? `\\${c}` : c;
  }
  return new RegExp(`^${src}$`, caseInsensitive ? 'i' : '');
}

/** Parses a Helicon/iisnode mask. Empty or blank = null (no watching). */
export function parseMask(mask: string, platform: NodeJS.Platform = process.platform): ((relativePath: string) => boolean) | null {
  const patterns = mask
    .split(/[;,|]/)
    .map((p) => toSlashes(p.trim()).replace(/^\.\//, ''))
    .filter((p) => p.length > 0);
  if (patterns.length === 0) return null;
  const ci = platform === 'win32';
  const tests = patterns.map((p) => {
    const re = globToRegExp(p, ci);
    // A pattern with a folder part matches the path from the root; a bare one, the file name anywhere.
    return p.includes('/') ? (rel: string) => re.test(rel) : (rel: string) => re.test(rel.slice(rel.lastIndexOf('/') + 1));
  });
  return (rel) => tests.some((t) => t(rel));
}

/**
 * Parses wfastcgi's WSGI_RESTART_FILE_REGEX. wfastcgi applies Python's re.match (anchored at the
 * start) to the changed path; we try the full path and the path relative to the root.
 */
export function parseRestartRegex(source: string): ((absolutePath: string, relativePath: string) => boolean) | null {
  if (source.trim() === '') return null;
  // Python syntax ((?P<name>...), a leading (?i)); the setting's kind refused what does not translate.
  const py = fromPythonRegex(source);
  const re = py.ok ? new RegExp(`^(?:${py.source})`, py.flags) : new RegExp(`^(?:${source})`);
  return (abs, rel) => re.test(abs) || re.test(toSlashes(abs)) || re.test(rel);
}

/** The filter for an app: mask and regex combined (either matching reloads); null = no watching. */
export function changeFilter(
  root: string,
  opts: { mask: string | null; regex: string | null },
  platform: NodeJS.Platform = process.platform,
): ChangeFilter | null {
  const mask = opts.mask === null ? null : parseMask(opts.mask, platform);
  const regex = opts.regex === null ? null : parseRestartRegex(opts.regex);
  if (!mask && !regex) return null;
  return (abs) => {
    const rel = relativeTo(root, abs);
    if (rel === null || rel === '' || isIgnored(rel)) return false;
    return (mask?.(rel) ?? false) || (regex?.(abs, rel) ?? false);
  };
}
