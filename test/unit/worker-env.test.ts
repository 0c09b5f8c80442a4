import { describe, expect, it } from 'vitest';
import { workerEnv } from '../../src/cli/app.js';
import { BASE_ENV, inheritedEnv } from '../../src/cli/worker-env.js';

const service = {
  PATH: '/usr/bin', HOME: '/home/svc', LC_ALL: 'C.UTF-8', PYTHONHOME: '/py', https_proxy: 'http://p:1', ProgramFiles: 'C:\\Program Files',
  'ProgramFiles(x86)': 'C:\\Program Files (x86)', SystemRoot: 'C:\\Windows', FLASK_ENV: 'production', MALLOC_ARENA_MAX: '2',
  AWS_SECRET_ACCESS_KEY: 'secret', DATABASE_URL: 'postgres://', MyApp_Key: 'k', _FCGI_X_PIPE_: '\\\\.\\pipe\\x',
};

describe('the environment workers inherit', () => {
  it('is the base list, matched without regard to case, and nothing else', () => {
    expect(inheritedEnv(service, [], 'linux')).toEqual({
      PATH: '/usr/bin', HOME: '/home/svc', LC_ALL: 'C.UTF-8', PYTHONHOME: '/py', https_proxy: 'http://p:1', ProgramFiles: 'C:\\Program Files',
      'ProgramFiles(x86)': 'C:\\Program Files (x86)', SystemRoot: 'C:\\Windows', FLASK_ENV: 'production', MALLOC_ARENA_MAX: '2',
    });
  });

  it('adds passEnv names: exact and PREFIX*, case-sensitive except on Windows; * passes all', () => {
    expect(inheritedEnv(service, ['DATABASE_URL', 'MYAPP_*'], 'linux')).toMatchObject({ DATABASE_URL: 'postgres://' });
    expect(inheritedEnv(service, ['DATABASE_URL', 'MYAPP_*'], 'linux')).not.toHaveProperty('MyApp_Key');
    expect(inheritedEnv(service, ['database_url', 'MYAPP_*'], 'win32')).toMatchObject({ DATABASE_URL: 'postgres://', MyApp_Key: 'k' });
    expect(inheritedEnv(service, ['*'], 'linux')).toEqual(service);
  });

  it('never hands IIS\'s private variables on, sets what corral needs, and lists the base names once', () => {
    const env = workerEnv(service, ['*']);
    expect(env).not.toHaveProperty('_FCGI_X_PIPE_');
    expect(env.PYTHONUNBUFFERED).toBe('1');
    expect(workerEnv(service)).not.toHaveProperty('AWS_SECRET_ACCESS_KEY');
    expect(new Set(BASE_ENV.map((n) => n.toUpperCase())).size).toBe(BASE_ENV.length);
  });
});
