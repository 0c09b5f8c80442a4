/**
 * Names apps by their WSGI callable, as logs and metrics always did, unless two apps of one
 * service share it (IIS sites with the same `wsgi.application` layout): the later ones get
 * `callable@directory`, and a number if even that is taken. A name, once given, stays for the
 * life of the service, so a metric series never changes its label.
 */
import { basename } from 'node:path';
import type { Settings } from '../config/settings.js';

/** The names given so far, by app directory. */
export class AppNames {
  readonly #byApp = new Map<string, string>();
  readonly #taken = new Set<string>();

  /** The name of the app at `settings.root` (the same one every time it is asked, even after the app was stopped and started again). */
  take(settings: Readonly<Pick<Settings, 'root' | 'wsgiApp'>>): string {
    const key = `${settings.root}\0${settings.wsgiApp}`;
    const known = this.#byApp.get(key);
    if (known !== undefined) return known;
    let name = settings.wsgiApp;
    if (this.#taken.has(name)) {
      const dir = basename(settings.root.replace(/[\\/]+$/, '')) || settings.root;
      name = `${settings.wsgiApp}@${dir}`;
      for (let n = 2; this.#taken.has(name); n++) name = `${settings.wsgiApp}@${dir}#${n}`;
    }
    this.#taken.add(name);
    this.#byApp.set(key, name);
    return name;
  }
}
