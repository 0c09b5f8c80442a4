"""corral worker, boot: stderr, the protocol fds, sys.path and the app's import, failures
reported as CORRAL_FATAL; then main() picks stdio or direct/standalone mode.

Exit codes (common.py): 0 requested stop, 3 bad usage or boot failure, 4 the app could not be
imported, 5 a request ran past --request-timeout (direct mode).
"""
import gc
import json
import os
import re
import signal
import socket
import sys

from . import apphints, devtrace, direct
from .appload import app_script, failure_info, load_app
from .args import parse_args
from .channel import write_record
from .codec import CORRAL_FATAL, MAX_CONTENT
from .common import EXIT_BOOT, EXIT_IMPORT, TRUE_WORDS, UsageError, flush_std, log
from .server import Server
from .stdio import grow_pipe, serve_stdio

# The directory of corral_worker.py and this package: on sys.path while the worker starts (the
# script's own directory, or PYTHONPATH for -m), taken off it before the app is imported.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def split_pythonpath(value):
    """Entries separated by os.pathsep or ';' (wfastcgi), taken as written.

    No %VAR% or $VAR expansion here: the service passes paths it has already expanded (from the
    relay's environment or APPL_PHYSICAL_PATH) and checked against allowedRoots; expanding them
    again against this process's environment (the service's) would leak its values into sys.path
    and step around that check.
    """
    entries = []
    for entry in re.split("[;%s]" % re.escape(os.pathsep), value or ""):
        entry = entry.strip()
        if entry:
            entries.append(os.path.abspath(entry))
    return entries


def setup_paths(root, pythonpath):
    """chdir to root; sys.path = root, --pythonpath entries, the rest minus our own directory
    (the package stays importable for the worker itself: its modules are loaded already)."""
    root = os.path.abspath(root or os.curdir)
    if not os.path.isdir(root):
        raise UsageError("--root %r is not a directory" % root)
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    os.chdir(root)
    extra = split_pythonpath(pythonpath)
    sys.path[:] = [root] + extra + [p for p in rest if p not in extra and p != root]
    return [root] + extra


def take_protocol_fds():
    """Keep fds 0/1 for the protocol only: fd 1 becomes stderr and fd 0 /dev/null for the app."""
    flush_std()
    rfd = os.dup(0)
    wfd = os.dup(1)  # os.dup makes non-inheritable fds: the app's children don't get the pipes
    if os.name == "nt":
        import msvcrt
        msvcrt.setmode(rfd, os.O_BINARY)
        msvcrt.setmode(wfd, os.O_BINARY)
    grow_pipe(wfd)
    grow_pipe(rfd)
    os.dup2(2, 1)  # C-level writes to fd 1 land on stderr too
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(os.devnull, "r")
    sys.stdout = open(1, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None)
                      or "utf-8", errors="backslashreplace", closefd=False)
    return rfd, wfd


def setup_stderr():
    if sys.stderr is None:  # pythonw: nowhere to log, but the app must still have a stream
        sys.stderr = open(os.devnull, "w")
    elif hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(line_buffering=True, errors="backslashreplace")


def report_failure(kind, exc, fd, app_dirs=(), summary=None, hint=None):
    """Traceback and a one-line summary on stderr, CORRAL_FATAL on the protocol fd if usable."""
    info = failure_info(kind, exc, app_dirs)
    if hint:  # apphints: where the import looked and with which interpreter
        info["error"] += " (%s)" % hint
        summary = summary and "%s (%s)" % (summary, hint)
    try:
        if not isinstance(exc, UsageError):
            sys.stderr.write(info["traceback"])
    except (OSError, ValueError, AttributeError):
        pass
    log(summary or info["error"])
    try:
        devtrace.attach(info, exc, app_dirs, MAX_CONTENT)  # dev only, if it fits
        payload = json.dumps(info).encode("utf-8")
        if len(payload) > MAX_CONTENT:  # e.g. a RecursionError: keep the innermost frames
            info["error"] = info["error"][:2000]
            info["traceback"] = "...\n" + info["traceback"][-20000:]
            payload = json.dumps(info).encode("utf-8")
        write_record(fd, CORRAL_FATAL, payload)
    except (OSError, ValueError):
        pass
    flush_std()


def fatal_fd_for_usage(argv):
    """fd 1 if it may carry a FATAL record (stdio mode, not a terminal), else None."""
    if any(arg == "--listen" or arg.startswith("--listen=") for arg in argv):
        return None
    try:
        return None if os.isatty(1) else 1
    except OSError:
        return None


# glibc hands large blocks back to the OS as soon as they are freed (a 1 MiB response body, the
# chunks of a 1 MiB upload), so every such request faults in fresh zeroed pages again. A thread
# other than the main one allocates from its own arena, which does not do this; the main thread,
# which runs requests with --threads 1 (inline), does: measured 4.4 ms instead of 1.1 ms for a
# 1 MiB POST. So the worker keeps blocks up to MMAP_THRESHOLD on its heap and returns free heap
# beyond TRIM_THRESHOLD only: a few MiB kept per worker. MALLOC_*_ set in the environment (glibc's
# own tunables) win: then nothing is changed.
MALLOC_MMAP_THRESHOLD = 4 << 20
MALLOC_TRIM_THRESHOLD = 16 << 20


def tune_malloc():
    """Applies the thresholds above on glibc; True if it did."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (ImportError, OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and \
        bool(mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD))


def boot(argv):
    """Parse, set up fds and paths, import the app: (opts, app, app_dirs, rfd, wfd) or exit code."""
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(exc.usage)
        report_failure("boot", exc, fatal_fd_for_usage(argv), summary="bad usage: %s" % exc)
        return EXIT_BOOT
    opts.malloc_tuned = tune_malloc()
    rfd = wfd = None
    opts.listener = None
    try:
        if opts.direct_fd is not None:
            # listen() first, before the app's import: connections queue from here on (and
            # another worker may accept them), while this one accepts only after READY.
            opts.listener = listener = socket.socket(fileno=opts.direct_fd)
            listener.set_inheritable(False)  # not the app's children's business
            listener.setblocking(False)  # its O_NONBLOCK is shared: it must stay set
            listener.listen(opts.backlog)
        if opts.listen is None:
            rfd, wfd = take_protocol_fds()
            # Console Ctrl-C and a terminal hang-up hit the whole process group; the service
            # decides when workers stop (stdin EOF), and SIGHUP means "reload" to it.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
        app_dirs = setup_paths(opts.root, opts.pythonpath)
    except (UsageError, OSError) as exc:
        report_failure("boot", exc, wfd if rfd is not None else fatal_fd_for_usage(argv),
                       summary="cannot start: %s" % exc)
        return EXIT_BOOT
    # Embedded hosts left sys.argv unset and apps crashed on sys.argv[0].
    sys.argv = [app_script(opts.app, sys.path) or "corral_worker"]
    try:
        app = load_app(opts.app)
    except UsageError as exc:
        report_failure("boot", exc, wfd, app_dirs, summary="cannot start: %s" % exc)
        return EXIT_BOOT
    except BaseException as exc:  # SyntaxError, ImportError, AttributeError, SystemExit, ...
        if isinstance(exc, KeyboardInterrupt):
            raise
        report_failure("import", exc, wfd, app_dirs,
                       summary="cannot import app %r: %s: %s" % (opts.app, type(exc).__name__, exc),
                       hint=apphints.hint(exc, opts.app, app_dirs, sys.path))
        return EXIT_IMPORT
    return opts, app, app_dirs, rfd, wfd


def freeze_heap():
    """The app is imported: collect what its import left behind, then move every object alive
    now to the permanent generation. A full collection then no longer walks the app's whole
    module graph: measured, 27 ms for Flask and Django imported (53k objects), a pause every
    request waiting behind it would take; after the freeze, 0.002 ms."""
    gc.collect()
    gc.freeze()


def main(argv=None):
    setup_stderr()
    booted = boot(sys.argv[1:] if argv is None else argv)
    if isinstance(booted, int):
        return booted
    opts, app, app_dirs, rfd, wfd = booted
    dev_errors = os.environ.get("CORRAL_DEV_ERRORS", "").lower() in TRUE_WORDS
    if dev_errors:
        app = devtrace.dev_app(app)  # Flask propagates; HTML held back to a cap
    server = Server(app, opts.threads, opts.window, opts.eof_grace, app_dirs, dev_errors)
    server.app_name = opts.app
    server.trust_original_url = opts.trust_x_original_url
    freeze_heap()
    if opts.listen is not None or opts.direct_fd is not None:
        return direct.serve(server, opts, rfd, wfd)
    return serve_stdio(server, opts, rfd, wfd)
