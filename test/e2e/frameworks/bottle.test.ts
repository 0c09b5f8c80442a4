/** examples/bottle end to end (suite.ts says what is covered). */
import { frameworkSuite } from './suite.js';

frameworkSuite({
  name: 'bottle', display: 'Bottle', module: 'bottle', debian: 'python3-bottle', prefix: '/app',
  notFound: /Error: 404 Not Found/,
  serverError: /Error: 500 Internal Server Error/,
  statics: [{ path: '/static/hello.txt', contains: 'a static file of the bottle example', iis: true }],
  streamSource: 'wsgi.py',
});
