/**
 * Reads `<appSettings>` from an IIS site's web.config the way wfastcgi does: the `add` elements of
 * `configuration/appSettings`, key and value, no inheritance, `<location>` or `<clear>`. A small
 * tolerant reader, because a full XML parser would be a dependency for four attributes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (m, e: string) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

/** Attributes of one start tag. */
function attributes(tag: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of tag.matchAll(/([\w:.-]+)\s*=\s*("([^"]*)"|'([^']*)')/g)) out.set(m[1]!.toLowerCase(), decode(m[3] ?? m[4] ?? ''));
  return out;
}

/** The appSettings of a web.config text, in order (later duplicates win). */
export function parseAppSettings(xml: string): Map<string, string> {
  const settings = new Map<string, string>();
  const withoutComments = xml.replace(/<!--[\s\S]*?-->/g, '');
  const section = /<appSettings\b[^>]*>([\s\S]*?)<\/appSettings>/i.exec(withoutComments);
  if (!section) return settings;
  for (const m of section[1]!.matchAll(/<add\b([^>]*?)\/?>/gi)) {
    const a = attributes(m[1]!);
    const key = a.get('key');
    if (key !== undefined) settings.set(key, a.get('value') ?? '');
  }
  return settings;
}

/** appSettings of `dir/web.config` (any case of the file name on case-sensitive disks); empty if none. */
export function readAppSettings(dir: string): Map<string, string> {
  for (const name of ['web.config', 'Web.config', 'Web.Config']) {
    let text: string;
    try {
      text = readFileSync(join(dir, name), 'utf8');
    } catch {
      continue;
    }
    return parseAppSettings(text.replace(/^\uFEFF/, ''));
  }
  return new Map();
}
