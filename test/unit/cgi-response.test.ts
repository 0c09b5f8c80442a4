import { describe, expect, it } from 'vitest';
import { CgiHeadParser } from '../../src/front/cgi-response.js';

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
