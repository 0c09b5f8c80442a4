/**
 * `corral serve` started by IIS's HttpPlatformHandler (HPH) or ASP.NET Core Module (ANCM,
 * out-of-process): the module picks a loopback port, passes it in the environment
 * (HTTP_PLATFORM_PORT; ASPNETCORE_PORT with ASPNETCORE_TOKEN and ASPNETCORE_APPL_PATH) and proxies
 * HTTP to it. In that mode corral listens HTTP on 127.0.0.1:<port> instead of FastCGI, trusts the
 * module's X-Forwarded-* headers, checks ANCM's pairing token and reads the app's web.config
 * `<appSettings>` between the config file and the environment.
 * https://learn.microsoft.com/iis/extensions/httpplatformhandler/httpplatformhandler-configuration-reference
 * https://learn.microsoft.com/aspnet/core/host-and-deploy/iis/out-of-process-hosting
 */
import { join } from 'node:path';
import type { LoadResult } from '../config/load.js';
import { appSettings } from '../config/app-settings.js';
import { urlPrefix } from '../config/kinds.js';
import { formatProblem, type Problem } from '../config/problems.js';
import { SETTING_ROWS, type Settings } from '../config/settings.js';
import { readAppSettings } from '../config/webconfig.js';

/** Which IIS module started corral, and what it told it. */
export interface PlatformMode {
  readonly module: 'HttpPlatformHandler' | 'AspNetCoreModule';
  /** The environment variable the port came from. */
  readonly portVar: 'HTTP_PLATFORM_PORT' | 'ASPNETCORE_PORT';
  readonly port: number;
  /** ANCM's ASPNETCORE_TOKEN (null under HPH). */
  readonly pairingToken: string | null;
  /** ANCM's ASPNETCORE_APPL_PATH, the IIS application's virtual path (null when unset). */
  readonly applPath: string | null;
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The module that started corral, when `http` is not set and its port variable is; an error
 * message for a port that is not one. ANCM wins when both are set (its variables are the more specific).
 */
export function detectPlatform(env: Env, loaded: LoadResult): PlatformMode | string | null {
  if (loaded.sources.http !== 'default') return null;
  const portVar = env.ASPNETCORE_PORT ? 'ASPNETCORE_PORT' : env.HTTP_PLATFORM_PORT ? 'HTTP_PLATFORM_PORT' : null;
  if (portVar === null) return null;
  const text = env[portVar]!;
  const port = /^\d{1,5}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(port >= 1 && port <= 65535)) return `${portVar}=${JSON.stringify(text)} is not a TCP port (expected 1..65535)`;
  const ancm = portVar === 'ASPNETCORE_PORT';
  return {
    module: ancm ? 'AspNetCoreModule' : 'HttpPlatformHandler',
    portVar,
    port,
    pairingToken: ancm && env.ASPNETCORE_TOKEN ? env.ASPNETCORE_TOKEN : null,
    applPath: ancm && env.ASPNETCORE_APPL_PATH ? env.ASPNETCORE_APPL_PATH : null,
  };
}

/** The settings for platform mode, and which web.config appSettings were applied. */
export interface PlatformSettings {
  readonly settings: Readonly<Settings>;
  readonly webConfig: readonly string[];
  readonly problems: readonly string[];
}

/**
 * Applies platform mode over loaded settings: HTTP on 127.0.0.1:<port>; trustForwarded and (ANCM)
 * mount on unless set; web.config appSettings for keys no environment variable or flag set.
 */
export function platformSettings(loaded: LoadResult, mode: PlatformMode, platform: NodeJS.Platform): PlatformSettings {
  const { settings: s, sources } = loaded;
  // web.config sits between the config file and the environment: keys the environment or a flag set are left out.
  const web = new Map<string, string>();
  for (const [name, value] of readAppSettings(s.root)) {
    const row = SETTING_ROWS.find((r) => r.env.some((e) => e.toUpperCase() === name.toUpperCase()));
    if (row !== undefined && (sources[row.key] === 'env' || sources[row.key] === 'flag')) continue;
    web.set(name, value);
  }
  const layered = appSettings(s, s.root, [{ origin: join(s.root, 'web.config'), values: web }], platform, { APPL_PHYSICAL_PATH: s.root });
  const problems: Problem[] = [...layered.problems];
  let mount = s.mount;
  if (sources.mount === 'default' && mode.applPath !== null) {
    const parsed = urlPrefix().fromText(mode.applPath, { baseDir: s.root, platform });
    if (parsed.ok) mount = parsed.value;
    else problems.push({ origin: 'ASPNETCORE_APPL_PATH', key: 'mount', received: JSON.stringify(mode.applPath), reason: 'is not a URL path', expected: urlPrefix().expected });
  }
  const settings: Settings = {
    ...layered.settings,
    http: { kind: 'tcp', host: '127.0.0.1', port: mode.port },
    trustForwarded: sources.trustForwarded === 'default' ? true : s.trustForwarded,
    mount,
  };
  return { settings: Object.freeze(settings), webConfig: [...web.keys()].filter((k) => !layered.ignored.includes(k)), problems: problems.map(formatProblem) };
}
