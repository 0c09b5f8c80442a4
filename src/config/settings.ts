/**
 * The settings table: the one source of truth for every setting's key, environment names, flag,
 * type, default and docs. The CLI parser, loader, --help, docs/settings.md and the config file's
 * JSON Schema are all generated from it; add a setting by adding a row.
 */
import type { ListenAddress } from './address.js';
import { controlAddress } from './control-address.js';
import { splitPathList } from './path-list.js';
import { address, appRelativePath, boolean, command, directory, envName, fileMask, integer, list, nullable, oneOf, pathName, regex, staticMapping, urlPrefix, wsgiAppSpec, type Kind } from './kinds.js';

/** How a setting appears on the command line. */
export type Placement = 'positional' | 'option' | 'repeatable';

/** A default as it would be written in the config file; it goes through the same parser. */
export type JsonDefault = string | number | boolean | null | readonly string[];

/** One row of the table. */
export interface SettingSpec<K extends string, T> {
  /** camelCase; also the key in the config file. */
  readonly key: K;
  /** Environment variables, first found wins; the first is the canonical name. */
  readonly env: readonly string[];
  readonly flag: `--${string}` | null;
  /** Other spellings of the flag with the same meaning (gunicorn's `-w`, `-b/--bind`, `--timeout`). */
  readonly aliases?: readonly string[];
  readonly cli: Placement;
  /** Placeholder for the value in help: `N`, `ADDR`. */
  readonly arg: string;
  readonly kind: Kind<T>;
  readonly default: JsonDefault | ((platform: NodeJS.Platform) => JsonDefault);
  /** How docs show the default when the JSON form would mislead. */
  readonly defaultDoc?: string;
  /** False for settings that make no sense inside the config file (the file's own path). */
  readonly inConfigFile?: boolean;
  /** One or two sentences: what it does and why the default. Markdown. */
  readonly doc: string;
}

const setting = <const K extends string, T>(spec: SettingSpec<K, T>): SettingSpec<K, T> => spec;

const splitCommas = (text: string): string[] => text.split(',');

export const SETTINGS = [
  setting({
    key: 'root', env: ['CORRAL_APP_DIR'], flag: null, aliases: ['--chdir'], cli: 'positional', arg: 'APP_DIR',
    kind: directory(), default: '.', defaultDoc: 'the current directory',
    doc: 'Directory of the WSGI app; it goes on the workers\' `sys.path` so `wsgi.py` in it can be imported. Defaults to the current directory, like running the app by hand.',
  }),
  setting({
    key: 'wsgiApp', env: ['WSGI_APP', 'WSGI_HANDLER'], flag: '--wsgi-app', cli: 'option', arg: 'MOD:CALLABLE',
    kind: wsgiAppSpec(), default: 'wsgi:application',
    doc: 'The WSGI callable: `module:callable` or Helicon\'s dotted `module.callable`; a trailing `()` calls it to get the app, as wfastcgi\'s `WSGI_HANDLER` does. The default is what Django\'s and most templates\' `wsgi.py` define.',
  }),
  setting({
    key: 'pythonPath', env: ['PYTHONPATH'], flag: '--pythonpath', cli: 'option', arg: 'DIRS',
    kind: list(pathName(), 'separated by ; or the OS path separator', splitPathList), default: [], defaultDoc: 'none',
    doc: 'Extra directories for the workers\' `sys.path`, separated by `;` or the OS path separator and made absolute. Empty by default because the app directory is always on `sys.path`.',
  }),
  setting({
    key: 'python', env: ['CORRAL_PYTHON'], flag: '--python', cli: 'option', arg: 'CMD',
    kind: command(), default: (platform) => (platform === 'win32' ? 'python' : 'python3'),
    defaultDoc: '`python3` (`python` on Windows)',
    doc: 'The interpreter that runs the workers: a path (a venv\'s python) or a command with arguments such as `py -3.12`, quoting parts with spaces in "..." or \'...\'. `python3` is the name Linux and macOS install; Windows installs `python`.',
  }),
  setting({
    key: 'listen', env: ['CORRAL_LISTEN'], flag: '--listen', aliases: ['-b', '--bind'], cli: 'repeatable', arg: 'ADDR',
    kind: list(address({ allowStdin: true }), 'comma-separated', splitCommas), default: [],
    defaultDoc: 'none (then `127.0.0.1:9000` unless `--http` is given)',
    doc: 'FastCGI addresses to accept connections on; repeat the flag for several (comma-separated in the environment). When neither this nor `--http` is given, `corral serve` listens on `127.0.0.1:9000`, local-only like a web server\'s upstream should be.',
  }),
  setting({
    key: 'dataPlane', env: ['CORRAL_DATA_PLANE'], flag: '--data-plane', cli: 'option', arg: 'MODE',
    kind: oneOf(['auto', 'direct', 'proxy']), default: 'auto',
    doc: 'Who accepts FastCGI connections. `auto` (the default): `direct` where it can apply, `proxy` elsewhere. `direct`: the workers themselves, on a socket the service binds and hands them (as PHP-FPM and gunicorn do), with the service supervising off the request path: faster behind nginx (no hop through Node). While the app has no ready worker because it failed (an import error, a failed DEPLOY_FILE, a crash storm), one answerer process takes the connections and answers the same 503 page as the proxy path; while workers merely start, connections wait in the listen queue (`queueLength` is its backlog). `proxy`: the service accepts and passes each request to a worker over its pipe. Direct applies to one app on one TCP or unix-socket listener on Linux and macOS; named pipes, IIS\'s stdin (IIS always takes the proxy path), the HTTP front, `corral dev` (it renders the error pages), apps chosen per request (`allowedRoots`, the relay) and Windows take the proxy path, and asking for `direct` there is a configuration error that says why.',
  }),
  setting({
    key: 'http', env: ['CORRAL_HTTP'], flag: '--http', cli: 'option', arg: 'ADDR',
    kind: nullable(address({ allowStdin: false })), default: null, defaultDoc: 'none',
    doc: 'Address of the built-in HTTP front, for use without a web server. Off by default: production traffic comes from IIS, nginx or Apache over FastCGI.',
  }),
  setting({
    key: 'trustForwarded', env: ['CORRAL_TRUST_FORWARDED'], flag: '--trust-forwarded', cli: 'option', arg: 'BOOL',
    kind: boolean(), default: false, defaultDoc: '`false` (`true` when started by HttpPlatformHandler or the ASP.NET Core Module)',
    doc: 'The HTTP front takes the client address, scheme and host from `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` (last hop), and only from loopback peers: IIS\'s HttpPlatformHandler or ASP.NET Core Module on the same machine. Off by default, since any client can send these headers; on by default when one of those modules started corral (see docs/iis.md).',
  }),
  setting({
    key: 'mount', env: ['CORRAL_MOUNT'], flag: '--mount', cli: 'option', arg: 'PREFIX',
    kind: urlPrefix(), default: '/', defaultDoc: 'none (ANCM\'s `ASPNETCORE_APPL_PATH` when started by the ASP.NET Core Module)',
    doc: 'URL path the HTTP front serves the app under, such as `/app` for an IIS application: `SCRIPT_NAME` is the prefix and `PATH_INFO` the rest, so the app\'s URLs carry it; other paths get 404 from corral. None by default: the app owns the whole site.',
  }),
  setting({
    key: 'static', env: ['CORRAL_STATIC', 'CORRAL_DEV_STATIC'], flag: '--static', aliases: ['--dev-static'], cli: 'repeatable', arg: 'URL=DIR',
    kind: list(staticMapping(), 'comma-separated', splitCommas), default: [], defaultDoc: 'none',
    doc: 'Files the HTTP front (`--http`, `corral serve` and `corral dev`) serves itself: DIR\'s files at the URL path below `mount`, e.g. `/static/=staticfiles` for the `STATIC_ROOT` that Django\'s collectstatic fills; repeat the flag for several. GET and HEAD with `ETag` and `Last-Modified` (304 when unchanged); a path leaving DIR (`..`, a symlink out of it) is a 404. None by default; behind nginx or IIS let the web server serve them (README, "Static files"), since FastCGI requests never reach this.',
  }),
  setting({
    key: 'control', env: ['CORRAL_CONTROL'], flag: '--control', cli: 'option', arg: 'ADDR',
    kind: nullable(controlAddress()), default: null, defaultDoc: 'none',
    doc: 'Address of the control listener: the `/status` page, `/status.json`, `/metrics` (Prometheus), `/healthz` (503 while stopping) and the `POST /reload` and `POST /stop` that `corral reload` and `corral stop` send with a token only the service\'s user can read. Loopback TCP (`127.0.0.1:9001`), a unix socket or a named pipe only, since it shows paths and tracebacks. Off by default; the commands look at `127.0.0.1:9001` unless told otherwise.',
  }),
  setting({
    key: 'controlReadAccess', env: ['CORRAL_CONTROL_READ_ACCESS'], flag: '--control-read-access', cli: 'option', arg: 'MODE',
    kind: oneOf(['local', 'token']), default: 'local',
    doc: 'Who may read the control listener\'s `/status`, `/status.json` and `/metrics`. `local`: any client that reaches it (loopback or the pipe) reads figures and states, but app directories, error messages and tracebacks only with the control token (`corral status` sends it). `token`: every read but `/healthz` needs the token. Local by default, as the listener only binds loopback; use `token` on machines shared with other users.',
  }),
  setting({
    key: 'allowedRoots', env: ['CORRAL_ALLOWED_ROOTS'], flag: '--allowed-roots', cli: 'option', arg: 'DIRS',
    kind: list(directory(), 'separated by ; or the OS path separator', splitPathList), default: [], defaultDoc: 'none',
    doc: 'Directories under which requests may name their own app (IIS sends `APPL_PHYSICAL_PATH`; `corral relay` adds the site\'s settings): each such app gets its own pool. Only a request carrying the relay secret (`relaySecretFile`) may name one; a root outside these, compared as real paths (symlinks and junctions resolved), gets 403 and runs no Python code. Empty by default: only the configured app runs, whatever a request says.',
  }),
  setting({
    key: 'relaySecretFile', env: ['CORRAL_RELAY_SECRET_FILE'], flag: '--relay-secret-file', cli: 'option', arg: 'FILE',
    kind: nullable(pathName()), default: null, defaultDoc: 'none',
    doc: 'A file holding the secret `corral relay` sends with each request (at least 32 characters; readable only by the service\'s user and its relays: mode 600 or 640 on POSIX, never world-readable). Only requests carrying it may name an app under `allowedRoots` or bring per-app settings; from any other client those params are ignored and logged. An auto-started service gets the file its relay made; for an installed service make one (e.g. `openssl rand -hex 32`) and give the relays the same path in `CORRAL_RELAY_SECRET_FILE`. See docs/iis.md.',
  }),
  setting({
    key: 'logRoots', env: ['CORRAL_LOG_ROOTS'], flag: '--log-roots', cli: 'option', arg: 'DIRS',
    kind: list(pathName(), 'separated by ; or the OS path separator', splitPathList), default: [], defaultDoc: 'none',
    doc: 'Directories outside `allowedRoots` where apps started by requests may keep their own log files (`WSGI_LOG`, `ERROR_LOG_DIR`, `DEPLOY_LOG`), such as the `C:\\Logs` of Microsoft\'s wfastcgi examples; compared as real paths. A log path an app names outside its root, `allowedRoots` and these is ignored with a warning and those lines go where they would without it (the service log), rather than refusing the app: a log file is not code.',
  }),
  setting({
    key: 'pipeAllUsers', env: ['CORRAL_PIPE_ALL_USERS'], flag: '--pipe-all-users', cli: 'option', arg: 'BOOL',
    kind: boolean(), default: false,
    doc: 'Windows: let every local account connect to the service\'s named pipes (and create instances of them). Off: Windows\' default pipe DACL applies (full control for LocalSystem, Administrators and the service\'s own account, read for Everyone), which fits a service auto-started by its relays as the app pool identity. Turn it on only for a service running as another account than its relays, with `relaySecretFile` set, and prefer giving that account its own pipe per app pool.',
  }),
  setting({
    key: 'maxApps', env: ['CORRAL_MAX_APPS'], flag: '--max-apps', cli: 'option', arg: 'N',
    kind: integer(1, 10_000), default: 32,
    doc: 'Most apps that requests may start under `allowedRoots` (the configured apps do not count); a request for another gets 503 until an idle app is reaped. Each app is a pool of Python processes, so a client must not be able to make unlimited ones.',
  }),
  setting({
    key: 'maxTotalWorkers', env: ['CORRAL_MAX_TOTAL_WORKERS'], flag: '--max-total-workers', cli: 'option', arg: 'N',
    kind: integer(1, 100_000), default: 64,
    doc: 'Most Python worker processes of all apps together; an app that would go past it waits in its queue (scaling up) or gets 503 (a new app). 64 is far beyond what 2-8 cores serve well.',
  }),
  setting({
    key: 'appIdleTimeout', env: ['CORRAL_APP_IDLE_TIMEOUT'], flag: '--app-idle-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(0, 604_800), default: 1800,
    doc: 'An app started by requests (under `allowedRoots`) that served nothing for this long is stopped and forgotten, freeing its workers (`0`: never). The configured apps are never reaped. 30 min, as IIS\'s app pool `idleTimeout` is 20.',
  }),
  setting({
    key: 'failFast', env: ['CORRAL_FAIL_FAST'], flag: '--fail-fast', cli: 'option', arg: 'BOOL',
    kind: boolean(), default: false,
    doc: '`corral serve` exits when the first workers of an app cannot start, with code 4 if the app failed to import and 3 for any other boot failure (gunicorn\'s "Worker failed to boot"), so a service manager or a deploy script sees it. Off by default: the app answers 503 with the reason and retries slowly, since under IIS or a service a fix is usually a deployment away. `corral dev` always keeps retrying and watching.',
  }),
  setting({
    key: 'workers', env: ['CORRAL_WORKERS'], flag: '--workers', aliases: ['-w'], cli: 'option', arg: 'N',
    kind: integer(1, 256), default: 2,
    doc: 'Python worker processes per app. Two, so one crashing or recycling worker does not leave the app unserved.',
  }),
  setting({
    key: 'minWorkers', env: ['CORRAL_MIN_WORKERS'], flag: '--min-workers', cli: 'option', arg: 'N',
    kind: nullable(integer(0, 256)), default: null, defaultDoc: '`workers`',
    doc: 'Fewest workers kept running. `0` starts the first worker on the first request (saves memory for rarely used apps, costs one Python start-up). Defaults to `workers`.',
  }),
  setting({
    key: 'maxWorkers', env: ['CORRAL_MAX_WORKERS'], flag: '--max-workers', cli: 'option', arg: 'N',
    kind: nullable(integer(1, 256)), default: null, defaultDoc: '`workers` (or `minWorkers` if larger)',
    doc: 'Most workers: one more is started when every thread is busy and requests wait, one at a time. Defaults to `workers`, a fixed pool.',
  }),
  setting({
    key: 'threads', env: ['CORRAL_THREADS'], flag: '--threads', cli: 'option', arg: 'N',
    kind: integer(1, 256), default: 1,
    doc: 'Request threads per worker. One, because not every WSGI app is thread-safe; raise it for I/O-bound apps.',
  }),
  setting({
    key: 'requestTimeout', env: ['CORRAL_REQUEST_TIMEOUT'], flag: '--request-timeout', aliases: ['--timeout'], cli: 'option', arg: 'SECONDS',
    kind: integer(0, 86_400), default: 90,
    doc: 'A request running longer gets 504 and its worker is killed and replaced (`0`: no limit); the log shows where it was stuck (the stack of the thread running it). 90 s is IIS\'s FastCGI `requestTimeout`, so behind IIS neither side gives up first by surprise.',
  }),
  setting({
    key: 'slowLogAfter', env: ['CORRAL_SLOW_LOG_AFTER'], flag: '--slow-log-after', cli: 'option', arg: 'SECONDS',
    kind: integer(0, 86_400), default: 0,
    doc: 'A request still running this long gets one log line with where it is (the stack of the thread running it, the app\'s frames as a traceback), and goes on: PHP-FPM\'s `request_slowlog_timeout`, uWSGI\'s `harakiri-verbose` without the kill. `0`: only as `requestTimeout` ends it (a second before, on the proxy path). Off by default: a line per slow request is for finding them, not for every day.',
  }),
  setting({
    key: 'startupTimeout', env: ['CORRAL_STARTUP_TIMEOUT'], flag: '--startup-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(1, 3_600), default: 60,
    doc: 'A worker that has not imported the app and said READY by then is killed and counted as a boot failure. 60 s leaves room for large Django projects on slow disks.',
  }),
  setting({
    key: 'idleTimeout', env: ['CORRAL_IDLE_TIMEOUT'], flag: '--idle-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(0, 86_400), default: 300,
    doc: 'A worker above `minWorkers` idle this long is stopped (`0`: never). 300 s is IIS\'s and mod_fcgid\'s idle timeout.',
  }),
  setting({
    key: 'maxRequests', env: ['CORRAL_MAX_REQUESTS'], flag: '--max-requests', cli: 'option', arg: 'N',
    kind: integer(0, 1e9), default: 0,
    doc: 'Recycle a worker after this many requests (`0`: never); its replacement starts first, so no request waits. Off by default: recycling costs a Python start-up and only helps apps that leak.',
  }),
  setting({
    key: 'maxRequestsJitter', env: ['CORRAL_MAX_REQUESTS_JITTER'], flag: '--max-requests-jitter', cli: 'option', arg: 'N',
    kind: integer(0, 1e9), default: 0,
    doc: 'Adds a random 0..N to each worker\'s `maxRequests`, so workers do not all recycle at once (gunicorn\'s `max_requests_jitter`). Set it to about a tenth of `maxRequests`.',
  }),
  setting({
    key: 'maxMemoryMB', env: ['CORRAL_MAX_MEMORY_MB'], flag: '--max-memory-mb', cli: 'option', arg: 'MB',
    kind: integer(0, 1_048_576), default: 0,
    doc: 'Recycle a worker whose resident memory (sampled every second) exceeds this, after its current requests (`0`: no limit). Off by default because a sensible limit depends on the app.',
  }),
  setting({
    key: 'queueLength', env: ['CORRAL_QUEUE_LENGTH'], flag: '--queue-length', cli: 'option', arg: 'N',
    kind: integer(0, 1_000_000), default: 1000,
    doc: 'Requests that may wait for a free worker thread; beyond it the answer is 503 with `Retry-After`. 1000 is IIS\'s FastCGI `queueLength`. On the direct data plane it is the listen backlog instead: connections wait in the kernel, and past it new ones are not taken (the web server answers its own error: nginx 502 on a unix socket, 504 after `fastcgi_connect_timeout` on TCP).',
  }),
  setting({
    key: 'queueTimeout', env: ['CORRAL_QUEUE_TIMEOUT'], flag: '--queue-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(0, 86_400), default: 30,
    doc: 'A request that waited this long in the queue gets 503 (`0`: wait as long as it takes). 30 s: a user has given up by then, and the worker time is better spent on newer requests. Proxy path only: on the direct data plane a connection waits in the listen queue until a worker accepts it, and the web server\'s own timeout (nginx\'s `fastcgi_read_timeout`) is the limit.',
  }),
  setting({
    key: 'gracefulTimeout', env: ['CORRAL_GRACEFUL_TIMEOUT'], flag: '--graceful-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(0, 3_600), default: 30,
    doc: 'How long a stopping or draining worker may finish its requests before it is killed; also the service\'s own stop deadline. 30 s, as gunicorn; keep it below your service manager\'s stop timeout.',
  }),
  setting({
    key: 'watchFileChangesMask', env: ['WATCH_FILE_CHANGES_MASK'], flag: '--watch', cli: 'option', arg: 'MASK',
    kind: nullable(fileMask()), default: null, defaultDoc: 'none (`*.py` in `corral dev`)',
    doc: 'Reload the app (a rolling restart of its workers, no request dropped) when a file matching these patterns changes: Helicon Zoo\'s form, e.g. `*.py;*.ini`, `;` `,` or `|` between patterns; a pattern with `/` matches the path from the app root. Unset in `serve`: production code changes by deployment, not by accident.',
  }),
  setting({
    key: 'restartFileRegex', env: ['WSGI_RESTART_FILE_REGEX'], flag: '--restart-regex', cli: 'option', arg: 'REGEX',
    kind: nullable(regex()), default: null, defaultDoc: 'none (wfastcgi\'s `.*((\\.py)|(\\.config))$` for an IIS site whose web.config names `WSGI_HANDLER` and no mask)',
    doc: 'wfastcgi\'s form of the same: a regular expression matched from the start of the changed file\'s path, in Python\'s syntax or JavaScript\'s (`(?P<name>...)`, `(?P=name)` and leading `(?i)` are translated; what cannot be is refused with the reason). Either this or the mask matching reloads. An empty value turns it off.',
  }),
  setting({
    key: 'trustOriginalUrl', env: ['CORRAL_TRUST_X_ORIGINAL_URL'], flag: '--trust-x-original-url', cli: 'option', arg: 'BOOL',
    kind: boolean(), default: false,
    doc: 'Take the request path from IIS URL Rewrite\'s `X-Original-URL` header (as wfastcgi\'s users expect behind a rewrite rule). Off by default: any client can send that header, and honouring it lets a request bypass IIS `<location>` rules.',
  }),
  setting({
    key: 'passEnv', env: ['CORRAL_PASS_ENV'], flag: '--pass-env', cli: 'option', arg: 'NAMES',
    kind: list(envName(), 'comma-separated names; a trailing * matches a prefix', splitCommas), default: [], defaultDoc: 'none beyond the base list',
    doc: 'Environment variables of the service passed on to the workers, besides a base list (system paths, locale, temp dirs, `PYTHON*`, `VIRTUAL_ENV`, proxy and TLS settings; see docs/security.md). Nothing else is inherited, so the service\'s own secrets never reach app code; `*` alone passes everything, as before.',
  }),
  setting({
    key: 'errorLogDir', env: ['ERROR_LOG_DIR'], flag: '--error-log-dir', cli: 'option', arg: 'DIR',
    kind: nullable(pathName()), default: null, defaultDoc: 'none (worker stderr goes to the log)',
    doc: 'Helicon Zoo\'s ERROR_LOG_DIR: each app\'s worker stderr (tracebacks, `wsgi.errors`, `print()`) is written to `DIR/<app>-<date>.log`, rotated at 10 MiB keeping 5 files. `NULL` (Helicon\'s off) or unset: those lines go to corral\'s log as `worker stderr`.',
  }),
  setting({
    key: 'wsgiLog', env: ['WSGI_LOG'], flag: '--wsgi-log', cli: 'option', arg: 'FILE',
    kind: nullable(pathName()), default: null, defaultDoc: 'none',
    doc: 'wfastcgi\'s WSGI_LOG: one file for the worker stderr of the app, rotated like ERROR_LOG_DIR\'s. When both are set, ERROR_LOG_DIR wins.',
  }),
  setting({
    key: 'deployFile', env: ['DEPLOY_FILE'], flag: '--deploy-file', cli: 'option', arg: 'SCRIPT',
    kind: nullable(appRelativePath()), default: null, defaultDoc: 'none',
    doc: 'Helicon Zoo\'s DEPLOY_FILE: a Python script (relative to the app directory) run with the app\'s interpreter and environment once before the first worker of each generation starts, e.g. migrations. If it fails, that generation does not start (on a reload the old one keeps serving).',
  }),
  setting({
    key: 'deployLog', env: ['DEPLOY_LOG'], flag: '--deploy-log', cli: 'option', arg: 'FILE',
    kind: nullable(appRelativePath()), default: null, defaultDoc: 'none (the output goes to the log)',
    doc: 'Helicon Zoo\'s DEPLOY_LOG: file (relative to the app directory) that collects DEPLOY_FILE\'s output, appended per run with a header line.',
  }),
  setting({
    key: 'logLevel', env: ['CORRAL_LOG_LEVEL'], flag: '--log-level', cli: 'option', arg: 'LEVEL',
    kind: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), default: 'info',
    doc: 'Lowest level of log lines written. `info` logs changes of state without a line per request.',
  }),
  setting({
    key: 'logFile', env: ['CORRAL_LOG_FILE'], flag: '--log-file', cli: 'option', arg: 'FILE',
    kind: nullable(pathName()), default: null, defaultDoc: 'none (stdout)',
    doc: 'Write the JSON log to this file instead of stdout, rotated daily and at 10 MiB, seven files kept (pino-roll). Needed under IIS and Windows services, where stdout goes nowhere.',
  }),
  setting({
    key: 'accessLog', env: ['CORRAL_ACCESS_LOG'], flag: '--access-log', cli: 'option', arg: 'BOOL',
    kind: boolean(), default: true,
    doc: 'One `request` line per request: method, path, status, bytes, duration, worker pid and queue wait. On by default, because "why was that slow, which worker served it" needs it; the lines are batched into few writes under load.',
  }),
  setting({
    key: 'maxParamsBytes', env: ['CORRAL_MAX_PARAMS_BYTES'], flag: '--max-params-bytes', cli: 'option', arg: 'BYTES',
    kind: integer(1024, 1024 ** 3), default: 1024 ** 2,
    doc: 'Largest FastCGI params block of one request, in bytes; a request sending more has its connection closed. 1 MiB bounds memory per request while staying far above what web servers send (a few KiB).',
  }),
  setting({
    key: 'maxConnections', env: ['CORRAL_MAX_CONNECTIONS'], flag: '--max-connections', cli: 'option', arg: 'N',
    kind: integer(1, 1_000_000), default: 1024,
    doc: 'Open FastCGI connections per listener; one more is closed at once (and logged once per peer until it clears). Also what GET_VALUES answers as `FCGI_MAX_CONNS`, and the HTTP front\'s limit of open connections (Node closes one more at once). 1024 is far above what nginx or IIS keep open to one backend and far below a process\'s file descriptor limit.',
  }),
  setting({
    key: 'maxConnectionRequests', env: ['CORRAL_MAX_CONNECTION_REQUESTS'], flag: '--max-connection-requests', cli: 'option', arg: 'N',
    kind: integer(1, 65_535), default: 64,
    doc: 'Requests open at once on one FastCGI connection (`FCGI_MAX_REQS` in GET_VALUES); a further BEGIN_REQUEST is answered `FCGI_OVERLOADED`. nginx, Apache and IIS send one at a time; 64 leaves room for multiplexing clients without letting one connection take the queue.',
  }),
  setting({
    key: 'paramsTimeout', env: ['CORRAL_PARAMS_TIMEOUT'], flag: '--params-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(1, 3_600), default: 30,
    doc: 'A request whose params (its headers) are not complete this long after its BEGIN_REQUEST is dropped and its connection closed: the slowloris guard. On the HTTP front, the time for a request\'s line and headers to arrive (Node\'s `headersTimeout`; a late one gets 408). Web servers send params in one go; 30 s is half of nginx\'s `client_header_timeout`.',
  }),
  setting({
    key: 'bodyTimeout', env: ['CORRAL_BODY_TIMEOUT'], flag: '--body-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(1, 86_400), default: 60,
    doc: 'A request body that sends nothing for this long (while the app waits for it) is aborted: the app\'s read raises and the connection is closed (on the HTTP front too; reading paused because the worker has not taken the body yet does not count). 60 s is nginx\'s `client_body_timeout`.',
  }),
  setting({
    key: 'connectionIdleTimeout', env: ['CORRAL_CONNECTION_IDLE_TIMEOUT'], flag: '--connection-idle-timeout', cli: 'option', arg: 'SECONDS',
    kind: integer(1, 86_400), default: 120,
    doc: 'A FastCGI connection with no open request is closed after this long; on the HTTP front, a kept-alive connection between requests (Node\'s `keepAliveTimeout`). Longer than nginx\'s upstream `keepalive_timeout` (60 s), so nginx closes kept connections first and never sends on one corral just closed.',
  }),
  setting({
    key: 'maxConnectionBuffer', env: ['CORRAL_MAX_CONNECTION_BUFFER'], flag: '--max-connection-buffer', cli: 'option', arg: 'BYTES',
    kind: integer(65_536, 1024 ** 3), default: 16 * 1024 ** 2, defaultDoc: '`16777216` (16 MiB)',
    doc: 'Bytes one FastCGI connection may have held in the service (params not yet routed, body not yet taken by a worker); past it the connection is closed. Bodies are paused at 256 KiB a request, so only a misbehaving client gets near 16 MiB.',
  }),
  setting({
    key: 'maxBufferedBytes', env: ['CORRAL_MAX_BUFFERED_BYTES'], flag: '--max-buffered-bytes', cli: 'option', arg: 'BYTES',
    kind: integer(1024 ** 2, 64 * 1024 ** 3), default: 256 * 1024 ** 2, defaultDoc: '`268435456` (256 MiB)',
    doc: 'Bytes all connections together may have held in the service; past it new requests get 503 and the connection that crossed it is closed, so many clients cannot add up to an out-of-memory service.',
  }),
  setting({
    key: 'maxBodySize', env: ['CORRAL_MAX_BODY_SIZE'], flag: '--max-body-size', cli: 'option', arg: 'BYTES',
    kind: integer(0, 2 ** 53 - 1), default: 30_000_000,
    doc: 'Largest request body in bytes: a larger `CONTENT_LENGTH` gets 413 before the app runs, and a body that grows past it is cut off and the request aborted (`0`: no limit); both fronts, answered 413 `CORRAL_BODY_TOO_LARGE` when no response byte was sent yet. 30,000,000 is IIS\'s `maxAllowedContentLength`; bodies stream, so this is about policy, not memory.',
  }),
  setting({
    key: 'config', env: ['CORRAL_CONFIG'], flag: '--config', cli: 'option', arg: 'FILE',
    kind: nullable(pathName()), default: null, defaultDoc: '`APP_DIR/corral.json` if the app folder has one, else none', inConfigFile: false,
    doc: 'JSON config file whose keys are the keys of this table (schema: `config/corral.schema.json`); relative paths in it resolve against its directory. By default the app folder\'s own `corral.json` when there is one, so an app ships its settings (`corral serve examples/django`); else none, as flags and environment suffice for one app.',
  }),
] as const;

/** Any row, for code that walks the table. */
export type SettingDef = (typeof SETTINGS)[number];
export type SettingKey = SettingDef['key'];
type ValueOf<D> = D extends SettingSpec<string, infer T> ? T : never;

/** The loaded settings, one property per row, typed by the row's kind. */
export type Settings = { readonly [D in SettingDef as D['key']]: ValueOf<D> };

/** The rows as a uniform list (the per-row value types are erased). */
export const SETTING_ROWS: readonly SettingSpec<SettingKey, unknown>[] = SETTINGS;

/** Where `corral serve` listens when neither `listen` nor `http` is set. */
export const DEFAULT_LISTEN: ListenAddress = Object.freeze({ kind: 'tcp', host: '127.0.0.1', port: 9000 });

/** The pool's bounds: `workers` sets both unless minWorkers/maxWorkers say otherwise. */
export function workerBounds(s: Pick<Settings, 'workers' | 'minWorkers' | 'maxWorkers'>): { min: number; max: number } {
  const min = s.minWorkers ?? s.workers;
  return { min, max: s.maxWorkers ?? Math.max(s.workers, min, 1) };
}

/** The FastCGI addresses to listen on, applying DEFAULT_LISTEN. */
export function listenAddresses(settings: Pick<Settings, 'listen' | 'http'>): readonly ListenAddress[] {
  return settings.listen.length === 0 && settings.http === null ? [DEFAULT_LISTEN] : settings.listen;
}

/** The default of a row on a platform, in its JSON form. */
export function defaultOf(row: SettingSpec<SettingKey, unknown>, platform: NodeJS.Platform): JsonDefault {
  return typeof row.default === 'function' ? row.default(platform) : row.default;
}

/** The default as docs show it, in Markdown: defaultDoc, or the JSON default in backticks. */
export function defaultMarkdown(row: SettingSpec<SettingKey, unknown>): string {
  if (row.defaultDoc !== undefined) return row.defaultDoc;
  const value = defaultOf(row, 'linux');
  if (value === null || (Array.isArray(value) && value.length === 0)) return 'none';
  return `\`${Array.isArray(value) ? value.join(', ') : String(value)}\``;
}
