"""corral worker: the command line (usage errors exit 3, not argparse's 2)."""
import argparse
import os

from .common import UsageError

DEFAULT_APP = "wsgi:application"
DEFAULT_WINDOW = 262144


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as UsageError (exit 3, not argparse's 2)."""

    def error(self, message):
        exc = UsageError(message)
        exc.usage = self.format_usage()
        raise exc


def parse_args(argv):
    parser = Parser(prog="corral_worker", description="Serve a WSGI app over FastCGI.")
    parser.add_argument("--app", metavar="MOD:CALLABLE", help="module:callable, module.callable, module:factory() "
                        "(default: $WSGI_APP, $WSGI_HANDLER, %s)" % DEFAULT_APP)
    parser.add_argument("--root", metavar="DIR", help="app directory (default: cwd)")
    parser.add_argument("--pythonpath", metavar="P",
                        help="extra import paths, separated by %r or ';'" % os.pathsep)
    parser.add_argument("--threads", metavar="N", type=int, default=1,
                        help="app threads (default 1)")
    parser.add_argument("--window", metavar="BYTES", type=int, default=DEFAULT_WINDOW,
                        help="credit window per request, both directions (default %d)"
                        % DEFAULT_WINDOW)
    parser.add_argument("--eof-grace", metavar="SECONDS", type=float, default=2.0,
                        help="time running requests get after stdin EOF (default 2)")
    parser.add_argument("--trust-x-original-url", action="store_true",
                        help="take the path from IIS URL Rewrite's X-Original-URL header (any "
                        "client can send it: only behind a front that sets or strips it)")
    parser.add_argument("--listen", metavar="ADDR",
                        help="standalone FastCGI server on host:port or a unix socket path")
    # Direct mode (corral_loop): accept FastCGI connections on a socket the service bound; stdin
    # and stdout are then only the control channel (PROTOCOL.md, "Direct mode").
    parser.add_argument("--direct-fd", metavar="N", type=int,
                        help="listening socket to accept on (direct mode); stdio = control channel")
    parser.add_argument("--handoff-dir", metavar="DIR",
                        help="private directory for the socket on which sibling workers hand over "
                        "kept connections when they drain (direct mode)")
    parser.add_argument("--backlog", metavar="N", type=int, default=1024,
                        help="listen backlog of --direct-fd (default 1024)")
    for name, default, what in (
            ("--request-timeout", 0.0, "a longer request: 504 (or close), exit 5; 0 = none"),
            ("--params-timeout", 10.0, "BEGIN_REQUEST to the end of PARAMS; over: close"),
            ("--idle-timeout", 75.0, "a kept connection without a request; over: close"),
            ("--body-timeout", 60.0, "silence while the app waits for body bytes, and a "
                                     "response write's send timeout")):
        parser.add_argument(name, metavar="SECONDS", type=float, default=default,
                            help="%s (default %g)" % (what, default))
    parser.add_argument("--stack-after", metavar="SECONDS", type=float, default=0.0,
                        help="log where a request still running after this long is, once "
                        "(the service's slowLogAfter; on the proxy path at the latest a second "
                        "before its requestTimeout; 0 = never)")
    parser.add_argument("--max-connections", metavar="N", type=int, default=1000,
                        help="open connections at once; at the limit stop accepting (default 1000)")
    parser.add_argument("--max-body-size", metavar="BYTES", type=int, default=0,
                        help="request body limit: 413, or an aborted request (default 0 = none)")
    parser.add_argument("--max-params", metavar="BYTES", type=int, default=65536,
                        help="params bytes per request; over: 431 and close (default 65536)")
    opts = parser.parse_args(argv)
    if opts.direct_fd is not None and opts.listen is not None:
        raise UsageError("--direct-fd and --listen exclude each other")
    for name in ("backlog", "max_connections"):
        if getattr(opts, name) < 1:
            raise UsageError("--%s must be at least 1" % name.replace("_", "-"))
    for name in ("request_timeout", "params_timeout", "idle_timeout", "body_timeout",
                 "max_body_size", "max_params", "stack_after"):
        if getattr(opts, name) < 0:
            raise UsageError("--%s must not be negative" % name.replace("_", "-"))
    if opts.threads < 1:
        raise UsageError("--threads must be at least 1, got %d" % opts.threads)
    if not 1024 <= opts.window <= 0x7FFFFFFF:
        raise UsageError("--window must be 1024..2147483647 bytes, got %d" % opts.window)
    if opts.eof_grace < 0:
        raise UsageError("--eof-grace must not be negative, got %s" % opts.eof_grace)
    opts.app = opts.app or os.environ.get("WSGI_APP") or os.environ.get("WSGI_HANDLER") \
        or DEFAULT_APP
    return opts
