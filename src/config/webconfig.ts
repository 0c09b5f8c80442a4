/**
 * Reads an IIS site's web.config with a real XML parser (fast-xml-parser), the way IIS merges the
 * app's own file: `configuration/appSettings` and every `configuration/location` whose path is "."
 * or "" (or absent), in document order, with `<add key value>`, `<remove key>` and `<clear/>`;
 * later wins. `<location>` blocks for other paths configure sub-folders and are skipped.
 *
 * Helicon Zoo keeps its variables in `<heliconZoo><application><environmentVariables>` (`<add name
 * value>`); they are read too, and appSettings win over them where both name a key.
 *
 * A file that is not well-formed XML is an error naming the file, line and column: never a silent
 * half-read (a raw `>` in a value is fine XML and kept as is). A DOCTYPE is refused: IIS does not
 * accept one, and its entities could expand without bound.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** File names tried, in order (case-sensitive disks; IIS itself ignores case). */
export const WEB_CONFIG_NAMES = ['web.config', 'Web.config', 'Web.Config', 'WEB.CONFIG'] as const;

/** A web.config that cannot be read as XML. */
export class WebConfigError extends Error {
  readonly file: string;
  readonly line: number | null;
  readonly column: number | null;

  constructor(file: string, reason: string, line: number | null = null, column: number | null = null) {
    super(`${file}${line !== null ? `:${line}${column !== null ? `:${column}` : ''}` : ''}: ${reason}`);
    this.name = 'WebConfigError';
    this.file = file;
    this.line = line;
    this.column = column;
  }
}

/** What a web.config sets for corral. */
export interface WebConfig {
  /** The file read, or null when the site has none. */
  readonly file: string | null;
  /** Merged `<appSettings>`, in order. */
  readonly appSettings: ReadonlyMap<string, string>;
  /** Helicon Zoo's `<environmentVariables>`, in order. */
  readonly zoo: ReadonlyMap<string, string>;
}

/** One element in document order (fast-xml-parser's preserveOrder form). */
type Node = Record<string, unknown>;

const ATTRS = ':@';

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  processEntities: true,
  htmlEntities: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  commentPropName: false,
});

function tagOf(n: Node): string | null {
  for (const k of Object.keys(n)) if (k !== ATTRS && k !== '#text') return k;
  return null;
}

function childrenOf(n: Node): Node[] {
  const tag = tagOf(n);
  const kids = tag === null ? undefined : n[tag];
  return Array.isArray(kids) ? (kids as Node[]) : [];
}

function attr(n: Node, name: string): string | undefined {
  const a = n[ATTRS];
  if (a === null || typeof a !== 'object') return undefined;
  const v = (a as Record<string, unknown>)[name];
  return v === undefined ? undefined : String(v);
}

/** Applies a collection's `<add>`, `<remove>`, `<clear/>` to `into`, keyed by `keyAttr`. */
function applyCollection(section: Node, keyAttr: string, into: Map<string, string>): void {
  for (const item of childrenOf(section)) {
    const tag = tagOf(item);
    const key = attr(item, keyAttr);
    if (tag === 'clear') into.clear();
    else if (tag === 'remove' && key !== undefined) into.delete(key);
    else if (tag === 'add' && key !== undefined) {
      into.delete(key); // a re-added key moves to the end, as in IIS's merged collection
      into.set(key, attr(item, 'value') ?? '');
    }
  }
}

/** `<heliconZoo>`'s applications' environment variables. */
function applyZoo(zoo: Node, into: Map<string, string>): void {
  for (const app of childrenOf(zoo))
    if (tagOf(app) === 'application') for (const s of childrenOf(app)) if (tagOf(s) === 'environmentVariables') applyCollection(s, 'name', into);
}

/** Sections of one level (the root `<configuration>` or a `<location>` for this app). */
function applySections(sections: readonly Node[], out: { appSettings: Map<string, string>; zoo: Map<string, string> }): void {
  for (const section of sections) {
    const tag = tagOf(section);
    if (tag === 'appSettings') applyCollection(section, 'key', out.appSettings);
    else if (tag === 'heliconZoo') applyZoo(section, out.zoo);
    else if (tag === 'system.webServer') for (const s of childrenOf(section)) if (tagOf(s) === 'heliconZoo') applyZoo(s, out.zoo);
  }
}

/** Whether a `<location path>` names the app's own level. */
function isOwnLocation(path: string | undefined): boolean {
  return path === undefined || path.trim() === '' || path.trim() === '.';
}

/** The settings a web.config text sets. `file` names it in errors. Throws WebConfigError. */
export function parseWebConfig(xml: string, file = 'web.config'): WebConfig {
  const text = xml.replace(/^\uFEFF/, '');
  if (/<!DOCTYPE/i.test(text)) {
    const line = text.slice(0, text.search(/<!DOCTYPE/i)).split('\n').length;
    throw new WebConfigError(file, 'a DOCTYPE is not allowed in web.config', line);
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw new WebConfigError(file, valid.err.msg, valid.err.line, valid.err.col);
  const doc = parser.parse(text) as Node[];
  const roots = doc.filter((n) => tagOf(n) !== null);
  const root = roots[0];
  if (!root || tagOf(root) !== 'configuration') throw new WebConfigError(file, `the root element must be <configuration>, not <${root ? tagOf(root) : 'nothing'}>`);
  const out = { appSettings: new Map<string, string>(), zoo: new Map<string, string>() };
  // The root level and this app's <location> blocks, in document order.
  for (const n of childrenOf(root)) {
    if (tagOf(n) !== 'location') applySections([n], out);
    else if (isOwnLocation(attr(n, 'path'))) applySections(childrenOf(n), out);
  }
  return { file, ...out };
}

/** The settings a web.config sets for corral: Zoo's variables, then appSettings (which win). */
export function mergedSettings(web: WebConfig): Map<string, string> {
  const out = new Map(web.zoo);
  for (const [k, v] of web.appSettings) {
    out.delete(k);
    out.set(k, v);
  }
  return out;
}

/** A cheap fingerprint of `dir` and its web.config (existence, size, times): it changes when the file does. */
export function webConfigStamp(dir: string): string {
  const d = statSync(dir, { throwIfNoEntry: false });
  if (!d) return 'no directory';
  for (const name of WEB_CONFIG_NAMES) {
    const s = statSync(join(dir, name), { throwIfNoEntry: false });
    if (s) return `${name} ${s.ino} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`;
  }
  return 'no web.config';
}

/** Reads `dir`'s web.config; empty if there is none. Throws WebConfigError when it is unreadable or malformed. */
export function readWebConfig(dir: string): WebConfig {
  for (const name of WEB_CONFIG_NAMES) {
    const file = join(dir, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new WebConfigError(file, `cannot be read: ${(err as Error).message}`);
    }
    return parseWebConfig(text, file);
  }
  return { file: null, appSettings: new Map(), zoo: new Map() };
}

/** The merged settings of `dir/web.config` (Zoo's, then appSettings); empty if none. Throws WebConfigError. */
export function readAppSettings(dir: string): Map<string, string> {
  return mergedSettings(readWebConfig(dir));
}
