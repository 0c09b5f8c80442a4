/**
 * The README's and config/nginx/corral.conf's note on HTTP_HOST: Debian's fastcgi_params send
 * `HTTP_HOST $host`, which has no port, and a later `fastcgi_param HTTP_HOST $host:$server_port`
 * is what the app then sees (the last value of a param wins), on both data planes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DEBIAN_PYTHON, FIXTURES, startCorral, stopAll } from '../helpers/corral.js';
import { startNginx, stopAllNginx } from '../helpers/nginx.js';
import { httpRequest } from '../helpers/e2e.js';

afterEach(async () => {
  await stopAllNginx();
  await stopAll();
});

async function hostSeen(dataPlane: string, locationExtra: string): Promise<{ host: string; port: number }> {
  const corral = startCorral(['serve', FIXTURES, '--wsgi-app', 'hello_app:application', '--python', DEBIAN_PYTHON, '--listen', '127.0.0.1:0', '--workers', '1', '--data-plane', dataPlane]);
  const upstream = await corral.fcgiAddress();
  await corral.waitForMsg('app ready');
  const nginx = await startNginx({ upstream, locationExtra });
  const r = await httpRequest(`${nginx.url}/env`, { headers: { host: `localhost:${nginx.port}` } });
  expect(r.status).toBe(200);
  return { host: String((JSON.parse(r.body.toString()) as Record<string, unknown>).HTTP_HOST), port: nginx.port };
}

describe.each(['proxy', 'direct'])('HTTP_HOST behind nginx (%s data plane)', (plane) => {
  it("Debian's `HTTP_HOST $host` drops the port", async () => {
    const seen = await hostSeen(plane, '            fastcgi_param HTTP_HOST $host;');
    expect(seen.host).toBe('localhost');
  });
  it('a later `HTTP_HOST $host:$server_port` wins and keeps it', async () => {
    const seen = await hostSeen(plane, '            fastcgi_param HTTP_HOST $host;\n            fastcgi_param HTTP_HOST $host:$server_port;');
    expect(seen.host).toBe(`localhost:${seen.port}`);
  });
});
