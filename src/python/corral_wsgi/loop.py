"""corral worker's event loop: it accepts FastCGI connections itself (direct and standalone mode).

One loop per process (epoll where there is one) holds the listening socket and every connection;
no thread per connection. A connection's records are parsed as they arrive; once a request's
params are complete the request runs (inline on the loop's thread with --threads 1, else on an
app thread) and does its own blocking I/O on its connection, with timeouts, until it ends: one
request at a time per connection (FCGI_MPXS_CONNS=0). While a request runs inline the loop does
not accept: other workers on the same socket take the new connections. direct.py adds the
service's side (control channel, REPORTs, watchdog). See src/fcgi/PROTOCOL.md, "Direct mode".
"""
import _socket
import collections
import select
import socket
import threading
import time

from .codec import ProtocolError
from .common import log
from .conn import READ_SIZE, Conn
from . import handoff

ACCEPT_BATCH = 64  # connections per readiness event: then serve the ones we have
# Inline, a worker serves one request at a time: a connection it accepts while another's request
# is about to run waits behind it, although an idle sibling could have taken it from the listen
# queue. So an inline worker takes one connection per turn of its loop.
ACCEPT_BATCH_INLINE = 1
ACCESS_LIMIT = 1000  # access entries kept for the next REPORT; older ones are dropped (counted)
REPORT_BATCH = 128  # access entries that send a REPORT before the watchdog's next tick
# While it turns, the loop sends the periodic REPORT itself this often (direct.py's watchdog
# sends it only when the loop has not: a request running inline, or an idle loop).
REPORT_EVERY = 0.1
LINGER = 2.0  # seconds a closing connection may still deliver what its peer sent (see linger)
DRAIN_IDLE = 1.0  # seconds an idle kept connection of a draining worker waits for one more request
monotonic = time.monotonic


class Poller:
    """Readiness of registered sockets: epoll on Linux, else selectors. poll() -> their data."""

    def __init__(self):
        self.data = {}
        if hasattr(select, "epoll"):
            self._ep = select.epoll()
            self._sel = None
        else:
            import selectors
            self._sel = selectors.DefaultSelector()
            self._read = selectors.EVENT_READ

    def register(self, sock, data):
        fd = sock.fileno()
        self.data[fd] = data
        if self._sel is None:
            self._ep.register(fd, select.EPOLLIN)
        else:
            self._sel.register(sock, self._read, data)

    def unregister(self, sock):
        fd = sock.fileno()
        del self.data[fd]
        if self._sel is None:
            self._ep.unregister(fd)
        else:
            self._sel.unregister(sock)

    def poll(self, timeout):
        if self._sel is None:
            data = self.data
            return [data[fd] for fd, _ in self._ep.poll(timeout)]
        return [key.data for key, _ in self._sel.select(timeout)]


class Loop:
    """The listener, the connections, the requests running and what the service is told."""

    def __init__(self, server, opts, listener):
        self.server = server
        self.opts = opts
        self.listener = listener
        self.inline = server.threads == 1
        self.params_timeout = opts.params_timeout or 1e9
        self.idle_timeout = opts.idle_timeout or 1e9
        limit = str(opts.max_connections)
        self.values = {"FCGI_MAX_CONNS": limit, "FCGI_MAX_REQS": limit, "FCGI_MPXS_CONNS": "0"}
        self.tcp = listener.family != getattr(socket, "AF_UNIX", None)
        if self.tcp and self.inline and hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Linux: accept() only once the client's first bytes are there (FastCGI clients speak
            # first), so an inline worker reads and runs the request of the connection it just
            # took, instead of holding it while a sibling is idle (and a silent connection never
            # takes a worker's turn). The option is the shared socket's: every worker sets the same.
            try:
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
            except OSError:
                pass
        # Accepted connections as the C socket type, from the listener's accept4() as it is: the
        # socket module's accept() adds a Python object, two enum conversions and a blocking mode
        # check per connection (with --fresh connections, ~8 % of the worker's CPU).
        self.raw_accept = getattr(listener, "_accept", None)
        self.conn_kind = (int(listener.family), int(listener.type), listener.proto)
        # TCP_NODELAY per accepted connection until one shows it inherited from the listener (Linux).
        self.set_nodelay = self.tcp
        if self.tcp:
            try:
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.nodelay_checked = False  # (only looked at while set_nodelay: TCP)
        self.sel = Poller()
        self.conns = {}  # fd -> Conn
        self.accepting = False
        self.busy = 0
        self.running = {}  # Conn -> its request, while the app has it
        self.returned = collections.deque()  # connections whose request ended on an app thread
        self.pending = collections.deque()  # inline: requests to run after this event
        self.lock = threading.Lock()  # access, returned, counters the watchdog reads
        self.access_log = True  # standalone mode has nobody to report to: no entries
        self.access = collections.deque(maxlen=ACCESS_LIMIT)
        self.access_dropped = 0
        # Set by the supervisor: called (no lock held) by the thread that ends a request when
        # REPORT_BATCH entries wait, so that the service takes them in small, even batches (not
        # 100 ms of them at once) and none is dropped. Sent by that thread itself: handing the
        # batch to the watchdog thread cost a wake-up and two GIL hand-offs per batch, and the
        # loop stalled whenever the watchdog, holding the GIL, waited for a core.
        self.report_now = None
        self.served = 0
        self.changed = True
        self.draining = False
        self.drain_deadline = None
        self.loop_thread = threading.get_ident()
        self.complaints = {}  # peer -> time of its last log line (rate limit)
        # Handing kept connections to a live worker at drain (handoff.py): what siblings gave us,
        # our own Port, where to hand ours (the service's CORRAL_HANDOFF), and the drain's counts.
        self.adopted = collections.deque()
        self.port = None
        self.handoff_target = None
        self.sender = None
        self.drain_closed = 0
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, None)

    # -- accepting

    def accept_on(self, on):
        if on == self.accepting or (on and (self.draining or self.listener is None)):
            return
        self.accepting = on
        if on:
            self.sel.register(self.listener, self.listener)
        else:
            self.sel.unregister(self.listener)

    def want_accept(self):
        self.accept_on(len(self.conns) < self.opts.max_connections and
                       (self.inline or self.busy < self.server.threads))

    def accept(self):
        listener, conns, register = self.listener, self.conns, self.sel.register
        raw_accept, kind = self.raw_accept, self.conn_kind
        for _ in range(ACCEPT_BATCH_INLINE if self.inline else ACCEPT_BATCH):
            if len(conns) >= self.opts.max_connections:
                break
            try:
                if raw_accept is not None:
                    fd, _ = raw_accept()
                    try:
                        sock = _socket.socket(*kind, fd)
                    except OSError:
                        socket.close(fd)
                        raise
                else:
                    sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # EMFILE, ECONNABORTED: try again at the next event
                log("accept failed: %s" % exc)
                break
            sock.setblocking(False)
            if self.set_nodelay:
                if not self.nodelay_checked:
                    self.check_nodelay(sock)
                if self.set_nodelay:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(self, sock)
            conns[conn.fd] = conn
            register(sock, conn)
            conn.watched = True
            if self.inline:
                # Its request is most likely there already: take it now, before another accept.
                self.on_readable(conn)
        self.changed = True
        self.want_accept()

    def check_nodelay(self, sock):
        """Once, on the first TCP connection: did it inherit TCP_NODELAY from the listener (Linux
        copies it)? Then no setsockopt per connection from now on."""
        self.nodelay_checked = True
        try:
            self.set_nodelay = not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        except OSError:
            pass

    # -- connections

    def on_readable(self, conn):
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if conn.lingering:
            if not data:
                self.close(conn)
            return
        if not data:
            conn.input_closed()
            self.close(conn)
            return
        try:
            conn.take(data)
        except ProtocolError as exc:
            self.bad_peer(conn, exc)
            conn.input_closed()
            self.close(conn)
            return
        if conn.close_now and not conn.running:
            self.linger(conn)

    def bad_peer(self, conn, exc):
        """One stderr line per peer per minute at most: a scanner must not flood the log."""
        try:
            peer = conn.sock.getpeername()
            peer = peer[0] if isinstance(peer, tuple) else (peer or "unix")
        except OSError:
            peer = "?"
        now = monotonic()
        if len(self.complaints) > 1000:
            self.complaints.clear()
        if now - self.complaints.get(peer, -1e9) >= 60:
            self.complaints[peer] = now
            log("closing a FastCGI connection from %s: %s" % (peer, exc))

    def close(self, conn):
        if self.conns.pop(conn.fd, None) is None:
            return
        if self.draining:
            self.drain_closed += 1
        if conn.watched:
            conn.watched = False
            self.sel.unregister(conn.sock)
        with conn.wlock:
            conn.broken = True
            conn.sock.close()
        self.changed = True
        self.want_accept()

    def dispatch(self, conn, req):
        """req's params are complete: the app gets it (called while parsing conn's records)."""
        conn.running = True
        conn.deadline = 1e18
        with self.lock:
            self.running[conn] = req
            self.busy += 1
            self.changed = True
        if self.inline:
            self.pending.append(req)
            return
        conn.watched = False
        self.sel.unregister(conn.sock)  # its app thread reads it now
        self.want_accept()
        self.server.queue.put(req)

    def finished(self, conn, req):
        """req ended (any thread): account it; hand its connection back to the loop."""
        entry = None
        if self.access_log:
            # A tuple, sent as a JSON array (PROTOCOL.md): no dict per request and no key names
            # in the REPORT; its duration in whole microseconds (an int: no float formatting).
            env = req.environ or {}
            entry = (env.get("REQUEST_METHOD", "-"), env.get("REQUEST_URI") or
                     env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "-"), req.status, req.out,
                     int((monotonic() - conn.began) * 1e6 + 0.5))
            if req.aborted:
                entry += ("aborted",)
        batch = False
        with self.lock:
            self.served += 1
            self.changed = True
            if entry is not None:
                access = self.access
                if len(access) == ACCESS_LIMIT:
                    self.access_dropped += 1  # the deque drops the oldest
                access.append(entry)
                batch = len(access) == REPORT_BATCH
            if self.running.pop(conn, None) is not None:
                self.busy -= 1
                self.returned.append(conn)
        if threading.get_ident() != self.loop_thread:
            self.wake()
        if batch and self.report_now is not None:
            self.report_now()

    def settle(self, conn):
        """conn's request ended: keep the connection for the next one, or close it."""
        conn.running = False
        if conn.broken or conn.fd not in self.conns:
            self.close(conn)
        elif self.draining and not conn.close_now and handoff.hand_off(self, conn):
            pass  # a live worker has it now (its request ended: between two requests)
        elif conn.close_now or self.draining:
            self.linger(conn)
        else:
            conn.deadline = monotonic() + self.idle_timeout
            if not conn.watched:
                self.watch(conn)
            if not self.accepting:  # a connection ending its request can only let us accept more
                self.want_accept()

    def watch(self, conn):
        if not conn.watched:
            conn.watched = True
            self.sel.register(conn.sock, conn)

    def linger(self, conn):
        """Close after a response while the peer may still be sending (a body nobody read, the
        rest of an oversized request): closing a socket with unread input resets it, and the
        peer may lose the response. So shut our side and read until the peer's FIN, LINGER
        seconds at most, as nginx's lingering_close does."""
        if conn.lingering:
            return
        conn.lingering = True
        conn.deadline = monotonic() + LINGER
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        self.watch(conn)

    def sweep(self, now):
        """Close connections past their params or idle deadline (draining: hand off idle ones first)."""
        if self.sender is not None:
            handoff.hand_off_idle(self, now + DRAIN_IDLE)
        for conn in [c for c in self.conns.values() if not c.running and c.deadline <= now]:
            if conn.req is not None and not conn.lingering:
                self.bad_peer(conn, "its params did not complete within %gs" % self.opts.params_timeout)
            self.close(conn)

    # -- the loop

    def wake(self):
        try:
            self.wake_w.send(b"x")
        except OSError:  # full: a wake-up is pending anyway
            pass

    def run(self):
        """Until drained. Returns once every connection is closed."""
        poll, returned, pending = self.sel.poll, self.returned, self.pending
        serve_request = self.server.serve_request
        next_sweep = monotonic() + 1
        next_report = 0.0
        self.want_accept()
        while True:
            for conn in poll(0.25 if self.draining else 1.0):
                if conn is None:
                    try:
                        self.wake_r.recv(4096)
                    except OSError:
                        pass
                    if self.adopted:
                        handoff.take_adopted(self)
                elif conn is self.listener:
                    self.accept()
                else:
                    self.on_readable(conn)
                while pending:
                    serve_request(pending.popleft())
                while returned:
                    self.settle(returned.popleft())
            while returned:  # in case a wake-up was lost
                self.settle(returned.popleft())
            if self.draining_asked and not self.draining:
                self.start_drain()
            now = monotonic()
            if now >= next_report and self.report_now is not None:
                next_report = now + REPORT_EVERY
                self.report_now()
            if now >= next_sweep:
                next_sweep = now + (0.25 if self.draining else 1)
                self.sweep(now)
            if self.draining and not self.conns:
                return

    draining_asked = False

    def ask_drain(self):
        """Any thread or a signal handler: stop accepting and finish (the loop does it, once
        the request it may be running inline has ended; the grace counts from now)."""
        if not self.draining_asked:
            self.draining_asked = True
            self.drain_deadline = monotonic() + self.server.grace
        self.wake()

    def start_drain(self):
        if self.port is not None:
            self.port.close()  # siblings hand us nothing more
        handoff.take_adopted(self)
        self.draining = True
        self.accept_on(False)
        if self.listener is not None:
            self.listener.close()  # this process's copy only: other workers keep accepting
        if self.handoff_target and handoff.HAVE_FDS:
            self.sender = handoff.Sender(self.handoff_target)
            handoff.hand_off_idle(self, monotonic() + DRAIN_IDLE)
        # Idle kept connections are not closed here: the web server may already have sent its next
        # request on one (unread yet: closing would reset it, and nginx would log an upstream error
        # and retry). Each serves what arrives and closes right after that response (settle ->
        # linger); one that stays quiet for DRAIN_IDLE is closed by the sweep, from the tail of
        # nginx's most-recently-used connection cache.
        quiet = monotonic() + DRAIN_IDLE
        for conn in [c for c in self.conns.values() if c.req is None and not c.running]:
            conn.deadline = min(conn.deadline, quiet)
