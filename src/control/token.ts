/**
 * The control token: mutating calls (`POST /reload`, `POST /stop`) need `Authorization: Bearer
 * TOKEN`, where TOKEN is a random value the service writes at start to a file only its own user
 * can read. The CLI finds the file from the control address alone, so both sides derive the
 * same path: `<tmpdir>/corral-control-<address>.token`, or CORRAL_CONTROL_TOKEN_FILE.
 *
 * On Windows the mode bits are ignored: the file is protected by the ACL it inherits. os.tmpdir()
 * there is %TEMP% inside the user's profile, which only that user (and administrators) can read.
 * A service running as another account (LocalSystem, an IIS app pool identity) has another
 * %TEMP%; point CORRAL_CONTROL_TOKEN_FILE of both sides at a file in a directory whose ACL
 * admits exactly the operators who may stop the service.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { ListenAddress } from '../config/address.js';

/** The environment variable that overrides the token file's path, on both sides. */
export const TOKEN_FILE_ENV = 'CORRAL_CONTROL_TOKEN_FILE';

/** A fresh token: 32 random bytes, hex. */
export function newToken(): string {
  return randomBytes(32).toString('hex');
}

/**
 * The token file for a control address. TCP uses only the port, so `localhost:9001`,
 * `127.0.0.1:9001` and `[::1]:9001` (all loopback, see config/control-address.ts) find the same file.
 */
export function tokenPath(address: ListenAddress, env: NodeJS.ProcessEnv = process.env): string {
  const override = env[TOKEN_FILE_ENV];
  if (override) return override;
  return join(tmpdir(), `corral-control-${addressKey(address)}.token`);
}

function addressKey(a: ListenAddress): string {
  switch (a.kind) {
    case 'tcp':
      return `tcp-${a.port}`;
    case 'unix':
    case 'pipe': {
      // The name keeps the socket's own name readable; the hash tells apart same-named sockets in different directories.
      // Unix paths are made absolute (the CLI may run from another directory); pipe names are case-insensitive.
      const full = a.kind === 'unix' ? resolve(a.path) : a.path.toLowerCase();
      const name = (full.split(/[\\/]/).filter((p) => p !== '').pop() ?? '').replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60);
      const hash = createHash('sha256').update(full).digest('hex').slice(0, 12);
      return `${a.kind}-${name}-${hash}`;
    }
    case 'listen-fd':
    case 'stdin':
      throw new Error(`no control listener on ${a.kind}`);
  }
}

/**
 * Writes the token readable only by this user: a new file created exclusively with mode 0600,
 * then renamed over the path. In a shared directory with the sticky bit (/tmp), a file another
 * user planted there cannot be replaced, and the rename fails instead of leaking the token.
 */
export function writeTokenFile(path: string, token: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, `${token}\n`, { flag: 'wx', mode: 0o600 });
    chmodSync(tmp, 0o600); // writeFileSync's mode is filtered by the umask; this sets it exactly
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`cannot write the control token file ${path}: ${code}${code === 'EPERM' || code === 'EACCES' ? ' (a file of another user is in the way? set CORRAL_CONTROL_TOKEN_FILE)' : ''}`);
  }
}

/** Removes the token file if it still holds `token` (a newer service on the same address may have replaced it). */
export function removeTokenFile(path: string, token: string): void {
  try {
    if (readFileSync(path, 'utf8').trim() === token) rmSync(path, { force: true });
  } catch {
    /* gone already, or not ours to read */
  }
}

/** Reads a token file; throws with the path and the reason. */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the control token from ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.trim();
  if (!/^[0-9a-f]{64}$/.test(token)) throw new Error(`the control token file ${path} does not hold a token`);
  return token;
}

/** Checks an Authorization header against the token in constant time; returns why it fails, or null. */
export function checkBearer(header: string | undefined, token: string): string | null {
  if (header === undefined || header === '') return 'missing Authorization: Bearer <token>';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return 'the Authorization header is not "Bearer <token>"';
  const given = Buffer.from(m[1] ?? '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want) ? null : 'wrong token';
}
