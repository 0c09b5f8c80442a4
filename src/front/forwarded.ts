/**
 * What the HTTP front takes from a proxy in front of it (IIS's HttpPlatformHandler or ASP.NET
 * Core Module, on loopback): the X-Forwarded-* headers, ANCM's pairing token, and the path base
 * the app is mounted under. Pure functions; http-front.ts applies them.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback: the only peers whose forwarded headers count. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.toLowerCase();
  if (a === '::1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** The last entry of a comma-separated header: the one the nearest proxy added. */
function lastEntry(value: string | undefined): string | null {
  if (value === undefined) return null;
  const parts = value.split(',').map((p) => p.trim()).filter((p) => p !== '');
  return parts.at(-1) ?? null;
}

/**
 * The client the nearest proxy saw, from X-Forwarded-For's last hop. ANCM writes `ip:port`
 * (`[v6]:port` for IPv6), others the bare address; null when it is not an IP address.
 */
export function forwardedClient(xff: string | undefined): { address: string; port: string | null } | null {
  const hop = lastEntry(xff);
  if (hop === null) return null;
  let m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(hop);
  if (m) return isIP(m[1]!) === 6 ? { address: m[1]!, port: m[2] ?? null } : null;
  m = /^([^:]+):(\d{1,5})$/.exec(hop);
  if (m) return isIP(m[1]!) === 4 ? { address: m[1]!, port: m[2]! } : null;
  return isIP(hop) !== 0 ? { address: hop, port: null } : null;
}

/** `http` or `https` from X-Forwarded-Proto's last entry; null for anything else. */
export function forwardedProto(value: string | undefined): 'http' | 'https' | null {
  const p = lastEntry(value)?.toLowerCase();
  return p === 'http' || p === 'https' ? p : null;
}

/** X-Forwarded-Host's last entry, when it has the shape of a Host header (name or [v6], optional port). */
export function forwardedHost(value: string | undefined): string | null {
  const h = lastEntry(value);
  return h !== null && /^(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(h) ? h : null;
}

/**
 * Splits a (decoded) request path at the mount prefix: SCRIPT_NAME is the prefix as the request
 * spelled it, PATH_INFO the rest. Case-insensitive, as IIS matches application paths. Null when
 * the path is outside the prefix (`/application` is not under `/app`). An empty mount matches all.
 */
export function splitMount(path: string, mount: string): { scriptName: string; pathInfo: string } | null {
  if (mount === '') return { scriptName: '', pathInfo: path };
  const head = path.slice(0, mount.length);
  if (head.toLowerCase() !== mount.toLowerCase()) return null;
  const rest = path.slice(mount.length);
  if (rest !== '' && !rest.startsWith('/')) return null;
  return { scriptName: head, pathInfo: rest };
}

/** Whether the request's MS-ASPNETCORE-TOKEN is the pairing token, compared in constant time. */
export function tokenMatches(given: string | string[] | undefined, expected: string): boolean {
  if (typeof given !== 'string') return false;
  // Digests have equal length, so timingSafeEqual never throws and the length is not leaked.
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}
