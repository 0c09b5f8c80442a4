"""corral worker: one FastCGI connection of the event loop (loop.py).

Plain FastCGI, one request at a time (a BEGIN for another id meanwhile gets FCGI_CANT_MPX_CONN).
Between requests the loop reads the connection; while a request runs, the request itself reads
(wsgi.input waiting for body bytes) and writes (its response) on it, blocking with timeouts: in
--threads 1 mode on the loop's own thread, else on an app thread while the loop leaves the
connection alone. Limits of the hardening issue: params bytes (431, then close), body size (413
before the app, or abort and close), silence while the app waits for body bytes.
"""
import select
import socket
import sys
import time

from .channel import IOV_BATCH, WRITEV_FROM, Channel
from .codec import END_RECORD, END_REQUEST, ProtocolError
from .common import log

CANT_MPX_CONN = 1  # FastCGI protocolStatus
READ_SIZE = 65536
BODY_READ_SIZE = 262144
HAVE_POLL = hasattr(select, "poll")  # not on Windows
HAVE_SENDMSG = hasattr(socket.socket, "sendmsg")  # not on Windows
QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux
monotonic = time.monotonic


def wait_ready(sock, writing, timeout):
    """Block until sock is readable (or writable); TimeoutError after timeout seconds (0: never)."""
    if HAVE_POLL:
        poller = select.poll()
        poller.register(sock, select.POLLOUT if writing else select.POLLIN)
        ready = poller.poll(timeout * 1000 if timeout else None)
    else:
        ready = select.select([], [sock], [sock], timeout or None)[1] if writing else \
            select.select([sock], [], [sock], timeout or None)[0]
    if not ready:
        raise TimeoutError("no progress on the connection for %gs" % timeout)


class Conn(Channel):
    """One FastCGI connection: plain FastCGI, one request at a time, owned by the loop between
    requests and by its request (which does blocking reads and writes) while one runs."""

    waits_on_cond = False  # wait() reads the socket: no Condition per connection (2 us each)
    counted = False  # the loop counts its requests itself (busy, running): no lock pair per request

    def __init__(self, loop, sock):
        Channel.__init__(self, loop.server)
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.rest = b""  # the start of a record that has not fully arrived
        self.req = None  # the request begun and not ended
        self.running = False  # its params are complete: the app has it
        self.began = 0.0
        self.body = 0  # body bytes of the current request
        self.deadline = monotonic() + loop.idle_timeout
        self.close_now = False  # close once no request runs
        self.lingering = False  # our side is shut: reading the rest until the peer's FIN
        self.watched = False  # registered with the selector
        self.no_handoff = False  # a draining worker's sibling refused it (handoff.py)
        self.quickack = loop.tcp and QUICKACK is not None
        self.max_params = loop.opts.max_params or sys.maxsize
        self.max_body = loop.opts.max_body_size
        self.values_answers = loop.values

    # -- output: non-blocking sends, waiting in poll() up to the body timeout when the peer is slow

    def _write_all(self, data):
        sock = self.sock
        try:
            done = sock.send(data)
        except BlockingIOError:
            done = 0
        if done == len(data):
            return
        view = memoryview(data)[done:]
        while view:
            wait_ready(sock, True, self.loop.opts.body_timeout)
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                pass

    def _write_parts(self, parts):
        if sum(map(len, parts)) < WRITEV_FROM:
            self._write_all(b"".join(parts))
            return
        if not HAVE_SENDMSG:
            for part in parts:  # large: no joined copy (each part is up to a record's content)
                self._write_all(part)
            return
        # Large: the records' headers and contents as they are, no joined copy, up to IOV_BATCH
        # of them per sendmsg. A send per part took 33 calls for 1 MiB, and each 8-byte header
        # went out alone (TCP_NODELAY).
        sock = self.sock
        parts = list(parts)
        i, n = 0, len(parts)
        while i < n:
            end = min(i + IOV_BATCH, n)
            try:
                done = sock.sendmsg(parts[i:end])
            except BlockingIOError:
                done = 0
            while i < end and done >= len(parts[i]):
                done -= len(parts[i])
                i += 1
            if i < end:  # the socket's buffer is full: the rest once it can take more
                if done:
                    parts[i] = memoryview(parts[i])[done:]
                wait_ready(sock, True, self.loop.opts.body_timeout)

    # -- input

    def take(self, data):
        """Dispatch every whole record of what arrived (raises ProtocolError on bad framing)."""
        rest = self.rest
        start = 0
        if rest:
            need = 8 + (rest[4] << 8 | rest[5]) + rest[6] - len(rest) if len(rest) >= 8 else -1
            if self.running and 0 < need <= len(data):
                # A body streaming in (the request reads its connection itself, so nothing is
                # dispatched meanwhile): the record begun in rest is completed with just its own
                # missing bytes. rest + data copied all of a 256 KiB read once more.
                self.feed(rest + data[:need])
                start = need
            else:
                data = rest + data
        used = self.feed(data, start)
        self.rest = data[used:] if used < len(data) else b""

    def wait(self):
        """A request waits for body bytes (called with lock held, as Condition.wait): read the
        connection itself. Silence past the body timeout, EOF or bad framing abort the request
        (its reads raise ClientDisconnected) and close the connection after it."""
        self.lock.release()
        try:
            try:
                # A body streams in: what it waits for is most often there already (a poll()
                # only when it is not), and larger reads than between requests.
                try:
                    data = self.sock.recv(BODY_READ_SIZE)
                except BlockingIOError:
                    if self.quickack:
                        self.ack_now()
                    wait_ready(self.sock, False, self.loop.opts.body_timeout)
                    data = self.sock.recv(BODY_READ_SIZE)
                if not data:
                    raise EOFError("the client closed the connection")
                self.take(data)
                return
            except (OSError, EOFError, ProtocolError) as exc:
                self.loop.bad_peer(self, exc)
            self.close_now = True
            for req in list(self.requests.values()):
                self.abort(req)
        finally:
            self.lock.acquire()

    def ack_now(self):
        """Send the ACK the kernel may be delaying (Linux TCP_QUICKACK) before waiting for more
        body bytes. nginx leaves Nagle on for its upstream connections: the last, short segment of
        a body waits until everything before it is acknowledged, and on a kept connection, where
        the kernel delays ACKs to ride on responses, that is the 40 ms delayed-ACK timer. A fresh
        connection starts in quick-ACK mode, which is why only kept ones stalled."""
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        except OSError:
            self.quickack = False

    def begin(self, rid, content):
        req = self.req
        if req is not None and rid != req.id and rid:
            self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, CANT_MPX_CONN))
            return
        Channel.begin(self, rid, content)
        req = self.requests.get(rid)
        if req is not None and self.req is None:
            self.req, self.body = req, 0
            self.began = now = monotonic()
            self.deadline = now + self.loop.params_timeout

    def stdin(self, req, content):
        if not Channel.stdin(self, req, content):
            return False
        self.body += len(content)
        limit = self.max_body
        if limit and self.body > limit:
            log("a request body grew past --max-body-size %d: aborted, connection closed" % limit)
            self.close_now = True
            self.abort(req)
        return True

    def params(self, req, content):
        Channel.params(self, req, content)
        limit = self.max_body
        if limit and req.queued:  # complete: check the length before any body byte counts
            length = req.environ.get("CONTENT_LENGTH", "")
            if length.isdigit() and int(length) > limit:
                self.reject(req, "CONTENT_LENGTH %s over --max-body-size" % length,
                            "413 Payload Too Large")

    def reject(self, req, reason, status="400 Bad Request"):
        if status[:3] == "431":
            self.close_now = True
        Channel.reject(self, req, reason, status)

    def close_after_end(self):
        self.close_now = True

    def flush_runnable(self):
        runnable, self.runnable = self.runnable, []
        for req in runnable:
            if not req.ended:  # else answered already (413)
                self.loop.dispatch(self, req)

    def finished(self, req):
        if not req.keep_conn:
            self.close_now = True
        self.req = None
        if not self.running:  # answered while the loop parsed (400, 413, 431): now idle
            self.deadline = monotonic() + self.loop.idle_timeout
        self.loop.finished(self, req)
