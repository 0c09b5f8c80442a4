/**
 * Watches one app directory's web.config (any case of the name) with the app watcher's machinery
 * (watcher.ts: chokidar, atomic saves seen as a change of web.config itself, one call per burst,
 * a watcher error calling back too so a change is never missed). Only the directory itself is
 * watched (depth 0), and only web.config passes.
 */
import { basename } from 'node:path';
import type { Logger } from '../log/logger.js';
import { watchApp, type AppWatcher } from './watcher.js';

/** Starts watching `root`'s web.config; `onChange` runs once per burst of saves. */
export function watchWebConfig(root: string, debounceMs: number, onChange: () => void, log: Logger): AppWatcher {
  return watchApp({
    root,
    depth: 0,
    filter: (path) => basename(path).toLowerCase() === 'web.config',
    debounceMs,
    onReload: () => onChange(),
    log,
    what: 'web.config watcher',
  });
}
