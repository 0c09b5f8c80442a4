/**
 * Where an app's worker stderr goes when ERROR_LOG_DIR (Helicon Zoo) or WSGI_LOG (wfastcgi) is
 * set: tracebacks, `wsgi.errors` and `print()` output, one line per line with a timestamp and the
 * worker's pid. ERROR_LOG_DIR gets one file per app and day; both rotate by size, keeping a few
 * old files, so a chatty app cannot fill the disk.
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Rotation limits. */
export interface RotationOptions {
  maxBytes: number;
  /** Old files kept (NAME.1 ... NAME.keep). */
  keep: number;
}

const DEFAULT_ROTATION: RotationOptions = { maxBytes: 10 * 1024 * 1024, keep: 5 };

/** An append-only log file that rotates by size and follows a path that may change (by date). */
export class RotatingFile {
  readonly #pathFor: (now: Date) => string;
  readonly #rotation: RotationOptions;
  #fd: number | null = null;
  #path = '';
  #size = 0;

  constructor(pathFor: (now: Date) => string, rotation: RotationOptions = DEFAULT_ROTATION) {
    this.#pathFor = pathFor;
    this.#rotation = rotation;
  }

  /** The file being written. */
  get path(): string {
    return this.#path || this.#pathFor(new Date());
  }

  /** Appends one line. Errors (disk full, permissions) are returned, not thrown. */
  writeLine(line: string, now = new Date()): Error | null {
    try {
      const path = this.#pathFor(now);
      if (path !== this.#path || this.#fd === null) this.#open(path);
      const bytes = Buffer.from(`${line}\n`, 'utf8');
      if (this.#size + bytes.length > this.#rotation.maxBytes && this.#size > 0) {
        this.#rotate();
        this.#open(path);
      }
      writeSync(this.#fd!, bytes);
      this.#size += bytes.length;
      return null;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }

  #open(path: string): void {
    this.close();
    mkdirSync(dirname(path), { recursive: true });
    this.#fd = openSync(path, 'a');
    this.#path = path;
    this.#size = statSync(path).size;
  }

  #rotate(): void {
    this.close();
    const p = this.#path;
    const { keep } = this.#rotation;
    if (existsSync(`${p}.${keep}`)) rmSync(`${p}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) if (existsSync(`${p}.${i}`)) renameSync(`${p}.${i}`, `${p}.${i + 1}`);
    if (keep > 0) renameSync(p, `${p}.1`);
    else rmSync(p, { force: true });
  }
}

/** A file name part made of an app's directory and WSGI callable. */
export function appFileStem(root: string, wsgiApp: string): string {
  return `${basename(root) || 'app'}-${wsgiApp}`.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/** ERROR_LOG_DIR's file for an app on a day: DIR/STEM-YYYY-MM-DD.log. */
export function dailyPath(dir: string, stem: string): (now: Date) => string {
  return (now) => join(dir, `${stem}-${now.toISOString().slice(0, 10)}.log`);
}

/** A line as written: time, pid, text. */
export function stderrLine(pid: number, line: string, now = new Date()): string {
  return `${now.toISOString()} [${pid}] ${line}`;
}
