/**
 * The pairing secret of relays and the service, in the spirit of the ASP.NET Core Module's
 * MS-ASPNETCORE-TOKEN: a relay sends it with every request (the CORRAL_RELAY_TOKEN param) and the
 * service honours a request's app selection (APPL_PHYSICAL_PATH outside its configured apps) and
 * settings (CORRAL_SETTING_*) only when it matches. Any other FastCGI client gets the configured
 * app with the service's own settings.
 *
 * Shared through a file only the app pool identity can read: the relay that may auto-start the
 * service creates it (random, 256 bits, mode 0600, next to the auto-start lock: on Windows the
 * identity's private %TEMP%) and passes its path to the service it starts; every relay reads it.
 * An operator-run service names its file in `relaySecretFile`, the relays in CORRAL_RELAY_SECRET_FILE.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, linkSync, lstatSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import type { Logger } from '../log/logger.js';

/** The param a relay adds to every request; the worker drops it from the app's environ. */
export const RELAY_TOKEN_PARAM = 'CORRAL_RELAY_TOKEN';

/** Shortest secret accepted from a file (an operator's `openssl rand -hex 32` has 64). */
const MIN_SECRET_LENGTH = 32;

/** A secret file's content, or why it cannot be used. */
export type SecretRead = { readonly ok: true; readonly secret: string } | { readonly ok: false; readonly missing: boolean; readonly reason: string };

/**
 * Reads a secret file. On POSIX a file that every user may read, or that someone other than this
 * user (or root) owns, is refused: in a shared temp folder someone else may have created it first
 * to learn (or choose) the secret. Group read is the operator's choice (a service account and its
 * relays sharing a group). On Windows Node sees no owner or ACL; the file's privacy comes from the
 * folder (see docs/iis.md).
 */
export function readSecretFile(path: string, platform: NodeJS.Platform = process.platform, uid: number | undefined = process.getuid?.()): SecretRead {
  let text: string;
  try {
    const st = lstatSync(path);
    if (!st.isFile()) return { ok: false, missing: false, reason: 'not a regular file' };
    if (platform !== 'win32') {
      if (uid !== undefined && st.uid !== uid && st.uid !== 0) return { ok: false, missing: false, reason: `owned by uid ${st.uid}, not by this user (uid ${uid}) or root` };
      if ((st.mode & 0o007) !== 0) return { ok: false, missing: false, reason: `every user may read or change it (mode ${(st.mode & 0o777).toString(8)}; make it 600 or 640)` };
    }
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return { ok: false, missing: code === 'ENOENT', reason: code };
  }
  const secret = text.trim();
  if (secret.length < MIN_SECRET_LENGTH || /\s/.test(secret)) return { ok: false, missing: false, reason: `not a secret (at least ${MIN_SECRET_LENGTH} characters, no spaces)` };
  return { ok: true, secret };
}

/**
 * The secret in `path`, created if there is none. Several relays may do this at once: each writes
 * a private temporary file and hard-links it into place, which fails for all but the first, so
 * every relay ends up reading the same complete file.
 */
export function ensureSecretFile(path: string, platform: NodeJS.Platform = process.platform): SecretRead {
  const existing = readSecretFile(path, platform);
  if (existing.ok || !existing.missing) return existing;
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${randomBytes(32).toString('hex')}\n`);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EEXIST: another relay was first; use its file. Anything else (no hard links on this volume): create in place.
      if (code !== 'EEXIST') {
        const fd2 = openSync(path, 'wx', 0o600);
        try {
          writeSync(fd2, readFileSync(tmp));
        } finally {
          closeSync(fd2);
        }
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return { ok: false, missing: false, reason: `cannot create it: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  } finally {
    rmSync(tmp, { force: true });
  }
  return readSecretFile(path, platform);
}

/** A short tag derived from the secret (not revealing it), for a pipe or socket name nobody else can predict. */
export function secretTag(secret: string): string {
  return createHash('sha256').update(`corral-address\0${secret}`).digest('hex').slice(0, 16);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The service's side: checks a presented token in constant time against the secret file. */
export class SecretCheck {
  readonly #path: string;
  readonly #log: Logger;
  readonly #platform: NodeJS.Platform;
  readonly #now: () => number;
  #digest: Buffer | null = null;
  #loadedAt = -Infinity;
  #lastProblem: string | null = null;

  constructor(path: string, log: Logger, platform: NodeJS.Platform = process.platform, now: () => number = Date.now) {
    this.#path = path;
    this.#log = log;
    this.#platform = platform;
    this.#now = now;
    this.#load();
  }

  /** Whether `presented` is the secret. */
  matches(presented: string): boolean {
    if (this.#equal(presented)) return true;
    // The file may have been replaced (a temp cleaner removed it and a relay made a new one):
    // read it again, at most once a second so that wrong tokens cannot make us read it per request.
    if (this.#now() - this.#loadedAt < 1000) return false;
    this.#load();
    return this.#equal(presented);
  }

  #equal(presented: string): boolean {
    // Both sides hashed: equal lengths for timingSafeEqual, and no early exit on the first differing byte.
    return this.#digest !== null && timingSafeEqual(digest(presented), this.#digest);
  }

  #load(): void {
    this.#loadedAt = this.#now();
    const r = readSecretFile(this.#path, this.#platform);
    if (r.ok) {
      this.#digest = digest(r.secret);
      if (this.#lastProblem !== null) this.#log.info({ file: this.#path }, 'relay secret file usable again');
      this.#lastProblem = null;
      return;
    }
    this.#digest = null;
    if (this.#lastProblem !== r.reason) this.#log.error({ file: this.#path, err: r.reason }, 'cannot use the relay secret file: no request may choose its app or settings until it can');
    this.#lastProblem = r.reason;
  }
}
