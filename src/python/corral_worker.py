#!/usr/bin/env python3
"""corral worker: imports one WSGI app and serves it over FastCGI.

    python3 corral_worker.py [--app MOD:CALLABLE] [--root DIR] [--pythonpath P] [--threads N]
                             [--window BYTES] [--eof-grace SECONDS] [--trust-x-original-url]
                             [--listen ADDR | --direct-fd N [--backlog N] [--request-timeout S] ...]
    python3 -m corral_worker ...            (with this directory on sys.path)

stdio mode (default): FastCGI records on this process's stdin/stdout plus corral's extension
records (READY/FATAL, credit windows, PING/PONG, stop on stdin EOF); see src/fcgi/PROTOCOL.md.
With --threads 1 (where the pipe's hang-up can be watched: not on Windows) the reader thread runs
each request itself ("inline"), with no thread hand-off; see corral_wsgi/stdio.py.
Direct mode (--direct-fd N, corral_wsgi/direct.py, loop.py, conn.py): the worker accepts FastCGI
connections itself on a listening socket the service bound; stdin/stdout are a control channel.
Standalone mode (--listen host:port or a socket path): the same event loop, without a control
channel, e.g. behind nginx. A malformed request (params framing, a bad BEGIN_REQUEST, body before
the end of its params) is answered alone (400 or END_REQUEST); only a corrupt stream (a bad
version byte) ends the pipe (exit 3) or the connection.

--app defaults to $WSGI_APP, then $WSGI_HANDLER (wfastcgi), then wsgi:application, and takes
module:callable, module.callable (Helicon Zoo), module.callable() (wfastcgi) or pkg.mod:factory().

Stdlib only, Python 3.9+. Exit codes: 0 requested stop, 3 bad usage or boot failure,
4 the app could not be imported, 5 a request ran past --request-timeout (direct mode).

The code is the package corral_wsgi next to this file (see its __init__.py); this file is the
entry the service spawns by path.
"""
import sys

from corral_wsgi.boot import main

if __name__ == "__main__":
    sys.exit(main())
