/**
 * Fake pools for front tests: the exchange's records are parsed as the byte stream a worker would
 * read, and answered without Python.
 */
import { Exchange, type ExchangeSink } from '../../src/pool/exchange.js';
import type { Upstream } from '../../src/pool/pool.js';
import { RecordType } from '../../src/fcgi/constants.js';
import { decodeParams } from '../../src/fcgi/params.js';
import { RecordParser } from '../../src/fcgi/parser.js';
import { CorralError } from '../../src/errors.js';
import { createHash } from 'node:crypto';

/** Answers every request with its PATH_INFO and body length once the body ended (and, for paths under /sum, the body's SHA-1). */
export class EchoUpstream implements Upstream {
  exchanges: Exchange[] = [];
  hold = false;
  begin(sink: ExchangeSink): Exchange {
    const ex = new Exchange(sink, 0);
    this.exchanges.push(ex);
    let params = Buffer.alloc(0);
    let body = 0;
    const sum = createHash('sha1');
    // What the exchange sends is a byte stream (headers and contents may come as separate buffers).
    const parser = new RecordParser();
    const port = {
      pid: 1,
      send: (bytes: Buffer) => parser.push(Buffer.from(bytes), (r) => onRecord(r.type, r.content)),
      grantWindow: () => undefined,
      abort: () => ex.finish(0),
    };
    const onRecord = (type: number, content: Buffer): void => {
      if (type === RecordType.PARAMS) params = Buffer.concat([params, content]);
      if (type === RecordType.STDIN && content.length > 0) {
        body += content.length;
        sum.update(content);
      }
      if (type === RecordType.STDIN && content.length === 0 && !this.hold) {
        const d = decodeParams(params);
        const path = d.ok ? (d.pairs.find(([n]) => n.toString() === 'PATH_INFO')?.[1].toString() ?? '') : '';
        if (path === '/fail') {
          ex.fail(new CorralError('CORRAL_WORKER_LOST', 'worker 1 exited'));
          return;
        }
        const text = `Status: ${path === '/missing' ? '404 Not Found' : '200 OK'}\r\nContent-Type: text/plain\r\n\r\n${path} ${body}${path.startsWith('/sum') ? ` ${sum.digest('hex')}` : ''}`;
        // In 7-byte pieces, as a worker's STDOUT may arrive (a record split across reads).
        const out = Buffer.from(text);
        for (let off = 0; off < out.length; off += 7) ex.onStdout(out.subarray(off, off + 7));
        ex.finish(0);
      }
    };
    queueMicrotask(() => ex.assign(port, 1, 1 << 20, 1 << 20));
    return ex;
  }
}

/** Takes requests into its queue and never hands them to a worker: what a busy pool does. */
export class QueueUpstream implements Upstream {
  readonly exchanges: Exchange[] = [];
  begin(sink: ExchangeSink): Exchange {
    const ex = new Exchange(sink, 0);
    this.exchanges.push(ex);
    return ex;
  }
  /** Exchanges still waiting (not aborted or failed). */
  get waiting(): number {
    return this.exchanges.filter((e) => e.state === 'queued').length;
  }
}
