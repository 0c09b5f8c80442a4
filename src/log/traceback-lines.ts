/**
 * Groups a worker's stderr lines so that a Python traceback is one log record, not one per line
 * (`corral dev` shows it whole, at ERROR, readable). A traceback starts with "Traceback (most
 * recent call last):" and runs through its indented frame lines to the first line that is not
 * indented: the exception itself. Chained exceptions ("During handling of the above exception")
 * stay in the same record. Anything else passes through line by line. What never ends (a worker
 * killed in the middle) is flushed after a short quiet period, and the record is bounded.
 */

/** One thing to log. */
export type StderrItem = { readonly kind: 'line'; readonly text: string } | { readonly kind: 'traceback'; readonly text: string; readonly summary: string };

const START = 'Traceback (most recent call last):';
const CHAIN = /^(During handling of the above exception, another exception occurred:|The above exception was the direct cause of the following exception:)$/;
/** Longest traceback kept in one record; beyond it, lines pass through singly. */
const MAX_LINES = 400;
/** A traceback with no ending line is flushed after this long without a line. */
const QUIET_MS = 200;

export class TracebackLines {
  readonly #emit: (item: StderrItem) => void;
  #buffer: string[] | null = null;
  /** The exception line was seen: a chain may follow (blank line, then a CHAIN line). */
  #ended = false;
  #timer: NodeJS.Timeout | null = null;

  constructor(emit: (item: StderrItem) => void) {
    this.#emit = emit;
  }

  push(line: string): void {
    const buf = this.#buffer;
    if (buf === null) {
      if (line.trimEnd() === START) this.#start(line);
      else this.#emit({ kind: 'line', text: line });
      return;
    }
    if (this.#ended) {
      // After the exception line: a blank line and a chain sentence continue it; else it is over.
      if (line.trim() === '' || CHAIN.test(line.trim()) || line.trimEnd() === START) {
        buf.push(line);
        if (line.trimEnd() === START) this.#ended = false;
      } else {
        this.flush();
        this.push(line);
        return;
      }
    } else {
      buf.push(line);
      if (line !== '' && !/^\s/.test(line)) this.#ended = true;
    }
    if (buf.length >= MAX_LINES) this.flush();
    else this.#arm();
  }

  /** Emits what is held (the worker exited, or the quiet period passed). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const buf = this.#buffer;
    this.#buffer = null;
    this.#ended = false;
    if (buf === null) return;
    while (buf.length > 0 && buf[buf.length - 1]!.trim() === '') buf.pop();
    const last = [...buf].reverse().find((l) => l !== '' && !/^\s/.test(l) && l.trimEnd() !== START && !CHAIN.test(l.trim())) ?? buf[buf.length - 1] ?? '';
    this.#emit({ kind: 'traceback', text: buf.join('\n'), summary: last.trim() });
  }

  #start(line: string): void {
    this.#buffer = [line];
    this.#ended = false;
    this.#arm();
  }

  #arm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.flush(), QUIET_MS);
    this.#timer.unref();
  }
}
