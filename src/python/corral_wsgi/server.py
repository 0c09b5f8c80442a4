"""corral worker: the server: the app, its thread pool, and the requests in flight, shared by
every channel (the service's pipes, or the event loop's connections)."""
import queue
import threading
from threading import get_ident
from time import monotonic

from .body import FileWrapper
from .common import format_exc, log
from .environ import DEFAULTS, build_environ, wsgi_base
from . import devtrace
from .exchange import Exchange


class Server:
    """The app, its threads and the requests in flight, shared by every channel."""

    def __init__(self, app, threads, window, grace, app_dirs, dev_errors):
        self.app = app
        self.threads = threads
        self.window = window
        self.grace = grace
        self.app_dirs = app_dirs
        self.dev_errors = dev_errors
        self.app_name = "the app"  # its spec, for log lines (main sets it)
        self.trust_original_url = False  # --trust-x-original-url
        self.queue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.active = 0
        self.stopping = False  # someone waits for active == 0
        self.defaults = DEFAULTS
        self.wsgi_base = wsgi_base(threads, FileWrapper)

    def start_threads(self):
        for number in range(self.threads):
            threading.Thread(target=self._serve_queue, name="corral-app-%d" % number,
                             daemon=True).start()

    def _serve_queue(self):
        get, serve_request = self.queue.get, self.serve_request
        while True:
            serve_request(get())

    running = None  # stdio mode with --stack-after: the requests the app has now (a dict as an ordered set)

    def serve_request(self, req):
        """Run the app for req (unless aborted) and make sure the request ends."""
        running = self.running
        try:
            if not req.aborted:
                req.thread = get_ident()
                if running is not None:
                    req.began = monotonic()
                    running[req] = None
                Exchange(self, req).run()
        except BaseException as exc:  # a bug of ours: keep the thread, end the request
            log("internal error serving request id %d\n%s" % (req.id, format_exc(exc)))
        finally:
            if running is not None:
                running.pop(req, None)
        if not req.ended:
            req.finish_quietly()

    def environ(self, req, data):
        """The PEP 3333 environ of a request from its raw PARAMS bytes."""
        return build_environ(data, req.input, self.defaults, self.wsgi_base, self.trust_original_url)

    def error_body(self, exc, environ=None):
        """(body, content type) of the 500 answer to an app exception (dev: facts the front renders)."""
        if self.dev_errors:
            return devtrace.body(exc, self.app_dirs, environ), devtrace.CONTENT_TYPE
        return b"Internal Server Error\n", "text/plain; charset=utf-8"

    def request_started(self):
        with self.lock:
            self.active += 1

    def request_done(self):
        with self.lock:
            self.active -= 1
            if not self.active and self.stopping:
                self.idle.notify_all()

    def wait_idle(self, timeout):
        """True once no request is in flight; False if some still are after timeout seconds."""
        with self.lock:
            self.stopping = True
            return self.idle.wait_for(lambda: not self.active, timeout)
