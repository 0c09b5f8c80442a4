/**
 * Hand-built log lines for the hot path (the access line, one per request), byte for byte what
 * pino would write for the same logger, fields and message, without its per-call work: pino
 * walks the object it is given, checks every value's type and serializers, and formats the time
 * anew for each line. The line goes to the logger's own destination (on stdout the turn writer,
 * which batches the lines of one event-loop turn into one write), so it stays in order with
 * everything else the service logs.
 *
 * Only loggers configured the plain way (createLogger's: no mixin, hooks, redaction, custom
 * stringifiers, nested key or message prefix, a destination that needs no metadata) get one;
 * for any other `fastLine` returns null and the caller logs through pino.
 */
import { pino, type Logger } from 'pino';

const S = pino.symbols;
// In pino's symbols at run time, missing from its type declarations.
const msgPrefixSym = (pino.symbols as unknown as Record<string, symbol | undefined>).msgPrefixSym;

/** Writes complete lines for one logger at one level. */
export interface FastLine {
  /** Whether the logger's level lets lines of this level through now. */
  readonly enabled: boolean;
  /** Writes `{level, time, bindings..., <fields>, msg}`; `fields` is `,"key":value...` (each built with jsonString/jsonNumber). */
  write(fields: string, msg: string): void;
}

/** The internals of a pino logger this module reads (all through pino.symbols, pino's public handles on them). */
type PinoInternals = Record<symbol, unknown>;

/**
 * A FastLine for `log` at `level` ('info'...), or null when the logger is configured in a way
 * this does not reproduce.
 */
export function fastLine(log: Logger, level: string): FastLine | null {
  const l = log as unknown as PinoInternals;
  const num = log.levels.values[level];
  const prefix = (l[S.lsCacheSym] as Record<number, string> | undefined)?.[num ?? -1];
  const chindings = l[S.chindingsSym];
  const end = l[S.endSym];
  const time = l[S.timeSym];
  const stream = l[S.streamSym] as { write(s: string): void } & PinoInternals;
  const formatters = l[S.formattersSym] as { log?: unknown } | undefined;
  const hooks = l[S.hooksSym] as { logMethod?: unknown; streamWrite?: unknown } | undefined;
  const stringifiers = l[S.stringifiersSym] as object | undefined;
  const plain =
    num !== undefined &&
    typeof prefix === 'string' &&
    typeof chindings === 'string' &&
    typeof end === 'string' &&
    typeof time === 'function' &&
    typeof stream?.write === 'function' &&
    !stream[S.needsMetadataGsym] &&
    l[S.messageKeySym] === 'msg' &&
    !l[S.nestedKeySym] &&
    !l[S.mixinSym] &&
    (msgPrefixSym === undefined || !l[msgPrefixSym]) &&
    !formatters?.log &&
    !hooks?.logMethod &&
    !hooks?.streamWrite &&
    (stringifiers === undefined || Object.keys(stringifiers).length === 0);
  if (!plain) return null;
  const timeField = time === pino.stdTimeFunctions.isoTime ? isoTimeField : (time as () => string);
  return {
    get enabled() {
      return log.isLevelEnabled(level);
    },
    write(fields, msg) {
      stream.write(`${prefix}${timeField()}${chindings}${fields},"msg":${jsonString(msg)}${end}`);
    },
  };
}

// pino's isoTime (`,"time":"<ISO 8601>"`), formatted once per millisecond: under load many lines share one.
let lastMs = -1;
let lastField = '';
function isoTimeField(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastField = `,"time":"${new Date(ms).toISOString()}"`;
  }
  return lastField;
}

/**
 * A string value as pino writes it: quoted as is when it holds no quote, backslash or control
 * character; JSON.stringify when it is long or holds a control character; otherwise quote and
 * backslash escaped. (Same bytes as pino, so lines built here and by pino read alike.)
 */
export function jsonString(s: string): string {
  const n = s.length;
  if (n > 100) return JSON.stringify(s);
  let plain = true;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 32) return JSON.stringify(s);
    if (c === 34 || c === 92) plain = false;
  }
  return plain ? `"${s}"` : `"${s.replace(/["\\]/g, '\\$&')}"`;
}

/** A number value as pino writes it (null when not finite). */
export function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}
