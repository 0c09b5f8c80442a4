/**
 * A log reader that stops reading must not stop the service. With its stdout a pipe or a socket
 * (`corral serve | less`, a service manager's log collector) in its default blocking mode, a
 * synchronous write waits for the reader once the pipe's buffer is full: measured, a service
 * behind a reader that never read answered 282 requests and then nothing more, health checks
 * included. Made non-blocking, the write returns EAGAIN instead, and the turn writer holds the
 * lines (bounded, then dropped and counted) and retries: requests go on.
 *
 * Node has no call for O_NONBLOCK; libuv sets it when it opens a pipe handle on the fd, so a
 * `net.Socket` is opened on it and kept (never read, written or closed: closing it would close
 * the fd). Files and terminals are left as they are (a file never refuses a write; a terminal is
 * shared with the shell). Not on Windows, where libuv's pipes work differently and the service
 * logs to a file.
 */
import { fstatSync } from 'node:fs';
import net from 'node:net';

/** The handles that hold the fds in non-blocking mode, for the life of the process. */
const held = new Map<number, net.Socket>();

/** Makes `fd` non-blocking if it is a pipe or a socket (POSIX); true if it is (now) so. */
export function nonBlockingIfPipe(fd: number): boolean {
  if (held.has(fd)) return true;
  if (process.platform === 'win32') return false;
  try {
    const st = fstatSync(fd);
    if (!st.isFIFO() && !st.isSocket()) return false;
    const handle = new net.Socket({ fd, readable: false, writable: true });
    handle.unref(); // it must not keep the process alive
    handle.on('error', () => undefined); // never used for I/O; nothing to report from it
    held.set(fd, handle);
    return true;
  } catch {
    return false; // a closed fd, or one libuv will not open: the writes stay blocking
  }
}
