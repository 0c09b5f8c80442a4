/**
 * Renders docs/settings.md and config/corral.schema.json from the settings table; writes them when
 * run as a script (`node dist/config/gen-docs.js`). test/unit/settings-docs.test.ts keeps them in step.
 */
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatAddress } from './address.js';
import { formatProblem } from './problems.js';
import { DEFAULT_LISTEN, SETTING_ROWS, defaultMarkdown } from './settings.js';
import { ERRORS } from '../errors.js';
import { APP_ENTRY_KEYS } from './apps.js';

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (text: string): string => `\`${text}\``;

function settingsTable(): string[] {
  const rows = SETTING_ROWS.map((row) => {
    const aliases = (row.aliases ?? []).map((a) => code(`${a} ${row.arg}`));
    const flag = [row.flag === null ? `${code(row.arg)} (argument)` : code(`${row.flag} ${row.arg}`), ...aliases].join(', ');
    const repeat = row.cli === 'repeatable' ? ' (repeatable)' : '';
    const env = row.env.map(code).join(', ');
    const key = row.inConfigFile === false ? `${code(row.key)} (not in the file)` : code(row.key);
    return `| ${key} | ${flag}${repeat} | ${env} | ${cell(row.kind.label)} | ${cell(defaultMarkdown(row))} | ${cell(row.doc)} |`;
  });
  return ['| Key | Flag | Environment | Type | Default | Description |', '|---|---|---|---|---|---|', ...rows];
}

const EXAMPLE_PROBLEMS = [
  { origin: '--workers', key: 'workers', received: '"lots"', reason: 'is not an integer', expected: 'an integer 1..256' },
  { origin: 'CORRAL_LISTEN', key: 'listen', received: '"localhost"', reason: 'has no port (host:port)', expected: 'host:port, …' },
  { origin: '/etc/corral.json $.wrokers', key: null, received: null, reason: 'is not a known setting', expected: 'one of root, wsgiApp, …' },
] as const;

/** docs/settings.md */
export function renderSettingsMarkdown(): string {
  return [
    '# Settings',
    '',
    '<!-- Generated from src/config/settings.ts by src/config/gen-docs.ts: edit the table, not this file.',
    '     Regenerate with `UPDATE_DOCS=1 npx vitest run test/unit/settings-docs.test.ts` or `npm run docs`. -->',
    '',
    'Every setting of `corral serve` has a key (also its name in the config file), environment variables, and a flag or argument.',
    'Some flags also take the spelling gunicorn users type (`-w`, `-b`/`--bind`, `--timeout`, `--chdir`); `--reload` is `--watch "*.py"`.',
    'A mistyped flag or config key gets a "did you mean".',
    '',
    '## Where values come from',
    '',
    'Each setting takes its value from the highest source that sets it:',
    '',
    '1. command-line flags;',
    '2. environment variables (an empty variable counts as unset; where a setting lists several, the first one set wins);',
    '3. the JSON config file named by `--config` or `CORRAL_CONFIG`;',
    '4. the default.',
    '',
    'Every value given is validated at start-up, overridden ones included. All problems are reported at once, each',
    'naming where the value came from, the setting, the value received and what was expected, and corral exits',
    'non-zero:',
    '',
    '```',
    `invalid configuration (${EXAMPLE_PROBLEMS.length} problems):`,
    ...EXAMPLE_PROBLEMS.map((p) => `  - ${formatProblem(p)}`),
    '```',
    '',
    '## Settings',
    '',
    ...settingsTable(),
    '',
    '## Default listen address',
    '',
    `When neither \`listen\` nor \`http\` is set, \`corral serve\` accepts FastCGI on ${code(formatAddress(DEFAULT_LISTEN))}:`,
    'loopback only, because the web server in front runs on the same machine. Given only `--http`, it serves HTTP',
    'and listens for no FastCGI at all.',
    '',
    '## Addresses',
    '',
    '| Form | Example | Meaning |',
    '|---|---|---|',
    '| `host:port` | `127.0.0.1:9000`, `localhost:9000` | TCP; port 0 picks a free port |',
    '| `[ipv6]:port` | `[::1]:9000` | TCP over IPv6 |',
    '| `:port` | `:9000` | TCP on all interfaces (`0.0.0.0`): reachable from other machines |',
    '| `port` | `9000` | TCP on `127.0.0.1` |',
    '| unix socket | `/run/corral.sock`, `./corral.sock`, `unix:corral.sock` | a path containing `/` without a `:port` suffix, or anything after `unix:` |',
    '| named pipe | `\\\\.\\pipe\\corral`, `//./pipe/corral` | Windows named pipe (`pipe` in any case) |',
    '| `fd:N` | `fd:0` | an inherited listening socket: the FastCGI spec\'s FCGI_LISTENSOCK_FILENO, as spawn-fcgi, mod_fcgid and IIS in Tcp mode pass it |',
    '| `stdin` | `stdin` | an already-connected stream on fd 0, as IIS passes its named pipe; not for `http` |',
    '',
    '## Config file',
    '',
    'A JSON object whose keys are the keys above (except `config`); `"$schema"` is allowed so editors can',
    'validate against `config/corral.schema.json`. Unknown keys are errors, reported with their JSON path.',
    'Relative paths in the file (`root`, `pythonPath`, a `python` program path) resolve against the',
    'file\'s directory, not the working directory. Lists are JSON arrays, or one string split as in the',
    'environment; `python` may also be an argv array (`["py", "-3.12"]`). JSON has no comments, so',
    '`config/corral.example.json` is explained here: it serves `examples/hello` on `127.0.0.1:9000`',
    'and `127.0.0.1:8000` (HTTP) with two workers of one thread.',
    '',
    '## Several apps in one service',
    '',
    'The config file may list `apps`: each entry is an object of settings for one app, `root` required,',
    `and may set ${APP_ENTRY_KEYS.map(code).join(', ')}. Every other setting, and every one an entry`,
    'leaves out, comes from the service\'s own settings (defaults < file < environment < flags). An',
    'entry with its own `listen` or `http` gets fronts that serve only it (one nginx upstream per app,',
    'like PHP-FPM pools); the service\'s own addresses serve the first app, or pick the app whose',
    '`root` equals the request\'s `APPL_PHYSICAL_PATH` (IIS). Errors are reported with their JSON path,',
    'e.g. `$.apps[1].workers`.',
    '',
    '```json',
    '{',
    '  "workers": 2,',
    '  "apps": [',
    '    { "root": "/srv/shop", "wsgiApp": "shop.wsgi:application", "listen": ["/run/corral/shop.sock"] },',
    '    { "root": "/srv/blog", "listen": ["/run/corral/blog.sock"], "workers": 1, "threads": 4 }',
    '  ]',
    '}',
    '```',
    '',
    '## The python command',
    '',
    '`--python` is split on whitespace; `"..."` and `\'...\'` group words (`"C:\\Program Files\\Python312\\python.exe" -X utf8`).',
    'There are no escapes: backslashes are kept, as Windows paths need. A program name without a slash',
    'is looked up on `PATH`; a relative path such as `./venv/bin/python` is made absolute.',
    '',
  ].join('\n');
}

/** config/corral.schema.json (as an object). */
export function renderSettingsSchema(): Record<string, unknown> {
  const properties: Record<string, unknown> = {
    $schema: { description: 'Path or URL of this schema, for editors.', type: 'string' },
  };
  for (const row of SETTING_ROWS) {
    if (row.inConfigFile === false) continue;
    const fixed = typeof row.default === 'function' ? {} : { default: row.default };
    properties[row.key] = { description: row.doc, ...row.kind.schema, ...fixed };
  }
  const appProperties: Record<string, unknown> = {};
  for (const key of APP_ENTRY_KEYS) {
    const row = SETTING_ROWS.find((r) => r.key === key)!;
    appProperties[key] = { description: row.doc, ...row.kind.schema };
  }
  properties.apps = {
    description: 'Several apps in one service: each entry overrides the settings above for one app; `root` is required. An entry may have its own `listen`/`http` addresses.',
    type: 'array',
    items: { type: 'object', additionalProperties: false, required: ['root'], properties: appProperties },
  };
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'wsgi-corral config file',
    description: 'Generated from src/config/settings.ts; see docs/settings.md.',
    type: 'object',
    additionalProperties: false,
    properties,
  };
}

/** Every generated file: path relative to the repository root, and its content. */
/** docs/errors.md: the error catalogue (src/errors.ts). */
export function renderErrorsMarkdown(): string {
  const rows = Object.entries(ERRORS).map(([code, e]) => `| \`${code}\` | ${e.status} ${e.title} | ${cell(e.doc)} |`);
  return [
    '# Errors',
    '',
    '<!-- Generated from src/errors.ts by src/config/gen-docs.ts: edit the catalogue, not this file. -->',
    '',
    'Every error a client or an operator can meet has a stable code. Clients get the HTTP status below, a',
    'short text body naming the code, and an `X-Corral-Error: CODE` header; the log line about it carries',
    'the same code. In `corral dev`, errors that mean the app\'s code is broken (import failures, boot',
    'failures, crash storms) are answered with 500 and an HTML page with the Python traceback.',
    '',
    '| Code | HTTP status | Meaning |',
    '|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

/** The settings summary in README.md, between its settings markers. */
export function renderReadmeSettings(): string {
  const rows = SETTING_ROWS.map((row) => {
    const flag = row.flag === null ? code(row.arg) : code(row.flag);
    return `| ${code(row.key)} | ${flag} | ${row.env.map(code).join(', ')} | ${cell(defaultMarkdown(row))} |`;
  });
  return ['| Setting | Flag | Environment | Default |', '|---|---|---|---|', ...rows].join('\n');
}

export function renderGeneratedFiles(): Record<string, string> {
  return {
    'docs/settings.md': renderSettingsMarkdown(),
    'docs/errors.md': renderErrorsMarkdown(),
    'config/corral.schema.json': `${JSON.stringify(renderSettingsSchema(), null, 2)}\n`,
  };
}

/** The repository root, from src/config or dist/config alike. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Writes the generated files under `root`; returns their paths. */
export function writeGeneratedFiles(root: string = REPO_ROOT): string[] {
  return Object.entries(renderGeneratedFiles()).map(([relative, content]) => {
    const file = join(root, relative);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
    return file;
  });
}

function isMainModule(): boolean {
  const script = process.argv[1];
  try {
    return script !== undefined && import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isMainModule()) {
  for (const file of writeGeneratedFiles()) console.log(`wrote ${file}`);
}
