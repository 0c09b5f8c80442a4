/**
 * Which data plane serves the FastCGI listeners: `direct` (the workers accept, the service
 * supervises) or `proxy` (the service accepts and passes requests over the workers' pipes). The
 * workers can take connections themselves only where they can share the listening socket (TCP and
 * unix sockets, not Windows) and where every connection goes to the one app they run: not with
 * apps chosen per request, several apps, or the HTTP front (which is the service's own).
 */
import { formatAddress, type ListenAddress } from '../config/address.js';
import { listenAddresses, type Settings } from '../config/settings.js';
import { directCapable } from '../pool/shared-listener.js';

/** What the service runs. */
export type DataPlane = 'direct' | 'proxy';

export interface PlaneContext {
  readonly platform: NodeJS.Platform;
  /** The settings came with a list of apps (config file `apps`). */
  readonly appsList: boolean;
  /** The service has an app of its own (not only apps that requests name). */
  readonly defaultApp: boolean;
  /** `corral dev`: the service renders the error pages from the workers' facts. */
  readonly dev?: boolean;
}

/** The choice and why; `error` when `direct` was asked for and cannot apply. */
export type PlaneChoice =
  | { readonly plane: DataPlane; readonly why: string; readonly address: ListenAddress | null; readonly error?: undefined }
  | { readonly error: string };

/** Picks the data plane for these settings. Pure. */
export function chooseDataPlane(s: Readonly<Pick<Settings, 'dataPlane' | 'listen' | 'http' | 'allowedRoots'>>, ctx: PlaneContext): PlaneChoice {
  if (s.dataPlane === 'proxy') return { plane: 'proxy', why: 'dataPlane is proxy', address: null };
  const blocker = directBlocker(s, ctx);
  if (blocker === null) {
    const address = listenAddresses(s)[0]!;
    return { plane: 'direct', why: `the workers accept on ${formatAddress(address)}`, address };
  }
  if (s.dataPlane === 'direct') return { error: `dataPlane direct cannot apply: ${blocker}; use proxy (or auto)` };
  return { plane: 'proxy', why: blocker, address: null };
}

/** Why the workers cannot accept the connections themselves, or null if they can. */
function directBlocker(s: Readonly<Pick<Settings, 'listen' | 'http' | 'allowedRoots'>>, ctx: PlaneContext): string | null {
  if (ctx.platform === 'win32') return 'Windows workers cannot share a listening socket (named pipes go through the service)';
  if (ctx.dev) return 'corral dev renders its error pages in the service';
  if (s.http) return 'the HTTP front is the service\'s own';
  if (ctx.appsList) return 'several apps share the service';
  if (!ctx.defaultApp || s.allowedRoots.length > 0) return 'requests choose their app (allowedRoots)';
  const addresses = listenAddresses(s);
  if (addresses.length !== 1) return 'the workers share exactly one listening socket (several listen addresses given)';
  const a = addresses[0]!;
  if (!directCapable(a, ctx.platform)) return `${formatAddress(a)} is not a TCP or unix socket`;
  return null;
}
