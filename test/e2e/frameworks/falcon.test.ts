/** examples/falcon end to end (suite.ts says what is covered). */
import { frameworkSuite } from './suite.js';

frameworkSuite({
  name: 'falcon', display: 'Falcon', module: 'falcon', debian: 'python3-falcon', prefix: '/app',
  notFound: /"title": ?"404 Not Found"/,
  serverError: /"title": ?"500 Internal Server Error"/,
  statics: [{ path: '/static/hello.txt', contains: 'a static file of the falcon example', iis: true }],
  streamSource: 'wsgi.py',
});
