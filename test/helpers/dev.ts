/**
 * `corral dev` from tests: its logs are pino-pretty lines, not JSON, so these wait on the banner
 * (stderr) and on pretty lines (stdout). Used by test/integration/dev.test.ts and the framework
 * examples' reload tests.
 */
import { startCorral, type CorralProcess } from './corral.js';

/** A running `corral dev` with the base URL its banner printed. */
export interface Dev {
  corral: CorralProcess;
  url: string;
  banner: string;
}

/** Resolves once `c.stderr` matches `re`; rejects on timeout or exit. */
export function waitForStderr(c: CorralProcess, re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return waitFor(c, c.child.stderr!, () => re.exec(c.stderr), `stderr matching ${re}`, timeoutMs);
}

/** Resolves once a pretty log line (stdout) after index `from` matches `re`. */
export function waitForPretty(c: CorralProcess, re: RegExp, from = 0, timeoutMs = 20_000): Promise<string> {
  return waitFor(c, c.child.stdout!, () => c.nonJson.slice(from).find((l) => re.test(l)) ?? null, `a log line matching ${re}`, timeoutMs);
}

function waitFor<T>(c: CorralProcess, stream: NodeJS.ReadableStream, check: () => T | null, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      stream.off('data', onData);
    };
    // CorralProcess' own listener ran first (registered first), so its buffers are up to date here.
    const onData = (): void => {
      const found = check();
      if (found !== null) {
        done();
        resolve(found);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${what} within ${timeoutMs} ms\nstderr: ${c.stderr}\nstdout: ${c.nonJson.slice(-30).join('\n')}`));
    }, timeoutMs);
    void c.exited.then(({ code }) => {
      done();
      reject(new Error(`corral dev exited (code ${code}) before ${what}\nstderr: ${c.stderr}`));
    });
    stream.on('data', onData);
    onData();
  });
}

/** Pretty lines logged so far (an index for waitForPretty's `from`). */
export function mark(c: CorralProcess): number {
  return c.nonJson.length;
}

/** `corral dev DIR --http 127.0.0.1:0 ...extra`, the port read from the banner, the watcher ready. */
export async function startDev(dir: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Dev> {
  const corral = startCorral(['dev', dir, '--http', '127.0.0.1:0', ...extra], { env: { PYTHONDONTWRITEBYTECODE: undefined, ...env } });
  const m = await waitForStderr(corral, /serving\s+http:\/\/([^\s/]+)\/\S*\n[\s\S]*Ctrl-C to stop\n/);
  await waitForPretty(corral, /\bINFO\b.*: watching files$/);
  return { corral, url: `http://${m[1]}`, banner: corral.stderr };
}

/** Saves `write()` and waits for the reload it causes to be done (dev reloads at once). */
export async function saveAndReload(dev: Dev, write: () => void): Promise<void> {
  const from = mark(dev.corral);
  write();
  await waitForPretty(dev.corral, /: reload done$/, from);
}
