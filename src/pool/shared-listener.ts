/**
 * The direct data plane's listening socket: bound by the service, listened on and accepted from by
 * the workers. The service creates the socket and binds it (so a port in use or a bad path fails
 * before any worker starts, and the socket outlives every worker and every generation); each
 * worker gets it as fd 3 (spawn's stdio) and calls listen() and accept() itself, as PHP-FPM's
 * children and gunicorn's workers do with their master's socket. Node never listens on it itself
 * (its listen() accepts too), so it never takes a connection that a worker should have had; a
 * short-lived child puts it in the listening state at once (listenNow).
 *
 * Node has no public API for a bound-but-not-listening socket; `net._createServerHandle` is what
 * its cluster module uses for exactly this (create and bind in the primary, listen in the
 * workers). It is internal, so its shape is checked here and a change fails loudly at start-up.
 *
 * The file status flags (O_NONBLOCK) of the socket are shared by every process that holds it:
 * a worker must keep it non-blocking (libuv created it so).
 */
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { formatAddress, listenFailure, type ListenAddress } from '../config/address.js';

/** What Node's internal handle gives us; checked at run time. */
interface RawHandle {
  readonly fd: number;
  getsockname?(out: Record<string, unknown>): number;
  close(): void;
}

type CreateServerHandle = (address: string | null, port: number, addressType: number, fd: number | undefined, flags: number) => RawHandle | number;

/** A bound socket the workers share. */
export interface SharedListener {
  readonly address: ListenAddress;
  /** The socket's descriptor in this process (pass it in a worker's stdio). */
  readonly fd: number;
  /** What it bound, with the real port for `:0`. */
  readonly bound: string;
  /** Closes the service's copy; workers' copies stay until they exit. */
  close(): void;
}

/** Whether the direct data plane can serve this address on this platform. */
export function directCapable(address: ListenAddress, platform: NodeJS.Platform = process.platform): boolean {
  return platform !== 'win32' && (address.kind === 'tcp' || address.kind === 'unix');
}

/**
 * Creates and binds the socket for a TCP or unix-socket address (a stale unix socket file is the
 * caller's to remove first). Rejects with a message that names the address.
 *
 * libuv binds TCP with SO_REUSEADDR, with which Linux lets the bind succeed even where another
 * process listens; only listen() would fail, in a worker, too late. So a TCP port is probed: if
 * something answers there, it is in use.
 */
export async function bindShared(address: ListenAddress): Promise<SharedListener> {
  const { listener, host, port } = bindNow(address);
  if (port !== null && (await answers(probeHost(host), port))) {
    listener.close();
    throw new Error(`cannot listen on ${formatAddress(address)}: ${listenFailure('EADDRINUSE', '--listen')}`);
  }
  return listener;
}

/**
 * Puts the socket in the listening state now, so that from the moment the service says it listens
 * connections wait in the backlog (this path's queue) while the first workers boot, instead of
 * being refused until one of them calls listen(). The listening state belongs to the socket, not
 * to a descriptor, so a short-lived child holding it as fd 3 can do it; Node cannot, as its
 * listen() also accepts. `python`: the workers' interpreter command. Returns why it failed, or
 * null (the workers listen at boot anyway: a failure only leaves that short gap).
 */
export function listenNow(listener: SharedListener, python: readonly string[], backlog: number): string | null {
  const [cmd, ...pre] = python;
  const code = 'import socket, sys; s = socket.socket(fileno=3); s.listen(int(sys.argv[1])); s.detach()';
  const r = spawnSync(cmd!, [...pre, '-c', code, String(backlog)], { stdio: ['ignore', 'ignore', 'pipe', listener.fd], timeout: 10_000, windowsHide: true });
  if (r.error) return r.error.message;
  if (r.status !== 0) return `exit ${r.status ?? r.signal}: ${String(r.stderr).trim().split('\n').pop() ?? ''}`;
  return null;
}

/** Where to look for another listener on a wildcard address. */
function probeHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  return host === '::' ? '::1' : host;
}

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (yes: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(false), 1_000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** The bound socket, and for TCP the numeric host and the port it really bound (for `:0`). */
function bindNow(address: ListenAddress): { listener: SharedListener; host: string; port: number | null } {
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
  if (typeof create !== 'function') throw new Error('this Node has no net._createServerHandle: use --data-plane proxy');
  let result: RawHandle | number;
  const host = address.kind === 'tcp' && address.host === 'localhost' ? '127.0.0.1' : address.kind === 'tcp' ? address.host : '';
  if (address.kind === 'tcp') {
    if (!net.isIP(host)) throw new Error(`cannot listen on ${formatAddress(address)}: the direct data plane needs a numeric host`);
    result = create(host, address.port, net.isIPv6(host) ? 6 : 4, undefined, 0);
  } else if (address.kind === 'unix') {
    result = create(address.path, -1, -1, undefined, 0);
  } else {
    throw new Error(`the direct data plane serves TCP and unix sockets, not ${formatAddress(address)}`);
  }
  if (typeof result === 'number') throw new Error(`cannot listen on ${formatAddress(address)}: ${listenFailure(errName(result), '--listen')}`);
  const handle = result;
  if (typeof handle.fd !== 'number' || handle.fd < 0) {
    handle.close();
    throw new Error(`cannot listen on ${formatAddress(address)}: no file descriptor for the socket (use --data-plane proxy)`);
  }
  let bound = formatAddress(address);
  let port = address.kind === 'tcp' ? address.port : null;
  if (address.kind === 'tcp' && handle.getsockname) {
    const out: Record<string, unknown> = {};
    if (handle.getsockname(out) === 0 && typeof out.port === 'number') {
      port = out.port;
      bound = formatAddress({ kind: 'tcp', host: typeof out.address === 'string' ? out.address : host, port });
    }
  }
  let open = true;
  const listener: SharedListener = {
    address,
    fd: handle.fd,
    bound,
    close() {
      if (!open) return;
      open = false;
      handle.close();
    },
  };
  return { listener, host, port };
}

function errName(code: number): string {
  try {
    return getSystemErrorName(code);
  } catch {
    return `error ${code}`;
  }
}
