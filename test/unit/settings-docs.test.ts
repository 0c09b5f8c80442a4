import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, renderGeneratedFiles, renderReadmeSettings, renderSettingsSchema, writeGeneratedFiles } from '../../src/config/gen-docs.js';
import { ERRORS } from '../../src/errors.js';
import { loadSettings } from '../../src/config/load.js';
import { SETTING_ROWS, defaultOf } from '../../src/config/settings.js';

// `UPDATE_DOCS=1 npx vitest run test/unit/settings-docs.test.ts` rewrites the generated files.
const update = process.env['UPDATE_DOCS'] === '1';

describe('generated settings docs', () => {
  if (update) writeGeneratedFiles(REPO_ROOT);

  it.each(Object.entries(renderGeneratedFiles()))('%s matches the settings table', (relative, content) => {
    const onDisk = readFileSync(join(REPO_ROOT, relative), 'utf8');
    expect(onDisk, `${relative} is stale: run UPDATE_DOCS=1 npx vitest run test/unit/settings-docs.test.ts`).toBe(content);
  });

  it('documents every setting in the markdown table', () => {
    const markdown = renderGeneratedFiles()['docs/settings.md'] ?? '';
    for (const row of SETTING_ROWS) expect(markdown).toContain(`| \`${row.key}\``);
  });
});

describe('README', () => {
  const START = '<!-- settings:start (generated from src/config/settings.ts) -->';
  const END = '<!-- settings:end -->';
  it('lists every setting with its default, as the table says', () => {
    const path = join(REPO_ROOT, 'README.md');
    let readme = readFileSync(path, 'utf8');
    const block = `${START}\n${renderReadmeSettings()}\n${END}`;
    if (update) {
      // A function, not a string: the table may contain `$` sequences that replace() would interpret.
      readme = readme.replace(new RegExp(`${START.replace(/[()]/g, '\\$&')}[\\s\\S]*?${END}`), () => block);
      writeFileSync(path, readme);
    }
    expect(readme, 'README settings table is stale: run UPDATE_DOCS=1 npx vitest run test/unit/settings-docs.test.ts').toContain(block);
  });
  it('documents every error code', () => {
    const errors = readFileSync(join(REPO_ROOT, 'docs/errors.md'), 'utf8');
    for (const code of Object.keys(ERRORS)) expect(errors).toContain(`\`${code}\``);
  });
});

describe('the settings table', () => {
  it.each(SETTING_ROWS.map((row) => [row.key, row] as const))('%s has a doc, a flag or env, and a valid default', (_key, row) => {
    expect(row.doc.length).toBeGreaterThan(20);
    expect(row.flag !== null || row.env.length > 0).toBe(true);
    // root's default is checked on disk, so only with the host's own paths.
    const platforms: NodeJS.Platform[] = row.key === 'root' ? [process.platform] : ['linux', 'win32'];
    for (const platform of platforms) {
      const baseDir = platform === 'win32' ? 'C:\\app' : process.cwd();
      expect(row.kind.fromJson(defaultOf(row, platform), { baseDir, platform }).ok).toBe(true);
    }
  });

  it('has unique keys, flags and environment names', () => {
    const all = SETTING_ROWS.flatMap((r) => [r.key, ...(r.flag === null ? [] : [r.flag]), ...r.env]);
    expect(new Set(all).size).toBe(all.length);
  });

  it('gives a schema that closes the config file and covers every key the loader accepts', () => {
    const schema = renderSettingsSchema();
    expect(schema['additionalProperties']).toBe(false);
    const keys = Object.keys(schema['properties'] as object);
    // `apps` is the list of per-app objects, the only key that is not a row of the table.
    expect(keys).toEqual(['$schema', ...SETTING_ROWS.filter((r) => r.inConfigFile !== false).map((r) => r.key), 'apps']);
  });

  it('loads config/corral.example.json without problems, every key from the file', () => {
    const example = JSON.parse(readFileSync(join(REPO_ROOT, 'config/corral.example.json'), 'utf8')) as object;
    const schemaKeys = Object.keys(renderSettingsSchema()['properties'] as object);
    expect(Object.keys(example).every((k) => schemaKeys.includes(k))).toBe(true);
    const { settings, sources } = loadSettings({ argv: ['--config', 'config/corral.example.json'], env: {}, cwd: REPO_ROOT, platform: 'linux' });
    expect(settings.root).toBe(join(REPO_ROOT, 'examples/hello'));
    for (const key of Object.keys(example).filter((k) => k !== '$schema')) expect(sources[key as keyof typeof sources]).toBe('config');
  });
});
