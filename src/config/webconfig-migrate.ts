/**
 * Rewrites a Helicon Zoo or wfastcgi web.config into corral's form (`corral migrate-webconfig`),
 * as text edits guided by the parsed structure: everything the edits do not touch (comments, other
 * sections, order, quoting, line endings) stays byte for byte.
 *
 * - Zoo: `<heliconZoo><application><environmentVariables>` entries become `<appSettings>` keys of
 *   the same names (comments among them come along); the `<heliconZoo>` section goes (without
 *   Zoo's schema IIS answers 500.19 on it); handlers with modules="HeliconZoo_*" become corral's.
 * - wfastcgi: `<appSettings>` stay; the handler whose scriptProcessor names wfastcgi.py becomes
 *   corral's. `<fastCgi>` belongs to applicationHost.config: the caller prints appcmd commands.
 * `<remove name="OLD">` of a replaced handler (static folders) then names corral's handler.
 */
import { PER_APP_KEYS, envRefusal } from './app-settings.js';
import { wsgiAppSpec } from './kinds.js';
import { SETTING_ROWS } from './settings.js';
import { mergedSettings, parseWebConfig, WebConfigError } from './webconfig.js';
import { attrOf, childElements, escapeXmlAttr, isElement, lineAt, scanXml, type XmlElement, type XmlNode } from './xml-spans.js';

/** Where corral is on the IIS machine (config/iis/web.config's defaults). */
export interface MigrateOptions {
  readonly node: string;
  readonly corral: string;
}

export const DEFAULT_MIGRATE_OPTIONS: MigrateOptions = {
  node: 'C:\\Program Files\\nodejs\\node.exe',
  corral: 'C:\\corral\\dist\\cli\\main.js',
};

export interface MigrateResult {
  /** The rewritten file (the input itself when nothing changed). */
  readonly text: string;
  /** What the source was written for. */
  readonly from: ReadonlyArray<'heliconZoo' | 'wfastcgi'>;
  /** One line per change. */
  readonly changes: readonly string[];
  /** How corral reads the settings that are not its own (they reach the app's os.environ). */
  readonly notes: readonly string[];
  /** Settings that corral will not use as they were meant, and anything not carried over. */
  readonly warnings: readonly string[];
  /** appcmd.exe commands for applicationHost.config (cmd.exe, as administrator). */
  readonly appcmd: readonly string[];
}

interface Edit {
  start: number;
  end: number;
  text: string;
}

const APPCMD = '%windir%\\system32\\inetsrv\\appcmd.exe';

export function corralScriptProcessor(o: MigrateOptions): string {
  return `${o.node}|${o.corral} relay`;
}

function isZooHandler(el: XmlElement): boolean {
  return /heliconzoo/i.test(attrOf(el, 'modules') ?? '');
}

function isWfastcgiHandler(el: XmlElement): boolean {
  return /wfastcgi\.py/i.test(attrOf(el, 'scriptProcessor') ?? '');
}

function isCorralHandler(el: XmlElement): boolean {
  return attrOf(el, 'name') === 'corral' || /main\.js\s+relay\s*$/i.test(attrOf(el, 'scriptProcessor') ?? '');
}

/** Offset of the start of the line holding `offset`. */
function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** The whitespace before `offset` on its line, or null when other text comes first. */
function indentBefore(text: string, offset: number): string | null {
  const before = text.slice(lineStart(text, offset), offset);
  return /^[ \t]*$/.test(before) ? before : null;
}

/** [start, end) of a node, widened to whole lines when it stands alone on them. */
function lineSpan(text: string, start: number, end: number): [number, number] {
  if (indentBefore(text, start) === null) return [start, end];
  const nl = text.indexOf('\n', end);
  const after = text.slice(end, nl < 0 ? text.length : nl);
  if (!/^[ \t\r]*$/.test(after)) return [start, end];
  return [lineStart(text, start), nl < 0 ? text.length : nl + 1];
}

/** The indentation one level deeper than `parent`'s. */
function childIndent(text: string, parent: XmlElement): string {
  for (const c of parent.children) {
    const ind = indentBefore(text, c.start);
    if (ind !== null) return ind;
  }
  const own = indentBefore(text, parent.start) ?? '';
  const unit = /\n(\t+)</.test(text) && !/\n( +)</.test(text) ? '\t' : '  ';
  return own + unit;
}

/** The text of `lines` (each one element or comment) inserted as the last children of `parent`. */
function appendChildren(text: string, parent: XmlElement, lines: readonly string[], eol: string): Edit {
  const ind = childIndent(text, parent);
  const closeIndent = indentBefore(text, parent.closeStart);
  if (closeIndent !== null) {
    const at = lineStart(text, parent.closeStart);
    return { start: at, end: at, text: lines.map((l) => `${ind}${l}${eol}`).join('') };
  }
  return { start: parent.closeStart, end: parent.closeStart, text: lines.map((l) => `${eol}${ind}${l}`).join('') + eol + (indentBefore(text, parent.start) ?? '') };
}

/** The effective key/values of an `<add>/<remove>/<clear>` collection. */
function collection(el: XmlElement | undefined, keyAttr: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of el ? childElements(el) : []) {
    const key = attrOf(item, keyAttr);
    if (item.name === 'clear') out.clear();
    else if (item.name === 'remove' && key !== undefined) out.delete(key);
    else if (item.name === 'add' && key !== undefined) {
      out.delete(key);
      out.set(key, attrOf(item, 'value') ?? '');
    }
  }
  return out;
}

function describe(el: XmlElement, text: string): string {
  const name = attrOf(el, 'name');
  return `<${el.name}${name !== undefined ? ` name="${name}"` : ''}> (line ${lineAt(text, el.start)})`;
}

/** Rewrites `text` (the contents of `file`). Throws WebConfigError when it is not a usable web.config. */
export function migrateWebConfig(text: string, file: string, opts: MigrateOptions = DEFAULT_MIGRATE_OPTIONS): MigrateResult {
  parseWebConfig(text, file); // well-formed, no DOCTYPE, <configuration> root: else WebConfigError with line
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const root = scanXml(text).find((n): n is XmlElement => isElement(n) && n.name === 'configuration');
  if (!root) throw new WebConfigError(file, 'no <configuration> element');
  const edits: Edit[] = [];
  const changes: string[] = [];
  const warnings: string[] = [];
  const notes: string[] = [];
  const from = new Set<'heliconZoo' | 'wfastcgi'>();
  const renamed = new Set<string>();
  const wfastcgiProcessors = new Set<string>();
  const levels = [root, ...childElements(root, 'location')];

  for (const level of levels) {
    const where = level === root ? '' : ` in <location path="${attrOf(level, 'path') ?? ''}">`;
    const webServers = childElements(level, 'system.webServer');
    // --- Helicon Zoo's variables -> appSettings
    const zooSections = [...childElements(level, 'heliconZoo'), ...webServers.flatMap((s) => childElements(s, 'heliconZoo'))];
    if (zooSections.length > 0) {
      from.add('heliconZoo');
      const carried: XmlNode[] = [];
      const effective = new Map<string, string>();
      for (const zoo of zooSections) {
        for (const app of zoo.children) {
          if (!isElement(app)) {
            carried.push(app); // a comment: it comes along
            continue;
          }
          if (app.name !== 'application') {
            warnings.push(`${describe(app, text)} in <heliconZoo>${where}: not a Zoo application; not carried over`);
            continue;
          }
          for (const part of app.children) {
            if (!isElement(part)) {
              carried.push(part);
              continue;
            }
            if (part.name !== 'environmentVariables') {
              warnings.push(`${describe(part, text)} in Zoo application "${attrOf(app, 'name') ?? ''}"${where}: corral has no such setting; not carried over`);
              continue;
            }
            for (const item of part.children) {
              carried.push(item);
              if (!isElement(item)) continue;
              const key = attrOf(item, 'name');
              if (item.name === 'clear') effective.clear();
              else if (item.name === 'remove' && key !== undefined) effective.delete(key);
              else if (item.name === 'add' && key !== undefined) {
                effective.delete(key);
                effective.set(key, attrOf(item, 'value') ?? '');
              }
            }
          }
        }
      }
      const settingsEls = childElements(level, 'appSettings');
      const target = settingsEls[settingsEls.length - 1];
      const existing = new Map<string, string>();
      for (const s of settingsEls) for (const [k, v] of collection(s, 'key')) existing.set(k, v);
      const lines: string[] = [];
      const seen = new Set<string>();
      const moved: string[] = [];
      for (const node of [...carried].reverse()) {
        // Walk backwards so that the last <add> of a name is the one that counts.
        if (!isElement(node)) {
          lines.unshift(text.slice(node.start, node.end));
          continue;
        }
        const key = attrOf(node, 'name');
        if (node.name !== 'add' || key === undefined) {
          if (node.name === 'remove' || node.name === 'clear') changes.push(`Zoo's <${node.name}${key !== undefined ? ` name="${key}"` : ''}/> (line ${lineAt(text, node.start)}): applied, not copied`);
          continue;
        }
        if (seen.has(key) || !effective.has(key)) continue;
        seen.add(key);
        const value = effective.get(key) ?? '';
        if (existing.has(key)) {
          if (existing.get(key) !== value)
            warnings.push(`${key}: <appSettings> has "${existing.get(key) ?? ''}", Zoo had "${value}"; kept the appSettings value (it is the one corral reads)`);
          else changes.push(`${key}: already in <appSettings> with the same value`);
          continue;
        }
        const nameAttr = node.attrs.find((a) => a.name === 'name');
        const raw = text.slice(node.start, node.end);
        const off = nameAttr ? nameAttr.nameStart - node.start : -1;
        lines.unshift(off >= 0 ? `${raw.slice(0, off)}key${raw.slice(off + 4)}` : raw);
        moved.unshift(`${key}: moved from <heliconZoo> environmentVariables to <appSettings>${where}`);
      }
      changes.push(...moved);
      const hasEntry = lines.some((l) => !l.startsWith('<!--'));
      let replacedFirst = false;
      if (hasEntry && target && !target.selfClosing) edits.push(appendChildren(text, target, lines, eol));
      else if (hasEntry && target) {
        const ind = indentBefore(text, target.start) ?? '';
        const inner = childIndent(text, target);
        edits.push({ start: target.start, end: target.end, text: `<appSettings>${eol}${lines.map((l) => `${inner}${l}${eol}`).join('')}${ind}</appSettings>` });
      } else if (hasEntry) {
        const direct = zooSections.find((z) => level.children.includes(z));
        const ind = direct ? indentBefore(text, direct.start) : null;
        if (direct && ind !== null) {
          const [start, end] = lineSpan(text, direct.start, direct.end);
          const inner = ind + (childIndent(text, direct).slice(ind.length) || '  ');
          edits.push({ start, end, text: `${ind}<appSettings>${eol}${lines.map((l) => `${inner}${l}${eol}`).join('')}${ind}</appSettings>${eol}` });
          replacedFirst = true;
        } else {
          const ind2 = childIndent(text, level);
          const inner = `${ind2}${ind2.slice((indentBefore(text, level.start) ?? '').length) || '  '}`;
          edits.push(appendChildren(text, level, [`<appSettings>${eol}${lines.map((l) => `${inner}${l}${eol}`).join('')}${ind2}</appSettings>`], eol));
        }
        changes.push(`added <appSettings>${where}`);
      }
      for (const zoo of zooSections) {
        if (replacedFirst && level.children.includes(zoo) && zoo === zooSections.find((z) => level.children.includes(z))) continue;
        const [start, end] = lineSpan(text, zoo.start, zoo.end);
        edits.push({ start, end, text: '' });
      }
      changes.push(`removed <heliconZoo>${where} (line ${lineAt(text, zooSections[0]!.start)}): IIS without Zoo's schema answers 500.19 on it`);
    }

    // --- handlers
    for (const ws of webServers) {
      for (const fastCgi of childElements(ws, 'fastCgi'))
        warnings.push(`<fastCgi> (line ${lineAt(text, fastCgi.start)})${where}: IIS accepts it only in applicationHost.config (500.19 here); left as it is: remove it and use the appcmd commands below`);
      for (const handlers of childElements(ws, 'handlers')) {
        const adds = childElements(handlers, 'add');
        let hasCorral = adds.some(isCorralHandler);
        for (const el of adds.filter((a) => isZooHandler(a) || isWfastcgiHandler(a))) {
          const zoo = isZooHandler(el);
          from.add(zoo ? 'heliconZoo' : 'wfastcgi');
          const name = attrOf(el, 'name') ?? '';
          renamed.add(name);
          if (!zoo) wfastcgiProcessors.add(attrOf(el, 'scriptProcessor') ?? '');
          for (const [a, want] of [['path', '*'], ['verb', '*']] as const) {
            const v = attrOf(el, a);
            if (v !== undefined && v !== want) warnings.push(`handler "${name}" had ${a}="${v}"; corral's has ${a}="${want}": narrow it again if that was meant`);
          }
          const pre = attrOf(el, 'preCondition');
          if (pre !== undefined && !zoo) warnings.push(`handler "${name}" had preCondition="${pre}"; corral's has none`);
          if (hasCorral) {
            const [start, end] = lineSpan(text, el.start, el.end);
            edits.push({ start, end, text: '' });
            changes.push(`removed ${zoo ? 'Zoo' : 'wfastcgi'} handler "${name}" (line ${lineAt(text, el.start)})${where}: corral's handler serves the site`);
            continue;
          }
          const ind = indentBefore(text, el.start) ?? '';
          const cont = `${eol}${ind}     `;
          edits.push({
            start: el.start,
            end: el.end,
            text: `<add name="corral" path="*" verb="*" modules="FastCgiModule"${cont}scriptProcessor="${escapeXmlAttr(corralScriptProcessor(opts))}"${cont}resourceType="Unspecified" requireAccess="Script" responseBufferLimit="0" />`,
          });
          changes.push(`replaced ${zoo ? 'Zoo' : 'wfastcgi'} handler "${name}" (line ${lineAt(text, el.start)})${where} by corral's FastCGI handler (responseBufferLimit="0": streamed responses are not held back)`);
          hasCorral = true;
        }
      }
    }
  }

  // <remove name="OLD"> of a replaced handler (a static folder's <location>) now removes corral's.
  if (renamed.size > 0) {
    const walk = (el: XmlElement): void => {
      if (el.name === 'handlers') {
        let done = false;
        for (const r of childElements(el, 'remove')) {
          const attr = r.attrs.find((a) => a.name === 'name');
          if (!attr || !renamed.has(attr.value)) continue;
          if (done || childElements(el, 'remove').some((o) => attrOf(o, 'name') === 'corral')) {
            const [start, end] = lineSpan(text, r.start, r.end);
            edits.push({ start, end, text: '' });
            changes.push(`removed <remove name="${attr.value}"> (line ${lineAt(text, r.start)}): corral's handler is removed there already`);
            continue;
          } else {
            const at = attr.nameStart + text.slice(attr.nameStart).indexOf(attr.raw);
            edits.push({ start: at, end: at + attr.raw.length, text: '"corral"' });
            done = true;
          }
          changes.push(`<remove name="${attr.value}"> (line ${lineAt(text, r.start)}) now removes "corral"`);
        }
      }
      for (const c of childElements(el)) walk(c);
    };
    walk(root);
  }

  const out = applyEdits(text, edits);
  // What corral makes of the settings now in the file.
  const settings = mergedSettings(parseWebConfig(out, file));
  for (const [name, value] of settings) {
    const row = SETTING_ROWS.find((r) => r.env.some((e) => e.toUpperCase() === name.toUpperCase()));
    if (row && PER_APP_KEYS.has(row.key)) {
      if (row.key === 'wsgiApp' && value.trim() !== '' && !wsgiAppSpec().fromText(value, { baseDir: '.', platform: 'win32' }).ok)
        warnings.push(`${name}="${value}" is not a WSGI app reference corral accepts (module:callable, module.callable, module.factory().attr)`);
      continue;
    }
    const refusal = envRefusal(name, row !== undefined);
    if (/^VIRTUAL_ENV$/i.test(name)) warnings.push(`${name}: corral runs the interpreter the service is given (CORRAL_PYTHON, e.g. ${value.replace(/[\\/]+$/, '')}\\Scripts\\python.exe); this value only reaches the app's os.environ`);
    else if (/^APP_WORKER$/i.test(name)) warnings.push(`${name}: Helicon Zoo's worker script; corral has its own worker, so it only reaches the app's os.environ (delete it if unused)`);
    else if (refusal !== null) warnings.push(`${name}: ignored by corral (${refusal})`);
    else notes.push(`${name}: not a corral setting; corral passes it to the app's os.environ, as wfastcgi does`);
  }
  if (from.size === 0) {
    const corralHandler = levels.some((l) => childElements(l, 'system.webServer').some((w) => childElements(w, 'handlers').some((h) => childElements(h, 'add').some(isCorralHandler))));
    if (!corralHandler) warnings.push('no Helicon Zoo or wfastcgi configuration found (no <heliconZoo>, no HeliconZoo or wfastcgi.py handler), and no corral handler either');
  }
  return { text: out, from: [...from], changes: edits.length > 0 ? changes : [], notes, warnings, appcmd: appcmdFor(from.size > 0, [...wfastcgiProcessors], opts) };
}

function applyEdits(text: string, edits: Edit[]): string {
  const sorted = [...edits].sort((a, b) => b.start - a.start || b.end - a.end);
  let out = text;
  let limit = Infinity;
  for (const e of sorted) {
    if (e.end > limit) continue; // overlaps a later edit (cannot happen with the edits above)
    out = out.slice(0, e.start) + e.text + out.slice(e.end);
    limit = e.start;
  }
  return out;
}

/** config/iis/appcmd.txt's step 1 (and the unlock of step 3), plus the removal of wfastcgi's <fastCgi> application. */
function appcmdFor(migrated: boolean, wfastcgi: readonly string[], o: MigrateOptions): string[] {
  if (!migrated) return [];
  const key = `fullPath='${o.node}',arguments='${o.corral} relay'`;
  const out = [
    `REM 1. Register corral's FastCGI application (applicationHost.config only; config\\iis\\appcmd.txt steps 2-4 set its environment and permissions):`,
    `${APPCMD} set config -section:system.webServer/fastCgi /+"[${key},protocol='NamedPipe',maxInstances='4',instanceMaxRequests='10000000',signalBeforeTerminateSeconds='30',activityTimeout='600',requestTimeout='600',idleTimeout='1800']" /commit:apphost`,
    `REM 2. If the site's web.config gets 500.19 on <handlers>, unlock the section for this site only (replace "myapp" by the site's name):`,
    `${APPCMD} unlock config "myapp" -section:system.webServer/handlers /commit:apphost`,
  ];
  for (const sp of wfastcgi) {
    const bar = sp.indexOf('|');
    const full = bar < 0 ? sp : sp.slice(0, bar);
    const args = bar < 0 ? '' : sp.slice(bar + 1);
    out.push(
      `REM 3. Once the site works with corral, remove wfastcgi's FastCGI application if no other site uses it:`,
      `${APPCMD} set config -section:system.webServer/fastCgi /-"[fullPath='${full}',arguments='${args}']" /commit:apphost`,
    );
  }
  return out;
}
