/** `corral <command> --help`, generated from the settings table. */
import { SETTING_ROWS, defaultMarkdown, type SettingKey, type SettingSpec } from './settings.js';

const WIDTH = 80;
const COLUMN = 28;

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

function rowHelp(row: SettingSpec<SettingKey, unknown>): string {
  const aliases = row.aliases ?? [];
  const left = row.flag === null ? [row.arg, ...aliases.map((a) => `${a} ${row.arg}`)].join(', ') : `${[...aliases.filter((a) => !a.startsWith('--')), row.flag, ...aliases.filter((a) => a.startsWith('--'))].join(', ')} ${row.arg}`;
  const env = row.env.length > 0 ? `env ${row.env.join(', ')}; ` : '';
  const repeat = row.cli === 'repeatable' ? ' Repeatable.' : '';
  return `${entry(left, row.doc + repeat)}\n${entry('', `[${env}default: ${defaultMarkdown(row)}]`)}`;
}

/** The help text of a subcommand (`serve`): usage, every setting with its flag, env and default. */
export function renderHelp(command: string): string {
  const positional = SETTING_ROWS.filter((r) => r.cli === 'positional');
  const options = SETTING_ROWS.filter((r) => r.cli !== 'positional');
  const usage = `Usage: corral ${command} ${positional.map((r) => `[${r.arg}] `).join('')}[MODULE:CALLABLE] [options]`;
  return [
    usage,
    '',
    ...(positional.length > 0
      ? ['Arguments:', ...positional.map(rowHelp), entry('MODULE:CALLABLE', 'The WSGI app, as gunicorn takes it (`mysite.wsgi:application`): the same as `--wsgi-app`.'), '']
      : []),
    'Options:',
    ...options.map(rowHelp),
    entry('--reload', 'Watch `*.py` and reload on changes: gunicorn\'s `--reload`, the same as `--watch "*.py"`.'),
    entry('-h, --help', 'Show this help and exit.'),
    '',
    ...wrap(
      'Each setting is taken from, highest first: flags, environment, the --config file, the default. ' +
        'Every invalid value is reported at once. Reference: docs/settings.md.',
      WIDTH,
    ),
    '',
  ].join('\n');
}
