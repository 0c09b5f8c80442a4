/**
 * Smoke test of `corral relay` on Windows code paths, run by node.exe under Wine (see
 * ../shared/wine/README.md): real named pipes as the relay's fd 0, the default pipe
 * \\.\pipe\corral-<APP_POOL_ID>-w<w3wp pid>-<tag>, GET_VALUES, settings injection, STDERR dropped, exit on close,
 * and auto-start of exactly one service by concurrent relays with the lock and the relay secret
 * in %TEMP% and a pipe name derived from the secret (the service answers 503 there: node.exe
 * cannot start Linux Python without unixrun.exe); a pipe name already taken is refused.
 *
 *   npx tsc -p . && source ~/.cache/corral-wine/env.sh
 *   wine "$N" test/iis/wine/relay-smoke.mjs OUT.txt > wine.log 2>&1; cat OUT.txt
 *
 * Results go to the file named by the first argument (node.exe's own stdout must not be a Linux pipe).
 */
import net from 'node:net';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, appendFileSync, existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const OUT = process.argv[2] ?? path.join(os.tmpdir(), 'corral-relay-smoke.txt');
const dist = (p) => pathToFileURL(path.join(ROOT, 'dist', p)).href;
const { RecordParser } = await import(dist('fcgi/parser.js'));
const { encodeParams, paramsToMap } = await import(dist('fcgi/params.js'));
const { encodeBeginRequest, encodeRecord, encodeEndRequest, frameStream } = await import(dist('fcgi/records.js'));
const { secretTag } = await import(dist('relay/secret.js'));
const { refuseExistingPipe } = await import(dist('front/pipe-access.js'));
writeFileSync(OUT, '');
const log = (...a) => appendFileSync(OUT, a.join(' ') + '\n');
const withTimeout = (p, ms, what) => Promise.race([p, new Promise((_, j) => setTimeout(() => j(new Error('timeout: ' + what)), ms))]);

async function pair() {
  const name = `\\\\.\\pipe\\IISFCGI-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const server = net.createServer();
  await new Promise((r) => server.listen(name, r));
  const accepted = new Promise((r) => server.once('connection', r));
  const ours = net.connect(name);
  await new Promise((r) => ours.once('connect', r));
  const theirs = await accepted;
  server.close();
  return { ours, theirs, name };
}

function reader(sock) {
  const recs = []; const waiters = [];
  const p = new RecordParser();
  sock.on('data', (c) => p.push(c, (r) => { const x = { type: r.type, id: r.requestId, content: Buffer.from(r.content) }; recs.push(x); for (const w of [...waiters]) if (w.pred(x)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(x); } }));
  return { recs, next: (pred) => { const f = recs.find(pred); return f ? Promise.resolve(f) : new Promise((resolve) => waiters.push({ pred, resolve })); } };
}

async function relay(env) {
  const { ours, theirs, name } = await pair();
  const child = spawn(process.execPath, [CLI, 'relay'], { stdio: [theirs, 'ignore', 'ignore'], env: { ...process.env, _FCGI_X_PIPE_: name, ...env } });
  theirs.destroy();
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  ours.on('error', () => {});
  return { child, ours, exited, r: reader(ours) };
}

function request(rl, id, params) {
  rl.ours.write(Buffer.concat([encodeBeginRequest(id, 1, 1), encodeRecord(4, id, encodeParams(Object.entries(params))), encodeRecord(4, id), encodeRecord(5, id)]));
  return rl.r.next((x) => x.type === 3 && x.id === id).then(() => Buffer.concat(rl.r.recs.filter((x) => x.type === 6 && x.id === id).map((x) => x.content)).toString());
}

try {
  // 1. A fake service on the default pipe for APP_POOL_ID=WineTest.
  const seen = [];
  const svc = net.createServer((s) => {
    const p = new RecordParser(); const params = [];
    s.on('data', (c) => p.push(c, (r) => {
      if (r.type === 4) params.push(Buffer.from(r.content));
      if (r.type === 5 && r.content.length === 0) {
        const m = paramsToMap(Buffer.concat(params.splice(0)));
        seen.push(m);
        const body = JSON.stringify(Object.fromEntries(m));
        s.write(Buffer.concat([encodeRecord(7, r.requestId, Buffer.from('noise')), ...frameStream(6, r.requestId, Buffer.from(`Status: 200 OK\r\n\r\n${body}`)), encodeRecord(6, r.requestId), encodeEndRequest(r.requestId, 0, 0)]));
      }
    }));
  });
  await new Promise((r) => svc.listen('\\\\.\\pipe\\corral-WineTest', r));
  const logFile = path.join(os.tmpdir(), 'corral-relay-WineTest.log');
  rmSync(logFile, { force: true });
  const rl = await relay({ APP_POOL_ID: 'WineTest', CORRAL_AUTOSTART: '0', WSGI_APP: 'site:app' });
  rl.ours.write(encodeRecord(9, 0, encodeParams([['FCGI_MAX_CONNS', ''], ['FCGI_MPXS_CONNS', '']])));
  const gv = await withTimeout(rl.r.next((x) => x.type === 10), 20000, 'GET_VALUES');
  log('get_values', JSON.stringify(Object.fromEntries(paramsToMap(gv.content))));
  for (const id of [1, 2]) {
    const body = await withTimeout(request(rl, id, { URL: '/x', REQUEST_METHOD: 'GET', APPL_PHYSICAL_PATH: 'C:\\inetpub\\site\\' }), 20000, 'request');
    log('response', id, body.split('\r\n')[0], JSON.parse(body.slice(body.indexOf('{'))).CORRAL_SETTING_WSGI_APP);
  }
  log('stderr records reaching iis:', rl.r.recs.filter((x) => x.type === 7).length);
  rl.ours.destroy();
  log('relay exit code', await withTimeout(rl.exited, 20000, 'relay exit'));
  log('relay log lines', readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l).msg).join(' | '));
  svc.close();

  // 2. Auto-start: 3 relays at once, no service yet; they make one secret and derive the pipe name from it.
  const secretFile = path.join(os.tmpdir(), 'corral-WineAuto.secret');
  const autoLog = path.join(os.tmpdir(), 'corral-relay-WineAuto.log');
  rmSync(secretFile, { force: true }); rmSync(autoLog, { force: true });
  const rls = await Promise.all([1, 2, 3].map(() => relay({ APP_POOL_ID: 'WineAuto', WSGI_APP: 'wsgi:application' })));
  await withTimeout((async () => { while (!existsSync(secretFile)) await new Promise((r) => setTimeout(r, 50)); })(), 20000, 'secret file');
  const tag = secretTag(readFileSync(secretFile, 'utf8').trim());
  const lock = path.join(os.tmpdir(), `corral-pipe-corral-WineAuto-${tag}.lock`);
  log('secret file', 'tag', tag);
  const answers = await Promise.all(rls.map((x) => withTimeout(request(x, 1, { URL: '/', REQUEST_METHOD: 'GET', APPL_PHYSICAL_PATH: path.join(ROOT, 'examples', 'hello') + path.sep }), 60000, 'auto request')));
  // 503 CORRAL_WORKER_BOOT_FAILED (no Python under Wine) means the service trusted the relays' app selection; 403 would mean it did not.
  log('auto answers', answers.map((a) => `${a.split('\r\n')[0]} ${/X-Corral-Error: (\S+)/.exec(a)?.[1]}`).join(' / '));
  log('service given the secret file', readFileSync(autoLog, 'utf8').split('\n').filter((l) => l.includes('auto-started the corral service')).some((l) => JSON.parse(l).args.includes(secretFile.replace(/^[A-Z]:/i, (d) => d))));
  const lockInfo = existsSync(lock) ? JSON.parse(readFileSync(lock, 'utf8')) : null;
  log('lock', JSON.stringify(lockInfo));
  log('auto-start lines', readFileSync(autoLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.msg === 'auto-started the corral service').length);
  for (const x of rls) x.ours.destroy();
  log('relay exits', (await Promise.all(rls.map((x) => x.exited))).join(','));
  if (lockInfo?.service) { try { process.kill(lockInfo.service); log('killed service', lockInfo.service); } catch (e) { log('kill failed', e.message); } }
  rmSync(lock, { force: true });

  // 3. A pipe name someone else holds: listen fails (FILE_FLAG_FIRST_PIPE_INSTANCE) and the probe refuses it.
  const taken = '\\\\.\\pipe\\corral-WineSquat';
  const squatter = net.createServer((s) => s.destroy());
  await new Promise((r) => squatter.listen(taken, r));
  const second = net.createServer();
  log('second listen on a taken name', await new Promise((r) => { second.once('error', (e) => r(e.code)); second.listen(taken, () => r('listening (shared!)')); }));
  log('probe', await refuseExistingPipe(taken).then(() => 'not refused', (e) => e.message));
  log('probe of a free name', await refuseExistingPipe('\\\\.\\pipe\\corral-WineFree').then(() => 'free', (e) => e.message));
  const serveOut = path.join(os.tmpdir(), 'corral-serve-squat.txt');
  const serve = spawn(process.execPath, [CLI, 'serve', '--listen', taken, '--allowed-roots', ROOT], { stdio: ['ignore', 'ignore', 'ignore'], env: { ...process.env, CORRAL_LOG_FILE: serveOut } });
  log('serve on a taken name exits', await withTimeout(new Promise((r) => serve.once('exit', (code) => r(code))), 30000, 'serve exit'));
  squatter.close();
} catch (e) {
  log('ERROR', e.stack);
}
process.exit(0);
