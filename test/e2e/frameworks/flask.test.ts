/** examples/flask end to end (suite.ts says what is covered). */
import { frameworkSuite } from './suite.js';

frameworkSuite({
  name: 'flask', display: 'Flask', module: 'flask', debian: 'python3-flask', prefix: '/app',
  notFound: /The requested URL was not found on the server/,
  serverError: /The server encountered an internal error/,
  statics: [{ path: '/static/hello.txt', contains: 'a static file of the flask example', iis: true }],
  streamSource: 'wsgi.py',
});
