/**
 * One HTTP request's side of an exchange: the app's CGI answer turned into an HTTP response.
 * Every call into `res` is guarded: whatever Node's http layer throws costs only this request
 * (502 if no head went out yet, else the response is cut), is logged, and never reaches the
 * worker's stdout handler, whose exception would end the whole service.
 */
import type http from 'node:http';
import { STATUS_CODES } from 'node:http';
import { CorralError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { ExchangeSink, Exchange } from '../pool/exchange.js';
import { CgiHeadParser } from './cgi-response.js';
import { clientStatus, errorBody, type DevContext } from './error-page.js';
import { exchangeFacts, type RequestRecord } from './access-log.js';
import { DEVTRACE_TYPE, parseDevTraceJson } from '../devtrace.js';
import type { DevGeneration } from './dev-page.js';

/** What an HttpExchange needs of the front's options. */
export interface HttpExchangeOptions {
  devErrors: boolean;
  /** `corral dev`: which generation of the app serves, for the dev page's reload (null: no reload). */
  devGeneration?: (() => DevGeneration | null) | null;
}

/** Largest devtrace body the front holds to render (the worker keeps it under 1 MiB). */
const MAX_DEVTRACE = 4 << 20;

/** The HTTP front's sink for one request. */
export class HttpExchange implements ExchangeSink {
  readonly #req: http.IncomingMessage;
  readonly #res: http.ServerResponse;
  readonly #opts: HttpExchangeOptions;
  readonly #log: Logger;
  readonly #head = new CgiHeadParser();
  #started = false;
  /** The front answered on its own (error page or cut response): later output of the app is dropped. */
  #answered = false;
  exchange: Exchange | null = null;
  /** Dev: the worker's 500 carries an exception's facts (devtrace.ts), held here to render the page at the end. */
  #devtrace: Buffer[] | null = null;
  #devtraceBytes = 0;
  bytes = 0;
  error: string | null = null;

  constructor(req: http.IncomingMessage, res: http.ServerResponse, opts: HttpExchangeOptions, log: Logger) {
    this.#req = req;
    this.#res = res;
    this.#opts = opts;
    this.#log = log;
  }

  describe(): { method: string; path: string } {
    return { method: this.#req.method ?? '-', path: this.#req.url ?? '-' };
  }

  /** True once the front answered itself (the app's output, if any, is ignored). */
  get answered(): boolean {
    return this.#answered;
  }

  stdout(content: Buffer): void {
    if (this.#answered) return this.#credit(content.length);
    if (!this.#started) {
      const r = this.#head.push(content);
      if (r === null) return this.#credit(content.length);
      if ('error' in r) {
        this.#log.warn({ app: this.exchange?.app ?? null, path: this.#req.url, why: r.error, bytes: r.bytes }, 'app sent a response head the HTTP front cannot pass on');
        this.#giveUp(new CorralError('CORRAL_BAD_RESPONSE', `the app's response is not valid CGI: ${r.error}`));
        return;
      }
      this.#started = true;
      if (this.#opts.devErrors && r.head.status === 500 && r.head.headers.some(([n, v]) => n.toLowerCase() === 'content-type' && v === DEVTRACE_TYPE)) {
        this.#devtrace = [];
        this.#hold(r.rest, content.length);
        return;
      }
      const flat: string[] = [];
      for (const [n, v] of r.head.headers) flat.push(n, v);
      const reason = r.head.reason || STATUS_CODES[r.head.status] || '';
      if (!this.#guard('writeHead', () => this.#res.writeHead(r.head.status, reason, flat))) return;
      this.#write(r.rest, content.length);
      return;
    }
    if (this.#devtrace) return this.#hold(content, content.length);
    this.#write(content, content.length);
  }

  end(appStatus = 0): void {
    if (this.#answered) return;
    if (this.#devtrace) return this.#sendDevPage();
    if (!this.#started && !this.#res.headersSent) {
      this.#sendError(new CorralError('CORRAL_BAD_RESPONSE', 'the app ended the response without sending headers'));
      return;
    }
    // appStatus 1: the body is cut short (the app raised mid-body, or sent less than its
    // Content-Length). Ending it normally would pass it on as complete, or leave the client
    // waiting for the rest: close the connection instead.
    if (appStatus !== 0) this.#guard('destroy', () => cutShort(this.#res));
    else this.#guard('end', () => this.#res.end());
  }

  fail(error: CorralError): void {
    if (this.#answered) return;
    if (this.#res.headersSent) {
      this.#answered = true;
      this.error = error.code;
      this.#res.destroy();
      return;
    }
    this.#sendError(error);
  }

  pauseInput(): void {
    this.#req.pause();
  }

  resumeInput(): void {
    this.#req.resume();
  }

  /**
   * The front gives up on this request on its own (bad head, body too large): the client gets
   * `error` (or a cut response if the head went out), and the worker is told to abort.
   */
  giveUp(error: CorralError, headers: Record<string, string> = {}): void {
    if (this.#answered) return;
    this.#giveUp(error, headers);
  }

  /** The access record, once the response is over. */
  record(startedAt: number): RequestRecord {
    const now = performance.now();
    return {
      app: this.exchange?.app ?? null,
      method: this.#req.method ?? '-',
      path: this.#req.url ?? '-',
      status: this.#res.statusCode,
      bytes: this.bytes,
      durationMs: now - startedAt,
      ...exchangeFacts(this.exchange, now),
      error: this.error,
    };
  }

  #giveUp(error: CorralError, headers: Record<string, string> = {}): void {
    if (this.#res.headersSent) {
      this.#answered = true;
      this.error = error.code;
      this.#res.destroy();
    } else this.#sendError(error, headers);
    // After answering: aborting a queued exchange ends it at once, and its end() must find us answered.
    this.exchange?.abort();
  }

  #hold(body: Buffer, credit: number): void {
    if (this.#devtraceBytes + body.length <= MAX_DEVTRACE) this.#devtrace?.push(body);
    this.#devtraceBytes += body.length;
    this.#credit(credit);
  }

  /** Dev: the app raised; its facts are rendered as the dev page (the worker already logged the traceback). */
  #sendDevPage(): void {
    const held = this.#devtrace ?? [];
    this.#devtrace = null;
    const trace = this.#devtraceBytes <= MAX_DEVTRACE ? parseDevTraceJson(Buffer.concat(held)) : null;
    const first = trace?.exceptions[0];
    const error = new CorralError('CORRAL_APP_EXCEPTION', first ? `${first.type}: ${first.message}` : 'the app raised an exception (its facts could not be read; the traceback is in the log)', trace ? { trace, detail: trace.text } : {});
    this.#sendError(error, {}, false);
  }

  #devContext(): DevContext {
    const gen = this.#opts.devGeneration?.() ?? null;
    return { generation: gen?.generation ?? null, method: this.#req.method ?? 'GET', path: this.#req.url ?? null };
  }

  #write(body: Buffer, credit: number): void {
    this.bytes += body.length;
    let flushed = true;
    if (body.length > 0 && !this.#guard('write', () => (flushed = this.#res.write(body)))) return;
    if (flushed) this.#credit(credit);
    else this.#res.once('drain', () => this.#credit(credit));
  }

  #credit(n: number): void {
    this.exchange?.credit(n);
  }

  /** Runs one call into `res`; if Node throws, only this request pays. Returns false when it threw. */
  #guard(call: string, fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.#log.warn({ app: this.exchange?.app ?? null, path: this.#req.url, call, err: message }, 'HTTP front could not pass the response on; only this request fails');
      this.#giveUp(new CorralError('CORRAL_BAD_RESPONSE', `the HTTP layer refused the app's response (${call}): ${message}`));
      return false;
    }
  }

  /** `log`: false when the worker already logged it (an app exception's traceback). */
  #sendError(error: CorralError, extra: Record<string, string> = {}, log = true): void {
    this.#answered = true;
    this.error = error.code;
    if (this.#res.headersSent) return;
    // The client gets the code (and in dev the message); the log gets the message and any traceback.
    if (log) this.#log.info({ app: this.exchange?.app ?? null, path: this.#req.url, code: error.code, err: error.message, ...(error.detail ? { detail: error.detail } : {}) }, 'request failed');
    const dev = this.#opts.devErrors;
    const { type, body, headers: pageHeaders } = errorBody(error, dev, dev ? this.#devContext() : undefined);
    const headers: Record<string, string | number> = { ...extra, ...pageHeaders, 'content-type': type, 'content-length': body.length, 'x-corral-error': error.code };
    this.bytes += body.length;
    if (error.retryAfter !== undefined) headers['retry-after'] = error.retryAfter;
    try {
      this.#res.writeHead(clientStatus(error, this.#opts.devErrors), headers);
      this.#res.end(body);
    } catch (err) {
      this.#log.error({ path: this.#req.url, err: err instanceof Error ? err.message : String(err) }, 'HTTP front could not send its own error page');
      this.#res.destroy();
    }
  }
}

/**
 * Ends a response whose body was cut short: what was written still reaches the client (a dev
 * page's "the app raised" marker is the last of it), then the connection closes without the end
 * of the body, so the client sees it incomplete. destroy() would drop what is still buffered.
 * A client that stops reading is cut off after CUT_SHORT_FLUSH_MS.
 */
function cutShort(res: http.ServerResponse): void {
  const socket = res.socket;
  if (!socket || socket.destroyed) {
    res.destroy();
    return;
  }
  const timer = setTimeout(() => socket.destroy(), CUT_SHORT_FLUSH_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.end();
}

const CUT_SHORT_FLUSH_MS = 10_000;
