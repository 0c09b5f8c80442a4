/**
 * wfastcgi's WSGI_RESTART_FILE_REGEX is a Python regular expression. Most of Python's syntax is
 * JavaScript's too; the differences people write are named groups (`(?P<name>...)`,
 * `(?P=name)`) and leading inline flags (`(?i)`). Those are translated; the rest of Python's
 * extensions (`(?#...)`, scoped flags `(?i:...)`, `\Z`, `\A`) are refused with a reason, rather
 * than compiled into something that matches differently.
 */

/** A JavaScript regex source and flags for a Python one, or why it cannot be translated. */
export type PyRegex = { ok: true; source: string; flags: string } | { ok: false; reason: string };

/** Translates Python regex syntax to JavaScript (see the file comment for what is accepted). */
export function fromPythonRegex(python: string): PyRegex {
  let src = python;
  let flags = '';
  // Global inline flags, only at the start (Python 3.11 refuses them elsewhere).
  const lead = /^\(\?([aiLmsux]+)\)/.exec(src);
  if (lead) {
    for (const f of lead[1]!) {
      if (f === 'x') return { ok: false, reason: 'verbose mode (?x) is not supported' };
      if (f === 'i' || f === 'm' || f === 's') flags += flags.includes(f) ? '' : f;
      else if (f !== 'u' && f !== 'a') return { ok: false, reason: `inline flag (?${f}) has no JavaScript equivalent` };
    }
    src = src.slice(lead[0].length);
  }
  let out = '';
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '\\') {
      const n = src[i + 1];
      if (n === 'A' || n === 'Z') return { ok: false, reason: `\\${n} is Python-only: use ^ or $` };
      out += src.slice(i, i + 2);
      i++;
      continue;
    }
    if (c === '[') {
      // Copy a character class as is (a `(` in it is a literal).
      let j = i + 1;
      if (src[j] === '^') j++;
      if (src[j] === ']') j++;
      while (j < src.length && src[j] !== ']') j += src[j] === '\\' ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j;
      continue;
    }
    if (src.startsWith('(?P<', i)) {
      out += '(?<';
      i += 3;
      continue;
    }
    const back = /^\(\?P=([A-Za-z_]\w*)\)/.exec(src.slice(i));
    if (back) {
      out += `\\k<${back[1]!}>`;
      i += back[0].length - 1;
      continue;
    }
    if (src.startsWith('(?#', i)) return { ok: false, reason: 'comments (?#...) are not supported' };
    if (/^\(\?[aiLmsux-]+[:)]/.test(src.slice(i))) return { ok: false, reason: 'inline flags are supported only at the start, as (?i)' };
    out += c;
  }
  try {
    new RegExp(out, flags);
  } catch (err) {
    return { ok: false, reason: `does not compile: ${err instanceof Error ? err.message : String(err)}` };
  }
  return { ok: true, source: out, flags };
}
