/** Splits a command line such as `py -3.12` or `"C:\Program Files\Python312\python.exe" -X utf8` into argv. */

/** Thrown when a quote is left open. */
export class CommandSyntaxError extends Error {
  readonly code = 'COMMAND_SYNTAX';
  constructor(
    readonly text: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(text)} ${reason}`);
    this.name = 'CommandSyntaxError';
  }
}

/**
 * Whitespace separates arguments; "..." and '...' group, and quoted parts join the text next to
 * them (`--x="a b"` is one argument). There are no escapes: backslashes are literal because they
 * are Windows path separators.
 */
export function splitCommand(text: string): string[] {
  const args: string[] = [];
  let current = '';
  let inArg = false;
  let quote: '"' | "'" | null = null;
  for (const ch of text) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inArg = true;
    } else if (/\s/.test(ch)) {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
    } else {
      current += ch;
      inArg = true;
    }
  }
  if (quote !== null) throw new CommandSyntaxError(text, `has an unclosed ${quote}`);
  if (inArg) args.push(current);
  return args;
}
