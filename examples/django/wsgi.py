"""A Django project for corral: the admin, a model in SQLite, a CSRF-protected form, an upload,
a streamed response, sessions, static files. Django comes from Debian's python3-django:

    apt-get install python3-django
    corral serve examples/django --python /usr/bin/python3 --http 127.0.0.1:8000

The folder's corral.json names this module and runs deploy.py (migrate, collectstatic) before the workers start;
web.config is the same for IIS, with DJANGO_SETTINGS_MODULE in <appSettings> the wfastcgi way.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

# Static files: nginx (`location /static/`) or IIS (web.config <location path="static">) serve
# STATIC_ROOT in production; with `--http` or `corral dev` corral's HTTP front does (corral.json "static"),
# as runserver would.
application = get_wsgi_application()
