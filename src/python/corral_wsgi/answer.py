"""The answerer's WSGI app: every request gets the page the service rendered for a failed app.

Direct data plane only (src/pool/answerer.ts). While an app has no ready worker because its
pool failed (an import error, a failed DEPLOY_FILE, a crash storm), nobody would accept on the
shared socket and clients would wait in the listen queue until the web server gives up. So the
service keeps one ordinary worker (same loop, limits, access REPORTs and drain) running this app
instead of the user's, to answer at once what the proxy path answers: 503 (500 with the
traceback in dev mode), X-Corral-Error, Retry-After.

The page is a whole CGI response (head and body) that the service renders with its one renderer
(src/front/error-page.ts) and replaces atomically (write, then rename) at CORRAL_ANSWER_PAGE when
the failure changes. It is read again when the file changes (a stat per request: this only runs
while the app is down). The worker leaves out the body for HEAD itself.
"""
import os

PAGE_VAR = "CORRAL_ANSWER_PAGE"
# Until the first page is read (the service writes it before it spawns the answerer).
FALLBACK = (b"Status: 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Retry-After: 5\r\n\r\n503 Service Unavailable\n")


def parse_page(raw):
    """(status, headers, body) of a CGI response; the Status header becomes the status line."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no end of head in the page")
    status = "500 Internal Server Error"
    headers = []
    for line in head.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError("bad header line %r in the page" % line)
        value = value.strip()
        if name.lower() == "status":
            status = value
        else:
            headers.append((name, value))
    return status, headers, body


class Answer:
    """The WSGI callable: the page at `path`, kept parsed until the file changes."""

    def __init__(self, path):
        self.path = path
        self.stamp = None
        self.problem = None
        self.page = parse_page(FALLBACK)

    def current(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self.stamp:
                self.stamp = stamp
                with open(self.path, "rb") as f:
                    self.page = parse_page(f.read())
                self.problem = None
        except (OSError, ValueError) as exc:
            # The last good page stays; the reason goes to stderr (the service's log) once.
            if str(exc) != self.problem:
                self.problem = str(exc)
                os.write(2, ("answer page %s: %s\n" % (self.path, exc)).encode("utf-8", "replace"))
        return self.page

    def __call__(self, environ, start_response):
        status, headers, body = self.current()
        # The body is not read: the answer does not depend on it (the loop discards what is left).
        start_response(status, list(headers))
        return [body]


app = Answer(os.environ.get(PAGE_VAR, ""))
