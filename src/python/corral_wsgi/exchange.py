"""corral worker: the WSGI side of one request: start_response (header validation), write(),
and sending the app's result, cut to its Content-Length."""
import sys

from .codec import APP_FAILED, APP_OK
from .common import ClientGone, ResponseEnded, format_exc, log

JOIN_LIMIT = 1 << 20  # list bodies up to this size are sent in one write


def as_bytes(data):
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("response body items must be bytes, not %s" % type(data).__name__)


class Exchange:
    """The WSGI side of one request: start_response, write() and sending the app's result."""

    __slots__ = ("server", "req", "head", "status", "header_block", "sent", "done", "length",
                 "body_sent")

    def __init__(self, server, req):
        self.server = server
        self.req = req
        self.head = req.environ["REQUEST_METHOD"] == "HEAD"
        self.status = None
        self.header_block = b""
        self.sent = False
        self.done = False  # the app returned: write() raises from now on
        self.length = None  # the app's Content-Length, if it gave a valid one
        self.body_sent = 0

    def run(self):
        result = None
        try:
            result = self.server.app(self.req.environ, self.start_response)
            self.respond(result)
        except ClientGone:
            pass
        except BaseException as exc:  # SystemExit too: it must not end the app thread
            self.fail(exc)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as exc:
                    self.log_error("close() of the response raised", exc)
            self.done = True
            if not self.req.ended:
                self.req.finish_quietly()

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if type(status) is not str:
            raise TypeError("status must be a str, not %s" % type(status).__name__)
        if not (status[:3].isdigit() and (len(status) == 3 or status[3] == " ")):
            raise ValueError("bad status %r: expected like '200 OK'" % status)
        lines = ["Status: " + status]
        length = None
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError("header names and values must be str: %r" % ((name, value),))
            lines.append(name + ": " + value)
            if length is None and len(name) == 14 and name.lower() == "content-length" and \
                    value.strip().isdigit():
                length = int(value)
        block = "\r\n".join(lines) + "\r\n\r\n"
        count = len(lines) + 1
        if block.count("\n") != count or block.count("\r") != count:
            raise ValueError("CR or LF in the status or a header (header injection): %r"
                             % (lines,))
        self.header_block = block.encode("latin-1")  # UnicodeEncodeError is a ValueError
        self.status = status
        # HEAD, 1xx, 204 and 304 answers have no body whatever their Content-Length says.
        self.length = None if self.head or status[:1] == "1" or status[:3] in ("204", "304") else length
        return self.write

    def write(self, data):
        """The legacy write() callable: sends at once, headers first. Once the response has
        ended (or the app returned) it raises: the request id may serve another request now."""
        if self.done or self.req.ended:
            raise ResponseEnded("write() after the response to %s ended" % self.describe())
        self._send(data)

    def _send(self, data):
        if self.status is None:
            raise AssertionError("write() before start_response()")
        data = self._clip(data)
        if self.sent:
            if data:
                self.req.send((data,))
        else:
            self.sent = True
            self.req.send((self.header_block, data))

    def _clip(self, data):
        """data as bytes, as much of it as the response may carry: none for HEAD, never past the
        app's Content-Length."""
        if type(data) is not bytes:
            data = as_bytes(data)
        if self.head:
            return b""
        return data if self.length is None else self._within_length(data)

    def _within_length(self, data):
        """data cut to what the app's Content-Length still allows (PEP 3333: never more)."""
        room = self.length - self.body_sent
        if len(data) > room:
            if room >= 0:
                log("app %s sent more than its Content-Length %d for %s: the rest is dropped"
                    % (self.server.app_name, self.length, self.describe()))
            data = data[:room] if room > 0 else b""
            self.body_sent = self.length + 1  # warned: say it once
        else:
            self.body_sent += len(data)
        return data

    def full(self):
        """The app's Content-Length has been sent: iterating further is pointless."""
        return self.length is not None and self.body_sent >= self.length

    def describe(self):
        env = self.req.environ
        uri = env.get("REQUEST_URI") or env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")
        return "%s %s (request id %d)" % (env.get("REQUEST_METHOD"), uri, self.req.id)

    def respond(self, result):
        if type(result) is list or type(result) is tuple:
            if len(result) == 1:
                return self.finish(result[0])
            if not result:
                return self.finish(b"")
            if sum(map(len, result)) <= JOIN_LIMIT:
                return self.finish(b"".join(result))
        req = self.req
        for chunk in result:
            if chunk:
                self._send(chunk)
            else:
                req.chan.catch_up()  # e.g. a keep-alive step of a stream that checks for ABORT
            if req.aborted:
                raise ClientGone()
            if self.full():  # PEP 3333: stop iterating at Content-Length (close() follows)
                break
        return self.finish(b"")

    def finish(self, body):
        """Last body bytes: headers (if not sent yet), body, END_REQUEST, in one write."""
        if self.status is None:
            raise RuntimeError("the application returned without calling start_response()")
        body = self._clip(body)
        status = APP_OK
        if self.length is not None and self.body_sent < self.length:
            # The client would wait for bytes that never come: end the request as failed, so
            # the front closes the client's connection instead of keeping it as complete.
            log("app %s sent %d bytes of its Content-Length %d for %s: the response is cut short"
                % (self.server.app_name, self.body_sent, self.length, self.describe()))
            status = APP_FAILED
        if self.sent:
            self.req.send((body,), end=True, app_status=status)
        else:
            self.sent = True
            self.req.send((self.header_block, body), end=True, app_status=status)

    def fail(self, exc):
        self.log_error("the application raised", exc)
        if self.sent or self.req.aborted:
            self.req.finish_quietly(APP_FAILED)  # the client sees a truncated body
            return
        self.sent = True
        body, ctype = self.server.error_body(exc, self.req.environ)
        block = ("Status: 500 Internal Server Error\r\nContent-Type: %s\r\n"
                 "X-Corral-Error: CORRAL_APP_EXCEPTION\r\n"
                 "Content-Length: %d\r\n\r\n" % (ctype, len(body))).encode("latin-1")
        try:
            self.req.send((block, b"" if self.head else body), end=True)
        except ClientGone:
            pass

    def log_error(self, what, exc):
        try:
            sys.stderr.write("corral_worker: %s for %s\n%s" % (what, self.describe(), format_exc(exc)))
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
