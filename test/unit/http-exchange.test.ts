/** The HTTP front's backstop: whatever Node's http layer throws costs only that request. */
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { HttpExchange } from '../../src/front/http-exchange.js';
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
