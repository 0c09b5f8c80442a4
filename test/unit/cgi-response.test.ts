import { describe, expect, it } from 'vitest';
import { CgiHeadParser, escapeBytes } from '../../src/front/cgi-response.js';

function parse(...chunks: string[]) {
  const p = new CgiHeadParser();
  let r = null;
  for (const c of chunks) r = p.push(Buffer.from(c, 'latin1'));
  return r;
}

describe('CgiHeadParser', () => {
  it('parses status, headers and keeps duplicates in order', () => {
    const r = parse('Status: 201 Created\r\nSet-Cookie: a=1\r\nContent-Type: text/plain\r\nSet-Cookie: b=2\r\n\r\nbody');
    expect(r).not.toBeNull();
    if (!r || 'error' in r) throw new Error('expected a head');
    expect(r.head.status).toBe(201);
    expect(r.head.reason).toBe('Created');
    expect(r.head.headers).toEqual([['Set-Cookie', 'a=1'], ['Content-Type', 'text/plain'], ['Set-Cookie', 'b=2']]);
    expect(r.rest.toString()).toBe('body');
  });
  it('waits for the blank line across chunks', () => {
    const p = new CgiHeadParser();
    expect(p.push(Buffer.from('Status: 200 OK\r\nX-A: 1\r'))).toBeNull();
    const r = p.push(Buffer.from('\n\r\nhi'));
    if (!r || 'error' in r) throw new Error('expected a head');
    expect(r.head.headers).toEqual([['X-A', '1']]);
    expect(r.rest.toString()).toBe('hi');
  });
  it('defaults to 200, and to 302 with a Location', () => {
    const a = parse('Content-Type: text/plain\r\n\r\n');
    const b = parse('Location: /x\r\n\r\n');
    if (!a || 'error' in a || !b || 'error' in b) throw new Error('expected heads');
    expect(a.head.status).toBe(200);
    expect(b.head.status).toBe(302);
  });
  it('accepts bare LF line ends', () => {
    const r = parse('Status: 404 Not Found\nContent-Type: text/plain\n\nnope');
    if (!r || 'error' in r) throw new Error('expected a head');
    expect(r.head.status).toBe(404);
    expect(r.rest.toString()).toBe('nope');
  });
  it.each([
    ['a line without a colon', 'garbage\r\n\r\n'],
    ['a bad header name', 'Bad Name: x\r\n\r\n'],
    ['a bad status', 'Status: OK\r\n\r\n'],
  ])('rejects %s', (_n, text) => {
    const r = parse(text);
    expect(r && 'error' in r).toBe(true);
  });
  it('rejects an endless head', () => {
    const p = new CgiHeadParser();
    let r = null;
    for (let i = 0; i < 100 && r === null; i++) r = p.push(Buffer.alloc(1024, 'a'));
    expect(r && 'error' in r).toBe(true);
  });
});

describe('CgiHeadParser: checked as strictly as Node checks writeHead', () => {
  it.each([
    ['a status below 100', 'Status: 099 X\r\n\r\n', '099 X'],
    ['status 000', 'Status: 000 X\r\n\r\n', '000 X'],
    ['a 1xx as the final status', 'Status: 103 Early Hints\r\n\r\n', '103'],
    ['a status above 599', 'Status: 600 X\r\n\r\n', '600'],
    ['\\x01 in the reason phrase', 'Status: 200 A\x01B\r\n\r\n', 'A\\x01B'],
    ['\\x7f in the reason phrase', 'Status: 200 A\x7fB\r\n\r\n', 'A\\x7fB'],
    ['\\x01 in a value', 'X-A: a\x01b\r\n\r\n', 'a\\x01b'],
    ['\\x7f in a value', 'X-A: a\x7fb\r\n\r\n', 'a\\x7fb'],
    ['a NUL in a value', 'X-A: a\x00b\r\n\r\n', 'a\\x00b'],
    ['a name with a space', 'Bad Name: x\r\n\r\n', 'Bad Name'],
    ['a name with a parenthesis', 'X(y): x\r\n\r\n', 'X(y)'],
    ['two different Content-Length values', 'Content-Length: 2\r\nContent-Length: 3\r\n\r\n', 'Content-Length: 3'],
    ['a Content-Length that is not a number', 'Content-Length: -1\r\n\r\n', '-1'],
    ['two Status lines', 'Status: 200 OK\r\nStatus: 404 No\r\n\r\n', '404'],
  ])('refuses %s and shows the bytes escaped', (_n, text, shown) => {
    const r = parse(text);
    if (!r || !('error' in r)) throw new Error('expected an error');
    expect(r.bytes).toContain(shown);
  });
  it('keeps HTAB and obs-text in values and reasons', () => {
    const r = parse('Status: 200 Ok\xe9\r\nX-A: a\tb\xff\r\n\r\n');
    if (!r || 'error' in r) throw new Error('expected a head');
    expect(r.head.reason).toBe('Ok\xe9');
    expect(r.head.headers).toEqual([['X-A', 'a\tb\xff']]);
  });
  it('drops hop-by-hop headers and a repeated identical Content-Length', () => {
    const r = parse('Content-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nKeep-Alive: x\r\nContent-Length: 05\r\nX-A: 1\r\n\r\n');
    if (!r || 'error' in r) throw new Error('expected a head');
    expect(r.head.headers).toEqual([['Content-Length', '5'], ['X-A', '1']]);
  });
  it('truncates the bytes it shows', () => {
    const r = parse(`X-A: \x01${'a'.repeat(500)}\r\n\r\n`);
    if (!r || !('error' in r)) throw new Error('expected an error');
    expect(r.bytes.length).toBeLessThanOrEqual(124);
    expect(r.bytes.endsWith('...')).toBe(true);
  });
});

describe('escapeBytes', () => {
  it('keeps printable ASCII and escapes the rest', () => {
    expect(escapeBytes('a\x01\x7f\\\xe9 z')).toBe('a\\x01\\x7f\\\\\\xe9 z');
  });
});
