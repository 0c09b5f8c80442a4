/**
 * The control endpoints. Reads (`/status`, `/status.json`, `/metrics`, `/healthz`) come from one
 * synchronous snapshot of the pools and never wait on a worker; writes (`POST /reload`,
 * `POST /stop`) need the bearer token. Reads without the token get a redacted document (no app
 * directories, error messages or tracebacks), or 401 under `controlReadAccess: token`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log/logger.js';
import type { PromMetrics } from './metrics.js';
import { redact, selectApps, snapshot, type ErrorInfo, type ServiceFacts, type StatusDocument } from './snapshot.js';
import { renderStatusPage } from './status-page.js';
import type { ControlApp, ControlTarget } from './target.js';
import { checkBearer } from './token.js';

/** What the handlers work with. */
export interface RouteContext {
  readonly target: ControlTarget;
  readonly metrics: PromMetrics;
  readonly facts: ServiceFacts;
  readonly token: string;
  readonly tokenFile: string;
  readonly log: Logger;
  /** `local`: reads without the token are redacted; `token`: they are refused (controlReadAccess). */
  readonly readAccess: ReadAccess;
}

/** The values of the controlReadAccess setting. */
export type ReadAccess = 'local' | 'token';

/** One reloaded app in the answer to `POST /reload`. */
export interface ReloadResult {
  name: string;
  root: string;
  /** The generation serving after the reload (the old one when it failed and the old one kept serving). */
  generation: number;
  error: ErrorInfo | null;
}

/** The body of every JSON answer to a write, and of every error. */
export interface ControlAnswer {
  ok: boolean;
  message: string;
  apps?: ReloadResult[];
}

const MAX_BODY = 4096;

/** Routes one request. Anything thrown becomes a 500 answer in the server. */
export async function handle(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const route = `${req.method ?? 'GET'} ${url.pathname.replace(/\/+$/, '') || '/'}`;
  switch (route) {
    case 'GET /':
    case 'HEAD /':
      res.writeHead(302, { location: 'status' }).end();
      return;
    case 'GET /status':
    case 'HEAD /status': {
      const doc = readFor(ctx, req, res, url);
      // A browser cannot send the header: a token given as ?token= stays in the page's own links.
      const viaQuery = doc && !doc.redacted && req.headers.authorization === undefined ? url.searchParams.get('token') : null;
      if (doc) sendHtml(res, renderStatusPage(doc, refreshOf(url), viaQuery));
      return;
    }
    case 'GET /status.json':
    case 'HEAD /status.json': {
      const doc = readFor(ctx, req, res, url);
      if (doc) sendJson(res, 200, doc);
      return;
    }
    case 'GET /metrics':
    case 'HEAD /metrics': {
      const doc = readFor(ctx, req, res, url);
      if (doc) send(res, 200, ctx.metrics.contentType, await ctx.metrics.text(doc));
      return;
    }
    case 'GET /healthz':
    case 'HEAD /healthz':
      // Open in both modes (load balancers probe it), but failure messages only with the token.
      return healthz(ctx, res, checkBearer(req.headers.authorization, ctx.token) === null);
    case 'POST /reload': {
      if (!authorized(ctx, req, res)) return;
      const app = await appParam(req, url);
      if (app instanceof Error) return sendJson(res, 400, { ok: false, message: app.message });
      return reload(ctx, res, app);
    }
    case 'POST /stop':
      if (!authorized(ctx, req, res)) return;
      return stop(ctx, res);
  }
  const allowed = ALLOW[url.pathname.replace(/\/+$/, '') || '/'];
  if (allowed) {
    res.setHeader('allow', allowed);
    return sendJson(res, 405, { ok: false, message: `${req.method ?? ''} is not allowed on ${url.pathname} (allowed: ${allowed})` });
  }
  sendJson(res, 404, { ok: false, message: `no such endpoint ${url.pathname}; there are /status, /status.json, /metrics, /healthz, POST /reload and POST /stop` });
}

const ALLOW: Record<string, string> = {
  '/': 'GET, HEAD',
  '/status': 'GET, HEAD',
  '/status.json': 'GET, HEAD',
  '/metrics': 'GET, HEAD',
  '/healthz': 'GET, HEAD',
  '/reload': 'POST',
  '/stop': 'POST',
};

/**
 * The status document this reader may see: whole with the token (the Authorization header, or
 * `?token=` for a browser, as Jupyter does); without it, redacted (`local`) or refused with 401
 * (`token`, and a wrong token in either mode), then null.
 */
function readFor(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, url: URL): StatusDocument | null {
  const doc = snapshot(ctx.target, ctx.facts);
  const fromQuery = url.searchParams.get('token');
  const header = req.headers.authorization ?? (fromQuery !== null ? `Bearer ${fromQuery}` : undefined);
  if (header === undefined && ctx.readAccess === 'local') return redact(doc);
  return authorized(ctx, req, res, header) ? doc : null;
}

function refreshOf(url: URL): number {
  const n = Number(url.searchParams.get('refresh') ?? '0');
  return Number.isInteger(n) && n > 0 ? Math.min(n, 3600) : 0;
}

/** 200 `ok`; 503 while draining, or when every app's pool is failed (load balancers should move traffic away). */
function healthz(ctx: RouteContext, res: ServerResponse, full: boolean): void {
  const t = ctx.target;
  if (t.draining) return send(res, 503, 'text/plain; charset=utf-8', 'draining\n');
  const failed = t.apps.filter((a) => a.pool.state === 'failed');
  if (t.apps.length > 0 && failed.length === t.apps.length) {
    return send(res, 503, 'text/plain; charset=utf-8', `failed: ${failed.map((a) => `${a.settings.wsgiApp}: ${(full ? a.pool.failure?.message : a.pool.failure?.code) ?? 'failed'}`).join('; ')}\n`);
  }
  send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
}

function authorized(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, header = req.headers.authorization): boolean {
  const why = checkBearer(header, ctx.token);
  if (why === null) return true;
  ctx.log.warn({ path: req.url, why }, 'control: refused a call without the right token');
  res.setHeader('www-authenticate', 'Bearer realm="corral"');
  sendJson(res, 401, { ok: false, message: `${why}: send Authorization: Bearer <token>, with the token the service wrote to ${ctx.tokenFile}` });
  return false;
}

/** `app=` from the query, a form body, or a JSON body `{"app": ...}`; null means every app; an Error a bad body. */
async function appParam(req: IncomingMessage, url: URL): Promise<string | null | Error> {
  const fromQuery = url.searchParams.get('app');
  if (fromQuery !== null) return fromQuery;
  const body = await readBody(req);
  if (body instanceof Error) return body;
  if (body.trim() === '') return null;
  if (!body.trim().startsWith('{')) return new URLSearchParams(body).get('app');
  try {
    const parsed = JSON.parse(body) as { app?: unknown } | null;
    return typeof parsed?.app === 'string' ? parsed.app : null;
  } catch (err) {
    return new Error(`the body is not valid JSON: ${(err as Error).message}`);
  }
}

async function readBody(req: IncomingMessage): Promise<string | Error> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) return new Error(`the body is over ${MAX_BODY} bytes; send app=NAME or {"app": "NAME"}`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function reload(ctx: RouteContext, res: ServerResponse, name: string | null): Promise<void> {
  const t = ctx.target;
  if (t.draining) return sendJson(res, 503, { ok: false, message: 'the service is stopping; nothing to reload' });
  const apps = selectApps(t.apps, name);
  if (apps.length === 0) {
    const known = t.apps.map((a) => `${a.settings.wsgiApp} (${a.settings.root})`).join(', ');
    return sendJson(res, 404, { ok: false, message: name === null ? 'no app is running' : `no app named ${JSON.stringify(name)}; running: ${known || 'none'}` });
  }
  ctx.log.info({ app: name ?? 'all', apps: apps.map((a) => a.settings.root) }, 'control: reload requested');
  const results = await Promise.all(apps.map((a) => reloadOne(a)));
  const failed = results.filter((r) => r.error !== null);
  const ok = failed.length === 0;
  const message = ok
    ? `reloaded ${results.map((r) => `${r.name}: generation ${r.generation} serving`).join('; ')}`
    : `reload failed: ${failed.map((r) => `${r.name}: ${r.error?.message ?? ''}`).join('; ')}`;
  const stopping = failed.some((r) => r.error?.code === 'CORRAL_STOPPING');
  sendJson(res, ok ? 200 : stopping ? 503 : 500, { ok, message, apps: results });
}

async function reloadOne(app: ControlApp): Promise<ReloadResult> {
  const err = await app.reload('reload requested over the control listener');
  const code = err && 'code' in err && typeof err.code === 'string' ? err.code : 'CORRAL_RELOAD_FAILED';
  const detail = err && 'detail' in err && typeof err.detail === 'string' ? err.detail : null;
  return {
    name: app.settings.wsgiApp,
    root: app.settings.root,
    generation: app.pool.servingGeneration,
    error: err ? { code, message: err.message, detail } : null,
  };
}

function stop(ctx: RouteContext, res: ServerResponse): void {
  ctx.log.info('control: stop requested');
  // Stop only once the answer is out: the service closes this listener last, but a client should not race it.
  res.once('finish', () => void ctx.target.stop());
  sendJson(res, 202, { ok: true, message: ctx.target.draining ? 'already stopping' : 'stopping: in-flight requests finish, then the workers stop' });
}

/** Sends JSON with no caching. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body, null, 2)}\n`);
}

function sendHtml(res: ServerResponse, html: string): void {
  // No script, no external asset: the page works (and stays safe) with everything but inline CSS forbidden.
  res.setHeader('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
  send(res, 200, 'text/html; charset=utf-8', html);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  const bytes = Buffer.from(body, 'utf8');
  res.writeHead(status, { 'content-type': type, 'content-length': bytes.length, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(res.req.method === 'HEAD' ? undefined : bytes);
}
