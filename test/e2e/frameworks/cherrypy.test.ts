/** examples/cherrypy end to end (suite.ts says what is covered): its WSGI application, not its server. */
import { frameworkSuite } from './suite.js';

frameworkSuite({
  name: 'cherrypy', display: 'CherryPy', module: 'cherrypy', debian: 'python3-cherrypy3', prefix: '/app',
  // CherryPy names the whole path, prefix included.
  notFound: /<p>The path '(\/app)?\/missing' was not found\.<\/p>/,
  serverError: /500 Internal Server Error/,
  statics: [{ path: '/static/hello.txt', contains: 'a static file of the cherrypy example', iis: true }],
  streamSource: 'wsgi.py',
});
