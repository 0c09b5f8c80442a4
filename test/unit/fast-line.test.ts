import { afterEach, describe, expect, it, vi } from 'vitest';
import { pino, type Logger } from 'pino';
import { fastLine, jsonString } from '../../src/log/fast-line.js';
import { accessFields, accessLogger, type RequestRecord } from '../../src/front/access-log.js';
import { createLogger } from '../../src/log/logger.js';

/** A logger configured as createLogger's, writing into `lines`. */
function capture(lines: string[], opts: Partial<pino.LoggerOptions> = {}): Logger {
  return createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(s) }, ...(opts as object) });
}

const STRINGS = [
  '',
  '/hello',
  '/a"b',
  '/back\\slash',
  '/"\\"',
  '/tab\there',
  '/nl\n',
  '/\u0000nul',
  '/é/ü/日本',
  '/\u2028\u2029',
  '/lone\ud800surrogate',
  '/x'.repeat(50),
  `/${'y'.repeat(99)}`,
  `/${'z'.repeat(120)}"`,
  `/long\ud800${'q'.repeat(120)}`,
  '/%22?a=1&b="2"',
];

describe('fastLine', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('writes what pino writes for the same logger, fields and message', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-06T10:11:12.345Z'));
    const viaPino: string[] = [];
    const viaFast: string[] = [];
    const a = capture(viaPino).child({ pool: 'app"1' }).child({ kind: 'access' });
    const b = capture(viaFast).child({ pool: 'app"1' }).child({ kind: 'access' });
    const line = fastLine(b, 'info');
    expect(line).not.toBeNull();
    for (const s of STRINGS) {
      a.info({ path: s }, s);
      line!.write(`,"path":${jsonString(s)}`, s);
    }
    expect(viaFast).toEqual(viaPino);
    expect(viaFast.length).toBe(STRINGS.length);
    for (const l of viaFast) expect(l.endsWith('}\n')).toBe(true);
    expect(JSON.parse(viaFast[0]!)).toMatchObject({ level: 'info', time: '2026-12-06T10:11:12.345Z', svc: 'corral', pool: 'app"1', kind: 'access', path: '', msg: '' });
  });

  it('formats the time anew when the millisecond changes', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const lines: string[] = [];
    const line = fastLine(capture(lines), 'info')!;
    vi.setSystemTime(new Date('2026-12-06T10:11:12.345Z'));
    line.write('', 'a');
    vi.setSystemTime(new Date('2026-12-06T10:11:12.346Z'));
    line.write('', 'b');
    expect(lines.map((l) => JSON.parse(l).time)).toEqual(['2026-12-06T10:11:12.345Z', '2026-12-06T10:11:12.346Z']);
  });

  it('follows the logger level', () => {
    const lines: string[] = [];
    const log = capture(lines);
    const line = fastLine(log, 'info')!;
    expect(line.enabled).toBe(true);
    log.level = 'warn';
    expect(line.enabled).toBe(false);
    log.level = 'debug';
    expect(line.enabled).toBe(true);
  });

  it('declines loggers it does not reproduce (mixin, message prefix, log formatter, redaction-free custom time is fine)', () => {
    const sink = { write: () => undefined };
    expect(fastLine(pino({ mixin: () => ({ x: 1 }) }, sink), 'info')).toBeNull();
    expect(fastLine(pino({ formatters: { log: (o) => o } }, sink), 'info')).toBeNull();
    expect(fastLine(pino({ nestedKey: 'payload' }, sink), 'info')).toBeNull();
    expect(fastLine(pino({ messageKey: 'message' }, sink), 'info')).toBeNull();
    expect(fastLine(pino({ msgPrefix: '[x] ' }, sink), 'info')).toBeNull();
    expect(fastLine(pino({ hooks: { logMethod: (args, m) => m.apply(undefined as never, args) } }, sink), 'info')).toBeNull();
    // A custom time function is called as pino would call it.
    const lines: string[] = [];
    const custom = pino({ base: null, timestamp: () => ',"time":42' }, { write: (s: string) => void lines.push(s) });
    fastLine(custom, 'info')!.write(',"a":1', 'm');
    custom.info({ a: 1 }, 'm');
    expect(lines[0]).toBe(lines[1]);
  });
});

describe('accessLogger', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const base: RequestRecord = { app: 'hello:application', method: 'GET', path: '/hello', status: 200, bytes: 12, durationMs: 1.23456, pid: 4242, queueMs: 0.004999, error: null };
  const records: RequestRecord[] = [
    base,
    { ...base, app: null, pid: null, queueMs: null, status: 503, error: 'CORRAL_QUEUE_FULL' },
    { ...base, method: '-', path: '-', status: 0, bytes: 0, durationMs: 0, queueMs: 0 },
    { ...base, path: '/q?x="1"\\', durationMs: 12345.678901, queueMs: 3.333 },
    { ...base, path: '/ctl\u0001', app: 'a"pp', error: '' },
    { ...base, durationMs: Number.NaN, queueMs: Number.POSITIVE_INFINITY },
    { ...base, path: `/${'p'.repeat(300)}` },
  ];

  it('writes the line pino writes for the access fields', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-06T10:11:12.345Z'));
    const viaFast: string[] = [];
    const viaPino: string[] = [];
    const observe = accessLogger(capture(viaFast));
    const plain = capture(viaPino).child({ kind: 'access' });
    for (const r of records) {
      observe(r);
      plain.info(accessFields(r), 'request');
    }
    expect(viaFast).toEqual(viaPino);
    expect(viaFast.length).toBe(records.length);
    expect(JSON.parse(viaFast[0]!)).toEqual({ level: 'info', time: '2026-12-06T10:11:12.345Z', svc: 'corral', kind: 'access', app: 'hello:application', method: 'GET', path: '/hello', status: 200, bytes: 12, ms: 1.23, pid: 4242, queueMs: 0, msg: 'request' });
    expect(JSON.parse(viaFast[1]!)).toMatchObject({ app: null, pid: null, queueMs: null, status: 503, error: 'CORRAL_QUEUE_FULL' });
    expect(JSON.parse(viaFast[4]!).error).toBeUndefined();
  });

  it('logs nothing when the level is above info, and goes through pino for loggers it does not reproduce', () => {
    const lines: string[] = [];
    const log = capture(lines);
    log.level = 'warn';
    accessLogger(log)(base);
    expect(lines).toEqual([]);
    const other: string[] = [];
    const mixed = pino({ base: null, mixin: () => ({ extra: 1 }) }, { write: (s: string) => void other.push(s) });
    accessLogger(mixed)(base);
    expect(JSON.parse(other[0]!)).toMatchObject({ extra: 1, kind: 'access', path: '/hello', msg: 'request' });
  });
});
