/**
 * A scripted FastCGI "corral service" on a unix socket, to test the relay's own behaviour without
 * Python: it records every connection, BEGIN flags, request ids and decoded params, and answers each
 * request (after its empty STDIN record) by path:
 *   /params        200, body = the request's params as JSON
 *   /stderr        FCGI_STDERR noise, then 200 "ok" (the relay must drop the STDERR)
 *   /die           closes the connection without answering
 *   /die-after     sends the response head and part of the body, then closes the connection
 *   anything else  200 "ok <path>"
 */
import net from 'node:net';
import { ProtocolStatus, RecordType } from '../../src/fcgi/constants.js';
import { paramsToMap } from '../../src/fcgi/params.js';
import { RecordParser } from '../../src/fcgi/parser.js';
import { decodeBeginRequest, encodeEndRequest, encodeRecord, frameStream } from '../../src/fcgi/records.js';

export interface SeenRequest {
  connection: number;
  id: number;
  flags: number;
  params: Map<string, string>;
  stdinBytes: number;
}

export class FakeService {
  readonly requests: SeenRequest[] = [];
  connections = 0;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async listen(path: string): Promise<FakeService> {
    const server = net.createServer();
    const fake = new FakeService(server);
    server.on('connection', (s) => fake.#serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return fake;
  }

  #serve(socket: net.Socket): void {
    const connection = ++this.connections;
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    const parser = new RecordParser();
    const open = new Map<number, { flags: number; params: Buffer[]; stdin: number }>();
    socket.on('data', (chunk: Buffer) => {
      parser.push(chunk, (r) => {
        if (r.type === RecordType.BEGIN_REQUEST) open.set(r.requestId, { flags: decodeBeginRequest(r.content)!.flags, params: [], stdin: 0 });
        const req = open.get(r.requestId);
        if (!req) return;
        if (r.type === RecordType.PARAMS) req.params.push(Buffer.from(r.content));
        if (r.type === RecordType.STDIN && r.content.length > 0) req.stdin += r.content.length;
        if (r.type === RecordType.STDIN && r.content.length === 0) {
          open.delete(r.requestId);
          const params = paramsToMap(Buffer.concat(req.params)) ?? new Map<string, string>();
          this.requests.push({ connection, id: r.requestId, flags: req.flags, params, stdinBytes: req.stdin });
          this.#answer(socket, r.requestId, params);
        }
      });
    });
  }

  #answer(socket: net.Socket, id: number, params: Map<string, string>): void {
    const path = params.get('URL') ?? params.get('PATH_INFO') ?? '/';
    const respond = (body: string, extra: Buffer[] = []): void => {
      const cgi = Buffer.from(`Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      socket.write(Buffer.concat([...extra, ...frameStream(RecordType.STDOUT, id, cgi), encodeRecord(RecordType.STDOUT, id), encodeEndRequest(id, 0, ProtocolStatus.REQUEST_COMPLETE)]));
    };
    if (path === '/die') socket.destroy();
    else if (path === '/die-after') {
      socket.write(encodeRecord(RecordType.STDOUT, id, Buffer.from('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial')));
      socket.destroy();
    } else if (path === '/params') respond(JSON.stringify(Object.fromEntries(params)));
    else if (path === '/stderr') respond('ok', [encodeRecord(RecordType.STDERR, id, Buffer.from('noise on stderr\n')), encodeRecord(RecordType.STDERR, id)]);
    else respond(`ok ${path}`);
  }

  /** Drops every open connection (the service "restarts"). */
  dropConnections(): void {
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
