/**
 * Typed access to the `fastcgi-stream` package (CommonJS, no types) for the interop tests.
 * Its FastCGIStream wraps a duplex stream: it reads 'data' events and writes with stream.write(),
 * so a bare EventEmitter with a write() method is enough to drive it without sockets.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

/** A fastcgi-stream record object (fields depend on the type). */
export interface FsRecord {
  readonly TYPE: number;
  role?: number;
  flags?: number;
  appStatus?: number;
  protocolStatus?: number;
  /** PARAMS: [name, value] pairs, or a bare name string when the value is empty. */
  params?: Array<[string, string] | string>;
  /** GET_VALUES / GET_VALUES_RESULT: like params. */
  values?: Array<[string, string] | string>;
  /** STDIN/STDOUT/STDERR/DATA: a Buffer, or '' for an empty record. */
  data?: Buffer | string;
  /** UNKNOWN_TYPE: the unknown type. */
  type?: number;
}

type RecordCtor<A extends unknown[]> = (new (...args: A) => FsRecord) & { TYPE: number };

export interface FastcgiStreamModule {
  FastCGIStream: new (stream: EventEmitter & { write(b: Buffer, cb?: () => void): boolean }) => EventEmitter & {
    writeRecord(requestId: number, record: FsRecord, cb?: () => void): boolean;
  };
  constants: { VERSION: number; HEADER_LEN: number; MAX_CONTENT_SIZE: number; MAX_PADDING_SIZE: number; NULL_REQUEST_ID: number };
  records: {
    BeginRequest: RecordCtor<[role?: number, flags?: number]> & { roles: Record<string, number>; flags: Record<string, number> };
    AbortRequest: RecordCtor<[]>;
    EndRequest: RecordCtor<[appStatus?: number, protocolStatus?: number]> & { protocolStatus: Record<string, number> };
    Params: RecordCtor<[params?: unknown[]]>;
    StdIn: RecordCtor<[data?: Buffer | string]>;
    StdOut: RecordCtor<[data?: Buffer | string]>;
    StdErr: RecordCtor<[data?: Buffer | string]>;
    Data: RecordCtor<[data?: Buffer | string]>;
    GetValues: RecordCtor<[values?: unknown[]]>;
    GetValuesResult: RecordCtor<[values?: unknown[]]>;
    UnknownType: RecordCtor<[type?: number]>;
  };
}

const require = createRequire(import.meta.url);
export const fastcgi = require('fastcgi-stream') as FastcgiStreamModule;
export const R = fastcgi.records;

/** A fastcgi-stream reader fed by hand. */
export class FsReader {
  readonly #source = Object.assign(new EventEmitter(), { write: (_b: Buffer) => true });
  readonly records: Array<{ requestId: number; record: FsRecord }> = [];

  constructor() {
    const s = new fastcgi.FastCGIStream(this.#source);
    s.on('record', (requestId: number, record: FsRecord) => this.records.push({ requestId, record }));
  }

  /** Emits one 'data' chunk (fastcgi-stream parses synchronously inside the event; errors throw out of here). */
  feed(chunk: Buffer): this {
    this.#source.emit('data', chunk);
    return this;
  }
}

/** Reads `chunks` with fastcgi-stream. */
export function fsRead(chunks: Iterable<Buffer>): Array<{ requestId: number; record: FsRecord }> {
  const r = new FsReader();
  for (const c of chunks) r.feed(c);
  return r.records;
}

/** Writes records with fastcgi-stream's writeRecord; returns the bytes it wrote. */
export function fsWrite(list: Array<[requestId: number, record: FsRecord]>): Buffer {
  const out: Buffer[] = [];
  const sink = Object.assign(new EventEmitter(), {
    write: (b: Buffer) => {
      out.push(Buffer.from(b));
      return true;
    },
  });
  const s = new fastcgi.FastCGIStream(sink);
  for (const [id, rec] of list) s.writeRecord(id, rec);
  return Buffer.concat(out);
}
