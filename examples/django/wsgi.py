"""A Django project for corral: the admin, a model in SQLite, a CSRF-protected form, an upload,
a streamed response, sessions, static files. Django comes from Debian's python3-django:

    apt-get install python3-django
    corral serve examples/django --python /usr/bin/python3 --http 127.0.0.1:8000

The folder's corral.json names this module and runs deploy.py (migrate) before the workers start;
web.config is the same for IIS, with DJANGO_SETTINGS_MODULE in <appSettings> the wfastcgi way.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

if settings.DEBUG:
    # What `manage.py runserver` does: Django serves /static/ itself while debugging. In
    # production the front web server does (nginx `location /static/`, IIS's static handler).
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.contrib.staticfiles.views import serve

    class MountedStaticFilesHandler(StaticFilesHandler):
        """Django 3.2's handler matches PATH_INFO against STATIC_URL but takes the file name from
        request.path, which starts with SCRIPT_NAME: under a prefix (`--mount /app`) every file
        was a 404. The name is taken from PATH_INFO here too."""

        def serve(self, request):
            return serve(request, self.file_path(request.path_info), insecure=True)

    application = MountedStaticFilesHandler(application)
