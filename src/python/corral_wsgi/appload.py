"""corral worker: app loading: the --app spec, importing the app, and where an error lies."""
import importlib
import importlib.machinery
import os
import traceback

from . import apphints
from .common import UsageError, format_exc

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Frames in these are the worker's, never where an app's error lies.
WORKER_FILES = (os.path.join(PACKAGE_DIR, ""), os.path.join(os.path.dirname(PACKAGE_DIR), "corral_worker.py"))


def parse_app_spec(spec):
    """Split an app spec into (module or None, [(attribute, call it?), ...]).

    Accepts 'mod:obj', 'pkg.mod:obj.attr', 'pkg.mod:factory()', 'pkg.mod:factory().app', Helicon
    Zoo's 'mod.obj' and wfastcgi's dotted forms, where any part after the module may end in '()'
    ('mod.obj()', 'pkg.mod.factory().app'): for those the module is None, and load_app imports the
    longest importable prefix of the leading names, as wfastcgi's get_wsgi_handler does.
    A bare module name means 'mod:application'.
    """
    if ":" in spec:
        module, _, attrs = spec.partition(":")
    elif "." in spec:
        module, attrs = None, spec
    else:
        module, attrs = spec, "application"
    segments = []
    for part in attrs.split("."):
        call = part.endswith("()")
        segments.append((part[:-2] if call else part, call))
    names = (module.split(".") if module is not None else []) + [name for name, _ in segments]
    if not all(name.isidentifier() for name in names) or (module is None and segments[0][1]):
        raise UsageError("bad app spec %r: expected module:callable, module.callable, "
                         "module:factory() or module.factory().attr" % spec)
    return module, segments


def import_longest_prefix(names):
    """Import the longest importable module of names[:i] ('a', 'a.b', ...); return (module, i)."""
    for i in range(len(names), 0, -1):
        name = ".".join(names[:i])
        try:
            return importlib.import_module(name), i
        except ModuleNotFoundError as exc:
            # Only "this very module does not exist" means: try a shorter prefix. A missing
            # dependency inside the app's module is the app's import error.
            if exc.name != name or i == 1:
                raise
    raise AssertionError("unreachable")


VIRTUALENV_PROXY = ("ptvs_virtualenv_proxy.get_virtualenv_handler", "ptvs_virtualenv_proxy.get_venv_handler")


def virtualenv_proxy(spec):
    """For PTVS's and old Azure's WSGI_HANDLER=ptvs_virtualenv_proxy.get_virtualenv_handler():
    run WSGI_ALT_VIRTUALENV_ACTIVATE_THIS (an activate_this.py) when given, and return the spec
    of the real handler, WSGI_ALT_VIRTUALENV_HANDLER, as that proxy does. Done here rather than
    by importing the site's copy of the proxy, so sites that lack it (Azure shipped it) work too.
    Other specs: None."""
    text = spec[:-2] if spec.endswith("()") else spec
    if text.replace(":", ".") not in VIRTUALENV_PROXY:
        return None
    handler = os.environ.get("WSGI_ALT_VIRTUALENV_HANDLER", "").strip()
    if not handler:
        raise UsageError("%s needs WSGI_ALT_VIRTUALENV_HANDLER (the real WSGI handler) in the "
                         "site's appSettings" % spec)
    activate_this = os.environ.get("WSGI_ALT_VIRTUALENV_ACTIVATE_THIS", "").strip()
    if activate_this:
        with open(activate_this, "rb") as f:
            code = compile(f.read(), activate_this, "exec")
        exec(code, {"__file__": activate_this, "__name__": "__activate_this__"})
    return handler


def load_app(spec):
    """Import the app and return the WSGI callable; any exception is an import failure."""
    spec = virtualenv_proxy(spec) or spec
    module_name, segments = parse_app_spec(spec)
    if module_name is None:
        # The module is among the leading names before the first call, and at least one
        # attribute follows it.
        plain = 1
        while plain < len(segments) - 1 and not segments[plain][1]:
            plain += 1
        obj, used = import_longest_prefix([name for name, _ in segments[:plain]])
        segments = segments[used:]
    else:
        obj = importlib.import_module(module_name)
    for name, call in segments:
        obj = getattr(obj, name)
        if call:
            obj = obj()
    if not callable(obj):
        raise TypeError(apphints.not_callable(spec, obj))
    return obj


def app_script(spec, search_path):
    """The file of the app's top-level module, found without importing it (for sys.argv[0])."""
    try:
        module, segments = parse_app_spec(spec)
        top = (module or segments[0][0]).split(".")[0]
        found = importlib.machinery.PathFinder.find_spec(top, search_path)
    except (UsageError, ImportError, ValueError, OSError):
        return None
    if found is not None and found.has_location and found.origin:
        return found.origin
    return None


def locate_error(exc, app_dirs):
    """(file, line) of a SyntaxError, or of the innermost traceback frame inside the app."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return os.path.abspath(exc.filename), exc.lineno
    dirs = tuple(os.path.join(d, "") for d in app_dirs)
    in_app = other = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith("<"):
            continue
        path = os.path.abspath(name)
        if path.startswith(WORKER_FILES):
            continue
        other = (path, frame.lineno)
        if path.startswith(dirs):
            in_app = other
    found = in_app or other
    return found if found else (None, None)


def failure_info(kind, exc, app_dirs=()):
    """The JSON object of a CORRAL_FATAL record."""
    path, line = locate_error(exc, app_dirs)
    return {"kind": kind, "error": "%s: %s" % (type(exc).__name__, exc),
            "traceback": format_exc(exc), "file": path, "line": line}
