/** Value kinds of the settings table: how a setting's text (flag, env) or JSON (config file) becomes its value. */
import { statSync } from 'node:fs';
import { posix, win32 } from 'node:path';
import { AddressError, addressForms, parseAddress, type ListenAddress } from './address.js';
import { CommandSyntaxError, splitCommand } from './command.js';
import { fromPythonRegex } from './py-regex.js';

/** What parsing needs to know besides the value. */
export interface ParseContext {
  /** Relative paths resolve against this: the working directory, or the config file's directory. */
  readonly baseDir: string;
  readonly platform: NodeJS.Platform;
}

/** Why a value (or, at `at`, an element of it) was refused. */
export interface Issue {
  readonly at: readonly (string | number)[];
  readonly received: unknown;
  readonly reason: string;
  /** What the refused element should have been, when narrower than the kind's `expected`. */
  readonly expected?: string;
}

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly issues: readonly Issue[] };

/** A setting's type: its names for docs and messages, its JSON Schema, and its two parsers. */
export interface Kind<T> {
  /** The type column of docs and help: `integer 1..256`. */
  readonly label: string;
  /** Ends "expected ..." in messages: `an integer 1..256`. */
  readonly expected: string;
  /** JSON Schema of the value in the config file. */
  readonly schema: Readonly<Record<string, unknown>>;
  /** From a flag or an environment variable. */
  fromText(text: string, ctx: ParseContext): Parsed<T>;
  /** From the config file (or a default from the table). */
  fromJson(value: unknown, ctx: ParseContext): Parsed<T>;
}

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = (received: unknown, reason: string, at: Issue['at'] = []): Parsed<never> => ({
  ok: false,
  issues: [{ at, received, reason }],
});
/** node:path for the platform the settings are for (tests load Windows settings on Linux). */
export const pathApi = (platform: NodeJS.Platform) => (platform === 'win32' ? win32 : posix);

/** A kind whose JSON form is the same string its text form is. */
function textual<T>(spec: Omit<Kind<T>, 'fromJson'>): Kind<T> {
  return {
    ...spec,
    fromJson: (value, ctx) => (typeof value === 'string' ? spec.fromText(value, ctx) : fail(value, 'is not a string')),
  };
}

/** A whole number in [min, max]. */
export function integer(min: number, max: number): Kind<number> {
  const check = (n: number, received: unknown): Parsed<number> =>
    n < min || n > max ? fail(received, 'is out of range') : ok(n);
  return {
    label: `integer ${min}..${max}`,
    expected: `an integer ${min}..${max}`,
    schema: { type: 'integer', minimum: min, maximum: max },
    fromText: (text) => (/^\s*[+-]?\d+\s*$/.test(text) ? check(Number(text), text) : fail(text, 'is not an integer')),
    fromJson: (value) =>
      typeof value === 'number' && Number.isInteger(value) ? check(value, value) : fail(value, 'is not an integer'),
  };
}

/** One of a fixed list of words, matched case-insensitively. */
export function oneOf<const V extends string>(values: readonly V[]): Kind<V> {
  return textual({
    label: values.join('|'),
    expected: `one of ${values.join(', ')}`,
    schema: { enum: values },
    fromText: (text) => {
      const found = values.find((v) => v === text.trim().toLowerCase());
      return found === undefined ? fail(text, 'is not a valid choice') : ok(found);
    },
  });
}

const ID = String.raw`[\p{L}_][\p{L}\p{N}_]*`;
/** An attribute, optionally called: wfastcgi's `()` may follow any part after the module. */
const ATTR = String.raw`${ID}(?:\(\))?`;
const WSGI_APP = new RegExp(String.raw`^(?:${ID}(?:\.${ID})*:${ATTR}(?:\.${ATTR})*|${ID}(?:\.${ATTR})+)$`, 'u');

/**
 * `module:callable` or Helicon's dotted `module.callable`; `()` after a part is wfastcgi's "call it",
 * anywhere after the module (`pkg.mod.factory().app`, `pkg.mod:factory().app`).
 */
export function wsgiAppSpec(): Kind<string> {
  return textual({
    label: 'module:callable',
    expected: 'module:callable or module.callable, optionally followed by ()',
    schema: { type: 'string', pattern: WSGI_APP.source },
    fromText: (text) => (WSGI_APP.test(text.trim()) ? ok(text.trim()) : fail(text, 'is not a WSGI app reference')),
  });
}

/** An existing directory, made absolute. */
export function directory(): Kind<string> {
  return textual({
    label: 'directory',
    expected: 'an existing directory',
    schema: { type: 'string', minLength: 1 },
    fromText: (text, ctx) => {
      if (text.trim() === '') return fail(text, 'is empty');
      const abs = pathApi(ctx.platform).resolve(ctx.baseDir, text);
      const stat = statSync(abs, { throwIfNoEntry: false });
      if (stat === undefined) return fail(text, `does not exist (resolved to ${abs})`);
      return stat.isDirectory() ? ok(abs) : fail(text, `is not a directory (resolved to ${abs})`);
    },
  });
}

/** A list of shell patterns (`*.py;config/*.json`), Helicon's WATCH_FILE_CHANGES_MASK form. */
export function fileMask(): Kind<string> {
  return textual({
    label: 'patterns',
    expected: 'shell patterns such as *.py, separated by ; , or |',
    schema: { type: 'string' },
    fromText: (text) => (/[\0\r\n]/.test(text) ? fail(text, 'contains a control character') : ok(text.trim())),
  });
}

/** A regular expression (wfastcgi's WSGI_RESTART_FILE_REGEX, Python syntax): it must translate and compile. */
export function regex(): Kind<string> {
  return textual({
    label: 'regex',
    expected: 'a regular expression',
    schema: { type: 'string' },
    fromText: (text) => {
      const r = fromPythonRegex(text);
      return r.ok ? ok(text) : fail(text, r.reason);
    },
  });
}

/** On or off: true/false, on/off, yes/no, 1/0 (any case). */
export function boolean(): Kind<boolean> {
  const words: Record<string, boolean> = { true: true, on: true, yes: true, '1': true, false: false, off: false, no: false, '0': false };
  return {
    label: 'boolean',
    expected: 'true or false (on/off, yes/no, 1/0)',
    schema: { type: 'boolean' },
    fromText: (text) => {
      const v = words[text.trim().toLowerCase()];
      return v === undefined ? fail(text, 'is not a boolean') : ok(v);
    },
    // A config file takes JSON's own true and false: the words are for flags and the environment,
    // where everything is text. The message says so rather than list words the file refuses.
    fromJson: (value) => {
      if (typeof value === 'boolean') return ok(value);
      const word = typeof value === 'string' && words[value.trim().toLowerCase()] !== undefined;
      const expected = `true or false, JSON booleans without quotes${word ? '; on/off, yes/no and 1/0 are for flags and environment variables' : ''}`;
      return { ok: false, issues: [{ at: [], received: value, reason: word ? 'is a string, not a boolean' : 'is not a boolean', expected }] };
    },
  };
}

/** A path kept as written: relative ones are resolved later against the app's directory (DEPLOY_FILE). */
export function appRelativePath(): Kind<string> {
  return textual({
    label: 'path (relative to the app)',
    expected: 'a path, relative to the app directory or absolute',
    schema: { type: 'string', minLength: 1 },
    fromText: (text) => (text.trim() === '' ? fail(text, 'is empty') : ok(text.trim())),
  });
}

/** A URL path prefix such as `/app`: starts with `/`, no trailing `/` kept; `/` alone means none (''). */
export function urlPrefix(): Kind<string> {
  return textual({
    label: 'URL path prefix',
    expected: 'a URL path starting with / (such as /app)',
    schema: { type: 'string', pattern: '^/[^?#\\s]*$' },
    fromText: (text) => {
      const t = text.trim();
      if (!t.startsWith('/') || /[?#\s]/.test(t)) return fail(text, 'is not a URL path starting with /');
      return ok(t.replace(/\/+$/, ''));
    },
  });
}

/** A file or directory path, made absolute; existence is checked by whoever uses it. */
export function pathName(): Kind<string> {
  return textual({
    label: 'path',
    expected: 'a path',
    schema: { type: 'string', minLength: 1 },
    fromText: (text, ctx) => (text.trim() === '' ? fail(text, 'is empty') : ok(pathApi(ctx.platform).resolve(ctx.baseDir, text))),
  });
}

/**
 * `URL=DIR`: a URL path (as urlPrefix) and a directory resolved against the base (`/static=static`).
 * The directory need not exist yet: collectstatic may make it after the settings are read.
 */
export function staticMapping(): Kind<{ readonly url: string; readonly dir: string }> {
  return textual({
    label: 'URL=DIR',
    expected: 'URL=DIR, a URL path starting with / and a directory (such as /static=static)',
    schema: { type: 'string', pattern: '^/[^?#\\s=]*=.+$' },
    fromText: (text, ctx) => {
      const eq = text.indexOf('=');
      if (eq < 0) return fail(text, 'has no = between the URL path and the directory');
      const url = urlPrefix().fromText(text.slice(0, eq), ctx);
      if (!url.ok) return fail(text, 'does not start with a URL path such as /static');
      if (url.value === '') return fail(text, 'maps the whole site; name a URL path such as /static');
      const dir = pathName().fromText(text.slice(eq + 1), ctx);
      if (!dir.ok) return fail(text, 'names no directory after the =');
      return ok({ url: url.value, dir: dir.value });
    },
  });
}

/** An environment variable name, or a prefix of names ending in `*` (`*` alone: every name). */
export function envName(): Kind<string> {
  return textual({
    label: 'name',
    expected: 'an environment variable name, optionally ending in *',
    schema: { type: 'string', pattern: '^([A-Za-z_][A-Za-z0-9_]*\\*?|\\*)$' },
    fromText: (text, _ctx) => {
      const t = text.trim();
      return /^([A-Za-z_][A-Za-z0-9_]*\*?|\*)$/.test(t) ? ok(t) : fail(text, 'is not a variable name');
    },
  });
}

/** A listen address (see address.ts); `stdin` only where a connected stream makes sense. */
export function address(options: { allowStdin: boolean }): Kind<ListenAddress> {
  return textual({
    label: 'address',
    expected: addressForms({ stdin: options.allowStdin }),
    schema: { type: 'string', minLength: 1 },
    fromText: (text) => {
      try {
        const a = parseAddress(text);
        return a.kind === 'stdin' && !options.allowStdin ? fail(text, 'cannot be used here') : ok(a);
      } catch (err) {
        if (err instanceof AddressError) return fail(text, err.reason);
        throw err;
      }
    },
  });
}

/** The element kind, or JSON null; the text form has no null (an empty variable counts as unset). */
export function nullable<T>(kind: Kind<T>): Kind<T | null> {
  return {
    ...kind,
    label: `${kind.label} or none`,
    schema: { anyOf: [kind.schema, { type: 'null' }] },
    fromJson: (value, ctx) => (value === null ? ok(null) : kind.fromJson(value, ctx)),
  };
}

/** A list: in text split by `split`, in JSON an array (or a string, split the same way). */
export function list<E>(
  element: Kind<E>,
  separators: string,
  split: (text: string, platform: NodeJS.Platform) => string[],
): Kind<readonly E[]> {
  const collect = (parsed: Parsed<E>[], atOf: (i: number) => (string | number)[]): Parsed<readonly E[]> => {
    const issues = parsed.flatMap((p, i) =>
      p.ok ? [] : p.issues.map((issue) => ({ expected: element.expected, ...issue, at: [...atOf(i), ...issue.at] })),
    );
    return issues.length > 0 ? { ok: false, issues } : ok(parsed.flatMap((p) => (p.ok ? [p.value] : [])));
  };
  const fromText = (text: string, ctx: ParseContext): Parsed<readonly E[]> => {
    const parts = split(text, ctx.platform).map((s) => s.trim()).filter((s) => s !== '');
    return collect(parts.map((part) => element.fromText(part, ctx)), () => []);
  };
  return {
    label: `list of ${element.label}`,
    expected: `a list (${separators}) of ${element.expected}`,
    schema: { anyOf: [{ type: 'array', items: element.schema }, { type: 'string' }] },
    fromText,
    fromJson: (value, ctx) => {
      if (typeof value === 'string') return fromText(value, ctx);
      if (!Array.isArray(value)) return fail(value, 'is not a list');
      return collect(value.map((v: unknown) => element.fromJson(v, ctx)), (i) => [i]);
    },
  };
}

/** An interpreter command: argv from splitCommand, a relative program path made absolute. */
export function command(): Kind<readonly string[]> {
  const finish = (argv: readonly string[], received: unknown, ctx: ParseContext): Parsed<readonly string[]> => {
    const [program, ...args] = argv;
    if (program === undefined || program === '') return fail(received, 'is empty');
    const api = pathApi(ctx.platform);
    // A bare name is looked up on PATH; only something like ./venv/bin/python is a relative path.
    const isPath = program.includes('/') || (ctx.platform === 'win32' && program.includes('\\'));
    return ok([isPath ? api.resolve(ctx.baseDir, program) : program, ...args]);
  };
  const fromText = (text: string, ctx: ParseContext): Parsed<readonly string[]> => {
    try {
      return finish(splitCommand(text), text, ctx);
    } catch (err) {
      if (err instanceof CommandSyntaxError) return fail(text, err.reason);
      throw err;
    }
  };
  return {
    label: 'command',
    expected: 'a program path or a command with arguments, quoted with "..." or \'...\'',
    schema: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string' }, minItems: 1 }] },
    fromText,
    fromJson: (value, ctx) => {
      if (typeof value === 'string') return fromText(value, ctx);
      if (Array.isArray(value) && value.every((v: unknown) => typeof v === 'string')) return finish(value, value, ctx);
      return fail(value, 'is not a string or a list of strings');
    },
  };
}
