/**
 * Issue 12: the framework examples (examples/NAME) end to end. Each framework file calls
 * frameworkSuite(). The example is copied to a temp dir (tests never write into examples/) and run
 * with Debian's python, behind three fronts that get the same cases:
 * - nginx at `/` and nginx under the prefix (`fastcgi_split_path_info`), both before ONE
 *   `corral serve` whose every request goes through wsgiref.validate
 *   (test/fixtures/python/validated_example.py wraps the example's wsgi:application);
 * - the IIS emulator with the example as a virtual application: `corral relay` auto-starts a
 *   service that reads the example's own web.config, and SCRIPT_NAME comes from APPL_MD_PATH.
 * A second part runs the example under `corral dev --mount PREFIX` (the HTTP front) and edits it.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, DEBIAN_PYTHON, FIXTURES, ROOT, startCorral, stopAll, type CorralProcess } from '../../helpers/corral.js';
import { saveAndReload, startDev, type Dev } from '../../helpers/dev.js';
import { httpRequest } from '../../helpers/e2e.js';
import { startNginx, stopAllNginx, type NginxProcess } from '../../helpers/nginx.js';
import { startIis, type IisEmulator } from '../../iis/emulator.js';
import { childrenOf, serveProcesses, terminate } from '../../iis/procs.js';

/** What makes one framework's example different from the others. */
export interface Framework {
  /** Folder under examples/. */
  name: string;
  /** How its page greets: "Hello from NAME on wsgi-corral". */
  display: string;
  /** The Python module whose import says the Debian package is installed. */
  module: string;
  /** The Debian package, for the skip reason. */
  debian: string;
  /** The prefix it is mounted under (web.py's article mounts it at /api). */
  prefix: string;
  /** Bodies of the framework's own 404 and 500 pages contain these. */
  notFound: RegExp;
  serverError: RegExp;
  /** Static files the fronts must serve: path under the app, and a piece of their content. */
  statics: Array<{ path: string; contains: string; iis: boolean }>;
  /** nginx serves these itself: `location PREFIX/static/ { alias DIR/static/; }` (Django, after collectstatic). */
  nginxStatic?: boolean;
  /** The form needs Django's CSRF token. */
  csrf?: boolean;
  /** The .py file (relative to the example) holding the streamed chunks' text, edited in the dev test. */
  streamSource: string;
}

/** One answer, whichever front gave it. */
interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

interface Front {
  name: string;
  prefix: string;
  send(method: string, path: string, o?: { headers?: Record<string, string>; body?: Buffer }): Promise<Answer>;
  /** Upstream errors the front logged (nginx), for a check after each case. */
  errors(): string[];
}

/** Cookies of one client: names to values from Set-Cookie, sent back as one Cookie header. */
class Jar {
  readonly #cookies = new Map<string, string>();
  take(a: Answer): void {
    const set = a.headers['set-cookie'];
    for (const line of Array.isArray(set) ? set : set === undefined ? [] : [set]) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      this.#cookies.set(pair!.slice(0, eq).trim(), pair!.slice(eq + 1).trim());
    }
  }
  get(name: string): string | undefined {
    return this.#cookies.get(name);
  }
  header(): Record<string, string> {
    return this.#cookies.size === 0 ? {} : { cookie: [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ') };
  }
}

const VALIDATE_MARK = /WSGI VALIDATION FAILED|wsgiref\/validate\.py/;

/** The example copied to a fresh temp dir (tests never write into examples/). */
function copyExample(name: string, dirs: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), `corral-${name}-`));
  dirs.push(dir);
  cpSync(join(ROOT, 'examples', name), dir, { recursive: true, filter: (src) => !/__pycache__|db\.sqlite3$/.test(src) });
  return dir;
}

function text(a: Answer): string {
  return a.body.toString('utf8');
}

/** A multipart/form-data body with one file field. */
function multipart(field: string, filename: string, data: Buffer): { body: Buffer; type: string } {
  const boundary = `----corral${randomBytes(8).toString('hex')}`;
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`;
  return { body: Buffer.concat([Buffer.from(head), data, Buffer.from(`\r\n--${boundary}--\r\n`)]), type: `multipart/form-data; boundary=${boundary}` };
}

function locationPath(a: Answer): string {
  const loc = a.headers.location;
  expect(typeof loc, `no Location in ${a.status} ${text(a)}`).toBe('string');
  const url = new URL(String(loc), 'http://placeholder');
  return url.pathname + url.search;
}

function nginxFront(name: string, nginx: NginxProcess, prefix: string): Front {
  return {
    name,
    prefix,
    async send(method, path, o = {}) {
      const r = await httpRequest(`${nginx.url}${path}`, { method, headers: o.headers, body: o.body });
      return { status: r.status, headers: r.headers, body: r.body };
    },
    errors: () => nginx.errors(),
  };
}

function iisFront(iis: IisEmulator, prefix: string): Front {
  return {
    name: `IIS application ${prefix}`,
    prefix,
    async send(method, path, o = {}) {
      const r = await iis.request({ method, url: path, headers: o.headers, body: o.body });
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of r.headers) {
        const key = k.toLowerCase();
        if (key === 'set-cookie') headers[key] = [...((headers[key] as string[] | undefined) ?? []), v];
        else headers[key] = v;
      }
      return { status: r.status, headers, body: r.body };
    },
    errors: () => iis.counters.failures,
  };
}

/** True when Debian's python can import the framework. */
export function installed(f: Framework): boolean {
  return spawnSync(DEBIAN_PYTHON, ['-c', `import ${f.module}`], { stdio: 'ignore' }).status === 0;
}

/** The cases, run once per front. */
function cases(f: Framework, iis: boolean, front: () => Front): void {
  const p = (): string => front().prefix;
  const send = (method: string, path: string, o?: { headers?: Record<string, string>; body?: Buffer }): Promise<Answer> => front().send(method, p() + path, o);

  it('serves its page, and the app sees SCRIPT_NAME = the prefix, PATH_INFO without it, URLs with it', async () => {
    const page = await send('GET', '/');
    expect(page.status, text(page)).toBe(200);
    expect(text(page)).toContain(`Hello from ${f.display} on wsgi-corral`);
    const info = await send('GET', '/info');
    expect(info.status, text(info)).toBe(200);
    expect(JSON.parse(text(info))).toEqual({ script_name: p(), path_info: '/info', url: `${p()}/info` });
  });

  it('redirects to a URL that keeps the prefix', async () => {
    const r = await send('GET', '/redirect');
    expect([301, 302, 303, 307, 308], text(r)).toContain(r.status);
    expect(locationPath(r)).toBe(`${p()}/`);
    if (f.name === 'django') {
      // The admin sends anonymous users to its login page, under the prefix.
      const admin = await send('GET', '/admin/');
      expect(admin.status).toBe(302);
      expect(locationPath(admin)).toBe(`${p()}/admin/login/?next=${p()}/admin/`);
      const login = await send('GET', '/admin/login/');
      expect(login.status).toBe(200);
      expect(text(login)).toContain(`action="${p()}/admin/login/"`);
    }
  });

  it(f.csrf ? 'takes a form POST with its CSRF token, and refuses one without (403)' : 'takes a form POST (urlencoded, UTF-8)', async () => {
    const jar = new Jar();
    const fields: Record<string, string> = { name: 'Zoë' };
    if (f.csrf) {
      const refused = await send('POST', '/form', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Buffer.from('name=x') });
      expect(refused.status).toBe(403);
      const form = await send('GET', '/form');
      expect(form.status).toBe(200);
      jar.take(form);
      const token = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(text(form));
      expect(token, text(form)).not.toBeNull();
      expect(jar.get('csrftoken')).toBeDefined();
      fields.csrfmiddlewaretoken = token![1]!;
    }
    const body = Buffer.from(new URLSearchParams(fields).toString());
    const r = await send('POST', '/form', { headers: { 'content-type': 'application/x-www-form-urlencoded', ...jar.header() }, body });
    expect(r.status, text(r)).toBe(200);
    expect(text(r)).toBe('Hello, Zoë!');
    // Django's form stored a Note in SQLite: the page lists it.
    if (f.csrf) expect(text(await send('GET', '/'))).toContain('<li>Zoë</li>');
  });

  it('takes a 1 MiB multipart upload whole (sha256 and size as sent)', async () => {
    const data = randomBytes(1024 * 1024);
    const { body, type } = multipart('file', 'blob.bin', data);
    const r = await send('POST', '/upload', { headers: { 'content-type': type }, body });
    expect(r.status, text(r)).toBe(200);
    expect(JSON.parse(text(r))).toEqual({ name: 'blob.bin', size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
  });

  it('streams a generated response', async () => {
    const r = await send('GET', '/stream?n=200');
    expect(r.status, text(r)).toBe(200);
    // A generator of unknown length: nothing collected it to count its bytes on the way.
    expect(r.headers['content-length']).toBeUndefined();
    expect(text(r)).toBe(Array.from({ length: 200 }, (_, i) => `chunk ${i}\n`).join(''));
  });

  it('keeps a session (cookie) across requests and workers; a new client starts afresh', async () => {
    const jar = new Jar();
    for (const n of [1, 2, 3]) {
      const r = await send('GET', '/session', { headers: jar.header() });
      expect(r.status, text(r)).toBe(200);
      expect(text(r)).toBe(`visits: ${n}`);
      jar.take(r);
    }
    expect(text(await send('GET', '/session'))).toBe('visits: 1');
  });

  it("passes the framework's own 404 and 500 pages through, and serves on after the 500", async () => {
    const missing = await send('GET', '/missing');
    expect(missing.status).toBe(404);
    expect(text(missing)).toMatch(f.notFound);
    const boom = await send('GET', '/boom');
    expect(boom.status).toBe(500);
    expect(text(boom)).toMatch(f.serverError);
    expect((await send('GET', '/')).status).toBe(200);
  });

  // The IIS emulator has no static file handler (real IIS serves /static by the example's web.config).
  const statics = f.statics.filter((s) => s.iis || !iis);
  if (statics.length > 0) {
    it('serves static files', async () => {
      for (const s of statics) {
        const r = await send('GET', s.path);
        expect(r.status, `${s.path}: ${text(r)}`).toBe(200);
        expect(text(r)).toContain(s.contains);
      }
    });
  }
}

/** The whole suite of one framework. */
export function frameworkSuite(f: Framework): void {
  const ok = installed(f);
  const title = ok ? `examples/${f.name}` : `examples/${f.name} (skipped: ${f.debian} is not installed for ${DEBIAN_PYTHON})`;

  describe.skipIf(!ok)(`${title}: nginx at / and under ${f.prefix}/ (one corral), IIS application ${f.prefix} (the service its relay starts), corral dev --mount ${f.prefix}`, () => {
    const dirs: string[] = [];
    const emulators: IisEmulator[] = [];
    let corral: CorralProcess;
    let dev: Dev;
    let devDir: string;
    const fronts: Record<string, Front> = {};
    /** Requests sent through nginx (to the validated corral), to compare with its access log. */
    let sent = 0;
    let iisSocket = '';
    const counted = (front: Front): Front => ({ ...front, send: (...args) => ((sent += 1), front.send(...args)) });

    /** nginx before one validated `corral serve`. */
    async function startServeAndNginx(): Promise<void> {
      const dir = copyExample(f.name, dirs);
      corral = startCorral(['serve', dir, '--python', DEBIAN_PYTHON, '--pythonpath', FIXTURES, '--wsgi-app', 'validated_example:application', '--listen', '127.0.0.1:0']);
      await corral.waitForMsg('app ready', 60_000);
      const fcgi = await corral.fcgiAddress();
      const statics = (prefix: string): string => (f.nginxStatic ? `        location ${prefix}/static/ { alias ${dir}/static/; }\n` : '');
      const [atRoot, mounted] = await Promise.all([
        startNginx({ upstream: fcgi, serverExtra: statics('') }),
        startNginx({ upstream: fcgi, mount: f.prefix, serverExtra: statics(f.prefix) }),
      ]);
      fronts.root = counted(nginxFront('nginx at /', atRoot, ''));
      fronts.mounted = counted(nginxFront(`nginx under ${f.prefix}/`, mounted, f.prefix));
    }

    /**
     * IIS: the relay auto-starts its own service for the site, which reads the example's own
     * web.config (WSGI_HANDLER, DJANGO_SETTINGS_MODULE, DEPLOY_FILE): no validator in this run.
     * Its first request waits for that start; it is sent here so the start overlaps the others.
     */
    async function startIisApplication(): Promise<void> {
      const dir = copyExample(f.name, dirs);
      const place = mkdtempSync(join(tmpdir(), `corral-iis-${f.name}-`));
      dirs.push(place);
      iisSocket = join(place, 'corral.sock');
      const iis = await startIis({
        relayCmd: [process.execPath, CLI, 'relay'], appPhysicalPath: dir, appVirtualPath: f.prefix, maxInstances: 1,
        env: { CORRAL_SERVICE: iisSocket, CORRAL_RELAY_LOG: join(place, 'relay.log'), CORRAL_PYTHON: DEBIAN_PYTHON, CORRAL_LOG_FILE: join(place, 'service.log') },
      });
      emulators.push(iis);
      await iis.request({ url: `${f.prefix}/` });
      fronts.iis = iisFront(iis, f.prefix);
    }

    /** `corral dev --mount PREFIX` on a copy the dev test edits. */
    async function startDevCopy(): Promise<void> {
      devDir = copyExample(f.name, dirs);
      dev = await startDev(devDir, ['--python', DEBIAN_PYTHON, '--mount', f.prefix]);
    }

    // Started together: most of the time is Python importing the framework (and Django's deploy step).
    beforeAll(() => Promise.all([startServeAndNginx(), startIisApplication(), startDevCopy()]).then(() => undefined));

    afterAll(async () => {
      await Promise.all(emulators.splice(0).map((e) => e.stop()));
      // The auto-started service is detached from the relay: stop it and its workers by its socket.
      const services = iisSocket === '' ? [] : serveProcesses(iisSocket);
      const workers = services.flatMap(childrenOf);
      await terminate(services);
      await terminate(workers);
      await stopAllNginx();
      await stopAll();
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    });

    for (const key of ['root', 'mounted', 'iis'] as const) {
      const label = key === 'root' ? 'nginx at /' : key === 'mounted' ? `nginx under ${f.prefix}/` : `IIS application ${f.prefix}`;
      describe(label, () => {
        cases(f, key === 'iis', () => fronts[key]!);
        it('logged no upstream or IIS failure', () => {
          expect(fronts[key]!.errors()).toEqual([]);
        });
      });
    }

    it('ran every request through nginx above through wsgiref.validate without a violation', async () => {
      const ready = corral.logs.find((l) => l.msg === 'app ready');
      expect(JSON.stringify(ready)).toContain('validated_example:application');
      const violations = corral.logs.filter((l) => l.msg === 'worker stderr' && VALIDATE_MARK.test(String(l.line)));
      expect(violations.map((l) => l.line)).toEqual([]);
      // The cases' requests reached corral (nginx's static files excepted, the access log has them all).
      const staticByNginx = f.nginxStatic ? 2 * f.statics.length : 0;
      expect(sent).toBeGreaterThan(2 * 10);
      // Access log lines are written in batches: wait for the last ones.
      const logged = (): number => corral.logs.filter((l) => l.msg === 'request').length;
      await corral.waitForLog(() => logged() >= sent - staticByNginx, 5_000);
    });

    it('corral dev --mount: serves the example under the prefix, static files included, and serves the edited code after saving', async () => {
      const base = `${dev.url}${f.prefix}`;
      const info = await httpRequest(`${base}/info`);
      expect(info.status, info.body.toString()).toBe(200);
      expect(JSON.parse(info.body.toString())).toEqual({ script_name: f.prefix, path_info: '/info', url: `${f.prefix}/info` });
      for (const s of f.statics) {
        const r = await httpRequest(`${base}${s.path}`);
        expect(r.status, s.path).toBe(200);
        expect(r.body.toString()).toContain(s.contains);
      }
      const before = await httpRequest(`${base}/stream?n=2`);
      expect(before.body.toString()).toBe('chunk 0\nchunk 1\n');

      const source = join(devDir, f.streamSource);
      const code = readFileSync(source, 'utf8');
      expect(code).toContain('chunk ');
      await saveAndReload(dev, () => writeFileSync(source, code.replaceAll('chunk ', 'piece ')));
      const after = await httpRequest(`${base}/stream?n=2`);
      expect(after.status).toBe(200);
      expect(after.body.toString()).toBe('piece 0\npiece 1\n');
    });
  });
}
