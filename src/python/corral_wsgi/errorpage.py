"""corral worker: the CORRAL_DEV_ERRORS=1 page of an app exception."""
import html

from .appload import locate_error
from .common import format_exc


def error_page(exc, app_dirs):
    """The CORRAL_DEV_ERRORS=1 page: exception, file and line, traceback, all escaped."""
    path, line = locate_error(exc, app_dirs)
    where = "%s, line %s" % (path, line) if path else "unknown location"
    page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>500 %s</title></head>"
            "<body><h1>%s</h1><p>%s</p><p>at %s</p><pre>%s</pre></body></html>\n") % (
        html.escape(type(exc).__name__), html.escape(type(exc).__name__),
        html.escape(str(exc)), html.escape(where), html.escape(format_exc(exc)))
    return page.encode("utf-8", "backslashreplace")
