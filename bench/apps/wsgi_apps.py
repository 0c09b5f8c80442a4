"""WSGI app for `npm run bench` (bench/run.mjs), after ../shared/bench/apps/wsgi_apps.py.

One `application` callable, dispatching on the path, served alike by corral, the standalone
Python worker and (as static files / `return`) nginx itself:

  GET  /hello   -> 'Hello, world'   (text/plain, Content-Length: 12)
  GET  /big     -> 1 MiB body       (text/plain, Content-Length: 1048576)
  GET  /big64k  -> 64 KiB body      (text/plain, Content-Length: 65536)
  POST /echo    -> decimal length of the request body it read (e.g. '1048576')

Pure stdlib, no framework, so the numbers measure the hosting stack.
"""

HELLO = b"Hello, world"
BIG64K = b"0123456789abcdef" * 4096
BIG = BIG64K * 16
assert len(BIG64K) == 65536 and len(BIG) == 1048576
_CHUNK = 65536


def _plain(body):
    return [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]


def hello(environ, start_response):
    start_response("200 OK", _plain(HELLO))
    return [HELLO]


def big(environ, start_response):
    start_response("200 OK", _plain(BIG))
    return [BIG]


def big64k(environ, start_response):
    start_response("200 OK", _plain(BIG64K))
    return [BIG64K]


def echo(environ, start_response):
    """Read the whole request body (in chunks) and return its length."""
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    stream = environ["wsgi.input"]
    total = 0
    while remaining > 0:
        chunk = stream.read(min(_CHUNK, remaining))
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
    body = str(total).encode("ascii")
    start_response("200 OK", _plain(body))
    return [body]


def not_found(environ, start_response):
    body = b"not found"
    start_response("404 Not Found", _plain(body))
    return [body]


_ROUTES = {"/hello": hello, "/big": big, "/big64k": big64k, "/echo": echo}


def application(environ, start_response):
    path = environ.get("PATH_INFO") or ""
    if not path:  # a front that sends no PATH_INFO: fall back to REQUEST_URI
        path = (environ.get("REQUEST_URI") or "/").split("?", 1)[0]
    return _ROUTES.get(path, not_found)(environ, start_response)
