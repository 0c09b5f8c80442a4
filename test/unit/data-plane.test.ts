/**
 * The data-plane choice (direct where the workers can share the one socket, proxy elsewhere, an
 * error when direct is asked for where it cannot apply) and the direct workers' REPORT parsing.
 */
import { describe, expect, it } from 'vitest';
import { parseAddress } from '../../src/config/address.js';
import { chooseDataPlane } from '../../src/cli/data-plane.js';
import { SETTING_ROWS, defaultOf } from '../../src/config/settings.js';
import { parseReport } from '../../src/pool/report.js';

const base = { dataPlane: 'auto' as const, listen: [parseAddress('127.0.0.1:9000')], http: null, allowedRoots: [] as string[] };
const ctx = { platform: 'linux' as NodeJS.Platform, appsList: false, defaultApp: true, dev: false };

describe('chooseDataPlane', () => {
  it('is direct for one app on one TCP or unix socket on POSIX, and proxy when asked', () => {
    expect(chooseDataPlane(base, ctx)).toMatchObject({ plane: 'direct', address: { kind: 'tcp', port: 9000 } });
    expect(chooseDataPlane({ ...base, listen: [parseAddress('/run/app.sock')] }, ctx)).toMatchObject({ plane: 'direct', address: { kind: 'unix' } });
    expect(chooseDataPlane({ ...base, listen: [] }, ctx)).toMatchObject({ plane: 'direct', address: { kind: 'tcp', host: '127.0.0.1', port: 9000 } });
    expect(chooseDataPlane({ ...base, dataPlane: 'proxy' }, ctx)).toMatchObject({ plane: 'proxy' });
  });

  it('defaults to auto: direct where it applies, proxy elsewhere (IIS, pipes, Windows, the HTTP front, several apps)', () => {
    const row = SETTING_ROWS.find((r) => r.key === 'dataPlane')!;
    expect(defaultOf(row, 'linux')).toBe('auto');
    expect(defaultOf(row, 'win32')).toBe('auto');
  });

  it('falls back to proxy with the reason under auto, and refuses direct with it', () => {
    const cases: Array<[Partial<typeof base> & Record<string, unknown>, Partial<typeof ctx>, RegExp]> = [
      [{}, { platform: 'win32' }, /Windows/],
      [{ http: parseAddress('127.0.0.1:8000') }, {}, /HTTP front/],
      [{}, { appsList: true }, /several apps/],
      [{}, { dev: true }, /corral dev renders its error pages/],
      [{ allowedRoots: ['/srv'] }, {}, /choose their app/],
      [{ listen: [parseAddress('127.0.0.1:9000'), parseAddress('127.0.0.1:9001')] }, {}, /exactly one/],
      [{ listen: [parseAddress('stdin')] }, {}, /not a TCP or unix socket/],
      [{ listen: [parseAddress('fd:0')] }, {}, /not a TCP or unix socket/],
    ];
    for (const [s, c, why] of cases) {
      const auto = chooseDataPlane({ ...base, ...s }, { ...ctx, ...c });
      expect(auto).toMatchObject({ plane: 'proxy' });
      expect(auto.error === undefined && auto.why).toMatch(why);
      const asked = chooseDataPlane({ ...base, ...s, dataPlane: 'direct' }, { ...ctx, ...c });
      expect(asked.error).toMatch(/dataPlane direct cannot apply/);
      expect(asked.error).toMatch(why);
    }
  });
});

describe('parseReport', () => {
  const json = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));

  it('takes a well-formed report', () => {
    const r = parseReport(json({ busy: 1, conns: 3, served: 10, queue: 2, current: [{ method: 'GET', path: '/a', age_ms: 12.5 }], access: [['POST', '/b', 201, 99, 1500], ['GET', '/c?x', 499, 0, 7, 'aborted']], access_dropped: 4 }));
    expect(r).toEqual({ busy: 1, conns: 3, served: 10, queue: 2, current: [{ method: 'GET', path: '/a', ageMs: 12.5 }], access: [{ method: 'POST', path: '/b', status: 201, bytes: 99, ms: 1.5, error: null }, { method: 'GET', path: '/c?x', status: 499, bytes: 0, ms: 0.007, error: 'aborted' }], accessDropped: 4 });
    expect(parseReport(json({ busy: 0, conns: 0, served: 0, queue: null }))).toMatchObject({ queue: null, current: [], access: [] });
  });

  it('drops a malformed report whole', () => {
    for (const bad of ['{', '[]', 'null', '{"busy":-1,"conns":0,"served":0}', '{"busy":1,"conns":0}', '{"busy":0,"conns":0,"served":0,"queue":"x"}', '{"busy":0,"conns":0,"served":0,"access":[["GET","/","200",1,1000]]}', '{"busy":0,"conns":0,"served":0,"access":[["GET","/",200,1,1.5]]}', '{"busy":0,"conns":0,"served":0,"access":[{"method":"GET","path":"/","status":200,"bytes":1,"ms":1}]}', '{"busy":0.5,"conns":0,"served":0}']) {
      expect(parseReport(Buffer.from(bad))).toBeNull();
    }
  });
});
