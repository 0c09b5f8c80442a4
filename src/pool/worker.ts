/**
 * One Python worker process: spawns it, speaks the worker protocol (fcgi/PROTOCOL.md) over its
 * stdin/stdout, maps worker request ids to exchanges, and reports READY, FATAL and exit.
 * It makes no decisions: the pool decides when to start, use and stop workers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { NULL_REQUEST_ID, RecordType, Role } from '../fcgi/constants.js';
import { RecordParser, type FcgiRecord } from '../fcgi/parser.js';
import { encodeBeginRequest, encodeRecord, encodeWindow } from '../fcgi/records.js';
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Exchange } from './exchange.js';
import type { FatalInfo, ReadyInfo, WorkerEvents, WorkerHandle, WorkerState } from './handle.js';
import { Outbox } from './outbox.js';
import { readReused, type ReadOwner } from './reused-reads.js';
import { parseReport, type DirectReport, type RunningRequest } from './report.js';

/** How to start a worker. */
export interface WorkerSpawnSpec {
  /** argv[0] and leading arguments of the Python command. */
  command: readonly string[];
  /** Arguments after the command (script path and worker flags). */
  args: readonly string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Response credit per request given to the worker (--window). */
  responseWindow: number;
  /** Descriptors the worker gets as fd 3, 4, ... (the direct data plane's shared listening socket). */
  extraFds?: readonly number[];
}

const MAX_STDERR_LINE = 16 * 1024;
/** How long a worker whose protocol pipe ended may take to report its exit before it is killed. */
const PIPE_END_GRACE_MS = 2_000;
/** How long an exited worker's pipes may take to deliver their last bytes (see #afterPipes). */
const EXIT_PIPE_WAIT_MS = 500;

/** A running (or exited) worker process. */
export class Worker implements WorkerHandle {
  readonly generation: number;
  readonly startedAt: number;
  readonly log: Logger;
  #child: ChildProcess;
  /** The protocol stream from the worker (its stdout, read into reused memory where Node allows). */
  #stdout: Readable;
  #outbox: Outbox;
  // Large STDOUT records span two reads: take them in parts rather than copy them whole.
  #parser = new RecordParser({ splitStreams: true });
  #events: WorkerEvents;
  #state: WorkerState = 'starting';
  #exchanges = new Map<number, Exchange>();
  /** STDOUT bytes each request may still send (its response window): a worker past it is broken. */
  #stdoutCredit = new Map<number, number>();
  #nextId = 1;
  #ready: ReadyInfo | null = null;
  #fatal: FatalInfo | null = null;
  #spawnError: Error | null = null;
  #stderrTail = '';
  #responseWindow: number;
  /** The protocol stream broke (garbage or EOF): the worker is being killed, its output ignored. */
  #broken = false;
  #pipeEndTimer: NodeJS.Timeout | null = null;
  /** A direct worker's last report; null for a proxied worker (or before the first report). */
  #report: DirectReport | null = null;
  /** Requests completed by this worker. */
  requests = 0;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;

  constructor(spec: WorkerSpawnSpec, generation: number, events: WorkerEvents, log: Logger, now: number) {
    this.generation = generation;
    this.startedAt = now;
    this.#events = events;
    this.#responseWindow = spec.responseWindow;
    const [cmd, ...pre] = spec.command;
    this.#child = spawn(cmd!, [...pre, ...spec.args], {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['pipe', 'pipe', 'pipe', ...(spec.extraFds ?? [])],
      windowsHide: true,
    });
    this.log = log.child({ pid: this.#child.pid ?? null, gen: generation });
    this.#outbox = new Outbox(this.#child.stdin!);
    this.#child.stdin!.on('error', () => {
      /* EPIPE when the worker died: its exit event tells the story */
    });
    const reused = readReused(this.#child.stdout!, this.#reads);
    this.#stdout = reused ?? this.#child.stdout!;
    if (reused === null) this.#stdout.on('data', (chunk: Buffer) => this.#onData(chunk));
    // A worker that closes its protocol pipe but lives on would hold its requests until the
    // request timeout: nothing more can come from it. (At a normal exit, 'exit' comes first or
    // the pipe's end is harmless: kill() does nothing once exited.)
    this.#stdout.on('end', () => this.#onStdoutEnd());
    this.#stdout.on('error', (err) => this.#breakProtocol('protocol pipe from the worker failed', { err: err.message }));
    this.#child.stderr!.setEncoding('utf8');
    this.#child.stderr!.on('data', (text: string) => this.#onStderr(text));
    this.#child.on('error', (err) => {
      // spawn failures (ENOENT: python not found) arrive here, and exit may never follow.
      this.#spawnError = err;
      if (this.#child.pid === undefined) this.#onExit(null, null);
    });
    this.#child.on('exit', (code, signal) => this.#afterPipes(() => this.#onExit(code, signal)));
  }

  /**
   * Node may report a child's exit before it has read the last bytes of its pipes: a boot
   * failure's FATAL record (with the dev page's facts) and its last stderr lines would be lost.
   * Waits for both pipes to end, bounded (a grandchild the app started may hold them open).
   */
  #afterPipes(then: () => void): void {
    const open = [this.#stdout, this.#child.stderr].filter((s): s is NonNullable<typeof s> => s !== null && !s.readableEnded && !s.destroyed);
    if (open.length === 0) return then();
    let left = open.length;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      then();
    };
    const timer = setTimeout(finish, EXIT_PIPE_WAIT_MS);
    for (const s of open)
      s.once('close', () => {
        if (--left === 0) finish();
      });
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }
  get state(): WorkerState {
    return this.#state;
  }
  get info(): ReadyInfo | null {
    return this.#ready;
  }
  get fatal(): FatalInfo | null {
    return this.#fatal;
  }
  get spawnError(): Error | null {
    return this.#spawnError;
  }
  /** Threads of the worker (known after READY). */
  get capacity(): number {
    return this.#ready?.threads ?? 0;
  }
  /** Requests on this worker now. */
  get inflight(): number {
    return this.#exchanges.size;
  }
  get busy(): number {
    return this.#report ? this.#report.busy : this.#exchanges.size;
  }
  get running(): readonly RunningRequest[] {
    return this.#report?.current ?? [];
  }
  /** The last stderr output, for error messages about a worker that died during boot. */
  get stderrTail(): string {
    return this.#stderrTail;
  }
  /** The exchanges in flight (the pool fails them if the worker dies). */
  get exchanges(): Iterable<Exchange> {
    return this.#exchanges.values();
  }

  /** Starts a request on this worker. The caller checked that a thread is free, or (`ex.ahead`) that
   *  the worker may take it ahead: it runs its pipe's requests in order, this one when a thread frees. */
  dispatch(ex: Exchange): void {
    let id = this.#nextId;
    while (this.#exchanges.has(id)) id = (id % 0xffff) + 1;
    this.#nextId = (id % 0xffff) + 1;
    this.#exchanges.set(id, ex);
    this.#stdoutCredit.set(id, this.#responseWindow);
    // BEGIN_REQUEST: the worker only serves RESPONDER; flags are irrelevant on the pipe (the
    // client's record, when the sink has it, is a RESPONDER one with 8 content bytes).
    const begin = ex.sink.takeBeginFrame?.() ?? null;
    if (begin !== null) {
      begin[2] = id >>> 8;
      begin[3] = id & 0xff;
      this.send(begin);
    } else this.send(encodeBeginRequest(id, Role.RESPONDER, 0));
    ex.assign(this, id, this.#ready!.window, this.#responseWindow);
  }

  send(frame: Buffer): void {
    if (this.#state !== 'exited') this.#outbox.push(frame);
  }

  settled(): boolean {
    return this.#outbox.settled();
  }

  whenSettled(cb: () => void): void {
    this.#outbox.whenSettled(cb);
  }

  grantWindow(requestId: number, bytes: number): void {
    if (!this.#exchanges.has(requestId)) return;
    this.#stdoutCredit.set(requestId, (this.#stdoutCredit.get(requestId) ?? 0) + bytes);
    this.send(encodeWindow(requestId, bytes));
  }

  abort(requestId: number): void {
    if (this.#exchanges.has(requestId)) this.send(encodeRecord(RecordType.ABORT_REQUEST, requestId));
  }

  /** Sends a PING; the worker's reader thread answers with a PONG (events.pong). */
  ping(): void {
    this.send(PING);
  }

  /** Takes the worker out of dispatch; it finishes what it has. */
  drain(): void {
    if (this.#state === 'starting' || this.#state === 'ready') this.#state = 'draining';
  }

  /**
   * The protocol-level stop: close stdin. The worker exits when its requests are done. A direct
   * worker told `handoffTo` first passes its kept connections to that worker instead of closing them.
   */
  closeStdin(handoffTo?: string): void {
    if (this.#state === 'exited') return;
    this.#state = 'stopping';
    if (handoffTo !== undefined) this.send(encodeRecord(RecordType.CORRAL_HANDOFF, NULL_REQUEST_ID, Buffer.from(handoffTo, 'utf8')));
    this.#outbox.flush();
    this.#child.stdin!.end();
  }

  /** Forced stop (TerminateProcess on Windows). */
  kill(): void {
    if (this.#state !== 'exited') this.#child.kill('SIGKILL');
  }

  /** Reads of the stdout into reused memory (reused-reads.ts). */
  readonly #reads: ReadOwner = {
    parse: (view) => this.#onData(view),
    idle: () => this.#parser.buffered === 0,
  };

  #onData(chunk: Buffer): void {
    if (this.#broken) return;
    const err = this.#parser.push(chunk, this.#onRecord);
    if (err) this.#breakProtocol('worker broke the protocol; killing it', { err: err.message, bytes: chunk.toString('hex', 0, 32) });
  }

  #onStdoutEnd(): void {
    if (this.#broken || this.#state === 'exited') return;
    // A process that exits closes the pipe too, and its exit event can come a little later:
    // give it that time, so that a normal exit is reported as such, not as a closed pipe.
    this.#pipeEndTimer = setTimeout(() => {
      this.#pipeEndTimer = null;
      if (this.#state !== 'exited') this.#breakProtocol('worker closed its protocol pipe while running; killing it', {});
    }, PIPE_END_GRACE_MS);
    this.#pipeEndTimer.unref();
  }

  /** The worker's stream can no longer be trusted: log once, kill it; the exit fails its requests. */
  #breakProtocol(msg: string, fields: Record<string, unknown>): void {
    if (this.#broken || this.#state === 'exited') return;
    this.#broken = true;
    this.drain(); // no more dispatch to it while the kill is on its way
    this.log.error({ ...fields, inflight: this.#exchanges.size }, msg);
    this.kill();
  }

  readonly #onRecord = (r: FcgiRecord): void => {
    if (this.#broken) return; // the rest of a read that broke the protocol
    switch (r.type) {
      case RecordType.STDOUT: {
        const ex = this.#exchanges.get(r.requestId);
        if (!ex) return;
        // The worker sends only within the credit it was given; more would pile up here unbounded.
        const left = (this.#stdoutCredit.get(r.requestId) ?? 0) - r.content.length;
        if (left < 0) {
          this.#breakProtocol('worker sent more than its response window; killing it', { requestId: r.requestId, window: this.#responseWindow });
          return;
        }
        this.#stdoutCredit.set(r.requestId, left);
        try {
          ex.onStdout(r.content, r.received ? r.frame : undefined);
        } catch (err) {
          this.#stepFailed(r.requestId, ex, err);
        }
        return;
      }
      case RecordType.END_REQUEST: {
        const ex = this.#exchanges.get(r.requestId);
        if (!ex) return;
        this.#exchanges.delete(r.requestId);
        this.#stdoutCredit.delete(r.requestId);
        this.requests++;
        try {
          ex.finish(r.content.length >= 4 ? r.content.readUInt32BE(0) : 0, r.received ? r.frame : undefined);
        } catch (err) {
          this.#stepFailed(r.requestId, ex, err);
        }
        this.#events.idle(this, ex);
        return;
      }
      case RecordType.CORRAL_WINDOW: {
        const ex = this.#exchanges.get(r.requestId);
        if (ex && r.content.length === 4)
          try {
            ex.onWindow(r.content.readUInt32BE(0));
          } catch (err) {
            this.#stepFailed(r.requestId, ex, err);
          }
        return;
      }
      case RecordType.CORRAL_PONG:
        this.#events.pong(this);
        return;
      case RecordType.CORRAL_READY:
        this.#onReady(r.content);
        return;
      case RecordType.CORRAL_FATAL:
        this.#fatal = parseJson<FatalInfo>(r.content) ?? { kind: 'boot', error: r.content.toString('utf8') };
        return;
      case RecordType.CORRAL_REPORT: {
        const report = parseReport(r.content);
        if (!report) {
          this.log.warn({ bytes: r.content.length }, 'malformed REPORT from worker; ignored');
          return;
        }
        this.#report = report;
        this.requests = report.served;
        this.log.trace({ busy: report.busy, conns: report.conns, served: report.served, queue: report.queue, access: report.access.length }, 'worker report');
        this.#events.report?.(this, report);
        return;
      }
      default:
        this.log.warn({ type: r.type, requestId: r.requestId }, 'unexpected record from worker');
    }
  };

  /**
   * A step of a request threw (each is run in a try, without a closure per record: this is the
   * hot path). If handing the response on throws (a front that cannot pass it to its client),
   * that request alone fails: the worker is told to abort it, and the other requests, the
   * worker and the service go on (an exception here would end the process).
   */
  #stepFailed(requestId: number, ex: Exchange, err: unknown): void {
    this.log.error({ requestId, err: (err as Error).message }, 'passing on the worker\'s response failed; failing that request');
    this.abort(requestId);
    try {
      ex.fail(new CorralError('CORRAL_BAD_RESPONSE', `the response could not be passed on: ${(err as Error).message}`));
    } catch (again) {
      this.log.error({ requestId, err: (again as Error).message }, 'failing the request failed too');
    }
  }

  #onReady(content: Buffer): void {
    if (this.#state === 'stopping' || this.#state === 'draining' || this.#state === 'exited') return; // told to stop while booting
    const info = parseJson<ReadyInfo>(content);
    if (!info || typeof info.threads !== 'number' || typeof info.window !== 'number' || this.#state !== 'starting') {
      this.log.error({ ready: content.toString('utf8', 0, 200) }, 'bad READY from worker; killing it');
      this.kill();
      return;
    }
    this.#ready = info;
    this.#state = 'ready';
    this.#events.ready(this);
  }

  #onStderr(text: string): void {
    const all = this.#stderrTail + text;
    const lines = all.split('\n');
    const rest = lines.pop() ?? '';
    for (const line of lines) this.#events.stderr(this, line.replace(/\r$/, ''));
    this.#stderrTail = rest.length > MAX_STDERR_LINE ? rest.slice(-MAX_STDERR_LINE) : rest;
    this.#keepTail(lines);
  }

  /** Keeps the last few stderr lines for boot-failure messages. */
  #tailLines: string[] = [];
  #keepTail(lines: string[]): void {
    if (lines.length === 0) return;
    this.#tailLines.push(...lines);
    if (this.#tailLines.length > 40) this.#tailLines.splice(0, this.#tailLines.length - 40);
  }
  /** The last lines of stderr (up to 40). */
  get lastStderr(): string {
    return [...this.#tailLines, this.#stderrTail].filter((l) => l.length > 0).join('\n');
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#state === 'exited') return;
    if (this.#pipeEndTimer) clearTimeout(this.#pipeEndTimer);
    if (this.#stderrTail) {
      this.#events.stderr(this, this.#stderrTail);
      this.#keepTail([this.#stderrTail]);
      this.#stderrTail = '';
    }
    this.#state = 'exited';
    this.exitCode = code;
    this.exitSignal = signal;
    this.#outbox.discard();
    this.#events.exit(this, code, signal);
  }

  /** Removes exchanges after the pool failed them. */
  forgetExchanges(): Exchange[] {
    const all = [...this.#exchanges.values()];
    this.#exchanges.clear();
    this.#stdoutCredit.clear();
    return all;
  }
}

const PING = encodeRecord(RecordType.CORRAL_PING, NULL_REQUEST_ID, Buffer.from('corral'));

function parseJson<T>(content: Buffer): T | null {
  try {
    return JSON.parse(content.toString('utf8')) as T;
  } catch {
    return null;
  }
}
