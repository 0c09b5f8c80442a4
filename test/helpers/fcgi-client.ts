/**
 * A FastCGI client for tests, built on corral's codec: sends requests over one connection
 * (keep-conn, interleaved ids) and collects each answer. Checks the stream it receives, so a
 * server bug shows up as a test failure rather than a hang.
 */
import net from 'node:net';
import { FCGI_KEEP_CONN, MAX_CONTENT, RecordType, Role } from '../../src/fcgi/constants.js';
import { RecordParser, type FcgiRecord } from '../../src/fcgi/parser.js';
import { encodeParams } from '../../src/fcgi/params.js';
import { encodeBeginRequest, encodeRecord, decodeEndRequest } from '../../src/fcgi/records.js';

/** One answer. */
export interface FcgiResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
  stderr: string;
  appStatus: number;
  protocolStatus: number;
}

/**
 * Splits a CGI response into status, headers and body. The head ends at the first blank line,
 * CRLF or LF (IIS and nginx take both); without one, the status is `noHeadStatus` (IIS answers 502).
 */
export function parseCgi(raw: Buffer, noHeadStatus = 0): Pick<FcgiResponse, 'status' | 'headers' | 'body'> {
  let end = raw.indexOf('\r\n\r\n');
  let sep = 4;
  const lf = raw.indexOf('\n\n');
  if (lf >= 0 && (end < 0 || lf < end)) {
    end = lf;
    sep = 2;
  }
  if (end < 0) return { status: noHeadStatus, headers: [], body: raw };
  const headers: Array<[string, string]> = [];
  let status = 200;
  for (const line of raw.toString('latin1', 0, end).split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    if (name.toLowerCase() === 'status') status = Number(value.split(' ')[0]);
    else headers.push([name, value]);
  }
  return { status, headers, body: raw.subarray(end + sep) };
}

/** Standard params for a path, like nginx's fastcgi_params plus PATH_INFO. */
export function cgiParams(method: string, uri: string, extra: Record<string, string> = {}): Record<string, string> {
  const q = uri.indexOf('?');
  return {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: method,
    SCRIPT_NAME: '',
    PATH_INFO: q >= 0 ? uri.slice(0, q) : uri,
    QUERY_STRING: q >= 0 ? uri.slice(q + 1) : '',
    REQUEST_URI: uri,
    SERVER_NAME: 'localhost',
    SERVER_PORT: '80',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REMOTE_ADDR: '127.0.0.1',
    ...extra,
  };
}

interface Pending {
  out: Buffer[];
  stderr: string;
  resolve: (r: FcgiResponse) => void;
  reject: (e: Error) => void;
}

/** A FastCGI connection that can carry many requests. */
export class FcgiClient {
  readonly socket: net.Socket;
  readonly records: FcgiRecord[] = [];
  #parser = new RecordParser();
  #pending = new Map<number, Pending>();
  #closed = false;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      const err = this.#parser.push(chunk, (r) => this.#onRecord(r));
      if (err) this.#failAll(new Error(`bad stream from server: ${err.message}`));
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.#closed = true;
        this.#failAll(new Error('connection closed before END_REQUEST'));
        resolve();
      }),
    );
    socket.on('error', () => undefined);
  }

  static connect(opts: { host: string; port: number } | { path: string }): Promise<FcgiClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(opts as net.NetConnectOpts, () => resolve(new FcgiClient(s)));
      s.setNoDelay(true);
      s.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  #recordWaiters: Array<{ pred: (r: FcgiRecord) => boolean; resolve: (r: FcgiRecord) => void }> = [];

  /** Resolves with the first record (past or future) matching `pred`; rejects if the connection closes first. */
  waitForRecord(pred: (r: FcgiRecord) => boolean): Promise<FcgiRecord> {
    const seen = this.records.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.#recordWaiters.push({ pred, resolve });
      void this.closed.then(() => reject(new Error('connection closed before the record arrived')));
    });
  }

  #onRecord(raw: FcgiRecord): void {
    const r = { ...raw, content: Buffer.from(raw.content), frame: Buffer.from(raw.frame) };
    this.records.push(r);
    this.#recordWaiters = this.#recordWaiters.filter((w) => (w.pred(r) ? (w.resolve(r), false) : true));
    const p = this.#pending.get(r.requestId);
    if (!p) return;
    if (r.type === RecordType.STDOUT) p.out.push(r.content);
    else if (r.type === RecordType.STDERR) p.stderr += r.content.toString('utf8');
    else if (r.type === RecordType.END_REQUEST) {
      this.#pending.delete(r.requestId);
      const end = decodeEndRequest(r.content)!;
      p.resolve({ ...parseCgi(Buffer.concat(p.out)), stderr: p.stderr, appStatus: end.appStatus, protocolStatus: end.protocolStatus });
    }
  }

  #failAll(e: Error): void {
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /** Writes raw bytes. */
  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Starts a request: BEGIN + PARAMS. The body is sent with `sendBody`/`endBody` or by `request`. */
  begin(id: number, params: Record<string, string>, opts: { keepConn?: boolean; role?: number } = {}): Promise<FcgiResponse> {
    const done = new Promise<FcgiResponse>((resolve, reject) => this.#pending.set(id, { out: [], stderr: '', resolve, reject }));
    const body = encodeParams(Object.entries(params));
    const parts: Buffer[] = [encodeBeginRequest(id, opts.role ?? Role.RESPONDER, opts.keepConn === false ? 0 : FCGI_KEEP_CONN)];
    for (let off = 0; off < body.length; off += MAX_CONTENT) parts.push(encodeRecord(RecordType.PARAMS, id, body.subarray(off, off + MAX_CONTENT)));
    parts.push(encodeRecord(RecordType.PARAMS, id));
    this.socket.write(Buffer.concat(parts));
    return done;
  }

  /** Sends body bytes for request `id`; resolves when the socket accepted them (backpressure). */
  sendBody(id: number, data: Buffer): Promise<void> {
    let ok = true;
    for (let off = 0; off < data.length; off += MAX_CONTENT) ok = this.socket.write(encodeRecord(RecordType.STDIN, id, data.subarray(off, off + MAX_CONTENT)));
    return ok ? Promise.resolve() : new Promise((r) => this.socket.once('drain', () => r()));
  }

  endBody(id: number): void {
    this.socket.write(encodeRecord(RecordType.STDIN, id));
  }

  abort(id: number): void {
    this.socket.write(encodeRecord(RecordType.ABORT_REQUEST, id));
  }

  /** A whole request. */
  async request(id: number, params: Record<string, string>, body?: Buffer, opts: { keepConn?: boolean } = {}): Promise<FcgiResponse> {
    const done = this.begin(id, params, opts);
    if (body && body.length > 0) await this.sendBody(id, body);
    this.endBody(id);
    return done;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One request on a fresh connection. */
export async function fcgiGet(addr: { host: string; port: number }, uri: string, extra: Record<string, string> = {}): Promise<FcgiResponse> {
  const c = await FcgiClient.connect(addr);
  try {
    return await c.request(1, cgiParams('GET', uri, extra), undefined, { keepConn: false });
  } finally {
    c.close();
  }
}

export function header(r: { headers: Array<[string, string]> }, name: string): string[] {
  return r.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
}
