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

/** gunicorn's `--reload`: watch `*.py` (a flag without a value). */
const RELOAD_MASK = '*.py';

/**
 * parseArgs options: each setting's flag and long aliases, a one-letter alias as the `short` of
 * the flag it stands for (`-w` of `--workers`, `-b` of `--bind`), plus --help and --reload.
 */
function optionsFromTable(): Options {
  const options: Options = { help: { type: 'boolean', short: 'h' }, reload: { type: 'boolean' }, 'access-logfile': { type: 'string' } };
  for (const row of SETTING_ROWS) {
    const longs = [row.flag, ...(row.aliases ?? []).filter((a) => a.startsWith('--'))].filter((f): f is string => f !== null);
    for (const f of longs) options[f.slice(2)] = { type: 'string', multiple: row.cli === 'repeatable' };
    for (const short of (row.aliases ?? []).filter((a) => /^-[a-zA-Z]$/.test(a))) {
      const long = longs[longs.length - 1]!;
      options[long.slice(2)] = { ...options[long.slice(2)]!, short: short.slice(1) };
    }
  }
  return options;
}

const OPTIONS = optionsFromTable();
const KNOWN_FLAGS = Object.keys(OPTIONS).map((name) => `--${name}`);
const POSITIONAL = SETTING_ROWS.find((row) => row.cli === 'positional');

/** A positional `module:callable` (dotted names, an optional trailing `()`): the app, as gunicorn's APP_MODULE. */
const APP_MODULE = /^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(?:\(\))?$/;

/** The row a long option name belongs to (its flag or an alias). */
function rowOf(name: string): (typeof SETTING_ROWS)[number] | undefined {
  const flag = `--${name}`;
  return SETTING_ROWS.find((r) => r.flag === flag || (r.aliases ?? []).includes(flag));
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The closest of `known` to `given` if it is a likely typo (at most 2 edits, or 1 for short words), else null. */
export function suggest(given: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(given.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  const limit = given.replace(/^-+/, '').length <= 4 ? 1 : 2;
  return bestD <= limit ? best : null;
}

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

  let skip = -1;
  for (const token of tokensOf(argv)) {
    if (token.kind === 'positional') {
      if (token.index !== skip) positionals.push(token.value);
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
    if (token.name === 'reload') {
      if (token.value !== undefined) problems.push({ origin: token.rawName, key: null, received: quote(token.value), reason: 'is not allowed', expected: 'no value (it means --watch "*.py")' });
      else values.set('watchFileChangesMask', { origin: token.rawName, texts: [RELOAD_MASK] });
      continue;
    }
    if (token.name === 'access-logfile') {
      // gunicorn's `--access-logfile -`: access lines where the log goes. A file of their own does
      // not map: corral writes them into its log (stdout, or --log-file).
      if (token.value === '-') values.set('accessLog', { origin: token.rawName, texts: ['true'] });
      else
        problems.push({
          origin: token.rawName, key: 'accessLog', received: token.value === undefined ? null : quote(token.value),
          reason: token.value === undefined ? 'is missing its value' : 'is not supported for a file',
          expected: '- (access lines go into corral\'s log: stdout, or the file of --log-file)',
        });
      continue;
    }
    const row = rowOf(token.name);
    if (row === undefined) {
      const near = suggest(token.rawName.startsWith('--') ? token.rawName : `--${token.name}`, KNOWN_FLAGS);
      const reason = near ? `is not a known option; did you mean ${near}?` : 'is not a known option';
      const expected = near ? 'an option that corral serve --help lists' : `one of ${KNOWN_FLAGS.join(', ')}`;
      problems.push({ origin: token.rawName, key: null, received: null, reason, expected });
      // `--wrokers 2`: the 2 is that option's value, not the app directory.
      if (token.value === undefined && near !== null && near !== '--help' && near !== '--reload') skip = token.index + 1;
      continue;
    }
    if (row.cli === 'positional') {
      // An alias of the positional (gunicorn's --chdir for APP_DIR).
      if (token.value === undefined) problems.push({ origin: token.rawName, key: row.key, received: null, reason: 'is missing its value', expected: `${token.rawName} ${row.arg}` });
      else values.set(row.key, { origin: token.rawName, texts: [token.value] });
      continue;
    }
    // Like strict mode: `--workers --threads 2` is a missing value, not the value "--threads".
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith('-'))) {
      problems.push({
        origin: token.rawName, key: row.key, received: null, reason: 'is missing its value',
        expected: `${token.rawName} ${row.arg}; write ${row.flag}=VALUE for a value starting with -`,
      });
      continue;
    }
    const previous = row.cli === 'repeatable' ? (values.get(row.key)?.texts ?? []) : [];
    values.set(row.key, { origin: token.rawName, texts: [...previous, token.value] });
  }

  // gunicorn's habit: `corral serve mysite.wsgi:application` names the app, not a directory.
  const appIndex = POSITIONAL === undefined ? -1 : positionals.findIndex((p) => APP_MODULE.test(p));
  if (appIndex >= 0) {
    const [text] = positionals.splice(appIndex, 1);
    const given = values.get('wsgiApp');
    if (given) problems.push({ origin: 'argument', key: 'wsgiApp', received: quote(text!), reason: 'is given twice', expected: `MODULE:CALLABLE or ${given.origin}, not both` });
    else values.set('wsgiApp', { origin: 'MODULE:CALLABLE', texts: [text!] });
  }
  const [first, ...extra] = positionals;
  if (first !== undefined && POSITIONAL !== undefined) {
    if (values.has(POSITIONAL.key)) problems.push({ origin: 'argument', key: POSITIONAL.key, received: quote(first), reason: 'is given twice', expected: `${POSITIONAL.arg} or ${values.get(POSITIONAL.key)!.origin}, not both` });
    else values.set(POSITIONAL.key, { origin: POSITIONAL.arg, texts: [first] });
  }
  for (const text of POSITIONAL === undefined ? positionals : extra) {
    const expected = POSITIONAL === undefined ? 'no arguments besides options' : `at most one ${POSITIONAL.arg}`;
    problems.push({ origin: 'argument', key: null, received: quote(text), reason: 'is unexpected', expected });
  }
  return { help, values, problems };
}
