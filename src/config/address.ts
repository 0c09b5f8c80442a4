/** Listen addresses: parsing the forms users write (`--listen`, `--http`) and formatting them for logs. */
import { isIPv4, isIPv6 } from 'node:net';

/** Where a front accepts connections. */
export type ListenAddress =
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'pipe'; path: string }
  // An inherited listening socket: FCGI_LISTENSOCK_FILENO (fd 0) from spawn-fcgi, mod_fcgid or IIS Tcp mode.
  | { kind: 'listen-fd'; fd: number }
  // An already-connected stream on fd 0: how IIS hands over its named pipe.
  | { kind: 'stdin' };

const FORMS = [
  'host:port', '[ipv6]:port', ':port (all interfaces)', 'a port (127.0.0.1)',
  'a unix socket path (/path, ./path or unix:path)', 'a named pipe \\\\.\\pipe\\name', 'fd:N (inherited listening socket)',
];

/** The accepted forms, for "expected ..." in messages, help and docs; `stdin` only where a connected stream fits. */
export function addressForms(options: { stdin: boolean }): string {
  const forms = options.stdin ? [...FORMS, 'stdin'] : FORMS;
  return `${forms.slice(0, -1).join(', ')} or ${forms.at(-1) ?? ''}`;
}

export const ADDRESS_FORMS = addressForms({ stdin: true });

/** Thrown by parseAddress: the text received, why it was refused and what was expected. */
export class AddressError extends Error {
  readonly code = 'ADDRESS_INVALID';
  readonly expected = ADDRESS_FORMS;
  constructor(
    readonly text: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(text)} ${reason} (expected ${ADDRESS_FORMS})`);
    this.name = 'AddressError';
  }
}

// \\.\pipe\name or //./pipe/name, any mix of slashes; "pipe" in any case, as Windows does.
const PIPE = /^[\\/]{2}\.[\\/]pipe[\\/](.+)$/i;
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** Parses one address; throws AddressError naming the text and what was expected. */
export function parseAddress(text: string): ListenAddress {
  const t = text.trim();
  if (t === '') throw new AddressError(text, 'is empty');
  if (t.toLowerCase() === 'stdin') return { kind: 'stdin' };
  if (/^fd:/i.test(t)) return { kind: 'listen-fd', fd: parseFd(text, t.slice(3)) };
  if (/^unix:/i.test(t)) {
    const path = t.slice(5);
    if (path === '') throw new AddressError(text, 'has no socket path after unix:');
    return { kind: 'unix', path };
  }
  const pipe = PIPE.exec(t);
  if (pipe) return { kind: 'pipe', path: `\\\\.\\pipe\\${pipe[1] ?? ''}` };
  if (t.startsWith('[')) return parseBracketed(text, t);
  if (/^\d+$/.test(t)) return { kind: 'tcp', host: '127.0.0.1', port: parsePort(text, t) };
  if (/^:[^:]*$/.test(t)) return { kind: 'tcp', host: '0.0.0.0', port: parsePort(text, t.slice(1)) };
  if (t.includes('/') && !/:\d+$/.test(t)) return { kind: 'unix', path: t };
  return parseHostPort(text, t);
}

function parseHostPort(text: string, t: string): ListenAddress {
  const colon = t.lastIndexOf(':');
  if (colon < 0) throw new AddressError(text, 'has no port (host:port)');
  const host = t.slice(0, colon);
  if (host.includes(':')) {
    throw new AddressError(text, isIPv6(host) ? 'needs brackets around the IPv6 host ([::1]:9000)' : 'is not host:port');
  }
  if (host.includes('/')) throw new AddressError(text, 'looks like a socket path with a port; write unix:PATH for a unix socket');
  // "999.1.1.1" passes the hostname pattern but is a mistyped IPv4 address, not a name.
  const numeric = /^[\d.]+$/.test(host);
  if (!isIPv4(host) && (numeric || !HOSTNAME.test(host))) {
    throw new AddressError(text, `has an invalid host ${JSON.stringify(host)}`);
  }
  return { kind: 'tcp', host, port: parsePort(text, t.slice(colon + 1)) };
}

function parseBracketed(text: string, t: string): ListenAddress {
  const m = /^\[([^\]]*)\](?::(.*))?$/.exec(t);
  if (!m) throw new AddressError(text, 'is not [ipv6]:port');
  const host = m[1] ?? '';
  if (!isIPv6(host)) throw new AddressError(text, `has an invalid IPv6 host ${JSON.stringify(host)}`);
  if (m[2] === undefined) throw new AddressError(text, 'has no port ([ipv6]:port)');
  return { kind: 'tcp', host, port: parsePort(text, m[2]) };
}

function parsePort(text: string, digits: string): number {
  if (!/^\d{1,5}$/.test(digits)) throw new AddressError(text, `has an invalid port ${JSON.stringify(digits)} (0..65535)`);
  const port = Number(digits);
  if (port > 65535) throw new AddressError(text, `has port ${port} out of range 0..65535`);
  return port;
}

function parseFd(text: string, digits: string): number {
  if (!/^\d{1,9}$/.test(digits)) throw new AddressError(text, `has an invalid file descriptor ${JSON.stringify(digits)}`);
  return Number(digits);
}

/** Formats an address for logs; parseAddress(formatAddress(a)) gives `a` back. */
export function formatAddress(a: ListenAddress): string {
  switch (a.kind) {
    case 'tcp':
      return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
    case 'unix':
      return `unix:${a.path}`;
    case 'pipe':
      return a.path;
    case 'listen-fd':
      return `fd:${a.fd}`;
    case 'stdin':
      return 'stdin';
  }
}

/** Why listening failed, in words: `EADDRINUSE` says who to blame and what to do. */
export function listenFailure(code: string, flag: string): string {
  if (code === 'EADDRINUSE') return `EADDRINUSE: in use by another process; choose another address with ${flag}`;
  if (code === 'EACCES') return `EACCES: not allowed (a port below 1024 needs privileges, or the socket's directory is not writable)`;
  if (code === 'EADDRNOTAVAIL') return 'EADDRNOTAVAIL: no interface of this machine has that address';
  return code;
}
