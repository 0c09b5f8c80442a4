"""Shared by the worker's unit tests (test_<module>.py, one per module of src/python/corral_wsgi).

Puts src/python on sys.path, builds FastCGI records, parses what a channel wrote, and gives a
channel that writes to memory and runs its requests at once (no threads). Run one module's tests
with `python3 -m unittest test_codec` from this directory, or all with
`python3 -m unittest discover -s test/python`; npm test runs them (test/unit/python-modules.test.ts).
"""
import os
import struct
import sys

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "python"))
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from corral_wsgi import codec  # noqa: E402
from corral_wsgi.channel import Channel  # noqa: E402
from corral_wsgi.server import Server  # noqa: E402

WORKER = os.path.join(SRC, "corral_worker.py")


def record(rtype, rid, content=b"", padding=0):
    return codec.HEADER.pack(1, rtype, rid, len(content), padding) + content + bytes(padding)


def begin(rid, keep=True, role=codec.RESPONDER):
    return record(codec.BEGIN_REQUEST, rid, codec.BEGIN_BODY.pack(role, codec.KEEP_CONN if keep else 0))


def params(rid, pairs):
    """PARAMS records for pairs (split at 65535 bytes), then the empty one."""
    data = codec.encode_params(pairs)
    out = b"".join(record(codec.PARAMS, rid, data[i:i + 65535]) for i in range(0, len(data), 65535))
    return out + record(codec.PARAMS, rid)


def stdin(rid, body=b""):
    """STDIN records for body, then the empty one (end of body)."""
    out = b"".join(record(codec.STDIN, rid, body[i:i + 65535]) for i in range(0, len(body), 65535))
    return out + record(codec.STDIN, rid)


def request(rid, pairs, body=b"", keep=True):
    return begin(rid, keep) + params(rid, pairs) + stdin(rid, body)


def parse(data):
    """[(type, request id, content)] of the whole records in data (asserts nothing is left)."""
    out, pos = [], 0
    while pos < len(data):
        version, rtype, rid, clen, plen = codec.HEADER.unpack_from(data, pos)
        assert version == 1, "bad version %d at %d" % (version, pos)
        out.append((rtype, rid, bytes(data[pos + 8:pos + 8 + clen])))
        pos += 8 + clen + plen
    assert pos == len(data), "a partial record at the end"
    return out


def responses(data):
    """{request id: (stdout bytes, (app status, protocol status) or None)} of what was written."""
    out = {}
    for rtype, rid, content in parse(data):
        body, end = out.get(rid, (b"", None))
        if rtype == codec.STDOUT:
            body += content
        elif rtype == codec.END_REQUEST:
            end = struct.unpack("!IB3x", content)
        out[rid] = (body, end)
    return out


def split_cgi(stdout):
    """(status code, {lower-case header: value}, body) of a CGI response."""
    head, _, body = stdout.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(headers.get("status", "200")[:3]), headers, body


def hello(environ, start_response):
    body = b"hello " + environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_server(app=hello, threads=1, window=262144, dev_errors=False):
    return Server(app, threads, window, 0.5, [], dev_errors)


class MemChannel(Channel):
    """A channel that writes to memory and runs each runnable request at once, in order."""

    def __init__(self, server, windowed=False):
        self.windowed = windowed
        Channel.__init__(self, server)
        self.out = bytearray()

    def _write_all(self, data):
        self.out += data

    def flush_runnable(self):
        runnable, self.runnable = self.runnable, []
        for req in runnable:
            self.server.serve_request(req)

    def take(self):
        data, self.out = bytes(self.out), bytearray()
        return data


class Opts:
    """The options the event loop reads (args.parse_args's defaults, shortened timeouts)."""

    def __init__(self, **kw):
        self.params_timeout = 10.0
        self.idle_timeout = 75.0
        self.body_timeout = 5.0
        self.request_timeout = 0.0
        self.max_connections = 100
        self.max_params = 65536
        self.max_body_size = 0
        self.stack_after = 0.0
        self.__dict__.update(kw)


def unix_listener():
    """A listening unix socket in a fresh directory: (sock, cleanup)."""
    import shutil
    import socket
    import tempfile
    where = tempfile.mkdtemp()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.path.join(where, "s"))
    sock.listen(16)
    sock.setblocking(False)

    def cleanup():
        sock.close()
        shutil.rmtree(where, ignore_errors=True)
    return sock, cleanup


def read_until_end(sock, rid, timeout=10.0):
    """Read records from sock until END_REQUEST for rid (or EOF): the bytes."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            if (codec.END_REQUEST, rid) in [(t, r) for t, r, _ in parse(data)]:
                return data
        except AssertionError:
            pass  # a partial record
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
