#!/usr/bin/env python3
"""corral worker: imports one WSGI app and serves it over FastCGI.

    python3 corral_worker.py [--app MOD:CALLABLE] [--root DIR] [--pythonpath P] [--threads N]
                             [--window BYTES] [--eof-grace SECONDS] [--trust-x-original-url]
                             [--listen ADDR | --direct-fd N [--backlog N] [--request-timeout S] ...]
    python3 -m corral_worker ...            (with this directory on sys.path)

stdio mode (default): FastCGI records on this process's stdin/stdout plus corral's extension
records (READY/FATAL, credit windows, PING/PONG, stop on stdin EOF); see src/fcgi/PROTOCOL.md.
With --threads 1 (where the pipe's hang-up can be watched: not on Windows) the reader thread runs
each request itself ("inline"), with no thread hand-off; see InlinePipeChannel.
Direct mode (--direct-fd N, corral_direct/corral_loop/corral_conn): the worker accepts FastCGI
connections itself on a listening socket the service bound; stdin/stdout are a control channel.
Standalone mode (--listen host:port or a socket path): the same event loop, without a control
channel, e.g. behind nginx. A malformed request (params framing, a bad BEGIN_REQUEST, body before
the end of its params) is answered alone (400 or END_REQUEST); only a corrupt stream (a bad
version byte) ends the pipe (exit 3) or the connection.

--app defaults to $WSGI_APP, then $WSGI_HANDLER (wfastcgi), then wsgi:application, and takes
module:callable, module.callable (Helicon Zoo), module.callable() (wfastcgi) or pkg.mod:factory().

Stdlib only, Python 3.9+. Exit codes: 0 requested stop, 3 bad usage or boot failure,
4 the app could not be imported, 5 a request ran past --request-timeout (direct mode).
"""
import argparse
import collections
import html
import importlib
import importlib.machinery
import io
import json
import os
import platform
import queue
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from urllib.parse import unquote_to_bytes



def _load_apphints():
    """corral_wsgi.apphints (app-loading messages) from this file's directory, also when this file
    is loaded by path without that directory on sys.path (tests do); imported before boot()
    drops the directory from sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        from corral_wsgi import apphints as module
    finally:
        if added:
            sys.path.remove(here)
    return module


apphints = _load_apphints()

EXIT_OK, EXIT_BOOT, EXIT_IMPORT = 0, 3, 4
PROTOCOL_VERSION = 1
DEFAULT_APP = "wsgi:application"
DEFAULT_WINDOW = 262144
# Params corral relay adds with a site's settings (the service reads them; see src/relay/inject.ts).
SETTING_PARAM_PREFIX = "CORRAL_SETTING_"
RELAY_TOKEN_PARAM = "CORRAL_RELAY_TOKEN"
READ_SIZE = 262144
MAX_CONTENT = 65535
JOIN_LIMIT = 1 << 20  # list bodies up to this size are sent in one write
# Writes above this size go out with writev from the parts as they are, not joined into one
# bytes object (a copy that costs as much as the write). Below it, one joined write: measured
# behind corral, a 64 KiB response took a median 730 us with writev and 250 us joined (the reader
# got it in more pieces), while at 1 MiB the two were alike.
WRITEV_FROM = 512 << 10
IOV_BATCH = 512  # parts per writev call, below every platform's IOV_MAX

# FastCGI 1.0 record types, roles and statuses, and corral's extension types (PROTOCOL.md).
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
CORRAL_READY, CORRAL_WINDOW, CORRAL_PING, CORRAL_PONG, CORRAL_FATAL = 0xC0, 0xC1, 0xC2, 0xC3, 0xC4
RESPONDER, KEEP_CONN = 1, 1
REQUEST_COMPLETE, OVERLOADED, UNKNOWN_ROLE = 0, 2, 3
APP_OK, APP_FAILED = 0, 1  # END_REQUEST appStatus; 1 = the app raised after the headers were sent

HEADER = struct.Struct("!BBHHBx")  # version, type, request id, content length, padding length
BEGIN_BODY = struct.Struct("!HB5x")  # role, flags
END_RECORD = struct.Struct("!BBHHBxIB3x")  # a whole END_REQUEST record
TERMINATOR = struct.Struct("!BBHHBxBBHHBxIB3x")  # empty STDOUT record + END_REQUEST record
CREDIT_RECORD = struct.Struct("!BBHHBxI")  # a whole CORRAL_WINDOW record
UINT32 = struct.Struct("!I")
pack_header = HEADER.pack

MAX_REQS = 1024  # requests open at once per channel (FCGI_MAX_REQS); more are refused
GET_VALUES_ANSWERS = {"FCGI_MAX_CONNS": "1024", "FCGI_MAX_REQS": str(MAX_REQS), "FCGI_MPXS_CONNS": "1"}
TRUE_WORDS = ("on", "1", "yes")
HERE = os.path.dirname(os.path.abspath(__file__))


class UsageError(Exception):
    """Bad command line or settings (exit 3)."""

    usage = ""


class ProtocolError(Exception):
    """The incoming record stream is malformed."""


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


# ----------------------------------------------------------------------------- app loading

def parse_app_spec(spec):
    """Split an app spec into (module or None, [(attribute, call it?), ...]).

    Accepts 'mod:obj', 'pkg.mod:obj.attr', 'pkg.mod:factory()', 'pkg.mod:factory().app', Helicon
    Zoo's 'mod.obj' and wfastcgi's dotted forms, where any part after the module may end in '()'
    ('mod.obj()', 'pkg.mod.factory().app'): for those the module is None, and load_app imports the
    longest importable prefix of the leading names, as wfastcgi's get_wsgi_handler does.
    A bare module name means 'mod:application'.
    """
    if ":" in spec:
        module, _, attrs = spec.partition(":")
    elif "." in spec:
        module, attrs = None, spec
    else:
        module, attrs = spec, "application"
    segments = []
    for part in attrs.split("."):
        call = part.endswith("()")
        segments.append((part[:-2] if call else part, call))
    names = (module.split(".") if module is not None else []) + [name for name, _ in segments]
    if not all(name.isidentifier() for name in names) or (module is None and segments[0][1]):
        raise UsageError("bad app spec %r: expected module:callable, module.callable, "
                         "module:factory() or module.factory().attr" % spec)
    return module, segments


def import_longest_prefix(names):
    """Import the longest importable module of names[:i] ('a', 'a.b', ...); return (module, i)."""
    for i in range(len(names), 0, -1):
        name = ".".join(names[:i])
        try:
            return importlib.import_module(name), i
        except ModuleNotFoundError as exc:
            # Only "this very module does not exist" means: try a shorter prefix. A missing
            # dependency inside the app's module is the app's import error.
            if exc.name != name or i == 1:
                raise
    raise AssertionError("unreachable")


VIRTUALENV_PROXY = ("ptvs_virtualenv_proxy.get_virtualenv_handler", "ptvs_virtualenv_proxy.get_venv_handler")


def virtualenv_proxy(spec):
    """For PTVS's and old Azure's WSGI_HANDLER=ptvs_virtualenv_proxy.get_virtualenv_handler():
    run WSGI_ALT_VIRTUALENV_ACTIVATE_THIS (an activate_this.py) when given, and return the spec
    of the real handler, WSGI_ALT_VIRTUALENV_HANDLER, as that proxy does. Done here rather than
    by importing the site's copy of the proxy, so sites that lack it (Azure shipped it) work too.
    Other specs: None."""
    text = spec[:-2] if spec.endswith("()") else spec
    if text.replace(":", ".") not in VIRTUALENV_PROXY:
        return None
    handler = os.environ.get("WSGI_ALT_VIRTUALENV_HANDLER", "").strip()
    if not handler:
        raise UsageError("%s needs WSGI_ALT_VIRTUALENV_HANDLER (the real WSGI handler) in the "
                         "site's appSettings" % spec)
    activate_this = os.environ.get("WSGI_ALT_VIRTUALENV_ACTIVATE_THIS", "").strip()
    if activate_this:
        with open(activate_this, "rb") as f:
            code = compile(f.read(), activate_this, "exec")
        exec(code, {"__file__": activate_this, "__name__": "__activate_this__"})
    return handler


def load_app(spec):
    """Import the app and return the WSGI callable; any exception is an import failure."""
    spec = virtualenv_proxy(spec) or spec
    module_name, segments = parse_app_spec(spec)
    if module_name is None:
        # The module is among the leading names before the first call, and at least one
        # attribute follows it.
        plain = 1
        while plain < len(segments) - 1 and not segments[plain][1]:
            plain += 1
        obj, used = import_longest_prefix([name for name, _ in segments[:plain]])
        segments = segments[used:]
    else:
        obj = importlib.import_module(module_name)
    for name, call in segments:
        obj = getattr(obj, name)
        if call:
            obj = obj()
    if not callable(obj):
        raise TypeError(apphints.not_callable(spec, obj))
    return obj


def app_script(spec, search_path):
    """The file of the app's top-level module, found without importing it (for sys.argv[0])."""
    try:
        module, segments = parse_app_spec(spec)
        top = (module or segments[0][0]).split(".")[0]
        found = importlib.machinery.PathFinder.find_spec(top, search_path)
    except (UsageError, ImportError, ValueError, OSError):
        return None
    if found is not None and found.has_location and found.origin:
        return found.origin
    return None


def locate_error(exc, app_dirs):
    """(file, line) of a SyntaxError, or of the innermost traceback frame inside the app."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return os.path.abspath(exc.filename), exc.lineno
    here = os.path.abspath(__file__)
    dirs = tuple(os.path.join(d, "") for d in app_dirs)
    in_app = other = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith("<"):
            continue
        path = os.path.abspath(name)
        if path == here:
            continue
        other = (path, frame.lineno)
        if path.startswith(dirs):
            in_app = other
    found = in_app or other
    return found if found else (None, None)


def failure_info(kind, exc, app_dirs=()):
    """The JSON object of a CORRAL_FATAL record."""
    path, line = locate_error(exc, app_dirs)
    return {"kind": kind, "error": "%s: %s" % (type(exc).__name__, exc),
            "traceback": format_exc(exc), "file": path, "line": line}


# ----------------------------------------------------------------------------- environ

def decode_params(data, env):
    """Decode FastCGI name-value pairs (1- or 4-byte lengths) into env as latin-1 strings."""
    text = data.decode("latin-1")  # one decode; latin-1 keeps byte offsets = char offsets
    unpack = UINT32.unpack_from
    n = len(data)
    i = 0
    while i < n:
        klen = data[i]
        if klen < 128:
            i += 1
        else:
            klen = unpack(data, i)[0] & 0x7FFFFFFF
            i += 4
        vlen = data[i]
        if vlen < 128:
            i += 1
        else:
            vlen = unpack(data, i)[0] & 0x7FFFFFFF
            i += 4
        j = i + klen
        i = j + vlen
        env[text[j - klen:j]] = text[j:i]
    if i != n:
        raise ProtocolError("name-value pairs run past the end of PARAMS")


def encode_params(pairs):
    """Encode a dict of str to FastCGI name-value pairs (latin-1)."""
    out = []
    for name, value in pairs.items():
        for item in (name, value):
            size = len(item.encode("latin-1"))
            out.append(bytes([size]) if size < 128 else UINT32.pack(size | 0x80000000))
        out.append(name.encode("latin-1") + value.encode("latin-1"))
    return b"".join(out)


def path_from_uri(env):
    """PATH_INFO derived from REQUEST_URI (minus the query and SCRIPT_NAME) when a front omits it."""
    uri = env.get("REQUEST_URI", "").partition("?")[0]
    path = unquote_to_bytes(uri).decode("latin-1")
    script = env.get("SCRIPT_NAME", "")
    if script and path.startswith(script):
        path = path[len(script):]
    return path


def iis_virtual_path(md_path):
    """The IIS application's virtual path from APPL_MD_PATH: /LM/W3SVC/1/ROOT/myapp -> /myapp."""
    upper = md_path.upper()
    at = upper.find("/ROOT")
    if at < 0:
        return ""
    return md_path[at + 5:].rstrip("/")


def fix_iis_paths(env, trust_original_url=False):
    """IIS puts the whole URL path in PATH_INFO (and SCRIPT_NAME), not the part below the app.

    A WSGI app mounted in a virtual application /myapp needs SCRIPT_NAME=/myapp and PATH_INFO=
    the rest, or its routes and generated URLs break (wfastcgi just blanks SCRIPT_NAME). URL
    Rewrite's HTTP_X_ORIGINAL_URL is the URL the client asked for; the query never belongs in
    PATH_INFO. But any client can send X-Original-URL, and honouring it lets a request bypass
    IIS <location> rules: it is used only with --trust-x-original-url (trustOriginalUrl).
    """
    vpath = iis_virtual_path(env.get("APPL_MD_PATH", ""))
    original = env.get("HTTP_X_ORIGINAL_URL") if trust_original_url else None
    url = original or env.get("URL") or env.get("PATH_INFO") or "/"
    path, _, query = url.partition("?")
    if "REQUEST_URI" not in env:
        qs = env.get("QUERY_STRING", "")
        env["REQUEST_URI"] = original or (path + ("?" + qs if qs else ""))
    if original:
        # The original URL arrives percent-encoded; PATH_INFO is the decoded path, as bytes.
        path = unquote_to_bytes(path).decode("latin-1")
        if query and not env.get("QUERY_STRING"):
            env["QUERY_STRING"] = query
    if vpath and path.upper().startswith(vpath.upper()) and (len(path) == len(vpath) or path[len(vpath)] == "/"):
        env["SCRIPT_NAME"] = path[:len(vpath)]
        env["PATH_INFO"] = path[len(vpath):]
    else:
        env["SCRIPT_NAME"] = ""
        env["PATH_INFO"] = path
    if env.get("REQUEST_METHOD") in ("GET", "HEAD") and env.get("CONTENT_LENGTH") == "0":
        del env["CONTENT_LENGTH"]


def fix_environ(env, trust_original_url=False):
    """PEP 3333 corners that fronts get wrong; keeps wsgiref.validate happy."""
    if env.get("SERVER_SOFTWARE", "").startswith("Microsoft-IIS") or "APPL_MD_PATH" in env:
        fix_iis_paths(env, trust_original_url)
    if env.get("CONTENT_LENGTH") == "":
        del env["CONTENT_LENGTH"]  # nginx sends it empty on GET; validate rejects ''
    for key in ("HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"):
        if key in env:
            value = env.pop(key)
            if value and key[5:] not in env:
                env[key[5:]] = value
    if "PATH_INFO" not in env:
        env["PATH_INFO"] = path_from_uri(env)
    if env["SCRIPT_NAME"] == "/":
        env["SCRIPT_NAME"] = ""
        if not env["PATH_INFO"].startswith("/"):
            env["PATH_INFO"] = "/" + env["PATH_INFO"]


# ----------------------------------------------------------------------------- request body

class Input:
    """wsgi.input: reads block until body bytes or the end of the body arrive.

    On a windowed channel the bytes the app has read are handed back to the sender as credit
    (CORRAL_WINDOW), batched per a quarter window or whenever the app has to wait.
    """

    __slots__ = ("_chan", "_rid", "_buf", "_pos", "_pending", "held", "eof", "ended", "_unacked",
                 "cut_off")

    def __init__(self, chan, rid):
        self._chan = chan  # no reference to the Request: no cycle, freed at once when done
        self._rid = rid
        self._buf = b""
        self._pos = 0
        self._pending = []
        self.held = 0  # bytes received and not yet read by the app
        self.eof = False
        self.ended = False  # the request has ended: no more credit
        self._unacked = 0
        self.cut_off = False  # aborted: reads raise ClientDisconnected

    def feed(self, data):
        """Reader thread: body bytes arrived (b'' = end of body)."""
        chan = self._chan
        with chan.lock:
            if self.eof:
                return
            if data:
                self._pending.append(data)
                self.held += len(data)
            else:
                self.eof = True
            chan.wake()

    def cut(self):
        """The request is aborted: drop what is held; reads raise ClientDisconnected unless the
        app had read the whole body already (then they return end-of-data)."""
        self.cut_off = not self.eof or self.held > 0
        self._buf, self._pos, self._pending, self.held, self.eof = b"", 0, [], 0, True

    def read(self, size=-1):
        if size is None or size < 0:
            size = sys.maxsize
        parts = []
        while size > 0:
            piece = self._take(size, False)
            if not piece:
                break
            parts.append(piece)
            size -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readline(self, limit=-1):
        if limit is None or limit < 0:
            limit = sys.maxsize
        parts = []
        while limit > 0:
            piece = self._take(limit, True)
            if not piece:
                break
            parts.append(piece)
            limit -= len(piece)
            if piece[-1:] == b"\n":
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readlines(self, hint=-1):
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def _take(self, limit, to_newline):
        """Up to limit bytes (stopping after a newline if asked); b'' at the end of the body."""
        chan = self._chan
        while True:
            piece = None
            with chan.lock:
                if self._pos >= len(self._buf) and self._pending:
                    pending = self._pending
                    self._buf = pending[0] if len(pending) == 1 else b"".join(pending)
                    self._pos = 0
                    self._pending = []
                if self._pos < len(self._buf):
                    piece = self._slice(limit, to_newline)
                    credit = self._consumed(len(piece))
                elif self.eof:
                    if self.cut_off:
                        raise ClientDisconnected("the client went away before the whole body arrived")
                    return b""
                else:  # nothing to read: give back credit first so the sender can go on
                    credit, self._unacked = self._unacked, 0
                    if not credit:
                        chan.wait()
            if credit:
                self._give_credit(credit)
            if piece is not None:
                return piece

    def _slice(self, limit, to_newline):
        buf, pos = self._buf, self._pos
        end = min(len(buf), pos + limit)
        if to_newline:
            nl = buf.find(b"\n", pos, end)
            if nl >= 0:
                end = nl + 1
        self._pos = end
        if end >= len(buf):
            self._buf, self._pos = b"", 0
            return buf[pos:] if pos else buf
        return buf[pos:end]

    def _consumed(self, size):
        """Account size bytes read; return the credit to give back now (0 = not yet)."""
        self.held -= size
        chan = self._chan
        if not chan.windowed:
            chan.wake()  # the connection's reader may wait for room (standalone mode)
            return 0
        if self.eof:
            return 0  # the whole body is here: the sender needs no more credit
        self._unacked += size
        if self._unacked < chan.quarter:
            return 0
        credit, self._unacked = self._unacked, 0
        return credit

    def _give_credit(self, size):
        """Tell the sender the app has read size more body bytes."""
        if not self.ended and not self.eof:
            try:
                self._chan.write(CREDIT_RECORD.pack(1, CORRAL_WINDOW, self._rid, 4, 0, size))
            except ClientGone:
                pass


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks and closes it."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read, size = self.filelike.read, self.blksize
        while True:
            block = read(size)
            if not block:
                return
            yield block


# ----------------------------------------------------------------------------- request (protocol side)

class Request:
    """One request id on a channel: params, body buffer and output credit."""

    __slots__ = ("chan", "id", "keep_conn", "params", "params_size", "environ", "input", "credit",
                 "queued", "aborted", "ended", "out", "status")

    def __init__(self, chan, rid, keep_conn):
        self.chan = chan
        self.id = rid
        self.keep_conn = keep_conn
        self.params = []
        self.params_size = 0
        self.environ = None
        self.input = Input(chan, rid)
        self.credit = chan.window
        self.queued = self.aborted = self.ended = False
        self.out = 0  # STDOUT content bytes sent or being sent (CGI head included)
        self.status = 0  # the response's status code, from its CGI head (for the access log)

    def send(self, parts, end=False, app_status=APP_OK):
        """Send parts (bytes) as STDOUT records within the credit; end=True ends the request."""
        if self.ended:
            raise ResponseEnded("write() after the response to request id %d ended" % self.id)
        total = 0
        for part in parts:
            total += len(part)
        if total:
            if not self.out:
                head = parts[0]
                if type(head) is bytes and head[:8] == b"Status: " and head[8:11].isdigit():
                    self.status = int(head[8:11])
            self.out += total
            if not end:
                self.chan.catch_up()  # inline: an ABORT may be waiting unread
            if self.aborted:
                raise ClientGone()
            if self.chan.windowed:
                granted = self._reserve(total)
                if granted < total:
                    self._send_by_credit(parts, total, granted, end, app_status)
                    return
        out = []
        for part in parts:
            if part:
                frame_stdout(out, self.id, part)
        self._write(out, end, app_status)

    def _send_by_credit(self, parts, total, granted, end, app_status):
        """Send parts (total bytes) as credit comes, granted bytes of it already reserved;
        slices of the parts, never a joined copy."""
        left = [memoryview(p) for p in parts if p]
        i = 0
        while True:
            out = []
            total -= granted
            while granted:
                part = left[i]
                if len(part) <= granted:
                    frame_stdout(out, self.id, part)
                    granted -= len(part)
                    i += 1
                else:
                    frame_stdout(out, self.id, part[:granted])
                    left[i] = part[granted:]
                    granted = 0
            if not total:
                self._write(out, end, app_status)
                return
            self._write(out, False)
            granted = self._reserve(total)

    def _reserve(self, want):
        """Block (this thread only) until there is credit; take up to want bytes of it."""
        chan = self.chan
        with chan.lock:
            while self.credit <= 0 and not self.aborted and not self.ended and not chan.broken:
                chan.wait()
            if self.ended:  # another thread ended it: no credit will come for this id
                raise ResponseEnded("write() after the response to request id %d ended" % self.id)
            if self.aborted or self.chan.broken:
                raise ClientGone()
            granted = want if want <= self.credit else self.credit
            self.credit -= granted
            return granted

    def _write(self, out, end, app_status=APP_OK):
        chan = self.chan
        if not end:
            chan.write_parts(out, self)
            return
        with chan.lock:  # an abort from the reader thread may race with the app thread
            if self.ended:
                return
            self.ended = self.input.ended = True
            chan.wake()  # a thread waiting for credit for this id: none will come
        out.append(TERMINATOR.pack(1, STDOUT, self.id, 0, 0, 1, END_REQUEST, self.id, 8, 0,
                                   app_status, REQUEST_COMPLETE))
        chan.requests.pop(self.id, None)  # before END_REQUEST: the service may reuse the id at once
        try:
            chan.write_parts(out)
        finally:
            chan.finished(self)

    def finish_quietly(self, app_status=APP_OK):
        """End the request (END_REQUEST) if that has not happened; ignore a dead channel."""
        if not self.ended:
            try:
                self._write([], True, app_status)
            except ClientGone:
                pass


def frame_stdout(out, rid, data):
    """Append STDOUT records carrying data (split at 65535 bytes, no padding) to out."""
    size = len(data)
    if size <= MAX_CONTENT:
        out.append(pack_header(1, STDOUT, rid, size, 0))
        out.append(data)
        return
    view = memoryview(data)
    for start in range(0, size, MAX_CONTENT):
        part = view[start:start + MAX_CONTENT]
        out.append(pack_header(1, STDOUT, rid, len(part), 0))
        out.append(part)


# ----------------------------------------------------------------------------- WSGI exchange

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
            if length is None and name.lower() == "content-length" and value.strip().isdigit():
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
        if type(data) is not bytes:
            data = as_bytes(data)
        if self.head:
            data = b""
        elif self.length is not None:
            data = self._within_length(data)
        if self.sent:
            if data:
                self.req.send((data,))
        else:
            self.sent = True
            self.req.send((self.header_block, data))

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
        if type(body) is not bytes:
            body = as_bytes(body)
        if self.head:
            body = b""
        elif self.length is not None:
            body = self._within_length(body)
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
        body, ctype = self.server.error_body(exc)
        block = ("Status: 500 Internal Server Error\r\nContent-Type: %s\r\n"
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


def error_page(exc, app_dirs):
    """The CORRAL_DEV_ERRORS=1 page: exception, file and line, traceback, all escaped."""
    path, line = locate_error(exc, app_dirs)
    where = "%s, line %s" % (path, line) if path else "unknown location"
    page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>500 %s</title></head>"
            "<body><h1>%s</h1><p>%s</p><p>at %s</p><pre>%s</pre></body></html>\n") % (
        html.escape(type(exc).__name__), html.escape(type(exc).__name__),
        html.escape(str(exc)), html.escape(where), html.escape(format_exc(exc)))
    return page.encode("utf-8", "backslashreplace")


# ----------------------------------------------------------------------------- server

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
        self.defaults = {"SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
                         "REQUEST_METHOD": "GET", "SERVER_NAME": "localhost"}
        self.wsgi_base = {
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,  # reads end at the end of the body, with or without a length
        }

    def start_threads(self):
        for number in range(self.threads):
            threading.Thread(target=self._serve_queue, name="corral-app-%d" % number,
                             daemon=True).start()

    def _serve_queue(self):
        get, serve_request = self.queue.get, self.serve_request
        while True:
            serve_request(get())

    def serve_request(self, req):
        """Run the app for req (unless aborted) and make sure the request ends."""
        try:
            if not req.aborted:
                Exchange(self, req).run()
        except BaseException as exc:  # a bug of ours: keep the thread, end the request
            log("internal error serving request id %d\n%s" % (req.id, format_exc(exc)))
        req.finish_quietly()

    def environ(self, req, data):
        """The PEP 3333 environ of a request from its raw PARAMS bytes."""
        env = self.defaults.copy()
        decode_params(data, env)
        if "APPL_PHYSICAL_PATH" in env:  # from IIS: corral relay's settings are not the app's business
            for key in [k for k in env if k.startswith(SETTING_PARAM_PREFIX)]:
                del env[key]
        env.pop(RELAY_TOKEN_PARAM, None)  # the relay's pairing secret (src/relay/secret.ts): never the app's
        env.update(self.wsgi_base)
        env["wsgi.input"] = req.input
        https = env.get("HTTPS")
        secure = (https is not None and https.lower() in TRUE_WORDS) or \
            env.get("REQUEST_SCHEME") == "https"
        env["wsgi.url_scheme"] = "https" if secure else "http"
        if "SERVER_PORT" not in env:
            env["SERVER_PORT"] = "443" if secure else "80"
        fix_environ(env, self.trust_original_url)
        return env

    def error_body(self, exc):
        """(body, content type) of the 500 answer to an app exception."""
        if self.dev_errors:
            return error_page(exc, self.app_dirs), "text/html; charset=utf-8"
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


# ----------------------------------------------------------------------------- channels

class Channel:
    """One record stream (the service's pipes, or one socket): dispatches records to requests."""

    windowed = False  # corral credit windows on STDIN/STDOUT
    peer = "client"  # who sends the records, for log lines

    def __init__(self, server):
        self.server = server
        self.window = server.window if self.windowed else sys.maxsize
        self.quarter = max(1, server.window // 4)
        self.requests = {}
        # `with lock` is C code; `with cond` would add a Python call per use. Same lock.
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.wlock = threading.Lock()
        self.broken = False
        self.waiters = 0  # threads waiting on cond: most records need no notify
        self.runnable = []  # requests whose params are complete, queued after each read
        self.overloaded = False  # logged once until a request is accepted again

    def write(self, data):
        """Write all of data, serialized with other threads; ClientGone if the peer is gone."""
        self.write_parts((data,))

    def write_parts(self, parts, req=None):
        """Write the parts (bytes or memoryviews) in order, as write() does; for req, only while
        it has not ended (checked under the write lock: its END_REQUEST may be written first)."""
        with self.wlock:
            if self.broken:
                raise ClientGone()
            if req is not None and req.ended:
                raise ResponseEnded("write() after the response to request id %d ended" % req.id)
            try:
                if len(parts) == 1:
                    self._write_all(parts[0])
                else:
                    self._write_parts(parts)
                return
            except OSError as exc:
                self.broken = True
                error = exc
        self.on_broken(error)
        raise ClientGone()

    def _write_parts(self, parts):
        self._write_all(b"".join(parts))

    def wait(self):
        """Block until a record may have changed what the caller waits for: body bytes, credit,
        an abort (call with lock held, and re-check after). Here: cond.wait(), counted; the
        reader thread wakes it. InlinePipeChannel reads the records itself instead."""
        self.waiters += 1
        try:
            self.cond.wait()
        finally:
            self.waiters -= 1

    def catch_up(self):
        """Dispatch records that have arrived and not been read yet, without blocking. Nothing
        to do here: the reader thread dispatches them at once. (InlinePipeChannel.)"""

    def wake(self):
        """Wake every waiter, if any (call with cond held)."""
        if self.waiters:
            self.cond.notify_all()

    def reply(self, data):
        """A write from the reader thread; a dead peer shows up as EOF soon enough."""
        try:
            self.write(data)
        except ClientGone:
            pass

    def on_broken(self, error):
        with self.lock:
            self.wake()

    def feed(self, data):
        """Handle every whole record in data; return how many bytes were used."""
        unpack = HEADER.unpack_from
        requests = self.requests
        size = len(data)
        pos = 0
        while size - pos >= 8:
            version, rtype, rid, clen, plen = unpack(data, pos)
            if version != 1:  # the stream itself is corrupt: no record boundary can be trusted
                raise ProtocolError("bad FastCGI version byte %d (record type %d, id %d)"
                                    % (version, rtype, rid))
            end = pos + 8 + clen
            if end + plen > size:
                break
            content = data[pos + 8:end]
            pos = end + plen
            req = requests.get(rid) if rid else None
            if rtype == STDIN:
                if req is not None:
                    self.stdin(req, content)
            elif rtype == PARAMS:
                if req is not None and not req.queued:
                    self.params(req, content)
            elif rtype == BEGIN_REQUEST:
                self.begin(rid, content)
            elif rtype == ABORT_REQUEST:
                if req is not None:
                    self.abort(req)
            elif rid == 0 and rtype == GET_VALUES:
                self.get_values(content)
            else:
                self.other(rtype, req, content)
        if self.runnable:
            self.flush_runnable()
        return pos

    def flush_runnable(self):
        # Queued only after parsing, so that an app thread does not wake up just to wait for
        # the GIL while this thread is still parsing.
        put = self.server.queue.put
        for req in self.runnable:
            put(req)
        del self.runnable[:]

    def begin(self, rid, content):
        # A malformed BEGIN_REQUEST is that request's error, not the stream's: the record was
        # framed fine, so the records after it can still be read.
        if rid == 0:
            log("BEGIN_REQUEST with request id 0: ignored")
            self.other(BEGIN_REQUEST, None, content)
            return
        if len(content) != 8:
            log("malformed BEGIN_REQUEST for request id %d (%d content bytes, not 8)%s"
                % (rid, len(content), ": ignored" if rid in self.requests else ""))
            if rid not in self.requests:
                self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, UNKNOWN_ROLE))
            return
        role, flags = BEGIN_BODY.unpack(content)
        if role != RESPONDER:
            self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, UNKNOWN_ROLE))
            if not flags & KEEP_CONN:
                self.close_after_end()
            return
        if rid in self.requests:
            log("BEGIN_REQUEST for request id %d, which is still active: ignored" % rid)
            return
        if len(self.requests) >= MAX_REQS:  # what it advertised: each open request holds memory
            if not self.overloaded:
                log("more than %d requests open on one channel: refusing new ones (FCGI_OVERLOADED)"
                    % MAX_REQS)
            self.overloaded = True
            self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, OVERLOADED))
            return
        self.overloaded = False
        self.requests[rid] = Request(self, rid, flags & KEEP_CONN)
        self.server.request_started()
        self.on_begin()

    def on_begin(self):
        pass

    max_params = sys.maxsize  # bytes of PARAMS per request (the service bounds its own)

    def params(self, req, content):
        if content:
            req.params.append(content)
            req.params_size += len(content)
            if req.params_size > self.max_params:
                self.reject(req, "its params exceed %d bytes" % self.max_params,
                            "431 Request Header Fields Too Large")
            return
        data = b"".join(req.params)
        req.params = None
        try:
            req.environ = self.server.environ(req, data)
        except Exception as exc:  # framing (IndexError, struct.error, ProtocolError) or worse
            self.reject(req, "malformed PARAMS: %s" % (exc,))
            return
        req.queued = True
        self.runnable.append(req)

    def stdin(self, req, content):
        """Body bytes for req; False if they came before its params ended (req is answered)."""
        if not req.queued:  # nobody can read them yet, and the params may never end
            self.reject(req, "STDIN before the end of its PARAMS")
            return False
        req.input.feed(content)
        return True

    def reject(self, req, reason, status="400 Bad Request"):
        """A malformed request costs only itself: a CGI error answer and END_REQUEST for it,
        one log line, and the channel goes on with its other requests."""
        log("bad request id %d from the %s: %s; answered %s" % (req.id, self.peer, reason, status))
        body = ("%s\n" % status[4:]).encode("latin-1")
        head = ("Status: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % (status, len(body))).encode("latin-1")
        req.params = None
        with self.lock:
            req.input.cut()
            self.wake()
        try:
            req.send((head, body), end=True)  # within its untouched credit: never waits
        except ClientGone:
            pass

    def abort(self, req):
        with self.lock:
            req.aborted = True
            req.input.cut()
            self.wake()
        if not req.queued:
            req.finish_quietly()  # no app thread has it: end it here

    values_answers = GET_VALUES_ANSWERS

    def get_values(self, content):
        asked = {}
        try:
            decode_params(content, asked)
        except (IndexError, struct.error, ProtocolError):
            log("malformed GET_VALUES from the %s: answered with no values" % self.peer)
            asked = {}
        known = self.values_answers
        answer = encode_params({k: known[k] for k in asked if k in known})
        self.reply(pack_header(1, GET_VALUES_RESULT, 0, len(answer), 0) + answer)

    def other(self, rtype, req, content):
        self.reply(pack_header(1, UNKNOWN_TYPE, 0, 8, 0) + bytes([rtype]) + bytes(7))

    def input_closed(self):
        """The peer closed its side: requests that cannot get their params or body are aborted."""
        for req in list(self.requests.values()):
            if not req.queued or not req.input.eof:
                self.abort(req)

    def finished(self, req):
        """After END_REQUEST was written (or could not be)."""
        self.server.request_done()

    def close_after_end(self):
        pass


class PipeChannel(Channel):
    """The service's pipes (stdio mode): FastCGI plus corral's extension records."""

    windowed = True
    peer = "service"

    def __init__(self, server, rfd, wfd):
        Channel.__init__(self, server)
        self.rfd = rfd
        self.wfd = wfd
        # readinto a reused buffer: os.read(256 KiB) would mmap and munmap on every call
        self._buf = bytearray(READ_SIZE)
        self._view = memoryview(self._buf)
        self._readinto = io.FileIO(rfd, "rb", closefd=False).readinto
        self._rest = b""  # the start of a record that has not fully arrived
        self.at_eof = False

    def _write_all(self, data):
        write_all(self.wfd, data)

    def _write_parts(self, parts):
        if HAVE_WRITEV and sum(map(len, parts)) >= WRITEV_FROM:
            writev_all(self.wfd, parts)
        else:
            Channel._write_parts(self, parts)

    def serve(self):
        """Threaded mode: this thread only reads records, until EOF; app threads run requests."""
        pump = self.pump
        while pump():
            pass

    def pump(self):
        """Read what the service sent so far (blocking until something is there) and dispatch
        every whole record in it; False at stdin EOF, after aborting what cannot complete.
        A malformed stream ends the process (exit 3)."""
        if self.at_eof:
            return False
        try:
            size = self._readinto(self._buf)
        except OSError as exc:
            log("reading stdin failed (%s): stopping" % exc)
            size = 0
        if not size:
            self.at_eof = True
            if self._rest:
                log("stdin ended inside a record (%d bytes left over)" % len(self._rest))
            self.input_closed()
            return False
        chunk = self._view[:size].tobytes()
        rest = self._rest
        data = rest + chunk if rest else chunk
        try:
            used = self.feed(data)
        except ProtocolError as exc:  # also inside an inline request: the app must not catch it
            log("malformed record stream from the service: %s" % exc)
            flush_std()
            os._exit(EXIT_BOOT)
        self._rest = data[used:] if used < len(data) else b""
        return True

    def other(self, rtype, req, content):
        if rtype == CORRAL_WINDOW:
            if len(content) != 4:
                log("CORRAL_WINDOW with %d content bytes: ignored" % len(content))
            elif req is not None:
                with self.lock:
                    req.credit += UINT32.unpack(content)[0]
                    self.wake()
        elif rtype == CORRAL_PING:
            self.reply(pack_header(1, CORRAL_PONG, 0, len(content), 0) + content)
        else:
            log("unexpected record type %d from the service" % rtype)
            Channel.other(self, rtype, req, content)

    def on_broken(self, error):
        Channel.on_broken(self, error)
        log("protocol stdout is gone (%s): ending requests and exiting" % error)
        for req in list(self.requests.values()):
            self.abort(req)
        threading.Thread(target=exit_when_idle, args=(self.server, 0), daemon=True).start()


class InlinePipeChannel(PipeChannel):
    """stdio mode with --threads 1: the reader thread runs each request itself (no hand-off).

    The reader parses records; when a request becomes runnable (its params are complete) it
    calls the app right there. While the app runs, whatever needs more from the service (a
    wsgi.input read waiting for body bytes, a write() waiting for STDOUT credit) goes through
    wait(), which here does not sleep until another thread signals: it pumps the record stream
    itself (STDIN, WINDOW, ABORT, PING, EOF; a request pipelined behind this one is queued and
    runs after it) until the caller's condition may have changed. A PING that arrives while
    the app computes or sleeps is answered at the next wait or after the request.
    """

    def __init__(self, server, rfd, wfd):
        PipeChannel.__init__(self, server, rfd, wfd)
        self.runnable = collections.deque()
        self.plock = threading.Lock()  # one pumping thread at a time (the app may have threads)
        self.pumps = 0  # reads dispatched so far: a waiter that got plock late re-checks first
        self.served = threading.Event()  # serve() has returned (see exit_on_hangup)
        self._poller = select.poll()
        self._poller.register(rfd, select.POLLIN)

    def serve(self):
        runnable, serve_request = self.runnable, self.server.serve_request
        try:
            while True:
                while runnable:
                    serve_request(runnable.popleft())
                with self.plock:
                    more = self._pump_locked()
                if not more:
                    return
        finally:
            self.served.set()

    def _pump_locked(self):
        """pump(), counted (call with plock held)."""
        more = self.pump()
        self.pumps += 1
        return more

    def flush_runnable(self):
        pass  # serve() runs them, in order, once the running request (if any) has ended

    def wait(self):
        """Read and dispatch records until the caller's condition may have changed (called
        with lock held, like Condition.wait; the caller re-checks). After stdin EOF nothing
        can change any more: ClientGone ends the request."""
        if self.at_eof:
            raise ClientGone()
        seen = self.pumps
        self.lock.release()  # dispatching records takes it
        try:
            with self.plock:
                if self.pumps == seen:  # else another thread read and dispatched: re-check first
                    self._pump_locked()
        finally:
            self.lock.acquire()

    def catch_up(self):
        """Dispatch records that have already arrived (an ABORT, a PING), without blocking: a
        response streamed within its credit never waits, so it would not read them otherwise."""
        if self.at_eof or not self._poller.poll(0):
            return
        if self.plock.acquire(False):  # else another thread is reading: it dispatches them
            try:
                self._pump_locked()
            finally:
                self.plock.release()


def exit_when_idle(server, code):
    """Give running requests up to --eof-grace seconds, then exit the process."""
    if not server.wait_idle(server.grace):
        log("%d request(s) still running after %.1fs: exiting" % (server.active, server.grace))
    flush_std()
    os._exit(code)


def exit_on_hangup(fd, server, served):
    """Inline mode: the reader thread, busy in the app, reads stdin EOF only once the app waits
    for input or credit, or returns. This thread watches the pipe for the hang-up (without
    reading it) and gives the request in flight --eof-grace seconds, as the threaded reader
    does: a worker whose service was killed does not outlive it by a long request."""
    rdhup = getattr(select, "POLLRDHUP", 0)  # Linux: the service half-closed a socketpair
    hangup = select.POLLHUP | select.POLLERR | select.POLLNVAL | rdhup
    poller = select.poll()
    poller.register(fd, rdhup)  # no input events: data waiting to be read does not wake us
    while not any(events & hangup for _, events in poller.poll()):
        time.sleep(0.05)  # a platform that reports more than was asked: do not spin
    deadline = time.monotonic() + server.grace
    while not served.wait(0.05):  # once served, the main thread exits normally
        if server.active and time.monotonic() >= deadline:
            log("stdin closed with %d request(s) still running after %.1fs: exiting"
                % (server.active, server.grace))
            flush_std()
            os._exit(EXIT_OK)


def flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


# ----------------------------------------------------------------------------- boot

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
                 "max_body_size", "max_params"):
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
    """chdir to root; sys.path = root, --pythonpath entries, the rest minus our own directory."""
    root = os.path.abspath(root or os.curdir)
    if not os.path.isdir(root):
        raise UsageError("--root %r is not a directory" % root)
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    os.chdir(root)
    extra = split_pythonpath(pythonpath)
    sys.path[:] = [root] + extra + [p for p in rest if p not in extra and p != root]
    return [root] + extra


PIPE_SIZE = 1 << 20


def grow_pipe(fd):
    """Linux pipes hold 64 KiB: a 1 MiB response then costs the worker 16 blocking writes and as
    many wake-ups. Ask for 1 MiB (the unprivileged maximum by default); other systems, or sockets,
    keep what they have."""
    setpipe = getattr(__import__("fcntl"), "F_SETPIPE_SZ", 1031) if sys.platform.startswith("linux") else None
    if setpipe is None:
        return
    try:
        import fcntl
        fcntl.fcntl(fd, setpipe, PIPE_SIZE)
    except OSError:
        pass


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


def write_all(fd, data):
    done = os.write(fd, data)
    if done < len(data):
        view = memoryview(data)
        while done < len(data):
            done += os.write(fd, view[done:])


HAVE_WRITEV = hasattr(os, "writev")  # not on Windows


def writev_all(fd, parts):
    """Write every part, in order, with writev (partial writes resumed where they stopped)."""
    parts = list(parts)
    i, n = 0, len(parts)
    while i < n:
        batch = parts[i:i + IOV_BATCH]
        done = os.writev(fd, batch)
        for part in batch:
            size = len(part)
            if done < size:
                parts[i] = memoryview(part)[done:]
                break
            done -= size
            i += 1


def write_record(fd, rtype, payload):
    if fd is not None:
        write_all(fd, pack_header(1, rtype, 0, len(payload), 0) + payload)


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


def serve_stdio(server, opts, rfd, wfd):
    """READY, then serve the service's pipes until stdin EOF."""
    # Inline needs a watch on stdin's hang-up while the app runs (exit_on_hangup): poll().
    inline = server.threads == 1 and hasattr(select, "poll")
    if inline:
        chan = InlinePipeChannel(server, rfd, wfd)
        threading.Thread(target=exit_on_hangup, args=(rfd, server, chan.served),
                         name="corral-hangup", daemon=True).start()
    else:
        chan = PipeChannel(server, rfd, wfd)
        server.start_threads()
    ready = {"pid": os.getpid(), "python": platform.python_version(), "app": opts.app,
             "threads": opts.threads, "window": opts.window, "protocol": PROTOCOL_VERSION,
             "inline": inline, "malloc_tuned": opts.malloc_tuned}
    try:
        write_record(wfd, CORRAL_READY, json.dumps(ready).encode("utf-8"))
        chan.serve()
    except OSError as exc:
        log("protocol stdout is gone (%s): exiting" % exc)
        return exit_soon(server, EXIT_OK)
    if not server.wait_idle(server.grace):
        log("stdin closed with %d request(s) still running after %.1fs: exiting"
            % (server.active, server.grace))
        flush_std()
        os._exit(EXIT_OK)
    return exit_soon(server, EXIT_OK)


def exit_soon(server, code):
    """Return code for a normal interpreter exit, with a watchdog in case app threads hang it."""
    def watchdog():
        time.sleep(max(server.grace, 0.5))
        flush_std()
        os._exit(code)
    threading.Thread(target=watchdog, name="corral-exit", daemon=True).start()
    return code


def open_listener(address):
    """A listening socket for host:port, [v6]:port, or a unix socket path; (sock, shown name)."""
    if "/" in address or "\\" in address or address.startswith("unix:"):
        path = address[5:] if address.startswith("unix:") else address
        if not hasattr(socket, "AF_UNIX"):
            raise UsageError("unix sockets are not available here: %r" % address)
        if os.path.exists(path):
            os.unlink(path)  # a stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(128)
        return sock, path
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError("--listen wants host:port or a socket path, got %r" % address)
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, int(port)), family=family, backlog=128)
    bound = sock.getsockname()
    shown = "[%s]:%d" % bound[:2] if family == socket.AF_INET6 else "%s:%d" % bound[:2]
    return sock, shown


def main(argv=None):
    global corral_direct
    setup_stderr()
    corral_direct = _import_loop()
    booted = boot(sys.argv[1:] if argv is None else argv)
    if isinstance(booted, int):
        return booted
    opts, app, app_dirs, rfd, wfd = booted
    dev_errors = os.environ.get("CORRAL_DEV_ERRORS", "").lower() in TRUE_WORDS
    server = Server(app, opts.threads, opts.window, opts.eof_grace, app_dirs, dev_errors)
    server.app_name = opts.app
    server.trust_original_url = opts.trust_x_original_url
    if opts.listen is not None or opts.direct_fd is not None:
        return corral_direct.serve(server, opts, rfd, wfd)
    return serve_stdio(server, opts, rfd, wfd)


def _import_loop():
    """corral_direct (and corral_loop), from this file's directory (boot takes it off sys.path before the app loads)."""
    sys.modules.setdefault("corral_worker", sys.modules[__name__])  # one copy of our classes
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
        try:
            import corral_direct
        finally:
            sys.path.remove(HERE)
    else:
        import corral_direct
    return corral_direct


if __name__ == "__main__":
    # Run as a script this file is __main__; corral_loop imports corral_worker, which must be
    # this same module, not a second copy with its own classes.
    import corral_worker
    sys.exit(corral_worker.main())
