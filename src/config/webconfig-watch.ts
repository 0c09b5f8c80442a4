/**
 * Watches one app directory's web.config (any case of the name) and calls `onChange` once per
 * burst of saves, like the app's file watcher (src/watch/watcher.ts): chokidar, atomic saves
 * (write a temp file, rename it over) seen as a change of web.config itself. Only the directory
 * itself is watched (depth 0), and only web.config passes. A watcher error calls `onChange` too,
 * so a change is never missed silently (re-reading an unchanged file costs nothing).
 */
import { basename } from 'node:path';
import { watch } from 'chokidar';
import type { Logger } from '../log/logger.js';
import { Debouncer } from '../watch/debounce.js';

/** A running web.config watcher. */
export interface WebConfigWatcher {
  /** Resolves once changes are being seen. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

/** Starts watching `root`'s web.config. */
export function watchWebConfig(root: string, debounceMs: number, onChange: () => void, log: Logger): WebConfigWatcher {
  const debouncer = new Debouncer(debounceMs, Math.max(2_000, debounceMs * 10), () => onChange());
  const isWebConfig = (path: string): boolean => basename(path).toLowerCase() === 'web.config';
  const watcher = watch(root, { ignoreInitial: true, persistent: false, atomic: true, depth: 0 });
  for (const event of ['add', 'change', 'unlink'] as const)
    watcher.on(event, (path: string) => {
      if (isWebConfig(path)) debouncer.trigger(path);
    });
  watcher.on('error', (err: unknown) => {
    log.warn({ err: err instanceof Error ? err.message : String(err), root }, 'web.config watcher error: re-reading it to be safe, still watching');
    debouncer.trigger(root);
  });
  const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return {
    ready,
    close: async () => {
      debouncer.cancel();
      await watcher.close();
    },
  };
}
