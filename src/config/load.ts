/** Loads settings: defaults < config file < environment < flags, validated once, all problems at once, frozen. */
import { existsSync, readFileSync } from 'node:fs';
import { parseCommandLine, suggest, type FlagValue } from './argv.js';
import { pathApi, type Issue, type ParseContext, type Parsed } from './kinds.js';
import { ConfigError, quote, type Problem, type Source } from './problems.js';
import { SETTING_ROWS, defaultOf, type SettingKey, type SettingSpec, type Settings } from './settings.js';
import { parseAppEntries } from './apps.js';

export interface LoadOptions {
  /** The subcommand's arguments (after `serve`). */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly platform: NodeJS.Platform;
}

export interface LoadResult {
  readonly settings: Readonly<Settings>;
  /** Which source each setting's value came from. */
  readonly sources: Readonly<Record<SettingKey, Source>>;
  /** The config file's `apps`, each merged over `settings`; empty without one. */
  readonly apps: readonly Readonly<Settings>[];
}

type Row = SettingSpec<SettingKey, unknown>;
type Resolved = { readonly value: unknown; readonly source: Source };
/** The config file's values by key. */
type FileValues = { readonly file: string; readonly values: ReadonlyMap<string, unknown>; readonly apps?: unknown };
/** One source's parse of one setting, and how to name where an issue in it came from. */
type Candidate = { readonly source: Source; readonly parsed: Parsed<unknown>; originAt(at: Issue['at']): string };

/** The config file an app folder may hold, read when no other config file is named. */
export const APP_FOLDER_CONFIG = 'corral.json';

const CONFIG_KEYS = SETTING_ROWS.filter((r) => r.inConfigFile !== false).map((r) => r.key);

/** Loads and validates every setting; throws ConfigError listing every problem found. */
export function loadSettings(options: LoadOptions): LoadResult {
  const { argv, env, cwd, platform } = options;
  const cli = parseCommandLine(argv);
  const problems: Problem[] = [...cli.problems];
  const here: ParseContext = { baseDir: cwd, platform };

  // Every source that sets the row is parsed, so a bad value is reported even when overridden;
  // the highest source wins, and the default is parsed only when no source sets the row.
  const resolve = (row: Row, file: FileValues | null): Resolved | null => {
    const candidates: Candidate[] = [];
    if (file !== null && file.values.has(row.key)) {
      const ctx = { baseDir: pathApi(platform).dirname(file.file), platform };
      const originAt = (at: Issue['at']) => `${file.file} ${jsonPath([row.key, ...at])}`;
      candidates.push({ source: 'config', parsed: row.kind.fromJson(file.values.get(row.key), ctx), originAt });
    }
    const fromEnv = firstEnv(row, env);
    if (fromEnv !== null) {
      candidates.push({ source: 'env', parsed: row.kind.fromText(fromEnv.text, here), originAt: () => fromEnv.name });
    }
    const flag = cli.values.get(row.key);
    if (flag !== undefined) {
      candidates.push({ source: 'flag', parsed: parseFlag(row, flag, here), originAt: () => flag.origin });
    }
    if (candidates.length === 0) {
      candidates.push({ source: 'default', parsed: row.kind.fromJson(defaultOf(row, platform), here), originAt: () => 'default' });
    }
    for (const c of candidates) {
      if (!c.parsed.ok) problems.push(...c.parsed.issues.map((issue) => toProblem(row, c.originAt(issue.at), issue)));
    }
    const winner = candidates.at(-1);
    return winner?.parsed.ok === true ? { value: winner.parsed.value, source: winner.source } : null;
  };

  // The config file's own path comes first: it decides which file the other settings read.
  const configRow = SETTING_ROWS.find((r) => r.key === 'config');
  const configPath = configRow === undefined ? null : resolve(configRow, null);
  let file: FileValues | null = null;
  if (configRow !== undefined && typeof configPath?.value === 'string') {
    const origin = cli.values.get('config')?.origin ?? firstEnv(configRow, env)?.name ?? 'config';
    file = readConfigFile(configPath.value, origin, problems);
  } else if (configPath?.source === 'default') {
    // No config file named: the app folder's own corral.json, if it has one, so that
    // `corral serve examples/django` runs an app with the settings it ships.
    // A bad APP_DIR is reported once, by the pass over every row below.
    const mark = problems.length;
    const own = appFolderConfig(resolve, platform);
    problems.length = mark;
    if (own !== null) file = readConfigFile(own, 'APP_DIR/corral.json', problems);
  }

  const values: Record<string, unknown> = {};
  const sources: Record<string, Source> = {};
  for (const row of SETTING_ROWS) {
    const resolved = row === configRow ? configPath : resolve(row, file);
    if (resolved === null) continue;
    values[row.key] = resolved.value;
    sources[row.key] = resolved.source;
  }
  problems.push(...crossChecks(values, sources, cli.values));
  // Every row produced a value parsed by its own kind, which is what Settings says each key holds.
  const settings = values as unknown as Settings;
  let apps: Readonly<Settings>[] = [];
  if (file?.apps !== undefined && problems.length === 0) {
    const parsed = parseAppEntries(file.apps, file.file, settings, platform, jsonPath);
    problems.push(...parsed.problems);
    apps = parsed.apps;
    for (const a of apps) problems.push(...crossChecks(a as unknown as Record<string, unknown>, sources, new Map()));
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze({ settings, sources: sources as Record<SettingKey, Source>, apps });
}

/** `APP_DIR/corral.json` when it exists (APP_DIR from the command line, the environment or the default). */
function appFolderConfig(resolve: (row: Row, file: FileValues | null) => Resolved | null, platform: NodeJS.Platform): string | null {
  const rootRow = SETTING_ROWS.find((r) => r.key === 'root');
  const root = rootRow === undefined ? null : resolve(rootRow, null);
  if (typeof root?.value !== 'string') return null;
  const candidate = pathApi(platform).join(root.value, APP_FOLDER_CONFIG);
  return existsSync(candidate) ? candidate : null;
}

/** Rules between settings: the pool's bounds must fit together. */
function crossChecks(values: Record<string, unknown>, sources: Record<string, Source>, flags: ReadonlyMap<string, FlagValue>): Problem[] {
  const min = values.minWorkers;
  const max = values.maxWorkers;
  const workers = values.workers;
  if (typeof max !== 'number') return [];
  const effectiveMin = typeof min === 'number' ? min : typeof workers === 'number' ? workers : 0;
  if (max >= effectiveMin) return [];
  const origin = flags.get('maxWorkers')?.origin ?? (sources.maxWorkers === 'env' ? 'CORRAL_MAX_WORKERS' : 'maxWorkers');
  const by = typeof min === 'number' ? `minWorkers (${min})` : `workers (${String(workers)})`;
  return [{ origin, key: 'maxWorkers', received: quote(max), reason: `is below ${by}`, expected: `at least ${effectiveMin}` }];
}

function toProblem(row: Row, origin: string, issue: Issue): Problem {
  const expected = issue.expected ?? row.kind.expected;
  return { origin, key: row.key, received: quote(issue.received), reason: issue.reason, expected };
}

/** The first environment variable of a row that is set and not empty (empty counts as unset). */
function firstEnv(row: Row, env: LoadOptions['env']): { name: string; text: string } | null {
  for (const name of row.env) {
    const text = env[name];
    if (text !== undefined && text !== '') return { name, text };
  }
  return null;
}

/** A repeatable flag's occurrences are parsed one by one and their lists joined. */
function parseFlag(row: Row, flag: FlagValue, ctx: ParseContext): Parsed<unknown> {
  const parsed = flag.texts.map((text) => row.kind.fromText(text, ctx));
  const last = parsed.at(-1);
  if (row.cli !== 'repeatable' && last !== undefined) return last;
  const issues = parsed.flatMap((p) => (p.ok ? [] : p.issues));
  if (issues.length > 0) return { ok: false, issues };
  return { ok: true, value: parsed.flatMap((p) => (p.ok && Array.isArray(p.value) ? (p.value as unknown[]) : [])) };
}

function readConfigFile(file: string, origin: string, problems: Problem[]): FileValues | null {
  const fail = (p: Omit<Problem, 'expected'>, expected = 'a JSON object of settings'): null => {
    problems.push({ ...p, expected });
    return null;
  };
  let text: string;
  try {
    // Notepad and some Windows tools write a UTF-8 BOM, which JSON.parse refuses.
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (err) {
    const reason = `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`;
    return fail({ origin, key: 'config', received: quote(file), reason }, 'a readable JSON file');
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return fail({ origin: file, key: null, received: null, reason: `is not valid JSON (${jsonErrorAt(text, (err as Error).message)})` });
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return fail({ origin: file, key: null, received: quote(data), reason: 'is not a JSON object' });
  }
  const values = new Map<string, unknown>();
  let apps: unknown;
  for (const [key, value] of Object.entries(data)) {
    if (key === '$schema') continue; // lets editors find config/corral.schema.json
    if (key === 'apps') {
      apps = value;
      continue;
    }
    if ((CONFIG_KEYS as readonly string[]).includes(key)) values.set(key, value);
    else {
      const known = SETTING_ROWS.some((r) => r.key === key);
      const near = known ? null : suggest(key, CONFIG_KEYS);
      const reason = known ? 'cannot be set inside a config file' : near ? `is not a known setting; did you mean ${near}?` : 'is not a known setting';
      fail({ origin: `${file} ${jsonPath([key])}`, key: null, received: null, reason }, `one of ${CONFIG_KEYS.join(', ')}`);
    }
  }
  return apps === undefined ? { file, values } : { file, values, apps };
}

/** `$.listen[1]`, `$["odd key"]` */
export function jsonPath(at: readonly (string | number)[]): string {
  return at.reduce<string>((path, part) => {
    if (typeof part === 'number') return `${path}[${part}]`;
    return /^[A-Za-z_$][\w$]*$/.test(part) ? `${path}.${part}` : `${path}[${JSON.stringify(part)}]`;
  }, '$');
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/** JSON.parse's message with the line and column of its `position N`, which editors show. */
export function jsonErrorAt(text: string, message: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return message;
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - before.lastIndexOf('\n');
  return `line ${line}, column ${column}: ${message.replace(/\s*in JSON at position \d+.*$/, '')}`;
}
