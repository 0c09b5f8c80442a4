/**
 * Where each element of an XML text starts and ends, for rewrites that must keep the rest of the
 * file byte for byte (comments, whitespace, attribute quoting). Only for text that a real parser
 * (parseWebConfig) has already accepted as well-formed: this scanner does not validate.
 */

/** One attribute: its decoded value and where its name and raw value (quotes included) sit. */
export interface XmlAttr {
  readonly name: string;
  readonly value: string;
  readonly nameStart: number;
  readonly raw: string;
}

/** One element: offsets into the text (end is exclusive). */
export interface XmlElement {
  readonly name: string;
  readonly attrs: readonly XmlAttr[];
  readonly start: number;
  /** The end of the start tag (after `>` or `/>`). */
  readonly openEnd: number;
  /** The start of the end tag (`</name>`); openEnd for `<name/>`. */
  closeStart: number;
  end: number;
  readonly selfClosing: boolean;
  readonly children: XmlNode[];
}

/** A comment, as a child of an element. */
export interface XmlComment {
  readonly name: '#comment';
  readonly start: number;
  readonly end: number;
}

export type XmlNode = XmlElement | XmlComment;

export function isElement(n: XmlNode): n is XmlElement {
  return n.name !== '#comment';
}

const ATTR_RE = /([^\s=/>]+)\s*=\s*("[^"]*"|'[^']*')/y;

export function decodeXml(raw: string): string {
  return raw.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (m, e: string) => {
    const l = e.toLowerCase();
    if (l.startsWith('#x')) return String.fromCodePoint(parseInt(l.slice(2), 16));
    if (l.startsWith('#')) return String.fromCodePoint(parseInt(l.slice(1), 10));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[l] ?? m;
  });
}

export function escapeXmlAttr(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The top-level elements (and comments) of `text`, with their descendants. */
export function scanXml(text: string): XmlNode[] {
  const top: XmlNode[] = [];
  const stack: XmlElement[] = [];
  const add = (n: XmlNode): void => {
    const parent = stack[stack.length - 1];
    (parent ? parent.children : top).push(n);
  };
  let i = 0;
  for (;;) {
    const lt = text.indexOf('<', i);
    if (lt < 0) break;
    if (text.startsWith('<!--', lt)) {
      const end = text.indexOf('-->', lt + 4) + 3;
      add({ name: '#comment', start: lt, end });
      i = end;
    } else if (text.startsWith('<![CDATA[', lt)) {
      i = text.indexOf(']]>', lt) + 3;
    } else if (text.startsWith('<?', lt)) {
      i = text.indexOf('?>', lt) + 2;
    } else if (text.startsWith('<!', lt)) {
      i = text.indexOf('>', lt) + 1;
    } else if (text.startsWith('</', lt)) {
      const gt = text.indexOf('>', lt);
      const el = stack.pop();
      if (el) {
        el.closeStart = lt;
        el.end = gt + 1;
      }
      i = gt + 1;
    } else {
      const nameMatch = /^<([^\s/>]+)/.exec(text.slice(lt, lt + 200));
      const name = nameMatch ? nameMatch[1]! : '';
      let j = lt + 1 + name.length;
      const attrs: XmlAttr[] = [];
      for (;;) {
        while (/\s/.test(text[j] ?? '')) j++;
        if (text[j] === '>' || text[j] === '/' || j >= text.length) break;
        ATTR_RE.lastIndex = j;
        const m = ATTR_RE.exec(text);
        if (!m) break;
        attrs.push({ name: m[1]!, value: decodeXml(m[2]!.slice(1, -1)), nameStart: j, raw: m[2]! });
        j = ATTR_RE.lastIndex;
      }
      const selfClosing = text[j] === '/';
      const openEnd = text.indexOf('>', j) + 1;
      const el: XmlElement = { name, attrs, start: lt, openEnd, closeStart: openEnd, end: openEnd, selfClosing, children: [] };
      add(el);
      if (!selfClosing) stack.push(el);
      i = openEnd;
    }
    if (i <= 0) break; // unterminated construct: the validator would have refused it
  }
  return top;
}

export function attrOf(el: XmlElement, name: string): string | undefined {
  return el.attrs.find((a) => a.name === name)?.value;
}

export function childElements(el: XmlElement, name?: string): XmlElement[] {
  return el.children.filter((c): c is XmlElement => isElement(c) && (name === undefined || c.name === name));
}

/** 1-based line of an offset. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let k = text.indexOf('\n'); k >= 0 && k < offset; k = text.indexOf('\n', k + 1)) line++;
  return line;
}
