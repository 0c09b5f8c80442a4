"""corral's DEPLOY_FILE (corral.json "deployFile"): run once before each generation of workers
starts, with the app's interpreter and environment, so the SQLite schema is there before the first
request. It is `manage.py migrate --noinput`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.management import execute_from_command_line  # noqa: E402

execute_from_command_line(["manage.py", "migrate", "--noinput"])
# Copy every app's static files (the admin's too) to STATIC_ROOT, which the front web server serves.
execute_from_command_line(["manage.py", "collectstatic", "--noinput", "--verbosity", "0"])
