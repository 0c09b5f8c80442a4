/**
 * Static files served by the HTTP front itself, as Django's runserver serves STATIC_URL: URL paths
 * (under the app's mount) mapped to directories (`static`, e.g. `/static/=staticfiles` for a
 * STATIC_ROOT that collectstatic filled). For `corral dev` and for `--http` without a web server
 * in front; behind nginx or IIS the web server serves them. A path that would leave the directory
 * (`..`, a NUL, a symlink pointing out of it) is not found: the answer is the same 404 as for a
 * missing file, so nothing outside is revealed.
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

/** The target of the mapping with the longest URL path that covers the request path. */
export function staticTargetOf(pathInfo: string, mappings: readonly StaticMapping[]): StaticTarget {
  let best: StaticMapping | null = null;
  for (const m of mappings) if ((pathInfo === m.url || pathInfo.startsWith(`${m.url}/`)) && (best === null || m.url.length > best.url.length)) best = m;
  return best === null ? { kind: 'not-static' } : staticTarget(pathInfo, best);
}

/** A weak validator from size and modification time, as nginx's; content hashing would read every file. */
export function etagOf(size: number, mtime: Date): string {
  return `W/"${size.toString(16)}-${Math.floor(mtime.getTime() / 1000).toString(16)}"`;
}

/** True when the request's If-None-Match (a list, or `*`) holds the tag; weak comparison, as RFC 9110 asks for GET. */
function matchesTag(header: string, etag: string): boolean {
  const bare = (t: string): string => t.trim().replace(/^W\//, '');
  return header.trim() === '*' || header.split(',').some((t) => bare(t) === bare(etag));
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
  const etag = etagOf(target.size, target.mtime);
  // If-None-Match wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
  const none = req.headers['if-none-match'];
  const since = req.headers['if-modified-since'];
  const fresh = none !== undefined ? matchesTag(none, etag) : since !== undefined && Date.parse(since) >= Math.floor(target.mtime.getTime() / 1000) * 1000;
  // no-cache: browsers revalidate each time (a 304 costs a stat), so an edit or a deploy shows at once.
  const validators = { etag, 'last-modified': lastModified, 'cache-control': 'no-cache' };
  if (fresh) {
    res.writeHead(304, validators);
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': contentType(target.file), 'content-length': String(target.size), ...validators });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = createReadStream(target.file);
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}
