/**
 * End to end with a second, independent FastCGI client: `cgi-fcgi -bind -connect` from
 * libfcgi-bin (the FastCGI reference library) against the real `corral serve` CLI and workers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, startCorral, stopAll, type CorralProcess } from '../helpers/corral.js';
import { header } from '../helpers/fcgi-client.js';
import { cgiFcgi } from '../helpers/nginx.js';
import { workersReady } from '../helpers/e2e.js';

describe('cgi-fcgi -> corral -> Python workers', () => {
  let corral: CorralProcess;
  let fcgi: { host: string; port: number };

  beforeAll(async () => {
    corral = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--listen', '127.0.0.1:0', '--workers', '1', '--threads', '2']);
    fcgi = await corral.fcgiAddress();
    await workersReady(corral, 1);
  });

  afterAll(stopAll);

  it('GET / answers the app', async () => {
    const r = await cgiFcgi(fcgi, 'GET', '/');
    expect(r.code, r.stderr).toBe(0);
    expect(r.status).toBe(200);
    expect(header(r, 'Content-Type')).toEqual(['text/plain']);
    expect(header(r, 'Content-Length')).toEqual(['12']);
    expect(r.body.toString()).toBe('Hello, world');
  });

  it('POST of 1 MiB to /sha256 arrives whole', async () => {
    const body = randomBytes(1024 * 1024);
    const r = await cgiFcgi(fcgi, 'POST', '/sha256', body);
    expect(r.code, r.stderr).toBe(0);
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe(`${createHash('sha256').update(body).digest('hex')} ${body.length}`);
  });

  it('passes the CGI environment it was given as the WSGI environ', async () => {
    const r = await cgiFcgi(fcgi, 'GET', '/env?a=1&b=%20', undefined, { env: { HTTP_X_PROBE: 'from-cgi-fcgi' } });
    expect(r.status).toBe(200);
    const env = JSON.parse(r.body.toString()) as Record<string, string>;
    expect(env).toMatchObject({ REQUEST_METHOD: 'GET', PATH_INFO: '/env', QUERY_STRING: 'a=1&b=%20', HTTP_X_PROBE: 'from-cgi-fcgi' });
  });

  it('an app exception gives a 500 page, and the next request is served', async () => {
    const bad = await cgiFcgi(fcgi, 'GET', '/raise');
    expect(bad.status).toBe(500);
    expect(bad.body.toString()).toContain('Internal Server Error');
    const good = await cgiFcgi(fcgi, 'GET', '/');
    expect(good.status).toBe(200);
    expect(good.body.toString()).toBe('Hello, world');
  });

  it('an unknown path gives the app\'s 404', async () => {
    const r = await cgiFcgi(fcgi, 'GET', '/no/such/route');
    expect(r.status).toBe(404);
  });
});
