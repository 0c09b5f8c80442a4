/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4): every line must be a
 * HELP, a TYPE or a sample of a family declared before it, with well-formed labels and a number.
 * Throws naming the line that is not.
 */

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A metric family: its TYPE, HELP and samples. */
export interface Family {
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*';
const LABEL_VALUE = String.raw`"(?:[^"\\\n]|\\[\\"n])*"`;
const SAMPLE = new RegExp(String.raw`^(${NAME})(?:\{((?:${LABEL}=${LABEL_VALUE})(?:,${LABEL}=${LABEL_VALUE})*,?)?\})? (\S+)(?: (-?\d+))?$`);
const HELP = new RegExp(String.raw`^# HELP (${NAME}) (.*)$`);
const TYPE = new RegExp(String.raw`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SUFFIXES: Record<string, string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['', '_sum', '_count'] };

/** Parses exposition text into families by name. */
export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, i) => {
    const where = `line ${i + 1} ${JSON.stringify(line)}`;
    if (line === '') return;
    let m = HELP.exec(line);
    if (m) {
      const f = families.get(m[1]!) ?? { type: 'untyped', help: '', samples: [] };
      f.help = m[2]!;
      families.set(m[1]!, f);
      return;
    }
    m = TYPE.exec(line);
    if (m) {
      const f = families.get(m[1]!) ?? { type: 'untyped', help: '', samples: [] };
      if (f.samples.length > 0) throw new Error(`${where}: TYPE after samples`);
      f.type = m[2]!;
      families.set(m[1]!, f);
      return;
    }
    if (line.startsWith('#')) return; // other comments are allowed
    m = SAMPLE.exec(line);
    if (!m) throw new Error(`${where}: not a sample`);
    const name = m[1]!;
    const value = m[3]!;
    // Go's ParseFloat, which Prometheus uses, takes NaN and Inf in any case (prom-client writes `Nan`).
    if (!/^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|[+-]?inf)$/i.test(value)) throw new Error(`${where}: value ${value} is not a number`);
    const family = familyOf(families, name);
    if (!family) throw new Error(`${where}: sample of ${name} without a TYPE or HELP line`);
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(new RegExp(`(${LABEL})=(${LABEL_VALUE})`, 'g'))) {
      if (lm[1]! in labels) throw new Error(`${where}: label ${lm[1]} twice`);
      labels[lm[1]!] = JSON.parse(lm[2]!.replace(/\\n/g, '\\n')) as string;
    }
    family.samples.push({ name, labels, value: /inf/i.test(value) ? (value.startsWith('-') ? -Infinity : Infinity) : Number(value) });
  });
  return families;
}

function familyOf(families: Map<string, Family>, name: string): Family | undefined {
  const exact = families.get(name);
  if (exact) return exact;
  for (const [base, f] of families) for (const s of SUFFIXES[f.type] ?? []) if (s && name === base + s) return f;
  return undefined;
}

/** The value of the sample of `family` with exactly these labels (those given), or undefined. */
export function sampleValue(families: Map<string, Family>, family: string, labels: Record<string, string>, name = family): number | undefined {
  const f = families.get(family);
  const s = f?.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value;
}
