/**
 * `corral migrate-webconfig [PATH] [--write [--force]] [--node EXE] [--corral MAIN_JS]`: rewrites a
 * Helicon Zoo or wfastcgi web.config into corral's form (src/config/webconfig-migrate.ts). The new
 * file goes to stdout and what changed to stderr; --write replaces the file after saving
 * web.config.bak. Exit 0 on success, 2 on a usage, read or parse error.
 */
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_MIGRATE_OPTIONS, migrateWebConfig, type MigrateOptions } from '../config/webconfig-migrate.js';
import { WEB_CONFIG_NAMES, WebConfigError } from '../config/webconfig.js';

export const MIGRATE_USAGE = `Usage: corral migrate-webconfig [PATH] [--write [--force]] [--node EXE] [--corral MAIN_JS]

Rewrites a Helicon Zoo or wfastcgi web.config into corral's form, keeping every setting:
Zoo's <heliconZoo> environmentVariables become <appSettings> keys and the section goes; the Zoo
or wfastcgi handler becomes corral's FastCGI handler. Everything else in the file stays as it is.

  PATH             a web.config, or a site folder holding one (default: ./web.config)
  --write          replace the file, after saving it as web.config.bak (default: print the new
                   file to stdout; what changed always goes to stderr)
  --force          with --write: overwrite an existing web.config.bak
  --node EXE       node.exe in the handler's scriptProcessor (default ${DEFAULT_MIGRATE_OPTIONS.node})
  --corral MAIN_JS corral's dist\\cli\\main.js there (default ${DEFAULT_MIGRATE_OPTIONS.corral})

The <fastCgi> application belongs to applicationHost.config: the appcmd commands to run are printed.
`;

class UsageError extends Error {}

interface Args {
  path: string;
  write: boolean;
  force: boolean;
  opts: MigrateOptions;
}

function parseArgs(argv: readonly string[]): Args | 'help' {
  let path: string | null = null;
  let write = false;
  let force = false;
  const opts = { ...DEFAULT_MIGRATE_OPTIONS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--help' || a === '-h') return 'help';
    else if (a === '--write') write = true;
    else if (a === '--force') force = true;
    else if (a === '--node') opts.node = value();
    else if (a === '--corral') opts.corral = value();
    else if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
    else if (path !== null) throw new UsageError(`one PATH only (got ${JSON.stringify(path)} and ${JSON.stringify(a)})`);
    else path = a;
  }
  if (force && !write) throw new UsageError('--force goes with --write');
  return { path: path ?? 'web.config', write, force, opts };
}

/** The web.config that PATH names (a folder: its web.config, any case). */
function resolveFile(path: string): string {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) throw new UsageError(`${path}: no such file or folder`);
  if (!st.isDirectory()) return path;
  for (const name of WEB_CONFIG_NAMES) if (existsSync(join(path, name))) return join(path, name);
  throw new UsageError(`${path}: no web.config in this folder`);
}

export async function runMigrateWebConfig(argv: readonly string[]): Promise<number> {
  const err = (s: string): void => void process.stderr.write(s);
  try {
    const args = parseArgs(argv);
    if (args === 'help') {
      process.stdout.write(MIGRATE_USAGE);
      return 0;
    }
    const file = resolveFile(args.path);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`${file}: cannot be read: ${(e as Error).message}`);
    }
    const r = migrateWebConfig(text, file, args.opts);
    const changed = r.text !== text;
    err(`${file}: ${r.from.length > 0 ? `written for ${r.from.join(' and ')}; ` : ''}${changed ? `${r.changes.length} change(s)` : 'no changes'}\n`);
    for (const c of r.changes) err(`  changed: ${c}\n`);
    for (const n of r.notes) err(`  note: ${n}\n`);
    for (const w of r.warnings) err(`  warning: ${w}\n`);
    if (r.appcmd.length > 0) err(`\nIn applicationHost.config (cmd.exe as administrator; config\\iis\\appcmd.txt has the rest):\n${r.appcmd.map((l) => `  ${l}\n`).join('')}`);
    if (!args.write) {
      process.stdout.write(r.text);
      return 0;
    }
    if (!changed) {
      err('nothing written\n');
      return 0;
    }
    const bak = `${file}.bak`;
    if (existsSync(bak) && !args.force) throw new UsageError(`${bak} exists: move it away or add --force to overwrite it; nothing written`);
    copyFileSync(file, bak);
    writeFileSync(file, r.text);
    err(`wrote ${file} (the old one is ${bak})\n`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof WebConfigError) {
      err(`corral migrate-webconfig: ${e.message}\n`);
      if (e instanceof UsageError && !/nothing written|no such|no web.config|cannot be read/.test(e.message)) err(`\n${MIGRATE_USAGE}`);
      return 2;
    }
    throw e;
  }
}
