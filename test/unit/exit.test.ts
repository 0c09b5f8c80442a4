import { describe, expect, it } from 'vitest';
import { classifyExit, type ExitFacts } from '../../src/pool/exit.js';

const base: ExitFacts = { code: 0, signal: null, requested: false, ready: true, uptimeMs: 60_000, spawnError: null, inflight: 0 };

describe('classifyExit', () => {
  const table: Array<[string, Partial<ExitFacts>, { level: string; reason: string; bootFailure: boolean }]> = [
    ['python not found', { spawnError: 'spawn python9 ENOENT', code: null, ready: false }, { level: 'error', reason: 'spawn failed', bootFailure: true }],
    ['import failed (code 4)', { code: 4, ready: false }, { level: 'error', reason: 'app import failed', bootFailure: true }],
    ['bad usage (code 3)', { code: 3, ready: false }, { level: 'error', reason: 'boot failed', bootFailure: true }],
    ['died before READY', { code: 1, ready: false }, { level: 'error', reason: 'exited before ready', bootFailure: true }],
    ['killed before READY', { code: null, signal: 'SIGKILL', ready: false }, { level: 'error', reason: 'exited before ready', bootFailure: true }],
    ['requested stop', { requested: true }, { level: 'info', reason: 'stopped', bootFailure: false }],
    ['requested stop of a booting worker', { requested: true, ready: false, code: 0 }, { level: 'info', reason: 'stopped', bootFailure: false }],
    ['killed after the grace period', { requested: true, code: null, signal: 'SIGKILL' }, { level: 'warn', reason: 'killed after grace period', bootFailure: false }],
    ['SIGKILL out of the blue', { code: null, signal: 'SIGKILL', inflight: 2 }, { level: 'error', reason: 'killed', bootFailure: false }],
    ['crash with a code', { code: 1 }, { level: 'warn', reason: 'exit code 1', bootFailure: false }],
    ['SIGSEGV', { code: null, signal: 'SIGSEGV' }, { level: 'warn', reason: 'signal SIGSEGV', bootFailure: false }],
  ];
  for (const [name, facts, want] of table) {
    it(name, () => {
      const v = classifyExit({ ...base, ...facts });
      expect({ level: v.level, reason: v.reason, bootFailure: v.bootFailure }).toEqual(want);
      expect(v.message.length).toBeGreaterThan(5);
    });
  }
  it('says out of memory and counts lost requests for SIGKILL', () => {
    expect(classifyExit({ ...base, code: null, signal: 'SIGKILL', inflight: 2 }).message).toMatch(/out of memory.*2 request/);
  });
  it('warns of request loss for unexpected exits', () => {
    expect(classifyExit({ ...base, code: 1 }).message).toMatch(/possible request loss/);
  });
});
