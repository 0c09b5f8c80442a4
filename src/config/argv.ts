/** Command-line parsing generated from the settings table, on node:util parseArgs. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { quote, type Problem } from './problems.js';
import { SETTING_ROWS, type SettingKey } from './settings.js';

/** The text given for one setting on the command line (several for a repeatable flag). */
export interface FlagValue {
  /** `--workers`, or the positional's name (`APP_DIR`). */
  readonly origin: string;
  readonly texts: readonly string[];
}

export interface CommandLine {
  readonly help: boolean;
  readonly values: ReadonlyMap<SettingKey, FlagValue>;
  readonly problems: readonly Problem[];
}

type Options = NonNullable<ParseArgsConfig['options']>;

function optionsFromTable(): Options {
  const options: Options = { help: { type: 'boolean', short: 'h' } };
  for (const row of SETTING_ROWS) {
    if (row.flag !== null) options[row.flag.slice(2)] = { type: 'string', multiple: row.cli === 'repeatable' };
  }
  return options;
}

const OPTIONS = optionsFromTable();
const KNOWN_FLAGS = Object.keys(OPTIONS).map((name) => `--${name}`).join(', ');
const POSITIONAL = SETTING_ROWS.find((row) => row.cli === 'positional');

// parseArgs runs with strict: false and the checks strict mode would make are done below on its
// tokens, because strict mode throws at the first problem and every problem is reported at once.
function tokensOf(argv: readonly string[]) {
  return parseArgs({ args: [...argv], options: OPTIONS, strict: false, allowPositionals: true, tokens: true }).tokens;
}

/** True when -h or --help appears before `--`; help wins over any other problem. */
export function wantsHelp(argv: readonly string[]): boolean {
  return tokensOf(argv).some((t) => t.kind === 'option' && t.name === 'help');
}

/** Parses a subcommand's arguments into per-setting texts, collecting every problem. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const values = new Map<SettingKey, FlagValue>();
  const problems: Problem[] = [];
  const positionals: string[] = [];
  let help = false;

  for (const token of tokensOf(argv)) {
    if (token.kind === 'positional') {
      positionals.push(token.value);
      continue;
    }
    if (token.kind !== 'option') continue;
    if (token.name === 'help') {
      help = true;
      if (token.value !== undefined) {
        const received = quote(token.value);
        problems.push({ origin: token.rawName, key: null, received, reason: 'is not allowed', expected: 'no value' });
      }
      continue;
    }
    const row = SETTING_ROWS.find((r) => r.flag === `--${token.name}`);
    if (row === undefined) {
      const expected = `one of ${KNOWN_FLAGS}`;
      problems.push({ origin: token.rawName, key: null, received: null, reason: 'is not a known option', expected });
      continue;
    }
    // Like strict mode: `--workers --threads 2` is a missing value, not the value "--threads".
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith('-'))) {
      problems.push({
        origin: token.rawName, key: row.key, received: null, reason: 'is missing its value',
        expected: `${row.flag} ${row.arg}; write ${row.flag}=VALUE for a value starting with -`,
      });
      continue;
    }
    const previous = row.cli === 'repeatable' ? (values.get(row.key)?.texts ?? []) : [];
    values.set(row.key, { origin: token.rawName, texts: [...previous, token.value] });
  }

  const [first, ...extra] = positionals;
  if (first !== undefined && POSITIONAL !== undefined) values.set(POSITIONAL.key, { origin: POSITIONAL.arg, texts: [first] });
  for (const text of POSITIONAL === undefined ? positionals : extra) {
    const expected = POSITIONAL === undefined ? 'no arguments besides options' : `at most one ${POSITIONAL.arg}`;
    problems.push({ origin: 'argument', key: null, received: quote(text), reason: 'is unexpected', expected });
  }
  return { help, values, problems };
}
