"""corral worker, direct mode: the service's side of the event loop (loop.py).

The service bound the listening socket and passed it as --direct-fd; the worker listens on it
(at boot) and accepts on it. Its stdin/stdout are the control channel: READY, PING -> PONG
(answered by a thread, so a running request does not delay it), REPORTs (busy, connections,
served, listen queue, the running requests, access entries) at most every TICK, stdin EOF =
drain. A watchdog thread ends a request over --request-timeout (504, exit 5) and the drain after
--eof-grace. Standalone --listen mode runs the same loop, without a control channel.
See src/fcgi/PROTOCOL.md, "Direct mode".
"""
import json
import os
import platform
import select
import signal
import socket
import struct
import threading
import time

from .codec import (APP_FAILED, CORRAL_PING, CORRAL_PONG, CORRAL_READY, END_REQUEST, HEADER,
                    MAX_CONTENT, PROTOCOL_VERSION, REQUEST_COMPLETE, STDOUT, TERMINATOR, frame_stdout,
                    pack_header)
from .common import EXIT_BOOT, EXIT_OK, UsageError, exit_soon, flush_std, format_exc, log, log_slow, stuck_at
from . import handoff
from .loop import Loop

CORRAL_REPORT = 0xC5
CORRAL_HANDOFF = 0xC6  # service -> worker before stdin EOF: the handoff socket of a live worker
EXIT_TIMEOUT = 5
TICK = 0.1  # the watchdog's period: REPORTs at most this often, timeouts this precise
PENDING_LIMIT = 1 << 20  # bytes of control records waiting for the service; more REPORTs are dropped
TCP_INFO_UNACKED = struct.Struct("=I")  # struct tcp_info: 8 one-byte fields, rto, ato, snd_mss, rcv_mss, unacked
monotonic = time.monotonic


class Supervisor:
    """What the service sees of a loop: the control channel, REPORTs and the watchdog."""

    def __init__(self, loop, wfd):
        self.loop = loop
        self.control = wfd  # None: standalone (or the service is gone)
        self.wlock = threading.Lock()
        self.last_queue = None
        # Records the service has not taken yet. A service that stops reading must not stop this
        # worker's watchdog (request timeouts, the drain's deadline): the control channel is
        # non-blocking, what it refuses waits here, and REPORTs beyond PENDING_LIMIT are dropped
        # (their access entries counted as dropped in the next one that goes).
        self.pending = bytearray()
        self.reported = 0.0  # when report() last ran, from any thread
        self.slow_logged = set()  # running requests whose stack --stack-after logged already
        if wfd is not None:  # standalone: nobody to report to
            loop.report_now = self.report_safely
            try:
                os.set_blocking(wfd, False)
            except (OSError, AttributeError):  # a platform without it: writes stay blocking
                pass

    def report(self, final=False):
        """A REPORT if something changed since the last one (final: in any case). The listen
        queue counts as a change: while every request runs long, it is what tells the service
        that more workers are needed."""
        loop = self.loop
        self.reported = monotonic()
        queue = self.queue_depth()
        with loop.lock:
            if not (loop.changed or final or queue != self.last_queue):
                return
            loop.changed = False
            self.last_queue = queue
            access = list(loop.access)
            loop.access.clear()
            dropped, loop.access_dropped = loop.access_dropped, 0
            now = monotonic()
            current = [{"method": (r.environ or {}).get("REQUEST_METHOD", "-"),
                        "path": (r.environ or {}).get("REQUEST_URI", "-"),
                        "age_ms": round((now - c.began) * 1000, 1)} for c, r in loop.running.items()]
            body = {"busy": loop.busy, "conns": len(loop.conns), "served": loop.served,
                    "queue": queue, "current": current, "access": access}
        if dropped:
            body["access_dropped"] = dropped
        self.send_report(body, access)

    def report_safely(self):
        """report() for the loop's and the app threads: a bug of ours costs a log line, never
        the loop or the request that ended."""
        try:
            self.report()
        except Exception as exc:
            log("report error: %s" % format_exc(exc))

    def send_report(self, body, access):
        """One REPORT record, or several when the access entries do not fit in one (a record
        holds 65535 bytes): each a whole object with the same counters and a share of them."""
        body["access"] = access
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        if len(payload) <= MAX_CONTENT:
            if not self.send_control(CORRAL_REPORT, payload, droppable=True):
                with self.loop.lock:  # the service was not reading: say so in a later REPORT
                    self.loop.access_dropped += len(access) + body.get("access_dropped", 0)
        elif len(access) > 1:
            half = len(access) // 2
            self.send_report(body, access[:half])
            body.pop("access_dropped", None)
            self.send_report(body, access[half:])
        else:  # one entry too large (a huge path): cut its path
            entry = access[0]
            access[0] = entry[:1] + (entry[1][:2000],) + entry[2:]
            self.send_control(CORRAL_REPORT, json.dumps(body, separators=(",", ":")).encode("utf-8")[:MAX_CONTENT])

    def queue_depth(self):
        """Connections waiting in the listen queue (Linux TCP only), else None."""
        loop = self.loop
        if not loop.tcp or loop.listener is None or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = loop.listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            return TCP_INFO_UNACKED.unpack_from(info, 24)[0]
        except (OSError, struct.error):
            return None

    def send_control(self, rtype, payload, droppable=False):
        """Queue a record for the service and write what it takes now, never waiting for it.
        False if a droppable record (a REPORT) was dropped: PENDING_LIMIT bytes wait already."""
        record = pack_header(1, rtype, 0, len(payload), 0) + payload
        with self.wlock:  # checked under the lock: another thread may have found it gone
            if self.control is None:
                return True
            if droppable and self.pending and len(self.pending) + len(record) > PENDING_LIMIT:
                return False
            self.pending += record
            self._flush_locked()
            return True

    def flush(self):
        with self.wlock:
            self._flush_locked()

    def _flush_locked(self):
        pending = self.pending
        while pending and self.control is not None:
            try:
                done = os.write(self.control, pending)
            except BlockingIOError:
                return  # the service is not reading now: the rest waits
            except OSError:
                self.control = None
                pending.clear()
                self.loop.ask_drain()
                return
            del pending[:done]

    def drain_pending(self, timeout=1.0):
        """Before exiting: wait up to timeout seconds for the service to take what waits (the
        final REPORT with the last access entries)."""
        deadline = monotonic() + timeout
        while True:
            self.flush()
            left = deadline - monotonic()
            if not self.pending or self.control is None or left <= 0:
                return
            try:
                select.select([], [self.control], [], left)
            except (OSError, ValueError):
                return

    def watchdog(self):
        """Every TICK: end a request over --request-timeout; the drain's grace; a REPORT if the
        loop has not sent one lately (while it turns, it sends them itself, and a batch of
        REPORT_BATCH access entries goes with the request that completes it: loop.report_now).
        So under load this thread takes the GIL ten times a second, briefly."""
        next_tick = monotonic() + TICK
        while True:
            time.sleep(max(0.0, next_tick - monotonic()))
            next_tick = monotonic() + TICK
            try:
                if self.pending:
                    self.flush()
                self.tick()
            except Exception as exc:  # a bug of ours: keep watching
                log("watchdog error: %s" % format_exc(exc))

    def tick(self):
        loop = self.loop
        limit = loop.opts.request_timeout
        now = monotonic()
        if limit:
            with loop.lock:
                late = [(c, r) for c, r in loop.running.items() if now - c.began > limit]
            if late:
                self.time_out(*late[0])
        if loop.opts.stack_after:
            with loop.lock:
                running = [(c.began, r) for c, r in loop.running.items()]
            log_slow(running, self.slow_logged, now, loop.opts.stack_after)
        if loop.drain_deadline is not None and now >= loop.drain_deadline:
            log("%d request(s) still running %gs after the stop: exiting" % (loop.busy, loop.server.grace))
            self.report(final=True)
            self.drain_pending()
            flush_std()
            os._exit(EXIT_OK)
        if now - self.reported >= 1.5 * TICK:  # else the loop, turning, reports itself
            self.report()

    def time_out(self, conn, req):
        """A request ran past --request-timeout: a 504 if it has sent nothing, else the connection
        is closed; then the worker exits (its app thread may be stuck for good)."""
        loop = self.loop
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
                    frame_stdout(out, req.id, head + body)
                    out.append(TERMINATOR.pack(1, STDOUT, req.id, 0, 0, 1, END_REQUEST, req.id, 8, 0,
                                               APP_FAILED, REQUEST_COMPLETE))
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
        what = "%s %s ran longer than --request-timeout %gs" % (
            env.get("REQUEST_METHOD"), env.get("REQUEST_URI"), loop.opts.request_timeout)
        stack = stuck_at(req.thread, what)
        log("request %s: %s; exiting (code %d)%s"
            % (what, "answered 504" if answered else "connection closed", EXIT_TIMEOUT,
               ". Where it was:\n" + stack if stack else ""))
        with loop.lock:
            loop.access.append((env.get("REQUEST_METHOD", "-"), env.get("REQUEST_URI", "-"),
                                504 if answered else req.status, req.out,
                                int((monotonic() - conn.began) * 1e6 + 0.5), "CORRAL_REQUEST_TIMEOUT"))
            loop.running.pop(conn, None)
        self.report(final=True)
        self.drain_pending()
        flush_std()
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
                version, rtype, _, clen, plen = HEADER.unpack_from(data, pos)
                end = pos + 8 + clen
                if end + plen > len(data):
                    break
                if version != 1:
                    log("malformed control record stream from the service: stopping")
                    self.loop.ask_drain()
                    return
                if rtype == CORRAL_PING:
                    self.send_control(CORRAL_PONG, data[pos + 8:end])
                elif rtype == CORRAL_HANDOFF:
                    self.loop.handoff_target = data[pos + 8:end].decode("utf-8", "replace")
                else:
                    log("unexpected record type %d on the control channel: ignored" % rtype)
                pos = end + plen
            rest = data[pos:]
        self.loop.ask_drain()


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
            listener, shown = open_listener(opts.listen)
            listener.setblocking(False)
        except (UsageError, OSError) as exc:
            log("cannot listen on %r: %s" % (opts.listen, exc))
            return EXIT_BOOT
    else:
        listener, shown = opts.listener, sockname(opts.listener)
    loop = Loop(server, opts, listener)
    loop.access_log = not standalone
    sup = Supervisor(loop, wfd)
    if not loop.inline:
        server.start_threads()
    threading.Thread(target=sup.watchdog, name="corral-watchdog", daemon=True).start()
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
        if opts.handoff_dir and handoff.HAVE_FDS:
            try:
                loop.port = handoff.Port(loop, opts.handoff_dir)
            except OSError as exc:  # serve anyway: a drain closes kept connections as before
                log("cannot listen for connection handoffs in %s: %s" % (opts.handoff_dir, exc))
        ready = {"pid": os.getpid(), "python": platform.python_version(), "app": opts.app,
                 "threads": opts.threads, "window": opts.window, "protocol": PROTOCOL_VERSION,
                 "inline": loop.inline, "malloc_tuned": opts.malloc_tuned, "direct": True,
                 "listen": shown}
        if loop.port is not None:
            ready["handoff"] = loop.port.path
        sup.send_control(CORRAL_READY, json.dumps(ready).encode("utf-8"))
        sup.report(final=True)
        threading.Thread(target=sup.control_reader, args=(rfd,), name="corral-control",
                         daemon=True).start()
    loop.run()
    if not standalone:  # one line per drain: what became of the kept connections
        handed = loop.sender.handed if loop.sender is not None else 0
        log("drained: %d kept connection(s) handed to a live worker, %d closed" % (handed, loop.drain_closed))
        if loop.sender is not None:
            loop.sender.close()
    if standalone:
        log("stopping")
        if not loop.tcp:
            try:
                os.unlink(shown)
            except OSError:
                pass
    sup.report(final=True)
    sup.drain_pending()
    flush_std()
    return exit_soon(server, EXIT_OK)
