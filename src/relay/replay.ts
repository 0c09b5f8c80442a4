/**
 * What a request sent to the service so far, kept so that it can be sent once more on a new
 * connection when the service closed the old one before answering (a kept-alive connection closed
 * by a service restart just as IIS's next request went out). Kept only while small, and resent
 * only for methods that are safe to repeat: nginx's proxy_next_upstream likewise never resends
 * POST, LOCK or PATCH.
 */
import { RecordType } from '../fcgi/constants.js';
import { paramsToMap } from '../fcgi/params.js';
import { RecordParser } from '../fcgi/parser.js';

/** Most request bytes kept; a larger request (an upload) is never resent. */
export const REPLAY_LIMIT = 64 * 1024;
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** The records of one request as sent (views, not copies), until its answer starts. */
export class Replay {
  #frames: Buffer[] | null = [];
  #bytes = 0;

  /** Keeps `b`, or gives up for good once the request outgrows the limit. */
  keep(b: Buffer): void {
    if (this.#frames === null) return;
    this.#bytes += b.length;
    if (this.#bytes <= REPLAY_LIMIT) this.#frames.push(b);
    else this.#frames = null;
  }

  /** The records to send again, or null if this request must not be resent. Parses the params: failure path only. */
  resendable(): readonly Buffer[] | null {
    const frames = this.#frames;
    if (frames === null) return null;
    const parser = new RecordParser();
    const params: Buffer[] = [];
    for (const f of frames) parser.push(f, (r) => void (r.type === RecordType.PARAMS && params.push(Buffer.from(r.content))));
    const method = paramsToMap(Buffer.concat(params))?.get('REQUEST_METHOD');
    return method !== undefined && IDEMPOTENT.has(method) ? frames : null;
  }
}
