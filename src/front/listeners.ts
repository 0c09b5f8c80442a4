/**
 * Opens the front listeners: TCP, unix socket, Windows named pipe, an inherited listening
 * socket on fd 0 (FastCGI's FCGI_LISTENSOCK_FILENO, as spawn-fcgi and mod_fcgid hand it), and an
 * already-connected stream on stdin (IIS hands its named pipe that way).
 */
import { lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { formatAddress, listenFailure, type ListenAddress } from '../config/address.js';
import type { LimitLog } from './limit-log.js';
import { pipeListenOptions, refuseExistingPipe } from './pipe-access.js';

/** An open front: a server, or the single stdin connection. */
export interface Front {
  readonly address: ListenAddress;
  /** What it really bound (the port for `:0`). */
  readonly bound: string;
  /** Stops accepting; open connections stay. */
  close(): Promise<void>;
}

/** Called for each accepted connection. */
export type OnConnection = (socket: Duplex, via: ListenAddress) => void;

/** How a front listens, beyond the address: its limits and, on Windows, who may open its pipe. */
export interface FrontOptions {
  /** Open connections at once; one more is closed as soon as it is accepted (Node's server.maxConnections). */
  readonly maxConnections?: number;
  /** Where hitting the limit is logged, once per peer. */
  readonly limitLog?: LimitLog | null;
  /** Windows: open named pipes to every local account (see pipe-access.ts). */
  readonly pipeAllUsers?: boolean;
}

/** Listens on one address. Rejects with a message naming the address on failure. */
export async function openFront(address: ListenAddress, onConnection: OnConnection, onStdinEnd: () => void, options: FrontOptions = {}): Promise<Front> {
  if (address.kind === 'stdin') return openStdin(address, onConnection, onStdinEnd);
  // allowHalfOpen: a FastCGI client may shut down its sending side and still wait for the answer.
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => onConnection(socket, address));
  if (options.maxConnections !== undefined) {
    const max = options.maxConnections;
    server.maxConnections = max;
    server.on('drop', (data) => {
      const peer = data?.remoteAddress || 'local';
      options.limitLog?.warn(peer, 'CORRAL_TOO_MANY_CONNECTIONS', { listen: formatAddress(address), maxConnections: max }, `connection refused: ${max} connections already open on this listener (maxConnections)`);
    });
  }
  await listen(server, address, options);
  return {
    address,
    bound: describeBound(server, address),
    // server.close() calls back only when every connection is gone; stopping to accept is immediate.
    close: async () => {
      server.close();
    },
  };
}

async function listen(server: net.Server, address: ListenAddress, options: FrontOptions): Promise<void> {
  const opts = listenOptions(address, options);
  if (address.kind === 'unix') await removeStaleSocket(address.path);
  if (address.kind === 'pipe') await refuseExistingPipe(address.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new Error(`cannot listen on ${formatAddress(address)}: ${err.code ? listenFailure(err.code, '--listen') : err.message}`));
    };
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      server.on('error', () => undefined);
      resolve();
    });
  });
}

function listenOptions(address: ListenAddress, options: FrontOptions): net.ListenOptions {
  switch (address.kind) {
    case 'tcp':
      return { host: address.host, port: address.port };
    case 'unix':
      return { path: address.path };
    case 'pipe':
      return pipeListenOptions(address.path, options.pipeAllUsers ?? false);
    case 'listen-fd':
      if (process.platform === 'win32') throw new Error('fd:N listening sockets are not supported by Node on Windows; use a named pipe');
      return { fd: address.fd } as net.ListenOptions;
    case 'stdin':
      throw new Error('unreachable');
  }
}

/**
 * A unix socket file left by a killed service blocks listen; remove it only if nothing answers
 * there. A live service keeps its socket: listen then fails with EADDRINUSE, rather than a second
 * service quietly taking the path while the first goes on listening on a file no one can reach.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  try {
    if (!lstatSync(path).isSocket()) return;
  } catch {
    return; // no file (or no access): listen reports the real problem
  }
  const answered = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'));
  });
  if (answered) return;
  try {
    unlinkSync(path);
  } catch {
    /* listen reports the real problem */
  }
}

function describeBound(server: net.Server, address: ListenAddress): string {
  const a = server.address();
  if (a && typeof a === 'object') return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  if (typeof a === 'string') return a;
  return formatAddress(address);
}

function openStdin(address: ListenAddress, onConnection: OnConnection, onStdinEnd: () => void): Front {
  // IIS: fd 0 is a duplex named pipe that IIS already connected. Its EOF means "shut down now".
  const socket = new net.Socket({ fd: 0, readable: true, writable: true, allowHalfOpen: true });
  socket.on('close', onStdinEnd);
  onConnection(socket, address);
  return { address, bound: 'stdin', close: async () => undefined };
}
