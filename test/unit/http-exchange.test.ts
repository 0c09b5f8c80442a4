/** The HTTP front's backstop: whatever Node's http layer throws costs only that request. */
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { HttpExchange } from '../../src/front/http-exchange.js';
import { CorralError } from '../../src/errors.js';
import { DEVTRACE_TYPE } from '../../src/devtrace.js';
import type { Logger } from '../../src/log/logger.js';

interface Call {
  what: string;
  args: unknown[];
}

/** A ServerResponse stand-in whose writeHead / write / end throw when told to. */
function fakeRes(throwOn: Set<string>): { res: http.ServerResponse; calls: Call[] } {
  const calls: Call[] = [];
  const res = Object.assign(new EventEmitter(), {
    headersSent: false,
    statusCode: 200,
    writeHead(...args: unknown[]) {
      calls.push({ what: 'writeHead', args });
      if (throwOn.has('writeHead')) {
        throwOn.delete('writeHead');
        throw new TypeError('Invalid character in header content ["X-A"]');
      }
      res.headersSent = true;
      res.statusCode = args[0] as number;
      return res;
    },
    write(...args: unknown[]) {
      calls.push({ what: 'write', args });
      if (throwOn.has('write')) throw new Error('write refused');
      return true;
    },
    end(...args: unknown[]) {
      calls.push({ what: 'end', args });
      if (throwOn.has('end')) throw new Error('end refused');
      return res;
    },
    destroy() {
      calls.push({ what: 'destroy', args: [] });
      return res;
    },
  });
  return { res: res as unknown as http.ServerResponse, calls };
}

function recordingLog(): { log: Logger; lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> } {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, obj, msg });
  return { log: { warn: at('warn'), info: at('info'), error: at('error') } as unknown as Logger, lines };
}

const req = { url: '/x', method: 'GET', pause: () => undefined, resume: () => undefined } as unknown as http.IncomingMessage;

describe('HttpExchange guards every call into res', () => {
  it('a writeHead that throws becomes a 502 with X-Corral-Error, logged', () => {
    const { res, calls } = fakeRes(new Set(['writeHead']));
    const { log, lines } = recordingLog();
    const sink = new HttpExchange(req, res, { devErrors: false }, log);
    expect(() => sink.stdout(Buffer.from('Status: 200 OK\r\n\r\nbody'))).not.toThrow();
    const second = calls.filter((c) => c.what === 'writeHead')[1];
    expect(second?.args[0]).toBe(502);
    expect((second?.args[1] as Record<string, string>)['x-corral-error']).toBe('CORRAL_BAD_RESPONSE');
    expect(lines.some((l) => l.level === 'warn' && l.obj.call === 'writeHead')).toBe(true);
    // The worker's END_REQUEST that follows changes nothing.
    expect(() => sink.end()).not.toThrow();
    expect(calls.filter((c) => c.what === 'end')).toHaveLength(1);
  });

  it('a write that throws after the head cuts that response only', () => {
    const { res, calls } = fakeRes(new Set(['write']));
    const { log, lines } = recordingLog();
    const sink = new HttpExchange(req, res, { devErrors: false }, log);
    expect(() => sink.stdout(Buffer.from('Status: 200 OK\r\n\r\nbody'))).not.toThrow();
    expect(calls.map((c) => c.what)).toEqual(['writeHead', 'write', 'destroy']);
    expect(lines.some((l) => l.level === 'warn' && l.obj.call === 'write')).toBe(true);
    expect(() => sink.stdout(Buffer.from('more'))).not.toThrow();
    expect(() => sink.end()).not.toThrow();
  });

  it('an end that throws is logged, not thrown', () => {
    const { res, calls } = fakeRes(new Set(['end']));
    const { log } = recordingLog();
    const sink = new HttpExchange(req, res, { devErrors: false }, log);
    sink.stdout(Buffer.from('Status: 200 OK\r\n\r\n'));
    expect(() => sink.end()).not.toThrow();
    expect(calls.at(-1)?.what).toBe('destroy');
  });
});

describe("HttpExchange's own answers", () => {
  it("counts the bytes of corral's error page in the access record (not 0)", () => {
    const { res, calls } = fakeRes(new Set());
    const { log } = recordingLog();
    const sink = new HttpExchange(req, res, { devErrors: false }, log);
    sink.fail(new CorralError('CORRAL_QUEUE_FULL', 'queue full', { retryAfter: 1 }));
    const sent = calls.find((c) => c.what === 'end')!.args[0] as Buffer;
    expect(sent.length).toBeGreaterThan(0);
    expect(sink.record(performance.now()).bytes).toBe(sent.length);
  });

  it("dev: a worker's devtrace 500 is rendered as the dev page with the code, the generation to wait past and a CSP", () => {
    const { res, calls } = fakeRes(new Set());
    const { log, lines } = recordingLog();
    const sink = new HttpExchange(req, res, { devErrors: true, devGeneration: () => ({ generation: 4, state: 'running' }) }, log);
    const facts = JSON.stringify({ version: 1, exceptions: [{ type: 'ValueError', message: 'no <b>', via: null, frames: [], syntax: null }], request: null, python: '', cut: [], text: 'Traceback' });
    sink.stdout(Buffer.from(`Status: 500 Internal Server Error\r\nContent-Type: ${DEVTRACE_TYPE}\r\nX-Corral-Error: CORRAL_APP_EXCEPTION\r\n\r\n${facts.slice(0, 20)}`));
    sink.stdout(Buffer.from(facts.slice(20)));
    expect(calls.filter((c) => c.what === 'write')).toEqual([]); // held until the end
    sink.end(0);
    const head = calls.find((c) => c.what === 'writeHead')!.args;
    expect(head[0]).toBe(500);
    const headers = head[1] as Record<string, string>;
    expect(headers['x-corral-error']).toBe('CORRAL_APP_EXCEPTION');
    expect(headers['Content-Security-Policy']).toMatch(/script-src 'nonce-/);
    const html = (calls.find((c) => c.what === 'end')!.args[0] as Buffer).toString();
    expect(html).toContain('<h1>ValueError</h1>');
    expect(html).toContain('no &#60;b&#62;');
    expect(html).toContain('var g=4');
    expect(sink.record(performance.now()).bytes).toBe(Buffer.byteLength(html));
    // The worker logged the traceback; the front does not log the request again as failed.
    expect(lines.filter((l) => l.msg === 'request failed')).toEqual([]);
  });

  it('serve: a 500 with that content type passes through untouched', () => {
    const { res, calls } = fakeRes(new Set());
    const { log } = recordingLog();
    const sink = new HttpExchange(req, res, { devErrors: false }, log);
    sink.stdout(Buffer.from(`Status: 500 Internal Server Error\r\nContent-Type: ${DEVTRACE_TYPE}\r\n\r\n{}`));
    expect((calls.find((c) => c.what === 'write')!.args[0] as Buffer).toString()).toBe('{}');
  });
});
