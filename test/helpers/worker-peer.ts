/**
 * A test's side of a Python worker's FastCGI stream (its stdin/stdout pipes, or a socket in
 * standalone mode): the records it sent, and waits that re-check on every record, stderr chunk or close.
 */
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { Decoder, parseCgi, record, T, windowRecord, type CgiResponse, type Rec } from './rawfcgi.js';

/** Records from a peer, with waits that re-check on every record, stderr chunk or close. */
export class Peer {
  readonly records: Rec[] = [];
  stderr = '';
  closed = false;
  autoCredit = false;
  #waiters: (() => void)[] = [];
  #next = new Map<number, number>();

  constructor(readonly input: Writable, output: Readable) {
    const decoder = new Decoder();
    output.on('data', (chunk: Buffer) => {
      for (const r of decoder.push(chunk)) {
        this.records.push(r);
        // The service's side of STDOUT flow control: credit back what arrived.
        if (this.autoCredit && r.type === T.STDOUT && r.content.length) this.send(windowRecord(r.id, r.content.length));
      }
      this.notify();
    });
    input.on('error', () => {}); // EPIPE once the peer is gone: the waits report it
  }

  notify(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  send(data: Buffer): void {
    this.input.write(data);
  }

  until<V>(check: () => V | undefined, what: string): Promise<V> {
    return new Promise((resolve, reject) => {
      const attempt = (): void => {
        const value = check();
        if (value !== undefined) resolve(value);
        else if (this.closed) reject(new Error(`closed while waiting for ${what}; stderr:\n${this.stderr}`));
        else this.#waiters.push(attempt);
      };
      attempt();
    });
  }

  find(type: number, id?: number, from = 0): Promise<Rec> {
    return this.until(() => this.records.slice(from).find((r) => r.type === type && (id === undefined || r.id === id)), `record type ${type} id ${id}`);
  }

  /** The next exchange of id (or the first from record index `from`): its STDOUT bytes up to its END_REQUEST. */
  async exchange(id: number, from = this.#next.get(id) ?? 0): Promise<{ stdout: Buffer; end: Rec }> {
    const at = await this.until(() => {
      const i = this.records.findIndex((r, k) => k >= from && r.id === id && r.type === T.END);
      return i >= 0 ? i : undefined;
    }, `END_REQUEST of request ${id}`);
    this.#next.set(id, at + 1);
    const out = this.records.slice(from, at).filter((r) => r.id === id && r.type === T.STDOUT);
    return { stdout: Buffer.concat(out.map((r) => r.content)), end: this.records[at]! };
  }

  /** The next response for id (or the first from record index `from`), parsed; status 0 if it had no STDOUT. */
  async response(id: number, from?: number): Promise<CgiResponse & { end: Rec }> {
    const { stdout, end } = await this.exchange(id, from);
    return { ...(stdout.length ? parseCgi(stdout) : { status: 0, headers: [], body: stdout }), end };
  }

  /** PING/PONG round trip: the worker is alive and reading. */
  async ping(text: string): Promise<void> {
    this.send(record(T.PING, 0, Buffer.from(text)));
    await this.until(() => this.records.find((r) => r.type === T.PONG && r.content.toString() === text), `PONG ${text}`);
  }

  stdoutBytes(id: number): number {
    return this.records.filter((r) => r.id === id && r.type === T.STDOUT).reduce((n, r) => n + r.content.length, 0);
  }
}

/** A worker process as a peer: its stdin/stdout are the protocol (or control) pipe; stderr and exit wake the waits. */
export class ProcessPeer extends Peer {
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    super(proc.stdin!, proc.stdout!);
    proc.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.stderr += text;
      this.notify();
    });
    this.exited = new Promise((resolve) =>
      proc.on('close', (code) => {
        this.closed = true;
        this.notify();
        resolve(code);
      }),
    );
  }

  /** Its CORRAL_READY, parsed. */
  async ready(): Promise<Record<string, unknown>> {
    return JSON.parse((await this.find(T.READY, 0)).content.toString('utf8')) as Record<string, unknown>;
  }
}
