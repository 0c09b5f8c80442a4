/**
 * What `corral dev` changes from `serve`'s defaults, as the text a flag would give: one table for
 * both `devSettings` (which parses it) and `corral dev --help` (which shows it).
 */
import type { SettingKey } from './settings.js';

export interface DevDefault {
  readonly text: string;
  /** Why it may not apply: another setting the user gave wins. */
  readonly unless?: SettingKey;
}

export const DEV_DEFAULTS: Readonly<Partial<Record<SettingKey, DevDefault>>> = {
  http: { text: '127.0.0.1:8000', unless: 'listen' },
  workers: { text: '1' },
  threads: { text: '4' },
  watchFileChangesMask: { text: '*.py', unless: 'restartFileRegex' },
};
