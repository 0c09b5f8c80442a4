/** Error pages: serve mode tells clients the status and code only; dev mode the message and traceback. */
import { describe, expect, it } from 'vitest';
import { errorBody, errorResponse } from '../../src/front/error-page.js';
import { CorralError } from '../../src/errors.js';

const err = new CorralError('CORRAL_APP_IMPORT_FAILED', 'app wsgi:application in /srv/secret/shop: import failed: ModuleNotFoundError', {
  detail: 'Traceback (most recent call last):\n  File "/srv/secret/shop/wsgi.py", line 3',
});

describe('error pages', () => {
  it('serve (the FastCGI front): status, code and a generic sentence; no message, path or traceback', () => {
    const page = errorResponse(err, false).toString('utf8');
    expect(page).toMatch(/^Status: 503 Service Unavailable\r\n/);
    expect(page).toContain('X-Corral-Error: CORRAL_APP_IMPORT_FAILED');
    expect(page).toContain('CORRAL_APP_IMPORT_FAILED: The service is unavailable; try again later.');
    expect(page).not.toContain('/srv/secret');
    expect(page).not.toContain('ModuleNotFoundError');
    expect(page).not.toContain('Traceback');
  });
  it('serve (the HTTP front): the same body', () => {
    const { body } = errorBody(new CorralError('CORRAL_BAD_RESPONSE', 'bad Status "099 X" from /srv/x'), false);
    expect(body.toString()).toBe('502 Bad Gateway\nCORRAL_BAD_RESPONSE: The application did not give a valid answer. The details are in the service log.\n');
  });
  it('dev: the message and the traceback', () => {
    const page = errorResponse(err, true).toString('utf8');
    expect(page).toMatch(/^Status: 500 /);
    expect(page).toContain('/srv/secret/shop: import failed');
    expect(page).toContain('Traceback');
  });
});
