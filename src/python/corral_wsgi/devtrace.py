"""The dev error page's facts, as JSON: corral dev only (CORRAL_DEV_ERRORS=1).

Python collects, Node renders (src/front/dev-page.ts): an exception becomes its chain (cause and
context), each with its frames (file, line, function, the source around the line, whose frame it
is), the locals of the app's frames, a SyntaxError's file, line and caret, and the request's
method, path, headers and environ. Values are reprs, cut to a size; nothing is escaped here (the
page escapes). In serve mode none of this runs: production pages stay detail-free.

Also here: dev_app, the wrapper `corral dev` puts around the app, so that a Flask view's exception
reaches the page, and an HTML response that raises part way is replaced by the page.
"""

import json
import os
import reprlib
import sys
import traceback

# linecache (with tokenize) and sysconfig are imported when a page is made: every worker imports
# this module, and in serve mode it never makes one.

CONTENT_TYPE = "application/vnd.corral.devtrace+json"
TRUE_WORDS = ("on", "1", "yes")

CONTEXT_BEFORE = 5
CONTEXT_AFTER = 3
MAX_SOURCE_LINE = 240
MAX_VALUE = 400          # characters of one local's or environ value's repr
MAX_FRAME_LOCALS = 6000  # characters of all locals of one frame
MAX_CHAIN = 6            # exceptions followed through __cause__/__context__
MAX_MESSAGE = 4000
MAX_TEXT = 60000          # characters of the plain traceback text
# An HTML response is held back up to this many bytes, so that an exception while it is produced
# can still be answered with the page; past it the response streams and a marker is appended.
BUFFER_CAP = 1 << 20
# How the page body is cut to fit when it would be larger (a deep recursion, many large locals).
MAX_BODY = 1 << 20

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # src/python: corral's own files
_stdlib = None


def stdlib_dirs():
    global _stdlib
    if _stdlib is None:
        import sysconfig
        paths = sysconfig.get_paths()
        _stdlib = tuple(os.path.join(os.path.realpath(p), "") for p in
                        {paths.get("stdlib"), paths.get("platstdlib")} if p)
    return _stdlib

_repr = reprlib.Repr()
_repr.maxstring = MAX_VALUE
_repr.maxother = MAX_VALUE
_repr.maxlevel = 3
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 20


def enabled():
    return os.environ.get("CORRAL_DEV_ERRORS", "").lower() in TRUE_WORDS


def safe_repr(value, limit=MAX_VALUE):
    """repr of value, cut to limit characters; a repr that raises says so instead."""
    try:
        text = _repr.repr(value)
    except BaseException as exc:  # an app's __repr__ may raise anything
        text = "<repr raised %s>" % type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def frame_kind(filename, app_dirs):
    """Whose frame: 'app', 'library' (site-/dist-packages), 'corral', 'stdlib' or 'frozen'."""
    if filename.startswith("<"):
        return "frozen"  # <frozen importlib._bootstrap>, <string>
    path = os.path.realpath(filename)
    if path.startswith(os.path.join(HERE, "")):
        return "corral"
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return "library"
    if any(path.startswith(os.path.join(os.path.realpath(d), "")) for d in app_dirs):
        return "app"
    if path.startswith(stdlib_dirs()):
        return "stdlib"
    return "app"


def source_around(filename, line, module_globals=None):
    """{start, lines} around line (1-based), or None if the source cannot be read."""
    import linecache
    try:
        lines = linecache.getlines(filename, module_globals)
    except Exception:
        return None
    if not lines or not line or line > len(lines):
        return None
    start = max(1, line - CONTEXT_BEFORE)
    end = min(len(lines), line + CONTEXT_AFTER)
    return {"start": start, "lines": [cut(l.rstrip("\r\n"), MAX_SOURCE_LINE) for l in lines[start - 1:end]]}


def cut(text, limit):
    return text if len(text) <= limit else text[:limit] + "..."


def frame_locals(frame):
    """[[name, repr], ...] of a frame's locals, within MAX_FRAME_LOCALS; and whether some were left out."""
    out, used, left_out = [], 0, False
    is_module = frame.f_code.co_name == "<module>"
    try:
        items = list(frame.f_locals.items())
    except Exception:
        return [], True
    for name, value in items:
        name = str(name)
        if name == "__builtins__" or (is_module and name.startswith("__")):
            continue
        if is_module and type(value).__name__ in ("module", "function", "type"):
            continue  # a module's imports and definitions: noise next to its variables
        text = safe_repr(value)
        if used + len(text) > MAX_FRAME_LOCALS:
            left_out = True
            break
        used += len(text) + len(name)
        out.append([name, text])
    return out, left_out


def frames_of(exc, app_dirs):
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        kind = frame_kind(code.co_filename, app_dirs)
        entry = {"file": code.co_filename, "line": tb.tb_lineno, "function": code.co_name,
                 "kind": kind, "source": source_around(code.co_filename, tb.tb_lineno, frame.f_globals),
                 "locals": None, "localsCut": False}
        if kind == "app":
            entry["locals"], entry["localsCut"] = frame_locals(frame)
        frames.append(entry)
        tb = tb.tb_next
    return frames


def syntax_of(exc):
    """A SyntaxError's file, line, caret span and the source around it; None for other errors."""
    if not isinstance(exc, SyntaxError) or not exc.filename:
        return None
    line = exc.lineno or 0
    end = getattr(exc, "end_offset", None)  # 3.10+
    return {"file": os.path.abspath(exc.filename), "line": line, "offset": exc.offset,
            "endOffset": end if end and end > 0 else None,
            "text": cut((exc.text or "").rstrip("\r\n"), MAX_SOURCE_LINE),
            "source": source_around(exc.filename, line)}


def message_of(exc):
    if isinstance(exc, SyntaxError):
        return cut(str(exc.msg), MAX_MESSAGE)
    try:
        return cut(str(exc), MAX_MESSAGE)
    except BaseException as e:
        return "<str() raised %s>" % type(e).__name__


def chain_of(exc, app_dirs):
    """The raised exception first, then what it came from: 'via' says how each led to the one before."""
    out, seen, via = [], set(), None
    while exc is not None and id(exc) not in seen and len(out) < MAX_CHAIN:
        seen.add(id(exc))
        out.append({"type": type(exc).__module__ + "." + type(exc).__qualname__
                    if type(exc).__module__ not in ("builtins", "__main__") else type(exc).__qualname__,
                    "message": message_of(exc), "via": via,
                    "frames": frames_of(exc, app_dirs), "syntax": syntax_of(exc)})
        if exc.__cause__ is not None:
            exc, via = exc.__cause__, "cause"
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, via = exc.__context__, "context"
        else:
            exc = None
    return out


def request_of(environ):
    if environ is None:
        return None
    headers = [[k[5:].replace("_", "-").title(), cut(str(v), MAX_VALUE)]
               for k, v in sorted(environ.items()) if isinstance(k, str) and k.startswith("HTTP_")]
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        if environ.get(key):
            headers.append([name, cut(str(environ[key]), MAX_VALUE)])
    env = [[str(k), cut(v, MAX_VALUE) if isinstance(v, str) else safe_repr(v)]
           for k, v in sorted(environ.items(), key=lambda kv: str(kv[0]))]
    return {"method": str(environ.get("REQUEST_METHOD", "")),
            "path": str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", "")),
            "query": str(environ.get("QUERY_STRING", "")), "headers": headers, "environ": env}


def report(exc, app_dirs=(), environ=None):
    """The page's facts about exc (and the request it broke), as a JSON-able dict."""
    return {"version": 1, "exceptions": chain_of(exc, app_dirs), "request": request_of(environ),
            "python": "%s %s" % (sys.executable, sys.version.split()[0]), "cut": [],
            "text": text_of(exc)}


def text_of(exc):
    """The traceback as Python prints it (to copy and paste), its innermost part if very long."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= MAX_TEXT else "...\n" + text[-MAX_TEXT:]


def fitted(data, limit):
    """data as UTF-8 JSON of at most limit bytes: locals, then environ, then other frames' source,
    then middle frames are dropped until it fits (and 'cut' says which). None if nothing fits."""
    def encoded():
        return json.dumps(data, ensure_ascii=False).encode("utf-8", "backslashreplace")

    body = encoded()
    steps = (("traceback text", None),
             ("locals", lambda f: f.update(locals=None)),
             ("environ", None),
             ("source of non-app frames", lambda f: f.update(source=None) if f["kind"] != "app" else None),
             ("middle frames", None))
    for what, per_frame in steps:
        if len(body) <= limit:
            return body
        data["cut"].append(what)
        if what == "traceback text":
            data["text"] = data["text"][-4000:]
        elif what == "environ":
            if data["request"] is not None:
                data["request"]["environ"] = []
        elif what == "middle frames":
            for e in data["exceptions"]:
                if len(e["frames"]) > 12:
                    e["frames"] = e["frames"][:4] + e["frames"][-8:]
        else:
            for e in data["exceptions"]:
                for f in e["frames"]:
                    per_frame(f)
        body = encoded()
    return body if len(body) <= limit else None


def body(exc, app_dirs=(), environ=None):
    """The worker's answer body to an app exception in dev: the report, for the front to render."""
    try:
        data = fitted(report(exc, app_dirs, environ), MAX_BODY)
    except Exception as e:  # never let the page's facts hide the app's error
        data = None
        sys.stderr.write("corral_worker: dev error facts failed: %r\n" % (e,))
    if data is None:
        data = json.dumps({"version": 1, "exceptions": [{"type": type(exc).__name__, "message": message_of(exc),
                                                         "via": None, "frames": [], "syntax": None}],
                           "request": None, "python": "", "cut": ["everything"],
                           "text": text_of(exc)[-20000:]}).encode("utf-8")
    return data


def attach(info, exc, app_dirs, limit):
    """Adds 'devtrace' to a CORRAL_FATAL record's info (dev only) if it fits in limit bytes with the rest."""
    if not enabled():
        return
    try:
        room = limit - len(json.dumps(info).encode("utf-8")) - 64
        data = fitted(report(exc, app_dirs), room) if room > 0 else None
        if data is not None:
            info["devtrace"] = json.loads(data.decode("utf-8"))
    except Exception:
        pass


# ----------------------------------------------------------------------------- dev_app

def flask_propagate(app):
    """Flask answers a view's exception with its own generic 500 unless PROPAGATE_EXCEPTIONS
    (Flask's documented switch; None means "when debugging or testing"): in dev it is set,
    unless the app set it itself, so the exception reaches corral's page. True if it did."""
    if not any(c.__name__ == "Flask" and c.__module__.split(".")[0] == "flask" for c in type(app).__mro__):
        return False
    config = getattr(app, "config", None)
    if config is None or config.get("PROPAGATE_EXCEPTIONS") is not None:
        return False
    config["PROPAGATE_EXCEPTIONS"] = True
    return True


def is_html(headers):
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")
    return False


def marker(exc):
    from html import escape
    return ("\n<div style=\"all:initial;display:block;margin:1em;padding:1em;border:3px solid #b00020;"
            "background:#fff0f0;color:#000;font:16px sans-serif\"><b>corral dev:</b> the app raised "
            "%s: %s after this response had started (past %d bytes held back); the traceback is in "
            "the terminal.</div>\n" % (escape(type(exc).__name__), escape(message_of(exc)[:300]), BUFFER_CAP)
            ).encode("utf-8")


def dev_app(app, cap=BUFFER_CAP):
    """The app as `corral dev` runs it: Flask told to propagate, and HTML responses held back up to
    cap bytes, so that an exception while the body is produced still gets the error page."""
    flask_propagate(app)

    def corral_dev_app(environ, start_response):
        state = {"start": None, "write": None, "released": False, "held": []}

        def release():
            if not state["released"]:
                status, headers, exc_info = state["start"]
                state["released"] = True
                state["write"] = start_response(status, headers, exc_info)
            return state["write"]

        def held_start(status, headers, exc_info=None):
            if exc_info is not None and state["released"]:
                raise exc_info[1].with_traceback(exc_info[2])
            state["start"] = (status, headers, exc_info)
            if not is_html(headers):
                release()  # not a page: it streams as the app sends it

            def write(data):  # the legacy write(): what was held goes first, then no holding back
                real = release()
                if state["held"]:
                    real(b"".join(state["held"]))
                    del state["held"][:]
                real(data)
            return write

        result = app(environ, held_start)
        return HeldBody(result, state, release, cap)

    corral_dev_app.__wrapped__ = app
    return corral_dev_app


class HeldBody:
    """The app's iterable, held back while it is an HTML page under the cap."""

    def __init__(self, result, state, release, cap):
        self.result = result
        self.state = state
        self.release = release
        self.cap = cap

    def __iter__(self):
        held, size = self.state["held"], 0
        it = iter(self.result)
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                break
            except BaseException as exc:
                # Released (past the cap, or by write()): part of the page is out; say so in it.
                if self.state["released"] and is_html(self.state["start"][1]):
                    yield marker(exc)
                raise
            if self.state["released"]:
                if held:
                    out = b"".join(held)
                    del held[:]
                    yield out
                yield chunk
                continue
            held.append(chunk)
            size += len(chunk)
            if size > self.cap:
                self.release()
                chunk = b"".join(held)
                del held[:]
                yield chunk
        if self.state["start"] is not None:
            self.release()
        if held:
            chunk = b"".join(held)
            del held[:]
            yield chunk

    def close(self):
        close = getattr(self.result, "close", None)
        if close is not None:
            close()
