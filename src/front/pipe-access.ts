/**
 * Who may use the service's Windows named pipes, and refusing a pipe name someone else holds.
 *
 * Node cannot set a pipe's DACL; it can only add an ACE for Everyone (`readableAll`/`writableAll`,
 * libuv's uv_pipe_chmod: GENERIC_READ | GENERIC_WRITE for the World SID). For a named pipe
 * GENERIC_WRITE includes FILE_APPEND_DATA, which is FILE_CREATE_PIPE_INSTANCE: with it any local
 * account could create instances of our pipe and receive relays' connections. So by default the
 * pipe keeps Windows' default DACL (full control for LocalSystem, Administrators and the creator
 * owner; read for Everyone, which cannot open it read-write): exactly right for a service the
 * relays auto-start as the app pool identity. `pipeAllUsers` opens it for a service that runs as
 * another account, and the relay secret then is what keeps other local accounts out.
 */
import net from 'node:net';

/** The listen options for a named pipe. */
export function pipeListenOptions(path: string, allUsers: boolean): net.ListenOptions {
  return allUsers ? { path, readableAll: true, writableAll: true } : { path };
}

/** How long a probe of an existing pipe may take (libuv waits up to 30 s for a busy pipe). */
const PROBE_MS = 1_000;

/**
 * Rejects if a pipe of this name already exists: its owner (maybe another local account that
 * created it first) would get the relays' traffic. libuv also creates our first instance with
 * FILE_FLAG_FIRST_PIPE_INSTANCE, so listen fails with EADDRINUSE even if the pipe appears between
 * this probe and listen; the probe gives the clear message. Resolves when no pipe answers (ENOENT).
 */
export async function refuseExistingPipe(path: string, connect: (path: string) => net.Socket = (p) => net.connect({ path: p })): Promise<void> {
  const found = await new Promise<string | null>((resolve) => {
    const probe = connect(path);
    const timer = setTimeout(() => {
      probe.destroy();
      resolve('it exists and every instance is busy');
    }, PROBE_MS);
    probe.once('connect', () => {
      clearTimeout(timer);
      probe.destroy();
      resolve('a process is already listening on it');
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      probe.destroy();
      resolve(err.code === 'ENOENT' ? null : `it exists (${err.code ?? err.message})`);
    });
  });
  if (found !== null)
    throw new Error(`refusing to listen on ${path}: ${found}. Another process (perhaps another account) owns a pipe of this name; stop it or choose another name`);
}
