/**
 * Where the relay finds the corral service, and where the auto-start lock lives. Pure: the
 * environment, platform and temp directory come in as arguments.
 *
 * Default address: one service per IIS application pool (IIS sets APP_POOL_ID in the FastCGI
 * program's environment), a named pipe on Windows, a unix socket elsewhere.
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
export function locateService(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, tmpDir: string, secret: string | null = null): ServiceLocation {
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
    const name = secret === null ? `corral-${pool}` : `corral-${pool}-${secretTag(secret)}`;
    if (platform === 'win32') address = { kind: 'pipe', path: `\\\\.\\pipe\\${name}` };
    else address = { kind: 'unix', path: p.join(tmpDir, `${name}.sock`) };
  }
  return { address, text: formatAddress(address), lockPath: lockPathFor(address, p, tmpDir) };
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
