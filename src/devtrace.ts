/**
 * The facts of a Python exception as the worker collects them in `corral dev`
 * (src/python/corral_wsgi/devtrace.py): the chain, frames with source and locals, a SyntaxError's
 * caret, the request. The worker sends them as JSON (in CORRAL_FATAL for an import failure, as
 * the body of a request's 500); the dev page (src/front/dev-page.ts) renders them. Parsed
 * defensively: what does not have the expected shape is dropped, never trusted.
 */

/** The media type of a worker's 500 body that carries these facts (dev only). */
export const DEVTRACE_TYPE = 'application/vnd.corral.devtrace+json';

export type FrameKind = 'app' | 'library' | 'corral' | 'stdlib' | 'frozen';

export interface SourceLines {
  /** Line number of lines[0]. */
  start: number;
  lines: string[];
}

export interface DevFrame {
  file: string;
  line: number;
  function: string;
  kind: FrameKind;
  source: SourceLines | null;
  /** [name, repr] of an app frame's locals; null for other frames. */
  locals: Array<[string, string]> | null;
  /** Some locals were left out (the per-frame size cap). */
  localsCut: boolean;
}

export interface DevSyntax {
  file: string;
  line: number;
  offset: number | null;
  endOffset: number | null;
  text: string;
  source: SourceLines | null;
}

export interface DevException {
  type: string;
  message: string;
  /** How this exception led to the one before it in the list: its `__cause__`, or its `__context__`. */
  via: 'cause' | 'context' | null;
  /** Outermost call first, as Python prints them. */
  frames: DevFrame[];
  syntax: DevSyntax | null;
}

export interface DevRequest {
  method: string;
  path: string;
  query: string;
  headers: Array<[string, string]>;
  environ: Array<[string, string]>;
}

export interface DevTrace {
  /** The raised exception first, then its cause or context, and so on. */
  exceptions: DevException[];
  request: DevRequest | null;
  /** The interpreter that ran the app (path and version). */
  python: string;
  /** What the worker left out to keep the facts small (e.g. 'locals'). */
  cut: string[];
  /** The traceback as Python prints it. */
  text: string;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function int(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}

function pairs(v: unknown): Array<[string, string]> {
  if (!Array.isArray(v)) return [];
  const out: Array<[string, string]> = [];
  for (const p of v) if (Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string') out.push([p[0], p[1]]);
  return out;
}

function source(v: unknown): SourceLines | null {
  if (!isObj(v) || int(v.start) === null || !Array.isArray(v.lines)) return null;
  return { start: int(v.start)!, lines: v.lines.map(str) };
}

const KINDS = new Set<string>(['app', 'library', 'corral', 'stdlib', 'frozen']);

function frame(v: unknown): DevFrame | null {
  if (!isObj(v)) return null;
  return {
    file: str(v.file),
    line: int(v.line) ?? 0,
    function: str(v.function),
    kind: (KINDS.has(str(v.kind)) ? str(v.kind) : 'app') as FrameKind,
    source: source(v.source),
    locals: Array.isArray(v.locals) ? pairs(v.locals) : null,
    localsCut: v.localsCut === true,
  };
}

function syntax(v: unknown): DevSyntax | null {
  if (!isObj(v)) return null;
  return { file: str(v.file), line: int(v.line) ?? 0, offset: int(v.offset), endOffset: int(v.endOffset), text: str(v.text), source: source(v.source) };
}

function exception(v: unknown): DevException | null {
  if (!isObj(v)) return null;
  return {
    type: str(v.type) || 'Exception',
    message: str(v.message),
    via: v.via === 'cause' || v.via === 'context' ? v.via : null,
    frames: Array.isArray(v.frames) ? v.frames.map(frame).filter((f): f is DevFrame => f !== null) : [],
    syntax: syntax(v.syntax),
  };
}

/** The facts from parsed JSON, or null when it is not a devtrace at all. */
export function parseDevTrace(v: unknown): DevTrace | null {
  if (!isObj(v) || v.version !== 1 || !Array.isArray(v.exceptions)) return null;
  const exceptions = v.exceptions.map(exception).filter((e): e is DevException => e !== null);
  if (exceptions.length === 0) return null;
  const r = v.request;
  const request = isObj(r) ? { method: str(r.method), path: str(r.path), query: str(r.query), headers: pairs(r.headers), environ: pairs(r.environ) } : null;
  return { exceptions, request, python: str(v.python), cut: Array.isArray(v.cut) ? v.cut.map(str) : [], text: str(v.text) };
}

/** parseDevTrace of JSON bytes (a worker's 500 body); null if they do not parse. */
export function parseDevTraceJson(bytes: Buffer): DevTrace | null {
  try {
    return parseDevTrace(JSON.parse(bytes.toString('utf8')) as unknown);
  } catch {
    return null;
  }
}
