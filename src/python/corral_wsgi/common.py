"""corral worker: what every module shares: exit codes, exceptions, the log line, exiting."""
import os
import sys
import threading
import time
import traceback

EXIT_OK, EXIT_BOOT, EXIT_IMPORT = 0, 3, 4
TRUE_WORDS = ("on", "1", "yes")


class UsageError(Exception):
    """Bad command line or settings (exit 3)."""

    usage = ""


class ClientGone(Exception):
    """The request was aborted or its connection is gone: the app's output goes nowhere."""


class ClientDisconnected(ClientGone, OSError):
    """wsgi.input read of a request that was aborted: the body will not come (an OSError, as a
    socket read would raise, so that frameworks report a broken upload rather than parse a
    truncated body as whole)."""


class ResponseEnded(RuntimeError):
    """write() after the response ended: its request id may already serve another request."""


def log(message):
    """One line on stderr (the service captures it per app)."""
    try:
        sys.stderr.write("corral_worker: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def format_exc(exc):
    """The full traceback text (the 3-argument form works on Python 3.9)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


STACK_LIMIT = 40  # innermost frames of a stuck request's stack that are logged


def stuck_at(thread, what, kind="RequestTimeout"):
    """Where a thread running a request is now, as a traceback (innermost STACK_LIMIT frames)
    ending in "<kind>: <what>" (RequestTimeout, or SlowRequest for --stack-after), which the
    service logs as one record in dev: PHP-FPM's slowlog, uWSGI's harakiri backtrace: the answer
    to "what was it doing?". Empty when that thread is unknown or gone."""
    frame = sys._current_frames().get(thread) if thread else None
    if frame is None:
        return ""
    stack = "".join(traceback.format_stack(frame, -STACK_LIMIT))
    return "Traceback (most recent call last):\n%s%s: %s" % (stack, kind, what)


def log_slow(running, logged, now, after):
    """--stack-after (slowLogAfter): log where each request running longer than `after` seconds
    is, once per request (it goes on). `running`: (when it began, request) of the requests the
    app has now; `logged`: the set of those said already, kept by the caller between rounds."""
    logged.intersection_update(req for _, req in running)
    for began, req in running:
        if req in logged or now - began < after:
            continue
        logged.add(req)
        env = req.environ or {}
        what = "%s %s still running after %gs" % (env.get("REQUEST_METHOD"), env.get("REQUEST_URI"), after)
        stack = stuck_at(req.thread, what, "SlowRequest")
        if stack:
            log("request %s. Where it is:\n%s" % (what, stack))


def flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def exit_soon(server, code):
    """Return code for a normal interpreter exit, with a watchdog in case app threads hang it."""
    def watchdog():
        time.sleep(max(server.grace, 0.5))
        flush_std()
        os._exit(code)
    threading.Thread(target=watchdog, name="corral-exit", daemon=True).start()
    return code
