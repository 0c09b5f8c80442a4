/**
 * Where the relay finds the corral service, and where the auto-start lock lives. Pure: the
 * environment, platform and temp directory come in as arguments.
 *
 * Default address: one auto-started service per IIS worker process (w3wp) of an application pool
 * (IIS sets APP_POOL_ID in the FastCGI program's environment; the relay's parent process is the
 * w3wp), a named pipe on Windows, a unix socket elsewhere. Per w3wp, not per pool: the service
 * stays in the job object of the w3wp whose relay started it and dies with that w3wp, so during an
 * overlapped recycle the new w3wp's relays must start their own service instead of attaching to
 * the old one (see generationKey).
 */
import path from 'node:path';
import { formatAddress, parseAddress, type ListenAddress } from '../config/address.js';
import { secretTag } from './secret.js';

/** Where the service is, and where relays coordinate starting it. */
export interface ServiceLocation {
  readonly address: ListenAddress;
  /** As written in logs and passed to `corral serve --listen` (`unix:` prefixed for a socket path). */
  readonly text: string;
  /** The exclusive lock file that lets only one relay start the service. */
  readonly lockPath: string;
  /** Per-w3wp default address: where the locks of the other w3wps' services are (to remove once they ended). */
  readonly otherGenerations?: { readonly dir: string; readonly match: RegExp };
}

/** An app pool name as a file or pipe name: letters, digits, `.`, `_`, `-` (IIS allows spaces and more). */
export function sanitizeName(name: string): string {
  const s = name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80);
  return s === '' || /^\.+$/.test(s) ? 'default' : s;
}

/**
 * The service's address: CORRAL_SERVICE, else the app pool's default. Throws AddressError for a bad
 * CORRAL_SERVICE. With the relay secret the default name carries a tag derived from it, so another
 * account cannot predict it and create the pipe (or socket) first to receive the relays' traffic.
 */
export function locateService(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, tmpDir: string, secret: string | null = null, generation: string | null = null): ServiceLocation {
  const p = platform === 'win32' ? path.win32 : path.posix;
  const pool = sanitizeName(env.APP_POOL_ID ?? 'default');
  const explicit = env.CORRAL_SERVICE?.trim();
  let address: ListenAddress;
  if (explicit) {
    address = parseAddress(explicit);
    if (address.kind === 'stdin' || address.kind === 'listen-fd') {
      throw new Error(`CORRAL_SERVICE=${JSON.stringify(explicit)}: the relay connects to the service, so it needs a pipe, socket path or host:port`);
    }
  } else {
    // With a generation the pool's part is kept short, so that the lock's name (at most 80 characters
    // of the pipe's) keeps the generation and the tag: two w3wps must never share a lock.
    const base = generation === null ? `corral-${pool}` : `corral-${pool.slice(0, 40)}-w${sanitizeName(generation).slice(0, 10)}`;
    const name = secret === null ? base : `${base}-${secretTag(secret)}`;
    if (platform === 'win32') address = { kind: 'pipe', path: `\\\\.\\pipe\\${name}` };
    else address = { kind: 'unix', path: p.join(tmpDir, `${name}.sock`) };
  }
  const lockPath = lockPathFor(address, p, tmpDir);
  if (explicit || generation === null) return { address, text: formatAddress(address), lockPath };
  const [dir, base] = [p.dirname(lockPath), p.basename(lockPath)];
  const mark = `-w${sanitizeName(generation)}-`;
  const at = base.lastIndexOf(mark);
  // A very long pool name may have cut the generation off the lock's name: then there is nothing to match.
  if (at < 0) return { address, text: formatAddress(address), lockPath };
  const esc = (t: string): string => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`^${esc(base.slice(0, at))}-w[0-9]+-${esc(base.slice(at + mark.length))}$`);
  return { address, text: formatAddress(address), lockPath, otherGenerations: { dir, match } };
}

/**
 * Where the relay secret lives: CORRAL_RELAY_SECRET_FILE, else next to where the auto-start lock of
 * CORRAL_SERVICE would be, else `<tmp>/corral-<APP_POOL_ID>.secret` (the app pool identity's own
 * %TEMP% on Windows; mode 600 on POSIX).
 */
export function secretPathFor(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, tmpDir: string): string {
  const p = platform === 'win32' ? path.win32 : path.posix;
  const given = env.CORRAL_RELAY_SECRET_FILE?.trim();
  if (given) return p.resolve(given);
  if (env.CORRAL_SERVICE?.trim()) return locateService(env, platform, tmpDir).lockPath.replace(/\.lock$/, '.secret');
  return p.join(tmpDir, `corral-${sanitizeName(env.APP_POOL_ID ?? 'default')}.secret`);
}

/**
 * The w3wp generation the default address belongs to: the relay's parent pid (IIS's FastCGI module
 * runs in w3wp.exe and starts the relay with CreateProcess, so the parent is the w3wp; IIS's
 * environment names no w3wp: `_FCGI_X_PIPE_` is per FastCGI process). Null when the address is not
 * per generation: CORRAL_SERVICE set (a service of the operator's, living apart from IIS),
 * auto-start off (then the relays connect to a service someone else started on the pool's name), or
 * no usable parent (ppid 0 or 1: orphaned).
 */
export function generationKey(env: NodeJS.ProcessEnv, ppid: number): string | null {
  if (env.CORRAL_SERVICE?.trim() || !autostartEnabled(env)) return null;
  return Number.isInteger(ppid) && ppid > 1 ? String(ppid) : null;
}

/** Next to a unix socket; in the temp directory for a pipe or TCP address (neither has a directory). */
function lockPathFor(address: ListenAddress, p: path.PlatformPath, tmpDir: string): string {
  switch (address.kind) {
    case 'unix':
      return `${address.path}.lock`;
    case 'pipe':
      return p.join(tmpDir, `corral-pipe-${sanitizeName(address.path.replace(/^[\\/]{2}\.[\\/]pipe[\\/]/i, ''))}.lock`);
    case 'tcp':
      return p.join(tmpDir, `corral-tcp-${sanitizeName(`${address.host}-${address.port}`)}.lock`);
    default:
      throw new Error(`no lock path for a ${address.kind} address`);
  }
}

/** Whether auto-start is on: CORRAL_AUTOSTART unset, or anything but 0/false/no/off. */
export function autostartEnabled(env: NodeJS.ProcessEnv): boolean {
  const v = env.CORRAL_AUTOSTART?.trim().toLowerCase();
  return v === undefined || v === '' || !['0', 'false', 'no', 'off'].includes(v);
}
