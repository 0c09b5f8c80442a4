/**
 * One request's path through the pool: records from a front are held until a worker is
 * assigned, then forwarded with the worker's request id; the worker's answer goes to the
 * front's sink. Flow control lives here, per request, in both directions (see fcgi/PROTOCOL.md):
 * request body bytes go out only within the worker's credit, and credit for response bytes goes
 * back only once the front has handed them on.
 */
import { HEADER_LEN, RecordType } from '../fcgi/constants.js';
import { encodeRecord, header } from '../fcgi/records.js';
import type { CorralError } from '../errors.js';

/** What a front (FastCGI connection, HTTP front) gives the pool to receive one response. */
export interface ExchangeSink {
  /**
   * True if the sink keeps what `stdout` and `end` give it past the call only in an Outbox (which
   * writes it out before the worker's read buffer is reused, see reused-reads.ts) or as a copy:
   * then it gets views into that buffer. Other sinks get copies.
   */
  readonly viewsToOutbox?: boolean;
  /**
   * One STDOUT record of the app's CGI response. `frame`, when given, is the whole record as the
   * worker sent it (header, content, padding): a FastCGI front may pass it on with its own
   * request id written in place instead of framing the content anew.
   */
  stdout(content: Buffer, frame?: Buffer): void;
  /** The response is complete. `frame`: the worker's END_REQUEST record, as for `stdout`. */
  end(appStatus: number, frame?: Buffer): void;
  /** The pool could not serve the request, before or during the response. */
  fail(error: CorralError): void;
  /** Stop / restart reading this request's body from the client (held input is at its bound). */
  pauseInput(): void;
  resumeInput(): void;
  /** Bytes of this request's records held by the exchange grew (or shrank, if negative): the front's memory budget. */
  held?(delta: number): void;
  /** Method and path (query included) for the status page's current requests; read only when a status is asked for. */
  describe?(): { method: string; path: string } | null;
  /**
   * The client's own BEGIN_REQUEST record for this RESPONDER request, as received (once: later
   * calls give null). The worker is sent it with its request id written in place, so that it
   * lies next to the PARAMS records in the same read and all go out as one view.
   */
  takeBeginFrame?(): Buffer | null;
  /**
   * A worker took the request: every record of it from now on is sent to `worker` (the BEGIN
   * frame just was). A front that reads into reused memory asks it when they have all left.
   */
  assigned?(worker: WorkerPort): void;
}

/** The worker side of an exchange, as the exchange needs it. */
export interface WorkerPort {
  readonly pid: number;
  /** Queues a record whose request id has already been set. */
  send(frame: Buffer): void;
  /** Returns response credit to the worker. */
  grantWindow(requestId: number, bytes: number): void;
  /** Asks the worker to abort a request; it still answers END_REQUEST. */
  abort(requestId: number): void;
  /**
   * True once everything sent so far reached the OS (or never will), so nothing refers to the
   * memory it was sent from. Absent: sending copies at once.
   */
  settled?(): boolean;
  /** Runs `cb` once settled() holds. */
  whenSettled?(cb: () => void): void;
}

export type ExchangeState = 'queued' | 'assigned' | 'done';

/** Stdin bytes held beyond which the front is asked to pause. */
const PAUSE_AT = 256 * 1024;
/**
 * The same while no worker has the request yet. The FastCGI front reads into memory it reuses
 * once nothing refers to it, so a body that must wait should wait in the web server and the
 * kernel, not in ever new memory here: 1 MiB uploads behind nginx at 16 connections, 505
 * requests/s with 256 KiB here, 673 with 32 KiB (same build otherwise).
 */
const PAUSE_QUEUED = 32 * 1024;

function setRequestId(frame: Buffer, id: number): void {
  frame[2] = id >>> 8;
  frame[3] = id & 0xff;
}

/** One request in flight between a front and a worker. */
export class Exchange {
  readonly sink: ExchangeSink;
  /** When the request entered the pool (ms, the pool's clock). */
  readonly createdAt: number;
  /** When a worker thread got it (ms, the pool's clock): when it was handed to a worker, or for one
   *  given ahead (`ahead`), when a thread of that worker came free for it. */
  dispatchedAt = 0;
  /** Given to a worker whose threads were all busy, to run when one frees (the pool's #pickAhead);
   *  false again once it has a thread. */
  ahead = false;
  /** The app (pool) it belongs to, for logs and metrics. */
  app: string | null = null;
  #state: ExchangeState = 'queued';
  #worker: WorkerPort | null = null;
  #workerId = 0;
  /** Records not yet sent: everything while queued, then stdin beyond the credit. */
  #held: Buffer[] = [];
  #heldStdin = 0;
  /** Bytes of every record in #held (headers included), reported to the sink. */
  #heldBytes = 0;
  #stdinCredit = 0;
  #paused = false;
  #aborted = false;
  #responseStarted = false;
  /** Response bytes handed to the front and not yet credited back to the worker. */
  #owed = 0;
  #windowQuantum = 65536;
  /** Called by the pool when the exchange leaves it (done or failed). */
  onDone: ((ex: Exchange) => void) | null = null;

  constructor(sink: ExchangeSink, now: number) {
    this.sink = sink;
    this.createdAt = now;
  }

  get state(): ExchangeState {
    return this.#state;
  }
  get worker(): WorkerPort | null {
    return this.#worker;
  }
  get workerRequestId(): number {
    return this.#workerId;
  }
  /** True once any response byte went to the front. */
  get responseStarted(): boolean {
    return this.#responseStarted;
  }
  get aborted(): boolean {
    return this.#aborted;
  }

  // ---- from the front

  /** A PARAMS record (the empty one ends the params). */
  params(frame: Buffer): void {
    if (this.#state === 'done') return;
    if (this.#state === 'queued') {
      this.#held.push(frame);
      this.#note(frame.length);
    } else this.#forward(frame);
  }

  /** A STDIN record (the empty one ends the body). */
  stdin(frame: Buffer): void {
    if (this.#state === 'done' || this.#aborted) return;
    const length = frame.length - HEADER_LEN - frame[6]!;
    if (this.#state === 'assigned' && this.#heldStdin === 0 && length <= this.#stdinCredit) {
      this.#stdinCredit -= length;
      this.#forward(frame);
      return;
    }
    this.#held.push(frame);
    this.#heldStdin += length;
    this.#note(frame.length);
    if (this.#state === 'assigned') this.#sendHeldStdin();
    this.#checkPause();
  }

  /** The client gave up on the request (ABORT_REQUEST or its connection closed). */
  abort(): void {
    if (this.#state === 'done' || this.#aborted) return;
    this.#aborted = true;
    this.#dropHeld();
    if (this.#state === 'assigned') this.#worker!.abort(this.#workerId);
    // queued: the pool sees `aborted` and drops it; answer the front now.
    else this.finish(0);
  }

  /** The front handed `bytes` of response on to its client: the worker may send that many more. */
  credit(bytes: number): void {
    if (this.#state !== 'assigned') return;
    this.#owed += bytes;
    if (this.#owed >= this.#windowQuantum) {
      this.#worker!.grantWindow(this.#workerId, this.#owed);
      this.#owed = 0;
    }
  }

  // ---- from the pool and the worker

  /** The pool picked a worker; held records go out with the worker's request id. */
  assign(worker: WorkerPort, requestId: number, stdinWindow: number, responseWindow: number): void {
    this.sink.assigned?.(worker);
    this.#state = 'assigned';
    this.#worker = worker;
    this.#workerId = requestId;
    this.#stdinCredit = stdinWindow;
    this.#windowQuantum = Math.max(1, responseWindow >>> 2);
    const held = this.#held;
    this.#held = [];
    this.#heldStdin = 0;
    let i = 0;
    for (; i < held.length; i++) {
      const frame = held[i]!;
      if (frame[1] !== RecordType.STDIN) {
        this.#note(-frame.length);
        this.#forward(frame);
      } else break;
    }
    for (; i < held.length; i++) {
      const frame = held[i]!;
      this.#held.push(frame);
      this.#heldStdin += frame.length - HEADER_LEN - frame[6]!;
    }
    this.#sendHeldStdin();
    this.#checkPause();
  }

  /**
   * Part of a STDIN record that spans reads (the front's parser hands those out as views of each
   * read): sent on as a record of its own around the content as it is, or held as a copy.
   */
  stdinPart(content: Buffer): void {
    if (this.#state === 'done' || this.#aborted) return;
    const length = content.length;
    if (this.#state === 'assigned' && this.#heldStdin === 0 && length <= this.#stdinCredit) {
      this.#stdinCredit -= length;
      this.#worker!.send(header(RecordType.STDIN, this.#workerId, length));
      this.#worker!.send(content);
      return;
    }
    this.stdin(encodeRecord(RecordType.STDIN, 0, content));
  }

  /** STDOUT from the worker (`frame`: the record as received, see ExchangeSink.stdout). */
  onStdout(content: Buffer, frame?: Buffer): void {
    if (this.#state !== 'assigned') return;
    if (this.#aborted) {
      // Nobody reads it: give the credit straight back so the app runs to its end.
      this.#worker!.grantWindow(this.#workerId, content.length);
      return;
    }
    if (content.length > 0) this.#responseStarted = true;
    if (this.sink.viewsToOutbox) this.sink.stdout(content, frame);
    else this.sink.stdout(Buffer.from(content)); // views into the worker's read buffer: copied
  }

  /** CORRAL_WINDOW from the worker: it consumed `bytes` of the body. */
  onWindow(bytes: number): void {
    if (this.#state !== 'assigned') return;
    this.#stdinCredit += bytes;
    this.#sendHeldStdin();
    this.#checkPause();
  }

  /** END_REQUEST from the worker (`frame`: the record as received), or the queued request was aborted. */
  finish(appStatus: number, frame?: Buffer): void {
    if (this.#state === 'done') return;
    this.#state = 'done';
    this.#dropHeld();
    this.#resume();
    this.sink.end(appStatus, this.sink.viewsToOutbox ? frame : undefined);
    this.onDone?.(this);
  }

  /** The pool cannot serve it (worker lost, queue full, timeout...). */
  fail(error: CorralError): void {
    if (this.#state === 'done') return;
    this.#state = 'done';
    this.#dropHeld();
    this.#resume();
    if (!this.#aborted) this.sink.fail(error);
    else this.sink.end(1);
    this.onDone?.(this);
  }

  #forward(frame: Buffer): void {
    setRequestId(frame, this.#workerId);
    this.#worker!.send(frame);
  }

  #sendHeldStdin(): void {
    while (this.#held.length > 0) {
      const frame = this.#held[0]!;
      const length = frame.length - HEADER_LEN - frame[6]!;
      if (length === 0 || length <= this.#stdinCredit) {
        this.#held.shift();
        this.#heldStdin -= length;
        this.#note(-frame.length);
        this.#stdinCredit -= length;
        this.#forward(frame);
        continue;
      }
      if (this.#stdinCredit === 0) return;
      // Split: send what the credit allows, keep the rest as a new record.
      const part = this.#stdinCredit;
      const content = frame.subarray(HEADER_LEN, HEADER_LEN + length);
      this.#worker!.send(header(RecordType.STDIN, this.#workerId, part));
      this.#worker!.send(content.subarray(0, part));
      this.#held[0] = encodeRecord(RecordType.STDIN, 0, content.subarray(part));
      this.#note(this.#held[0].length - frame.length);
      this.#heldStdin -= part;
      this.#stdinCredit = 0;
      return;
    }
  }

  #checkPause(): void {
    // While queued nothing held leaves, so a paused front stays paused until a worker takes it.
    const bound = this.#state === 'queued' ? PAUSE_QUEUED : PAUSE_AT;
    if (!this.#paused && this.#heldStdin >= bound) {
      this.#paused = true;
      this.sink.pauseInput();
    } else if (this.#paused && this.#heldStdin < bound / 2) this.#resume();
  }

  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.sink.resumeInput();
  }

  #note(delta: number): void {
    this.#heldBytes += delta;
    this.sink.held?.(delta);
  }

  #dropHeld(): void {
    if (this.#heldBytes !== 0) this.#note(-this.#heldBytes);
    this.#held = [];
    this.#heldStdin = 0;
  }
}
