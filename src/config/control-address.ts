/**
 * The control listener's address: loopback TCP, a unix socket or a named pipe, never a public
 * interface. Status pages show paths and tracebacks, and the listener must stay out of reach of
 * the network even when someone writes `--control :9001`.
 */
import { isIPv4 } from 'node:net';
import { AddressError, parseAddress, type ListenAddress } from './address.js';
import type { Kind, Parsed } from './kinds.js';

/** Where `corral status|reload|stop` look when neither `--control` nor CORRAL_CONTROL says. */
export const DEFAULT_CONTROL = '127.0.0.1:9001';

/** The forms a control address may take, for "expected ..." in messages. */
export const CONTROL_FORMS = 'a loopback host:port (127.0.0.1:9001, [::1]:9001, localhost:9001), a unix socket path or a named pipe \\\\.\\pipe\\name';

/** True for 127.0.0.0/8, ::1, ::ffff:127.x.y.z and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

/** Why `a` cannot be a control address, or null if it can. */
export function controlAddressProblem(a: ListenAddress): string | null {
  switch (a.kind) {
    case 'tcp':
      return isLoopbackHost(a.host) ? null : `is not a loopback address (host ${JSON.stringify(a.host)}); the control listener only listens on this machine`;
    case 'unix':
    case 'pipe':
      return null;
    case 'listen-fd':
    case 'stdin':
      return 'cannot be used for the control listener';
  }
}

/** Parses a control address; throws AddressError (naming the text) when it is malformed or not local. */
export function parseControlAddress(text: string): ListenAddress {
  const a = parseAddress(text);
  const problem = controlAddressProblem(a);
  if (problem) throw new AddressError(text, problem);
  return a;
}

/** The settings kind of `control` (`--control ADDR`, CORRAL_CONTROL). */
export function controlAddress(): Kind<ListenAddress> {
  const fromText = (text: string): Parsed<ListenAddress> => {
    try {
      const a = parseAddress(text);
      const problem = controlAddressProblem(a);
      return problem ? { ok: false, issues: [{ at: [], received: text, reason: problem }] } : { ok: true, value: a };
    } catch (err) {
      if (err instanceof AddressError) return { ok: false, issues: [{ at: [], received: text, reason: err.reason }] };
      throw err;
    }
  };
  return {
    label: 'address',
    expected: CONTROL_FORMS,
    schema: { type: 'string', minLength: 1 },
    fromText,
    fromJson: (value) => (typeof value === 'string' ? fromText(value) : { ok: false, issues: [{ at: [], received: value, reason: 'is not a string' }] }),
  };
}
