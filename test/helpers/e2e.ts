/**
 * Small tools for end-to-end tests: HTTP requests with streamed bodies and hashes, the memory of
 * a process from /proc, and the TCP connections that touch a port (to count how many connections
 * a client really opened).
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import net from 'node:net';
import { Readable } from 'node:stream';
import { FCGI_KEEP_CONN, MAX_CONTENT, RecordType, Role } from '../../src/fcgi/constants.js';
import { encodeParams } from '../../src/fcgi/params.js';
import { RecordParser } from '../../src/fcgi/parser.js';
import { decodeEndRequest, encodeBeginRequest, encodeRecord } from '../../src/fcgi/records.js';
import type { CorralProcess } from './corral.js';

/** A buffered HTTP answer. */
export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The client socket's local port: equal for requests that shared a connection. */
  localPort: number;
}

/** One HTTP request with the whole answer in memory (small bodies only). */
export function httpRequest(
  url: string,
  opts: { method?: string; body?: Buffer; headers?: http.OutgoingHttpHeaders; agent?: http.Agent | false; timeoutMs?: number } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), localPort: req.socket?.localPort ?? 0 }));
    });
    req.setTimeout(opts.timeoutMs ?? 20_000, () => req.destroy(new Error(`${opts.method ?? 'GET'} ${url}: no answer in ${opts.timeoutMs ?? 20_000} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The result of a streamed transfer: what went up and what came back, as sha256 + length. */
export interface StreamedResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  sentSha256: string;
  sentBytes: number;
  receivedSha256: string;
  receivedBytes: number;
  /** The first bytes of the answer, for failure messages and small answers. */
  head: string;
}

/**
 * A body of `total` bytes generated chunk by chunk (1 MiB random block, each copy stamped with
 * its index so reordered or repeated chunks change the hash), hashed as it is produced.
 */
export function generatedBody(total: number, chunk = 1 << 20): { stream: Readable; digest: () => { sha256: string; bytes: number } } {
  const block = randomBytes(chunk);
  const hash = createHash('sha256');
  let sent = 0;
  let index = 0;
  function* gen(): Generator<Buffer> {
    while (sent < total) {
      const n = Math.min(chunk, total - sent);
      const b = Buffer.from(block.subarray(0, n));
      if (n >= 8) b.writeBigUInt64BE(BigInt(index), 0);
      index++;
      hash.update(b);
      sent += n;
      yield b;
    }
  }
  let result: { sha256: string; bytes: number } | null = null;
  return {
    stream: Readable.from(gen(), { objectMode: false }),
    digest: () => (result ??= { sha256: hash.digest('hex'), bytes: sent }),
  };
}

/** Sends `body` (if any) and hashes the answer as it streams in; nothing large is kept in memory. */
export function streamedRequest(
  url: string,
  opts: { method?: string; bodyBytes?: number; timeoutMs?: number } = {},
): Promise<StreamedResult> {
  const body = opts.bodyBytes !== undefined ? generatedBody(opts.bodyBytes) : null;
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = body ? { 'content-length': opts.bodyBytes, 'content-type': 'application/octet-stream' } : {};
    const req = http.request(url, { method: opts.method ?? (body ? 'POST' : 'GET'), headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`${url}: not done in ${opts.timeoutMs ?? 60_000} ms`)), opts.timeoutMs ?? 60_000);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      const hash = createHash('sha256');
      let received = 0;
      let head = '';
      res.on('data', (c: Buffer) => {
        if (head.length < 200) head += c.toString('latin1', 0, Math.min(c.length, 200));
        hash.update(c);
        received += c.length;
      });
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        const sent = body ? body.digest() : { sha256: createHash('sha256').digest('hex'), bytes: 0 };
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          sentSha256: sent.sha256,
          sentBytes: sent.bytes,
          receivedSha256: hash.digest('hex'),
          receivedBytes: received,
          head,
        });
      });
    });
    if (body) body.stream.pipe(req);
    else req.end();
  });
}

/**
 * One FastCGI request whose body and answer stream through at once (full duplex): the body is
 * generated and hashed as it is sent (with socket backpressure), the answer's CGI head is parsed
 * and its body hashed as it arrives. Unlike the test client, it keeps nothing large in memory.
 */
export function fcgiStreamed(
  addr: { host: string; port: number },
  params: Record<string, string>,
  bodyBytes: number,
  timeoutMs = 60_000,
): Promise<StreamedResult & { appStatus: number }> {
  const body = generatedBody(bodyBytes);
  return new Promise((resolve, reject) => {
    const socket = net.connect(addr);
    socket.setNoDelay(true);
    const timer = setTimeout(() => fail(new Error(`FastCGI ${params.PATH_INFO}: not done in ${timeoutMs} ms`)), timeoutMs);
    const parser = new RecordParser();
    const hash = createHash('sha256');
    let headBuf: Buffer | null = Buffer.alloc(0);
    let status = 0;
    const headers: http.IncomingHttpHeaders = {};
    let received = 0;
    let head = '';
    function fail(err: Error): void {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    }
    function onBody(b: Buffer): void {
      if (head.length < 200) head += b.toString('latin1', 0, Math.min(b.length, 200));
      hash.update(b);
      received += b.length;
    }
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed before END_REQUEST')));
    socket.on('data', (chunk: Buffer) => {
      const err = parser.push(chunk, (r) => {
        if (r.requestId !== 1) return;
        if (r.type === RecordType.STDOUT && r.content.length > 0) {
          if (headBuf === null) return onBody(r.content);
          headBuf = Buffer.concat([headBuf, r.content]);
          const end = headBuf.indexOf('\r\n\r\n');
          if (end < 0) return;
          status = 200;
          for (const line of headBuf.toString('latin1', 0, end).split('\r\n')) {
            const i = line.indexOf(':');
            const name = line.slice(0, i).trim().toLowerCase();
            const value = line.slice(i + 1).trim();
            if (name === 'status') status = Number(value.split(' ')[0]);
            else headers[name] = value;
          }
          const rest = headBuf.subarray(end + 4);
          headBuf = null;
          if (rest.length > 0) onBody(rest);
        } else if (r.type === RecordType.END_REQUEST) {
          clearTimeout(timer);
          socket.removeAllListeners('close');
          socket.destroy();
          const sent = body.digest();
          resolve({
            status,
            headers,
            sentSha256: sent.sha256,
            sentBytes: sent.bytes,
            receivedSha256: hash.digest('hex'),
            receivedBytes: received,
            head,
            appStatus: decodeEndRequest(r.content)?.appStatus ?? -1,
          });
        }
      });
      if (err) fail(new Error(`bad FastCGI stream: ${err.message}`));
    });
    socket.once('connect', () => {
      socket.write(
        Buffer.concat([
          encodeBeginRequest(1, Role.RESPONDER, FCGI_KEEP_CONN),
          encodeRecord(RecordType.PARAMS, 1, encodeParams(Object.entries(params))),
          encodeRecord(RecordType.PARAMS, 1),
        ]),
      );
      void (async () => {
        for await (const chunk of body.stream as AsyncIterable<Buffer>) {
          let ok = true;
          for (let off = 0; off < chunk.length; off += MAX_CONTENT) ok = socket.write(encodeRecord(RecordType.STDIN, 1, chunk.subarray(off, off + MAX_CONTENT)));
          if (!ok) await once(socket, 'drain');
        }
        socket.write(encodeRecord(RecordType.STDIN, 1));
      })().catch((err: Error) => fail(err));
    });
  });
}

/** sha256 of `n` copies of one byte, computed in 1 MiB steps. */
export function sha256OfRepeated(byte: string, n: number): string {
  const block = Buffer.alloc(1 << 20, byte);
  const hash = createHash('sha256');
  for (let left = n; left > 0; left -= block.length) hash.update(left >= block.length ? block : block.subarray(0, left));
  return hash.digest('hex');
}

/** VmRSS and VmHWM (peak) of a process, in kB. */
export function memoryKb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** Samples a process' VmRSS every `everyMs` until `stop()`, which returns the maximum seen and VmHWM. */
export function sampleRss(pid: number, everyMs = 25): { stop: () => { maxRssKb: number; hwmKb: number; samples: number } } {
  let max = 0;
  let samples = 0;
  const take = (): void => {
    try {
      max = Math.max(max, memoryKb(pid).rss);
      samples++;
    } catch {
      /* process gone: the test fails elsewhere */
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return { maxRssKb: max, hwmKb: memoryKb(pid).hwm, samples };
    },
  };
}

/**
 * The TCP connections (any state but LISTEN) with one end on 127.0.0.1:`port`, each as one
 * string for both of its ends, from /proc/net/tcp. A client that honours keep-alive adds one
 * entry for many requests; one that reconnects adds one per request (TIME_WAIT lingers).
 */
export function tcpConnections(port: number): Set<string> {
  const out = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4) continue;
      const [local, remote, state] = [f[1]!, f[2]!, f[3]!];
      if (state === '0A') continue; // LISTEN
      if (!local.endsWith(`:${hexPort}`) && !remote.endsWith(`:${hexPort}`)) continue;
      out.add([local, remote].sort().join(' '));
    }
  }
  return out;
}

/** Resolves when `n` workers of this corral have said READY. */
export function workersReady(c: CorralProcess, n: number, timeoutMs = 30_000): Promise<unknown> {
  let seen = 0;
  return c.waitForLog((l) => l.msg === 'worker ready' && ++seen >= n, timeoutMs);
}
