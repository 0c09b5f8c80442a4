/**
 * The `corral` command line itself (dist/cli/main.js): version and help spellings, and a
 * "did you mean" for a mistyped command, as a new user types them.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLI, ROOT } from '../helpers/corral.js';

const VERSION = (JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { version: string }).version;
const corral = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('corral command line', () => {
  it('prints its version for --version, -v, -V and `corral version`', () => {
    for (const a of ['--version', '-v', '-V', 'version']) {
      const r = corral(a);
      expect(r.status, a).toBe(0);
      expect(r.stdout).toBe(`${VERSION}\n`);
    }
  });

  it('`corral help CMD` is `corral CMD --help`; plain help is the usage', () => {
    expect(corral('help', 'dev').stdout).toBe(corral('dev', '--help').stdout);
    expect(corral('help', 'dev').stdout).toMatch(/^Usage: corral dev /);
    expect(corral('help').stdout).toMatch(/^corral .*: hosts Python WSGI apps/);
  });

  it('suggests the command a typo meant, with exit code 2', () => {
    const r = corral('sevre');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^corral: unknown command "sevre"; did you mean `corral serve`\?/);
    expect(corral('xyzzy').stderr).toMatch(/^corral: unknown command "xyzzy"\n/);
  });
});
