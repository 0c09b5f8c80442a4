/**
 * An IIS FastCGI module (iisfcgi.dll) emulator, after ../shared/research/iis-fastcgi.md:
 * - each instance is a process started with an already-connected duplex stream as stdin (a
 *   connected unix socket pair here, a named pipe under IIS) and stdout/stderr invalid ('ignore');
 *   its environment is w3wp's plus the app's <environmentVariables>, APP_POOL_ID and _FCGI_X_PIPE_;
 * - one request at a time per instance, BEGIN with FCGI_KEEP_CONN, ids 1..255 wrapping to 1;
 * - IIS's parameter set (APPL_MD_PATH, APPL_PHYSICAL_PATH with a trailing separator, URL,
 *   SCRIPT_NAME, PATH_INFO equal to the whole path, SERVER_SOFTWARE=Microsoft-IIS/10.0, HTTPS=off,
 *   CONTENT_LENGTH "0" on GET, HTTP_* headers, empty-valued variables sent);
 * - up to maxInstances instances with a request queue; an instance is recycled after
 *   instanceMaxRequests requests, and stopped by closing its stdin then killing it after a grace;
 * - any FCGI_STDERR byte is a failure (default stderrMode ReturnStdErrIn500 answers 500 with it);
 * - the response is buffered as the handler's responseBufferLimit says (4 MiB by default, from IIS's
 *   schema): the client gets nothing until that many bytes are held or the response ends; 0 passes
 *   each FCGI_STDOUT record on as it comes. That a full buffer is sent and buffering starts again
 *   is the model here (what IIS does past the limit in detail: UNCONFIRMED).
 * - with `w3wp`, the instances are children of emulated w3wp processes that own a job (w3wp.ts):
 *   `maxProcesses` of them at once (a web garden, maxInstances each), and recycle() does IIS's
 *   overlapped recycle: new w3wps take new requests, the old ones finish theirs, close their
 *   instances and exit, which kills everything in their jobs.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FCGI_KEEP_CONN, MAX_CONTENT, RecordType, Role } from '../../src/fcgi/constants.js';
import { encodeParams } from '../../src/fcgi/params.js';
import { RecordParser } from '../../src/fcgi/parser.js';
import { decodeEndRequest, encodeBeginRequest, encodeRecord, frameStream } from '../../src/fcgi/records.js';
import { parseCgi } from '../helpers/fcgi-client.js';
import { W3wp, type ProcessHandle } from './w3wp.js';

export interface IisOptions {
  /** The FastCGI program and its arguments (IIS: fullPath + arguments). */
  relayCmd: readonly string[];
  /** The application's <environmentVariables>. */
  env?: Record<string, string>;
  maxInstances?: number;
  instanceMaxRequests?: number;
  /** The IIS application's directory (sent with a trailing separator, as IIS does). */
  appPhysicalPath: string;
  /** '' for the site root, or a virtual application such as '/myapp'. */
  appVirtualPath?: string;
  appPoolId?: string;
  siteId?: number;
  /** After closing an instance's stdin, how long before it is killed (IIS: signalBeforeTerminateSeconds, 0 by default). */
  graceMs?: number;
  /** IIS's requestTimeout. */
  requestTimeoutMs?: number;
  /** The handler's responseBufferLimit in bytes (IIS's default 4194304); 0 = no buffering. */
  responseBufferLimit?: number;
  /** Start instances from emulated w3wp processes with jobs (needed for recycle()). */
  w3wp?: boolean;
  /** The pool's maxProcesses (w3wp mode): a web garden of this many w3wps, maxInstances each. */
  maxProcesses?: number;
}

/** IIS's default responseBufferLimit (IIS_schema.xml, <handlers><add responseBufferLimit>). */
export const IIS_RESPONSE_BUFFER_LIMIT = 4 * 1024 * 1024;

export interface IisRequest {
  method?: string;
  /** Path and query, e.g. '/myapp/hello?x=1'. */
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Called with each piece of the response (CGI head included) when IIS sends it to the client. */
  onFlush?: (piece: Buffer) => void;
}

export interface IisResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
  /** Pid of the instance that served it. */
  relayPid: number;
  /** Pid of its emulated w3wp (w3wp mode), else null. */
  w3wpPid: number | null;
  /** True when IIS itself made this answer (STDERR, instance died, timeout). */
  failed: boolean;
  /** Sizes of the pieces the client received, in order (see responseBufferLimit). */
  flushes: number[];
}

export interface IisCounters {
  relaysStarted: number;
  /** Instances that exited without being asked (crash, kill). */
  unexpectedExits: number;
  stderrBytes: number;
  /** Instances still running when the grace after closing their stdin ran out (then killed). */
  killedAfterGrace: number;
  requests: number;
  failures: string[];
  /** Per instance: ms from spawn to the end of its first response. */
  firstResponseMs: number[];
}

/** A started relay with the IIS end of its stdin. */
export interface SpawnedRelay {
  readonly child: ProcessHandle;
  readonly pid: number;
  /** IIS's end of the connection. */
  readonly socket: net.Socket;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly spawnedAt: number;
}

/** Makes connected socket pairs through a unix socket server in a temp dir (one pair at a time). */
export class SocketPairs {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'corral-iis-'));
  #server: net.Server | null = null;
  #chain: Promise<unknown> = Promise.resolve();

  /** [ours, theirs]: `theirs` becomes the child's stdin. */
  pair(): Promise<[net.Socket, net.Socket]> {
    const next = this.#chain.then(() => this.#pairNow());
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async #pairNow(): Promise<[net.Socket, net.Socket]> {
    if (!this.#server) {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path.join(this.dir, 'pair.sock'), () => resolve());
      });
      this.#server = server;
    }
    const server = this.#server;
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const ours = net.connect(path.join(this.dir, 'pair.sock'));
    await new Promise<void>((resolve, reject) => {
      ours.once('connect', () => resolve());
      ours.once('error', reject);
    });
    return [ours, await accepted];
  }

  close(): void {
    this.#server?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts the FastCGI program as IIS does: stdin = a connected stream, stdout/stderr invalid. */
export async function spawnRelay(pairs: SocketPairs, cmd: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<SpawnedRelay> {
  const [ours, theirs] = await pairs.pair();
  const [file, ...args] = cmd;
  const spawnedAt = performance.now();
  const child = spawn(file!, args, { stdio: [theirs, 'ignore', 'ignore'], env, cwd });
  // Our copy of the child's end must go, or the child's exit would not close the connection.
  // destroy(), never end(): a shutdown() would half-close the socket the child shares.
  theirs.destroy();
  ours.on('error', () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  if (child.pid === undefined) throw new Error(`cannot start ${cmd.join(' ')}`);
  return { child, pid: child.pid, socket: ours, exited, spawnedAt };
}

/** As spawnRelay, but started by an emulated w3wp (its child, in its job). */
async function spawnRelayIn(w3wp: W3wp, pairs: SocketPairs, cmd: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<SpawnedRelay> {
  const [ours, theirs] = await pairs.pair();
  const spawnedAt = performance.now();
  ours.on('error', () => undefined);
  try {
    // The w3wp gets `theirs` over IPC (which closes our copy) and hands it to the relay as stdin.
    const { pid, child, exited } = await w3wp.spawn(theirs, cmd, env, cwd);
    return { child, pid, socket: ours, exited, spawnedAt };
  } catch (err) {
    ours.destroy();
    theirs.destroy();
    throw err;
  }
}

/** IIS's server variables for a request to an app at `appVirtualPath` (trailing-separator physical path, full-path PATH_INFO). */
export function iisParams(o: { appPhysicalPath: string; appVirtualPath: string; siteId: number }, req: IisRequest, bodyLength: number): Array<[string, string]> {
  const q = req.url.indexOf('?');
  const urlPath = q >= 0 ? req.url.slice(0, q) : req.url;
  const query = q >= 0 ? req.url.slice(q + 1) : '';
  const physical = o.appPhysicalPath.endsWith(path.sep) ? o.appPhysicalPath : o.appPhysicalPath + path.sep;
  const rest = urlPath.toLowerCase().startsWith(o.appVirtualPath.toLowerCase()) ? urlPath.slice(o.appVirtualPath.length) : urlPath;
  const headers: Record<string, string> = { Host: 'localhost', ...req.headers };
  const contentType = Object.entries(headers).find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? '';
  const params: Array<[string, string]> = [
    ['APPL_MD_PATH', `/LM/W3SVC/${o.siteId}/ROOT${o.appVirtualPath}`],
    ['APPL_PHYSICAL_PATH', physical],
    ['AUTH_TYPE', ''],
    ['AUTH_USER', ''],
    ['CONTENT_LENGTH', String(bodyLength)],
    ['CONTENT_TYPE', contentType],
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['HTTPS', 'off'],
    ['INSTANCE_ID', String(o.siteId)],
    ['INSTANCE_META_PATH', `/LM/W3SVC/${o.siteId}`],
    ['LOCAL_ADDR', '127.0.0.1'],
    ['LOGON_USER', ''],
    // IIS's quirk: PATH_INFO is the whole path, SCRIPT_NAME included.
    ['PATH_INFO', urlPath],
    ['PATH_TRANSLATED', path.join(physical, ...rest.split('/').filter((s) => s !== ''))],
    ['QUERY_STRING', query],
    ['REMOTE_ADDR', '127.0.0.1'],
    ['REMOTE_HOST', '127.0.0.1'],
    ['REMOTE_PORT', '50123'],
    ['REMOTE_USER', ''],
    ['REQUEST_METHOD', req.method ?? 'GET'],
    ['SCRIPT_NAME', urlPath],
    ['SERVER_NAME', 'localhost'],
    ['SERVER_PORT', '80'],
    ['SERVER_PORT_SECURE', '0'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['SERVER_SOFTWARE', 'Microsoft-IIS/10.0'],
    ['URL', urlPath],
  ];
  for (const [k, v] of Object.entries(headers)) params.push([`HTTP_${k.toUpperCase().replace(/-/g, '_')}`, v]);
  return params;
}

interface Job {
  req: IisRequest;
  resolve: (r: IisResponse) => void;
  reject: (e: Error) => void;
}

type InstanceState = 'idle' | 'busy' | 'closing' | 'gone';

/** One FastCGI process and its connection, serving one request at a time. */
class Instance {
  state: InstanceState = 'idle';
  served = 0;
  #nextId = 1;
  readonly #parser = new RecordParser();
  #current: { id: number; job: Job; out: Buffer[]; stderr: Buffer[]; timer: NodeJS.Timeout; held: Buffer[]; heldBytes: number; flushes: number[] } | null = null;

  constructor(
    readonly relay: SpawnedRelay,
    readonly iis: IisEmulator,
    readonly w3wp: W3wp | null,
  ) {
    relay.socket.on('data', (chunk: Buffer) => {
      const err = this.#parser.push(chunk, (r) => this.#onRecord(r.type, r.requestId, Buffer.from(r.content)));
      if (err) this.#fail(`bad FastCGI from the relay: ${err.message}`);
    });
    relay.socket.on('close', () => this.#gone('connection closed'));
    void relay.exited.then(({ code, signal }) => this.#gone(`process exited (code ${code}, signal ${signal})`));
  }

  send(job: Job): void {
    this.state = 'busy';
    const id = this.#nextId;
    this.#nextId = id === 255 ? 1 : id + 1;
    const body = job.req.body === undefined ? Buffer.alloc(0) : Buffer.from(job.req.body);
    const params = encodeParams(iisParams(this.iis.appOptions, job.req, body.length));
    const parts: Buffer[] = [encodeBeginRequest(id, Role.RESPONDER, FCGI_KEEP_CONN), ...frameStream(RecordType.PARAMS, id, params), encodeRecord(RecordType.PARAMS, id)];
    for (let off = 0; off < body.length; off += MAX_CONTENT) parts.push(encodeRecord(RecordType.STDIN, id, body.subarray(off, off + MAX_CONTENT)));
    parts.push(encodeRecord(RecordType.STDIN, id));
    const timer = setTimeout(() => this.#fail(`request timed out after ${this.iis.requestTimeoutMs} ms`), this.iis.requestTimeoutMs);
    this.#current = { id, job, out: [], stderr: [], timer, held: [], heldBytes: 0, flushes: [] };
    this.relay.socket.write(Buffer.concat(parts));
  }

  #onRecord(type: number, id: number, content: Buffer): void {
    const cur = this.#current;
    if (type === RecordType.STDERR) {
      this.iis.counters.stderrBytes += content.length;
      this.iis.counters.failures.push(`FCGI_STDERR from relay ${this.relay.pid}: ${JSON.stringify(content.toString('latin1').slice(0, 200))}`);
      cur?.stderr.push(content);
      return;
    }
    if (!cur || id !== cur.id) {
      if (type !== RecordType.GET_VALUES_RESULT) this.iis.counters.failures.push(`record type ${type} for request ${id}, current ${cur?.id ?? 'none'}`);
      return;
    }
    if (type === RecordType.STDOUT) {
      cur.out.push(content);
      if (content.length === 0) return;
      cur.held.push(content);
      cur.heldBytes += content.length;
      if (cur.heldBytes >= this.iis.responseBufferLimit) this.#flush(cur);
    } else if (type === RecordType.END_REQUEST) {
      clearTimeout(cur.timer);
      this.#flush(cur);
      this.#current = null;
      const end = decodeEndRequest(content);
      if (this.served++ === 0) this.iis.counters.firstResponseMs.push(performance.now() - this.relay.spawnedAt);
      this.iis.counters.requests++;
      if (cur.stderr.length > 0) {
        // stderrMode ReturnStdErrIn500: IIS's own 500 page with the STDERR text.
        cur.job.resolve({ status: 500, headers: [], body: Buffer.concat(cur.stderr), relayPid: this.relay.pid, w3wpPid: this.w3wp?.pid ?? null, failed: true, flushes: cur.flushes });
      } else {
        if (end?.protocolStatus !== 0) this.iis.counters.failures.push(`END_REQUEST protocolStatus ${end?.protocolStatus}`);
        cur.job.resolve({ ...parseCgi(Buffer.concat(cur.out), 502), relayPid: this.relay.pid, w3wpPid: this.w3wp?.pid ?? null, failed: false, flushes: cur.flushes });
      }
      this.state = this.state === 'busy' ? 'idle' : this.state;
      this.iis.released(this);
    }
  }

  /** IIS sends what it holds to the client. */
  #flush(cur: { job: Job; held: Buffer[]; heldBytes: number; flushes: number[] }): void {
    if (cur.heldBytes === 0) return;
    const piece = Buffer.concat(cur.held);
    cur.held = [];
    cur.heldBytes = 0;
    cur.flushes.push(piece.length);
    cur.job.req.onFlush?.(piece);
  }

  #fail(reason: string): void {
    const cur = this.#current;
    if (cur) {
      clearTimeout(cur.timer);
      this.#current = null;
      this.iis.counters.failures.push(`relay ${this.relay.pid}: ${reason}`);
      cur.job.resolve({ status: 500, headers: [], body: Buffer.from(`The FastCGI process exited unexpectedly (${reason})`), relayPid: this.relay.pid, w3wpPid: this.w3wp?.pid ?? null, failed: true, flushes: cur.flushes });
    }
    this.close();
  }

  #gone(reason: string): void {
    if (this.state === 'gone') return;
    const asked = this.state === 'closing';
    this.state = 'gone';
    if (!asked) this.iis.counters.unexpectedExits++;
    if (this.#current) this.#fail(reason);
    this.relay.socket.destroy();
    this.iis.released(this);
  }

  /** IIS's stop: close the pipe, then TerminateProcess after the grace period. */
  close(): Promise<void> {
    if (this.state !== 'gone') this.state = 'closing';
    this.relay.socket.destroy();
    const child = this.relay.child;
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    const timer = setTimeout(() => {
      this.iis.counters.killedAfterGrace++;
      child.kill('SIGKILL');
    }, this.iis.graceMs);
    return this.relay.exited.then(() => clearTimeout(timer));
  }
}

/** The emulated IIS FastCGI module for one application. */
export class IisEmulator {
  readonly counters: IisCounters = { relaysStarted: 0, unexpectedExits: 0, stderrBytes: 0, killedAfterGrace: 0, requests: 0, failures: [], firstResponseMs: [] };
  readonly appOptions: { appPhysicalPath: string; appVirtualPath: string; siteId: number };
  readonly graceMs: number;
  readonly requestTimeoutMs: number;
  readonly responseBufferLimit: number;
  readonly #opts: IisOptions;
  readonly #pairs = new SocketPairs();
  readonly #instances = new Set<Instance>();
  readonly #closing = new Set<Promise<void>>();
  readonly #queue: Job[] = [];
  readonly #env: NodeJS.ProcessEnv;
  /** w3wp mode: the w3wps taking requests, and the retired ones not yet exited. */
  #w3wps: W3wp[] = [];
  readonly #retired = new Set<W3wp>();
  #changed: Array<() => void> = [];
  #starting = 0;
  #stopped = false;
  #stopping: Promise<void> | null = null;

  constructor(opts: IisOptions) {
    this.#opts = opts;
    this.appOptions = { appPhysicalPath: opts.appPhysicalPath, appVirtualPath: opts.appVirtualPath ?? '', siteId: opts.siteId ?? 1 };
    this.graceMs = opts.graceMs ?? 2_000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.responseBufferLimit = opts.responseBufferLimit ?? IIS_RESPONSE_BUFFER_LIMIT;
    this.#env = {
      ...process.env,
      APP_POOL_ID: opts.appPoolId ?? 'DefaultAppPool',
      ...opts.env,
    };
    if (opts.w3wp || opts.maxProcesses !== undefined) this.#w3wps = Array.from({ length: opts.maxProcesses ?? 1 }, () => new W3wp());
  }

  /** Pids of the w3wps taking requests (w3wp mode). */
  get w3wpPids(): number[] {
    return this.#w3wps.map((w) => w.pid);
  }

  /**
   * IIS's overlapped recycle (w3wp mode): new w3wps start taking new requests at once, the old ones
   * finish the requests they have, close their instances and exit, killing their jobs. Resolves,
   * once they exited, with the pids their jobs killed.
   */
  async recycle(): Promise<number[]> {
    const old = this.#w3wps;
    if (old.length === 0) throw new Error('recycle() needs the w3wp option');
    this.#w3wps = old.map(() => new W3wp());
    for (const w of old) {
      w.accepting = false;
      this.#retired.add(w);
    }
    for (const i of [...this.#instances]) if (i.w3wp && !i.w3wp.accepting && i.state === 'idle') this.#recycle(i);
    this.#dispatch();
    const left = (): boolean => old.some((w) => w.starting > 0) || [...this.#instances].some((i) => i.w3wp !== null && old.includes(i.w3wp));
    while (left()) await new Promise<void>((r) => this.#changed.push(r));
    await Promise.all(this.#closing);
    const killed = (await Promise.all(old.map((w) => w.exit()))).flat();
    for (const w of old) this.#retired.delete(w);
    return killed;
  }

  /** Pids of the running instances. */
  get relayPids(): number[] {
    return [...this.#instances].filter((i) => i.state !== 'gone').map((i) => i.relay.pid);
  }

  /** Sends a request as IIS would, through an instance. */
  request(req: IisRequest): Promise<IisResponse> {
    if (this.#stopped) return Promise.reject(new Error('IIS emulator stopped'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ req, resolve, reject });
      this.#dispatch();
    });
  }

  /** An instance finished a request, or went away. */
  released(inst: Instance): void {
    if (inst.state === 'gone') this.#instances.delete(inst);
    else if (inst.state === 'idle' && (inst.served >= (this.#opts.instanceMaxRequests ?? 200) || (inst.w3wp !== null && !inst.w3wp.accepting))) this.#recycle(inst);
    this.#dispatch();
    this.#notify();
  }

  #notify(): void {
    for (const f of this.#changed.splice(0)) f();
  }

  /** Kills every instance (TerminateProcess, no closing first) and waits for the exits. */
  async killRelays(): Promise<void> {
    const all = [...this.#instances];
    for (const i of all) i.relay.child.kill('SIGKILL');
    await Promise.all(all.map((i) => i.relay.exited));
  }

  /** Closes every instance (close, then kill after the grace) and rejects queued requests. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      for (const job of this.#queue.splice(0)) job.reject(new Error('IIS emulator stopped'));
      await Promise.all([...[...this.#instances].map((i) => i.close()), ...this.#closing]);
      // The w3wps exit: their jobs take what the relays started with them.
      await Promise.all([...this.#w3wps, ...this.#retired].map((w) => w.exit()));
      this.#pairs.close();
    })();
    return this.#stopping;
  }

  #recycle(inst: Instance): void {
    this.#instances.delete(inst);
    const closed = inst.close();
    this.#closing.add(closed);
    void closed.then(() => {
      this.#closing.delete(closed);
      this.#notify();
    });
  }

  #dispatch(): void {
    let idle: Instance | undefined;
    const open = (i: Instance): boolean => i.state === 'idle' && (i.w3wp === null || i.w3wp.accepting);
    while (this.#queue.length > 0 && (idle = [...this.#instances].find(open))) idle.send(this.#queue.shift()!);
    // IIS starts more instances while requests wait, up to maxInstances (per w3wp).
    const max = this.#opts.maxInstances ?? 4;
    if (this.#w3wps.length === 0) {
      while (!this.#stopped && this.#queue.length > this.#starting && this.#instances.size + this.#starting < max) this.#startInstance(null);
      return;
    }
    const load = (w: W3wp): number => w.starting + [...this.#instances].filter((i) => i.w3wp === w && i.state !== 'gone').length;
    for (;;) {
      if (this.#stopped || this.#queue.length <= this.#starting) return;
      // HTTP.sys spreads connections over a web garden's w3wps: the least loaded one starts the instance.
      const w = [...this.#w3wps].sort((a, b) => load(a) - load(b))[0]!;
      if (load(w) >= max) return;
      this.#startInstance(w);
    }
  }

  #startInstance(w3wp: W3wp | null): void {
    this.#starting++;
    if (w3wp) w3wp.starting++;
    const env = { ...this.#env, _FCGI_X_PIPE_: `\\\\.\\pipe\\IISFCGI-${randomUUID()}` };
    const started = w3wp ? spawnRelayIn(w3wp, this.#pairs, this.#opts.relayCmd, env, this.#pairs.dir) : spawnRelay(this.#pairs, this.#opts.relayCmd, env, this.#pairs.dir);
    started.then(
      (relay) => {
        this.#starting--;
        if (w3wp) w3wp.starting--;
        this.counters.relaysStarted++;
        const inst = new Instance(relay, this, w3wp);
        this.#instances.add(inst);
        if (this.#stopped) void inst.close();
        else if (w3wp && !w3wp.accepting) this.#recycle(inst);
        this.#dispatch();
        this.#notify();
      },
      (err: Error) => {
        this.#starting--;
        if (w3wp) w3wp.starting--;
        this.#notify();
        this.counters.failures.push(`cannot start an instance: ${err.message}`);
        for (const job of this.#queue.splice(0)) job.reject(err);
      },
    );
  }
}

/** Starts an emulated IIS application. */
export async function startIis(opts: IisOptions): Promise<IisEmulator> {
  return new IisEmulator(opts);
}
