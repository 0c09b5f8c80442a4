/**
 * examples/webpy end to end (suite.ts says what is covered), mounted at /api/ as in the IIS article
 * whose app saw the prefix in its paths: here its routes never do.
 */
import { frameworkSuite } from './suite.js';

frameworkSuite({
  name: 'webpy', display: 'web.py', module: 'web', debian: 'python3-webpy', prefix: '/api',
  notFound: /^not found$/,
  serverError: /^internal server error$/,
  statics: [{ path: '/static/hello.txt', contains: 'a static file of the webpy example', iis: true }],
  streamSource: 'wsgi.py',
});
