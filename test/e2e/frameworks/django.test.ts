/**
 * examples/django end to end (suite.ts says what is covered): the admin, a model in SQLite written
 * by a CSRF-protected form, migrate + collectstatic through DEPLOY_FILE, static files from nginx
 * (`location /static/`, after collectstatic) and, in `corral dev`, from corral's HTTP front (static).
 */
import { frameworkSuite } from './suite.js';

frameworkSuite({
  name: 'django', display: 'Django', module: 'django', debian: 'python3-django', prefix: '/app',
  notFound: /<h1>Not Found<\/h1>/,
  serverError: /<h1>Server Error \(500\)<\/h1>/,
  statics: [
    { path: '/static/notes/site.css', contains: 'font-family', iis: false },
    { path: '/static/admin/css/base.css', contains: 'DJANGO', iis: false },
  ],
  nginxStatic: true,
  csrf: true,
  streamSource: 'notes/views.py',
});
