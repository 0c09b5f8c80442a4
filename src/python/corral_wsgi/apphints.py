"""Messages for an app that does not load: what was found instead, where corral looked, and which
interpreter looked, so the first line says what to change (standard library only).

corral_worker calls two functions: not_callable() when the spec names an object that is not a
WSGI callable, and hint() for an import failure, whose text is added to the one-line error.
"""
import os
import sys

# A repr of a whole HTML page made an 852-character error line; a type and a size say enough.
_REPR_LIMIT = 60
# Directories named in a ModuleNotFoundError message; the rest are counted.
_DIRS_SHOWN = 4


def describe(obj):
    """A short description of an object: its type, its size when it has one, a clipped repr."""
    kind = type(obj).__name__
    if isinstance(obj, (str, bytes, bytearray)):
        return "a %s of %d characters" % (kind, len(obj)) if isinstance(obj, str) else \
            "a %s of %d bytes" % (kind, len(obj))
    text = repr(obj)
    if len(text) > _REPR_LIMIT:
        text = text[:_REPR_LIMIT - 3] + "..."
    return "a %s (%s)" % (kind, text)


def not_callable(spec, obj):
    """The message for a spec that resolves to a non-callable object."""
    message = "%s resolves to %s, which is not callable" % (spec, describe(obj))
    if isinstance(obj, type(sys)):
        message += "; name the WSGI callable inside the module, e.g. %s:application" % obj.__name__
    else:
        message += "; name the WSGI application object (the callable taking environ and start_response)"
    return message


def interpreter():
    """This interpreter as people need to see it: its full path and version."""
    version = "%d.%d.%d" % sys.version_info[:3]
    return "%s (Python %s)" % (sys.executable or "python", version)


def django_layout(root):
    """The `X.wsgi:application` of Django's startproject layout (root/X/wsgi.py), or None."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return None
    found = [n for n in names if n.isidentifier() and os.path.isfile(os.path.join(root, n, "wsgi.py"))]
    return "%s.wsgi:application" % found[0] if len(found) == 1 else None


def _searched(app_dirs, search_path):
    """Which directories the import searched: the app's, then a count of the interpreter's own."""
    shown = [d for d in app_dirs][:_DIRS_SHOWN]
    others = [p for p in search_path if p not in app_dirs]
    text = ", ".join(shown) if shown else "(no app directory)"
    if others:
        text += " and %d director%s of the interpreter" % (len(others), "y" if len(others) == 1 else "ies")
    return text


def hint(exc, spec, app_dirs, search_path):
    """Extra words for an import failure, or None. For a module that is not there: where it was
    looked for, by which interpreter, and Django's layout when the app directory has it."""
    if not isinstance(exc, ModuleNotFoundError):
        return None
    parts = ["searched %s" % _searched(app_dirs, search_path)]
    missing = exc.name or ""
    top = spec.replace(":", ".").split(".")[0]
    if missing.split(".")[0] == top and app_dirs:
        suggestion = django_layout(app_dirs[0])
        if suggestion is not None and suggestion != spec:
            parts.append("this looks like Django's layout: try --wsgi-app %s" % suggestion)
            return "; ".join(parts)
    # Most often the module is installed, but for another interpreter than this one.
    parts.append("the interpreter is %s; if %r is installed in another environment (a venv), "
                 "choose its python with --python" % (interpreter(), missing))
    return "; ".join(parts)
