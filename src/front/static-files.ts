/**
 * Static files served by `corral dev`'s HTTP front itself, as Django's runserver serves STATIC_URL:
 * one URL path (under the app's mount) mapped to one directory (`devStatic`, e.g. `/static=static`
 * for a STATIC_ROOT that collectstatic filled). Development only: in production nginx or IIS
 * serve these files. A path that would leave the directory (`..`, a NUL, a symlink pointing out
 * of it) is not found: the answer is the same 404 as for a missing file, so nothing outside is
 * revealed.
 */
import { createReadStream, realpathSync, statSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';

/** The URL path (no trailing slash) and the absolute directory it serves. */
export interface StaticMapping {
  readonly url: string;
  readonly dir: string;
}

/** What a request path is for the mapping. */
export type StaticTarget = { kind: 'not-static' } | { kind: 'file'; file: string; size: number; mtime: Date } | { kind: 'missing' };

/** Content types of what static folders hold; anything else is application/octet-stream. */
const TYPES: Readonly<Record<string, string>> = {
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.otf': 'font/otf',
  '.pdf': 'application/pdf',
  '.wasm': 'application/wasm',
};

export function contentType(file: string): string {
  return TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * The file a request path (decoded, below the mount, no query) names under the mapping. Paths
 * outside `url` are not static; inside it, anything that is not a regular file within `dir`
 * (after resolving symlinks) is missing.
 */
export function staticTarget(pathInfo: string, m: StaticMapping): StaticTarget {
  if (pathInfo !== m.url && !pathInfo.startsWith(`${m.url}/`)) return { kind: 'not-static' };
  const rel = pathInfo.slice(m.url.length);
  // Backslashes are separators on Windows; a NUL would be cut by the OS.
  if (rel.includes('\0') || rel.split(/[\\/]/).some((seg) => seg === '..')) return { kind: 'missing' };
  try {
    const root = realpathSync(m.dir);
    const file = realpathSync(path.join(root, ...rel.split(/[\\/]/).filter((s) => s !== '')));
    if (!file.startsWith(root + path.sep)) return { kind: 'missing' };
    const st = statSync(file);
    return st.isFile() ? { kind: 'file', file, size: st.size, mtime: st.mtime } : { kind: 'missing' };
  } catch {
    return { kind: 'missing' };
  }
}

/** Answers a request whose target is static (a file or missing); GET and HEAD only. */
export function sendStatic(req: http.IncomingMessage, res: http.ServerResponse, target: Exclude<StaticTarget, { kind: 'not-static' }>): void {
  req.resume();
  const plain = (status: number, text: string, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
    res.end(req.method === 'HEAD' ? undefined : text);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return plain(405, 'Method Not Allowed\n', { allow: 'GET, HEAD' });
  if (target.kind === 'missing') return plain(404, 'Not Found\n');
  const lastModified = target.mtime.toUTCString();
  const since = req.headers['if-modified-since'];
  if (since !== undefined && Date.parse(since) >= Math.floor(target.mtime.getTime() / 1000) * 1000) {
    res.writeHead(304, { 'last-modified': lastModified });
    res.end();
    return;
  }
  // no-cache: a developer's edit shows on the next reload of the page.
  res.writeHead(200, { 'content-type': contentType(target.file), 'content-length': String(target.size), 'last-modified': lastModified, 'cache-control': 'no-cache' });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = createReadStream(target.file);
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}
