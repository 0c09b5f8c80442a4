/** Invalid-settings reporting: one Problem per bad input, all thrown together in a ConfigError. */
import type { SettingKey } from './settings.js';

/** Where a setting's value came from, lowest precedence first. */
export type Source = 'default' | 'config' | 'env' | 'flag';

/** One invalid input, with enough context to fix it without reading the code. */
export interface Problem {
  /** Where the input came from: `--workers`, `CORRAL_WORKERS`, `/etc/corral.json $.workers`, `APP_DIR`. */
  readonly origin: string;
  /** The setting concerned; null for unknown flags, keys and extra arguments. */
  readonly key: SettingKey | null;
  /** The value received, already quoted (see quote()); null when there is none (a missing value). */
  readonly received: string | null;
  /** What is wrong with it: "is not an integer". */
  readonly reason: string;
  /** What would have been accepted: "an integer 1..256". */
  readonly expected: string;
}

const MAX_QUOTED = 120;

/** Quotes a received value the way messages show it: strings in double quotes, JSON values as JSON. */
export function quote(value: unknown): string {
  const text = value === undefined ? 'undefined' : JSON.stringify(value);
  return text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED - 1)}…` : text;
}

/** `--workers: "lots" is not an integer (workers: expected an integer 1..256)` */
export function formatProblem(p: Problem): string {
  const received = p.received === null ? '' : `${p.received} `;
  const key = p.key === null ? '' : `${p.key}: `;
  return `${p.origin}: ${received}${p.reason} (${key}expected ${p.expected})`;
}

/** Every invalid setting found while loading, reported at once. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly problems: readonly Problem[];

  constructor(problems: readonly Problem[]) {
    const lines = problems.map((p) => `  - ${formatProblem(p)}`);
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super(`invalid configuration (${count}):\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.problems = Object.freeze([...problems]);
  }
}
