"""corral worker's event loop: it accepts FastCGI connections itself (direct and standalone mode).

One selectors loop per process holds the listening socket and every connection; no thread per
connection. A connection's records are parsed as they arrive; once a request's params are complete
the request runs (inline on this thread with --threads 1, else on an app thread) and does its own
blocking I/O on that connection with timeouts, one request at a time per connection
(FCGI_MPXS_CONNS=0). Direct mode (--direct-fd) keeps stdin/stdout as the control channel to the
service: READY, PING/PONG (a control thread), REPORTs, stdin EOF = drain. Standalone mode (--listen)
stops on SIGTERM/SIGINT. See src/fcgi/PROTOCOL.md, "Direct mode".
"""
import collections
import json
import os
import platform
import select
import selectors
import signal
import socket
import struct
import threading
import time

import corral_worker as cw
from corral_worker import END_RECORD, END_REQUEST, STDOUT, TERMINATOR, log, pack_header

CORRAL_REPORT = 0xC5
CANT_MPX_CONN = 1
EXIT_TIMEOUT = 5
ACCEPT_BATCH = 64  # connections per readiness event: then serve the ones we have
TICK = 0.1  # the watchdog's period: REPORTs at most this often, timeouts this precise
ACCESS_LIMIT = 1000
READ_SIZE = 65536
LINGER = 2.0  # seconds a closing connection may still deliver what its peer sent (see linger)
POLLIN, POLLOUT = select.POLLIN, select.POLLOUT
TCP_INFO_UNACKED = struct.Struct("=I")  # struct tcp_info: 8 one-byte fields, rto, ato, snd_mss, rcv_mss, unacked
monotonic = time.monotonic


class Conn(cw.Channel):
    """One FastCGI connection: plain FastCGI, one request at a time, owned by the loop between
    requests and by its request (which does blocking reads and writes) while one runs."""

    def __init__(self, loop, sock):
        cw.Channel.__init__(self, loop.server)
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
        self.max_params = loop.opts.max_params or cw.sys.maxsize
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
            self.poll_for(POLLOUT)
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                pass

    def _write_parts(self, parts):
        if sum(map(len, parts)) < cw.WRITEV_FROM:
            self._write_all(b"".join(parts))
            return
        for part in parts:  # large: no joined copy (each part is up to a record's content)
            self._write_all(part)

    def poll_for(self, events):
        timeout = self.loop.opts.body_timeout
        poller = select.poll()
        poller.register(self.fd, events)
        if not poller.poll(timeout * 1000 if timeout else None):
            raise TimeoutError("no progress on the connection for %gs" % timeout)

    # -- input

    def take(self, data):
        """Dispatch every whole record of what arrived (raises ProtocolError on bad framing)."""
        rest = self.rest
        if rest:
            data = rest + data
        used = self.feed(data)
        self.rest = data[used:] if used < len(data) else b""

    def wait(self):
        """A request waits for body bytes (called with lock held, as Condition.wait): read the
        connection itself. Silence past the body timeout, EOF or bad framing abort the request
        (its reads raise ClientDisconnected) and close the connection after it."""
        self.lock.release()
        try:
            try:
                self.poll_for(POLLIN)
                data = self.sock.recv(READ_SIZE)
                if not data:
                    raise EOFError("the client closed the connection")
                self.take(data)
                return
            except (OSError, EOFError, cw.ProtocolError) as exc:
                self.loop.bad_peer(self, exc)
            self.close_now = True
            for req in list(self.requests.values()):
                self.abort(req)
        finally:
            self.lock.acquire()

    def begin(self, rid, content):
        req = self.req
        if req is not None and rid != req.id and rid:
            self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, CANT_MPX_CONN))
            return
        cw.Channel.begin(self, rid, content)
        req = self.requests.get(rid)
        if req is not None and self.req is None:
            self.req, self.body = req, 0
            self.began = now = monotonic()
            self.deadline = now + self.loop.params_timeout

    def stdin(self, req, content):
        if not cw.Channel.stdin(self, req, content):
            return False
        self.body += len(content)
        limit = self.loop.opts.max_body_size
        if limit and self.body > limit:
            log("a request body grew past --max-body-size %d: aborted, connection closed" % limit)
            self.close_now = True
            self.abort(req)
        return True

    def params(self, req, content):
        cw.Channel.params(self, req, content)
        limit = self.loop.opts.max_body_size
        if limit and req.queued:  # complete: check the length before any body byte counts
            length = req.environ.get("CONTENT_LENGTH", "")
            if length.isdigit() and int(length) > limit:
                self.reject(req, "CONTENT_LENGTH %s over --max-body-size" % length,
                            "413 Payload Too Large")

    def reject(self, req, reason, status="400 Bad Request"):
        if status[:3] == "431":
            self.close_now = True
        cw.Channel.reject(self, req, reason, status)

    def close_after_end(self):
        self.close_now = True

    def flush_runnable(self):
        runnable, self.runnable = self.runnable, []
        for req in runnable:
            if not req.ended:  # else answered already (413)
                self.loop.dispatch(self, req)

    def finished(self, req):
        cw.Channel.finished(self, req)
        if not req.keep_conn:
            self.close_now = True
        self.req = None
        self.loop.finished(self, req)


class Loop:
    """The listener, the connections, the requests running and what the service is told."""

    def __init__(self, server, opts, listener, control):
        self.server = server
        self.opts = opts
        self.listener = listener
        self.control = control  # the control channel's write fd (direct mode), else None
        self.inline = server.threads == 1
        self.params_timeout = opts.params_timeout or 1e9
        self.idle_timeout = opts.idle_timeout or 1e9
        limit = str(opts.max_connections)
        self.values = {"FCGI_MAX_CONNS": limit, "FCGI_MAX_REQS": limit, "FCGI_MPXS_CONNS": "0"}
        self.tcp = listener.family != getattr(socket, "AF_UNIX", None)
        self.sel = selectors.DefaultSelector()
        self.conns = {}  # fd -> Conn
        self.accepting = False
        self.busy = 0
        self.running = {}  # Conn -> its request, while the app has it
        self.returned = collections.deque()  # connections whose request ended on an app thread
        self.pending = collections.deque()  # inline: requests to run after this event
        self.lock = threading.Lock()  # access, returned, counters the watchdog reads
        self.access = []
        self.access_dropped = 0
        self.served = 0
        self.changed = True
        self.draining = False
        self.drain_deadline = None
        self.wlock = threading.Lock()  # control channel writes
        self.loop_thread = threading.get_ident()
        self.complaints = {}  # peer -> time of its last log line (rate limit)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)

    # -- accepting

    def accept_on(self, on):
        if on == self.accepting or (on and (self.draining or self.listener is None)):
            return
        self.accepting = on
        if on:
            self.sel.register(self.listener, selectors.EVENT_READ, self.listener)
        else:
            self.sel.unregister(self.listener)

    def want_accept(self):
        self.accept_on(len(self.conns) < self.opts.max_connections and
                       (self.inline or self.busy < self.server.threads))

    def accept(self):
        listener, conns, register = self.listener, self.conns, self.sel.register
        for _ in range(ACCEPT_BATCH):
            if len(conns) >= self.opts.max_connections:
                break
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # EMFILE, ECONNABORTED: try again at the next event
                log("accept failed: %s" % exc)
                break
            sock.setblocking(False)
            if self.tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(self, sock)
            conns[conn.fd] = conn
            register(sock, selectors.EVENT_READ, conn)
            conn.watched = True
        self.changed = True
        self.want_accept()

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
        except cw.ProtocolError as exc:
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
        now = monotonic()
        env = req.environ or {}
        entry = {"method": env.get("REQUEST_METHOD", "-"), "path": env.get("REQUEST_URI") or
                 env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "-"), "status": req.status,
                 "bytes": req.out, "ms": round((now - conn.began) * 1000, 3)}
        if "REMOTE_ADDR" in env:
            entry["remote"] = env["REMOTE_ADDR"]
        if req.aborted:
            entry["error"] = "aborted"
        with self.lock:
            self.served += 1
            self.changed = True
            self.access.append(entry)
            if len(self.access) > ACCESS_LIMIT:
                del self.access[0]
                self.access_dropped += 1
            if self.running.pop(conn, None) is not None:
                self.busy -= 1
                self.returned.append(conn)
        if threading.get_ident() != self.loop_thread:
            self.wake()

    def settle(self, conn):
        """conn's request ended: keep the connection for the next one, or close it."""
        conn.running = False
        if conn.broken or conn.fd not in self.conns:
            self.close(conn)
        elif conn.close_now or self.draining:
            self.linger(conn)
        else:
            conn.deadline = monotonic() + self.idle_timeout
            self.watch(conn)
            self.want_accept()

    def watch(self, conn):
        if not conn.watched:
            conn.watched = True
            self.sel.register(conn.sock, selectors.EVENT_READ, conn)

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
        """Close connections past their params or idle deadline."""
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
        select_, returned, pending = self.sel.select, self.returned, self.pending
        serve_request = self.server.serve_request
        next_sweep = monotonic() + 1
        self.want_accept()
        while True:
            for key, _ in select_(1.0):
                conn = key.data
                if conn is None:
                    try:
                        self.wake_r.recv(4096)
                    except OSError:
                        pass
                elif conn is self.listener:
                    self.accept()
                else:
                    self.on_readable(conn)
                while pending:
                    serve_request(pending.popleft())
                while returned:
                    self.settle(returned.popleft())
            if self.draining_asked and not self.draining:
                self.start_drain()
            now = monotonic()
            if now >= next_sweep:
                next_sweep = now + 1
                self.sweep(now)
            if self.draining and not self.conns:
                return

    draining_asked = False

    def ask_drain(self):
        """Any thread or a signal handler: stop accepting and finish (the loop does it)."""
        self.draining_asked = True
        self.wake()

    def start_drain(self):
        self.draining = True
        self.drain_deadline = monotonic() + self.server.grace
        self.accept_on(False)
        if self.listener is not None:
            self.listener.close()  # this process's copy only: other workers keep accepting
        for conn in [c for c in self.conns.values() if c.req is None and not c.running]:
            self.close(conn)

    # -- the service: REPORTs, the watchdog, the control channel

    def report(self, final=False):
        with self.lock:
            if not (self.changed or final):
                return
            self.changed = False
            access, self.access = self.access, []
            dropped, self.access_dropped = self.access_dropped, 0
            now = monotonic()
            current = [{"method": (r.environ or {}).get("REQUEST_METHOD", "-"),
                        "path": (r.environ or {}).get("REQUEST_URI", "-"),
                        "age_ms": round((now - c.began) * 1000, 1)} for c, r in self.running.items()]
            body = {"busy": self.busy, "conns": len(self.conns), "served": self.served,
                    "queue": self.queue_depth(), "current": current, "access": access}
        if dropped:
            body["access_dropped"] = dropped
        self.send_control(CORRAL_REPORT, json.dumps(body, separators=(",", ":")).encode("utf-8"))

    def queue_depth(self):
        """Connections waiting in the listen queue (Linux TCP only), else None."""
        if not self.tcp or self.listener is None or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = self.listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            return TCP_INFO_UNACKED.unpack_from(info, 24)[0]
        except (OSError, struct.error):
            return None

    def send_control(self, rtype, payload):
        if self.control is None:
            return
        with self.wlock:
            try:
                cw.write_all(self.control, pack_header(1, rtype, 0, len(payload), 0) + payload)
            except OSError:
                self.control = None
                self.ask_drain()

    def watchdog(self):
        """Every TICK: REPORT what changed; end a request over --request-timeout; the drain grace."""
        limit = self.opts.request_timeout
        while True:
            time.sleep(TICK)
            now = monotonic()
            if limit:
                with self.lock:
                    late = [(c, r) for c, r in self.running.items() if now - c.began > limit]
                if late:
                    self.time_out(late[0][0], late[0][1])
            if self.drain_deadline is not None and now >= self.drain_deadline:
                log("%d request(s) still running %gs after the stop: exiting" % (self.busy, self.server.grace))
                self.report(final=True)
                cw.flush_std()
                os._exit(cw.EXIT_OK)
            self.report()

    def time_out(self, conn, req):
        """A request ran past --request-timeout: a 504 if it has sent nothing, else the connection
        is closed; then the worker exits (its app thread may be stuck for good)."""
        body = (b"<!doctype html><html><head><title>504 Gateway Timeout</title></head><body>"
                b"<h1>504 Gateway Timeout</h1><p><code>CORRAL_REQUEST_TIMEOUT</code>: The application "
                b"took too long to answer.</p></body></html>\n")
        head = ("Status: 504 Gateway Timeout\r\nX-Corral-Error: CORRAL_REQUEST_TIMEOUT\r\n"
                "Content-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(body)).encode("latin-1")
        answered = False
        if conn.wlock.acquire(timeout=1):
            try:
                if not req.out and not conn.broken:
                    out = []
                    cw.frame_stdout(out, req.id, head + body)
                    out.append(TERMINATOR.pack(1, STDOUT, req.id, 0, 0, 1, END_REQUEST, req.id, 8, 0,
                                               cw.APP_FAILED, cw.REQUEST_COMPLETE))
                    req.out = len(head) + len(body)
                    try:
                        conn.sock.settimeout(1.0)
                        conn.sock.sendall(b"".join(out))
                        answered = True
                    except OSError:
                        pass
                conn.broken = True
                conn.sock.close()
            finally:
                conn.wlock.release()
        env = req.environ or {}
        log("request %s %s ran longer than --request-timeout %gs: %s; exiting (code %d)"
            % (env.get("REQUEST_METHOD"), env.get("REQUEST_URI"), self.opts.request_timeout,
               "answered 504" if answered else "connection closed", EXIT_TIMEOUT))
        with self.lock:
            self.access.append({"method": env.get("REQUEST_METHOD", "-"), "path": env.get("REQUEST_URI", "-"),
                                "status": 504 if answered else req.status, "bytes": req.out,
                                "ms": round((monotonic() - conn.began) * 1000, 3),
                                "error": "CORRAL_REQUEST_TIMEOUT"})
            self.running.pop(conn, None)
        self.report(final=True)
        cw.flush_std()
        os._exit(EXIT_TIMEOUT)

    def control_reader(self, rfd):
        """Direct mode: the service's records on stdin. PING -> PONG (here, so that a running
        request does not delay it); EOF -> drain."""
        rest = b""
        while True:
            try:
                chunk = os.read(rfd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            data = rest + chunk
            pos = 0
            while len(data) - pos >= 8:
                version, rtype, _, clen, plen = cw.HEADER.unpack_from(data, pos)
                end = pos + 8 + clen
                if end + plen > len(data):
                    break
                if version != 1:
                    log("malformed control record stream from the service: stopping")
                    self.ask_drain()
                    return
                if rtype == cw.CORRAL_PING:
                    self.send_control(cw.CORRAL_PONG, data[pos + 8:end])
                else:
                    log("unexpected record type %d on the control channel: ignored" % rtype)
                pos = end + plen
            rest = data[pos:]
        self.ask_drain()


def sockname(sock):
    name = sock.getsockname()
    if isinstance(name, tuple):
        return "[%s]:%d" % name[:2] if sock.family == socket.AF_INET6 else "%s:%d" % name[:2]
    return name if isinstance(name, str) else name.decode("utf-8", "replace")


def serve(server, opts, rfd, wfd):
    """Direct mode (opts.listener from --direct-fd, control on rfd/wfd) or standalone --listen."""
    standalone = opts.listener is None
    if standalone:
        try:
            listener, shown = cw.open_listener(opts.listen)
            listener.setblocking(False)
        except (cw.UsageError, OSError) as exc:
            log("cannot listen on %r: %s" % (opts.listen, exc))
            return cw.EXIT_BOOT
    else:
        listener, shown = opts.listener, sockname(opts.listener)
    loop = Loop(server, opts, listener, wfd)
    if not loop.inline:
        server.start_threads()
    threading.Thread(target=loop.watchdog, name="corral-watchdog", daemon=True).start()
    if standalone:
        def on_signal(signum, frame):
            for name in ("SIGINT", "SIGTERM"):
                signal.signal(getattr(signal, name), signal.SIG_DFL)  # a second one kills
            loop.ask_drain()
        for name in ("SIGINT", "SIGTERM"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), on_signal)
        log("listening on %s" % shown)
    else:
        ready = {"pid": os.getpid(), "python": platform.python_version(), "app": opts.app,
                 "threads": opts.threads, "window": opts.window, "protocol": cw.PROTOCOL_VERSION,
                 "inline": loop.inline, "malloc_tuned": opts.malloc_tuned, "direct": True,
                 "listen": shown}
        loop.send_control(cw.CORRAL_READY, json.dumps(ready).encode("utf-8"))
        loop.report(final=True)
        threading.Thread(target=loop.control_reader, args=(rfd,), name="corral-control",
                         daemon=True).start()
    loop.run()
    if standalone:
        log("stopping")
        if not loop.tcp:
            try:
                os.unlink(shown)
            except OSError:
                pass
    loop.report(final=True)
    cw.flush_std()
    return cw.exit_soon(server, cw.EXIT_OK)
