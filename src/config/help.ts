/** `corral <command> --help`, generated from the settings table, its options grouped by what they are for. */
import { DEV_DEFAULTS } from './dev-defaults.js';
import { SETTING_ROWS, defaultMarkdown, type SettingKey, type SettingSpec } from './settings.js';

const WIDTH = 80;
const COLUMN = 28;

/** The commands whose options are the settings. */
export type SettingsCommand = 'serve' | 'dev' | 'check';

/** The option groups of help, in order; every setting but the positional is in exactly one. */
export const HELP_GROUPS: readonly { readonly title: string; readonly keys: readonly SettingKey[] }[] = [
  { title: 'App', keys: ['wsgiApp', 'python', 'pythonPath', 'passEnv', 'deployFile', 'deployLog', 'config'] },
  { title: 'Listening', keys: ['listen', 'http', 'dataPlane', 'mount', 'static', 'trustForwarded', 'trustOriginalUrl'] },
  { title: 'Workers', keys: ['workers', 'minWorkers', 'maxWorkers', 'threads', 'startupTimeout', 'failFast', 'idleTimeout', 'maxRequests', 'maxRequestsJitter', 'maxMemoryMB', 'gracefulTimeout', 'maxTotalWorkers'] },
  { title: 'Reload', keys: ['watchFileChangesMask', 'restartFileRegex'] },
  { title: 'Logs', keys: ['logLevel', 'logFile', 'accessLog', 'slowLogAfter', 'errorLogDir', 'wsgiLog'] },
  { title: 'Limits', keys: ['requestTimeout', 'queueLength', 'queueTimeout', 'maxBodySize', 'maxParamsBytes', 'maxConnections', 'maxConnectionRequests', 'paramsTimeout', 'bodyTimeout', 'connectionIdleTimeout', 'maxConnectionBuffer', 'maxBufferedBytes'] },
  { title: 'Control', keys: ['control', 'controlReadAccess'] },
  { title: 'IIS and Windows (apps named by requests)', keys: ['allowedRoots', 'relaySecretFile', 'logRoots', 'maxApps', 'appIdleTimeout', 'pipeAllUsers'] },
];

/** What each command is, its extra options and its exit codes; the settings follow. */
const COMMAND_TEXT: Readonly<Record<SettingsCommand, { intro: string; extra: readonly [string, string][]; exits: string }>> = {
  serve: {
    intro: 'Runs the service: the app\'s Python workers behind the FastCGI listeners (and the HTTP front with --http) until stopped.',
    extra: [],
    exits:
      'Exit codes: 0 stopped by a signal or `corral stop`; 1 could not start (an address in use); 2 invalid settings; ' +
      'with --fail-fast, 3 the first workers could not boot and 4 the app failed to import.',
  },
  dev: {
    intro:
      '`corral serve` with a developer\'s defaults: HTTP on 127.0.0.1:8000 (unless --listen is given), one worker of four threads, ' +
      '`*.py` watched (unless --restart-regex is given), readable logs and tracebacks in the browser. An app that fails to import is retried on each save.',
    extra: [],
    exits: 'Exit codes: 0 stopped; 1 could not start (an address in use); 2 invalid settings.',
  },
  check: {
    intro:
      'Checks what serve would run, without listening: the settings (every problem at once), the interpreter (its path and version), ' +
      'that the app\'s module can be found and, unless --no-import, that the app imports, in one throwaway worker. ' +
      'An APP_DIR with a web.config is checked as IIS runs it: its settings win over flags and environment, its other keys are the app\'s environment.',
    extra: [['--no-import', 'Stop after finding the app\'s module: do not run any of its code.']],
    exits:
      'Exit codes: 0 all good; 2 invalid settings or usage; 3 the interpreter cannot run or a worker cannot boot; ' +
      '4 the app\'s module is not found or the app fails to import.',
  },
};

/**
 * Wraps Markdown to terminal lines: backticks are dropped, and a code span such as `py -3.12`
 * is never split across lines.
 */
function wrap(markdown: string, width: number): string[] {
  const words = (markdown.match(/(?:`[^`]*`|[^\s`])+/g) ?? []).map((w) => w.replace(/`/g, ''));
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

function entry(left: string, markdown: string): string {
  const [first = '', ...rest] = wrap(markdown, WIDTH - COLUMN);
  const indent = ' '.repeat(COLUMN);
  const head = left.length + 4 <= COLUMN ? `  ${left.padEnd(COLUMN - 2)}${first}` : `  ${left}\n${indent}${first}`;
  return [head, ...rest.map((l) => indent + l)].join('\n');
}

/** The default as this command applies it: `corral dev` has its own for a few settings. */
function defaultFor(row: SettingSpec<SettingKey, unknown>, command: SettingsCommand): string {
  const dev = command === 'dev' ? DEV_DEFAULTS[row.key] : undefined;
  if (dev === undefined) return defaultMarkdown(row);
  const unless = dev.unless === undefined ? '' : ` unless ${SETTING_ROWS.find((r) => r.key === dev.unless)?.flag ?? dev.unless} is given`;
  return `\`${dev.text}\` in dev${unless}`;
}

function rowHelp(row: SettingSpec<SettingKey, unknown>, command: SettingsCommand): string {
  const aliases = row.aliases ?? [];
  const left = row.flag === null ? [row.arg, ...aliases.map((a) => `${a} ${row.arg}`)].join(', ') : `${[...aliases.filter((a) => !a.startsWith('--')), row.flag, ...aliases.filter((a) => a.startsWith('--'))].join(', ')} ${row.arg}`;
  const env = row.env.length > 0 ? `env ${row.env.join(', ')}; ` : '';
  const repeat = row.cli === 'repeatable' ? ' Repeatable.' : '';
  return `${entry(left, row.doc + repeat)}\n${entry('', `[${env}default: ${defaultFor(row, command)}]`)}`;
}

/** The help text of a subcommand (`serve`, `dev`, `check`): usage, what it does, every setting by group with its flag, env and default. */
export function renderHelp(command: SettingsCommand): string {
  const text = COMMAND_TEXT[command];
  const positional = SETTING_ROWS.filter((r) => r.cli === 'positional');
  const byKey = new Map(SETTING_ROWS.map((r) => [r.key, r]));
  const usage = `Usage: corral ${command} ${positional.map((r) => `[${r.arg}] `).join('')}[MODULE:CALLABLE] [options]`;
  const groups = HELP_GROUPS.flatMap((g) => [
    '',
    `${g.title}:`,
    ...g.keys.map((k) => byKey.get(k)).filter((r): r is SettingSpec<SettingKey, unknown> => r !== undefined).map((r) => rowHelp(r, command)),
    ...(g.title === 'Reload' ? [entry('--reload', 'Watch `*.py` and reload on changes: gunicorn\'s `--reload`, the same as `--watch "*.py"`.')] : []),
    ...(g.title === 'Logs' ? [entry('--access-logfile -', 'gunicorn\'s spelling of `--access-log true`: access lines go into corral\'s log (stdout or `--log-file`); a file of their own is not supported.')] : []),
  ]);
  return [
    usage,
    '',
    ...wrap(text.intro, WIDTH),
    '',
    ...(positional.length > 0
      ? ['Arguments:', ...positional.map((r) => rowHelp(r, command)), entry('MODULE:CALLABLE', 'The WSGI app, as gunicorn takes it (`mysite.wsgi:application`): the same as `--wsgi-app`.'), '']
      : []),
    'Options:',
    ...text.extra.map(([flag, doc]) => entry(flag, doc)),
    entry('-h, --help', 'Show this help and exit.'),
    ...groups,
    '',
    ...wrap(
      'Each setting is taken from, highest first: flags, environment, the --config file, the default. ' +
        'Every invalid value is reported at once. Reference: docs/settings.md.',
      WIDTH,
    ),
    '',
    ...wrap(text.exits, WIDTH),
    '',
  ].join('\n');
}
