/**
 * The error catalogue: every error a client or an operator can see, with a stable code, the
 * HTTP status it maps to and what it means. docs/errors.md is generated from this table.
 */
import type { DevTrace } from './devtrace.js';

/** One catalogue entry. */
export interface ErrorSpec {
  readonly status: number;
  readonly title: string;
  readonly doc: string;
}

/** Stable codes. Never renumber or reuse a code; add new ones at the end. */
export const ERRORS = {
  CORRAL_WORKER_LOST: {
    status: 502,
    title: 'Bad Gateway',
    doc: 'The Python worker serving the request exited (crash, kill, out of memory) before it finished the response. Other requests are unaffected; the worker is replaced.',
  },
  CORRAL_APP_IMPORT_FAILED: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The app could not be imported (ImportError, SyntaxError, missing callable). The pool is `failed`; the traceback is in the log once; it retries slowly and at once on reload.',
  },
  CORRAL_WORKER_BOOT_FAILED: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The worker process could not start (python not found, bad arguments, missing app directory). The pool is `failed` and retries slowly.',
  },
  CORRAL_RAPID_FAIL: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'Workers of the app exited unexpectedly more than `rapidFailsPerMinute` times within a minute (like IIS rapid-fail protection). The pool is `failed` and retries slowly.',
  },
  CORRAL_QUEUE_FULL: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'Every worker thread is busy and the queue holds `queueLength` requests. Sent with Retry-After.',
  },
  CORRAL_QUEUE_TIMEOUT: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The request waited `queueTimeout` seconds for a free worker thread.',
  },
  CORRAL_REQUEST_TIMEOUT: {
    status: 504,
    title: 'Gateway Timeout',
    doc: 'The app took longer than `requestTimeout`; its worker was stopped and replaced.',
  },
  CORRAL_STOPPING: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The service is stopping and takes no new requests.',
  },
  CORRAL_BAD_RESPONSE: {
    status: 502,
    title: 'Bad Gateway',
    doc: 'The app sent a response head the HTTP front cannot pass on: malformed CGI headers, a status outside 200..599 (a CGI response is the final one, so 1xx is refused too), a control byte in the reason phrase or a header value, a header name that is not a token, or two different `Content-Length`s. Only that request fails; the log names the app and shows the bytes. Hop-by-hop headers (`Transfer-Encoding`, `Connection`...) are dropped, not refused. Behind a FastCGI web server the head passes through untouched and the web server judges it.',
  },
  CORRAL_PARAMS_TOO_LARGE: {
    status: 431,
    title: 'Request Header Fields Too Large',
    doc: 'The FastCGI params of one request exceed `maxParamsBytes`; that request is answered 431 and the rest of its params ignored, other requests on the connection go on.',
  },
  CORRAL_FCGI_PROTOCOL: {
    status: 400,
    title: 'Bad Request',
    doc: 'A front connection sent bytes that are not valid FastCGI; that connection is closed, the service keeps running.',
  },
  CORRAL_DEPLOY_FAILED: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The app\'s DEPLOY_FILE script (run before a generation starts) failed; that generation does not start. On a reload the old generation keeps serving; otherwise the pool is `failed` and retries slowly. Its output is in DEPLOY_LOG.',
  },
  CORRAL_ROOT_NOT_ALLOWED: {
    status: 403,
    title: 'Forbidden',
    doc: 'The request names an app directory (IIS `APPL_PHYSICAL_PATH`) outside `allowedRoots`, or per-app settings that point outside them. No Python code runs for it.',
  },
  CORRAL_NO_APP: {
    status: 404,
    title: 'Not Found',
    doc: 'The service has no app for this request: it names none (`APPL_PHYSICAL_PATH`) and the service was started without an app directory.',
  },
  CORRAL_BAD_APP_SETTINGS: {
    status: 500,
    title: 'Internal Server Error',
    doc: "The app's own settings (web.config `<appSettings>` or IIS environment variables carried by the relay) are invalid; the log names each one.",
  },
  CORRAL_SERVICE_UNREACHABLE: {
    status: 502,
    title: 'Bad Gateway',
    doc: '`corral relay` (the program IIS starts) could not reach the corral service within about 10 s (not running and not auto-started, or it exited), or lost its connection in the middle of the request. The relay log says why.',
  },
  CORRAL_BODY_TOO_LARGE: {
    status: 413,
    title: 'Content Too Large',
    doc: 'The request body is larger than `maxBodySize`: its `CONTENT_LENGTH` says so (answered before the app runs) or the body grew past it (the request is aborted). On the HTTP front the connection is closed after the answer.',
  },
  CORRAL_OVERLOADED: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The service holds `maxBufferedBytes` of request data from all connections together (params not yet routed, bodies not yet taken by a worker); new requests are refused until that drains.',
  },
  CORRAL_PARAMS_TIMEOUT: {
    status: 408,
    title: 'Request Timeout',
    doc: 'A FastCGI client did not finish a request\'s params within `paramsTimeout` of its BEGIN_REQUEST (or left a record half-sent that long): its connection is closed (the slowloris guard). Logged, not answered.',
  },
  CORRAL_BODY_TIMEOUT: {
    status: 408,
    title: 'Request Timeout',
    doc: 'A FastCGI client sent nothing for `bodyTimeout` while a request body was incomplete: the request is aborted (the app\'s read raises) and the connection closed.',
  },
  CORRAL_TOO_MANY_CONNECTIONS: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'A FastCGI listener already has `maxConnections` connections open: a new one is closed as soon as it is accepted. Logged once per peer a minute.',
  },
  CORRAL_TOO_MANY_APPS: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The request names a new app under `allowedRoots` but `maxApps` apps started by requests are running. It can start once an idle one is reaped (`appIdleTimeout`). No Python code runs for it. Sent with Retry-After.',
  },
  CORRAL_WORKER_LIMIT: {
    status: 503,
    title: 'Service Unavailable',
    doc: 'The request names a new app, but the service-wide `maxTotalWorkers` budget has too few workers left for its minimum (at least one). No Python code runs for it. Sent with Retry-After.',
  },
  CORRAL_BAD_PAIRING_TOKEN: {
    status: 400,
    title: 'Bad Request',
    doc: 'Started by the ASP.NET Core Module (`ASPNETCORE_TOKEN` set), the HTTP front got a request without the matching `MS-ASPNETCORE-TOKEN` header: it did not come through IIS. No Python code runs for it.',
  },
  CORRAL_OUTSIDE_MOUNT: {
    status: 404,
    title: 'Not Found',
    doc: 'The HTTP front serves the app under `mount` (or ANCM\'s `ASPNETCORE_APPL_PATH`) and the request path is outside that prefix. No Python code runs for it.',
  },
  CORRAL_APP_EXCEPTION: {
    status: 500,
    title: 'Internal Server Error',
    doc: 'The app raised an exception while handling the request (or while producing its body, before anything was sent). The worker answers 500 and logs the traceback; in `corral dev` the page shows the exception chain, the app\'s frames with their source and locals, and the request. An exception after the response started cuts the response instead.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error with a catalogue code; `message` quotes the value that caused it. */
export class CorralError extends Error {
  readonly code: ErrorCode;
  /** Extra detail for dev pages (e.g. a Python traceback); never sent to clients in serve mode. */
  readonly detail: string | undefined;
  /** Seconds for a Retry-After header, when it applies. */
  readonly retryAfter: number | undefined;
  /** The Python exception's facts for the dev page (an import failure in `corral dev`). */
  readonly trace: DevTrace | undefined;

  constructor(code: ErrorCode, message: string, opts: { detail?: string; retryAfter?: number; trace?: DevTrace } = {}) {
    super(message);
    this.name = 'CorralError';
    this.code = code;
    this.detail = opts.detail;
    this.retryAfter = opts.retryAfter;
    this.trace = opts.trace;
  }

  /** The HTTP status this error maps to. */
  get status(): number {
    return ERRORS[this.code].status;
  }
}
