/**
 * Watches an app's root with chokidar and calls `onReload` once per burst of relevant changes.
 * Editors' safe writes (write a temp file, rename it over the original) arrive as a change or an
 * add of the original, which the filter matches; the temp file itself never does. A watcher error
 * (e.g. inotify's watch limit) reloads anyway and is logged: watching never stops silently.
 */
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../log/logger.js';
import { Debouncer } from './debounce.js';
import { IGNORED_DIRS, relativeTo, type ChangeFilter } from './mask.js';

/** Options of one app's watcher. */
export interface WatchOptions {
  root: string;
  filter: ChangeFilter;
  /** Quiet period that closes a burst of saves. */
  debounceMs: number;
  onReload: (paths: string[]) => void;
  log: Logger;
  /** How deep below `root` to watch (chokidar's `depth`); unset: the whole tree. */
  depth?: number;
  /** What is watched, for the log line of a watcher error ("file watcher" by default). */
  what?: string;
}

/** A running watcher. */
export interface AppWatcher {
  /** Resolves once the initial scan is done and changes are being seen. */
  ready: Promise<void>;
  close(): Promise<void>;
}

/** Starts watching. */
export function watchApp(opts: WatchOptions): AppWatcher {
  const debouncer = new Debouncer(opts.debounceMs, Math.max(2_000, opts.debounceMs * 10), opts.onReload);
  const skipDir = (path: string): boolean => {
    const rel = relativeTo(opts.root, path);
    return rel !== null && rel !== '' && rel.split('/').some((part) => IGNORED_DIRS.has(part));
  };
  const watcher: FSWatcher = watch(opts.root, {
    ignoreInitial: true,
    persistent: false,
    atomic: true,
    ignored: skipDir,
    ...(opts.depth !== undefined ? { depth: opts.depth } : {}),
  });
  const onPath = (event: string) => (path: string) => {
    if (!opts.filter(path)) return;
    opts.log.debug({ event, path }, 'watched file changed');
    debouncer.trigger(path);
  };
  for (const event of ['add', 'change', 'unlink'] as const) watcher.on(event, onPath(event));
  watcher.on('error', (err: unknown) => {
    opts.log.warn({ err: err instanceof Error ? err.message : String(err), root: opts.root }, `${opts.what ?? 'file watcher'} error: reloading to be safe, still watching`);
    debouncer.trigger(opts.root);
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
