"""corral worker, stdio mode: the service's pipes (stdin/stdout) as the record stream.

PipeChannel reads records on one thread and hands requests to the app threads; with --threads 1
(where the pipe's hang-up can be watched: not on Windows) InlinePipeChannel runs each request on
the reader thread itself. FastCGI plus corral's extension records (READY, credit windows, PING);
stdin EOF stops the worker. See src/fcgi/PROTOCOL.md.
"""
import collections
import io
import json
import os
import platform
import select
import sys
import threading
import time

from .channel import HAVE_WRITEV, WRITEV_FROM, Channel, write_all, write_record, writev_all
from .codec import (CORRAL_PING, CORRAL_PONG, CORRAL_READY, CORRAL_WINDOW, PROTOCOL_VERSION,
                    UINT32, ProtocolError, pack_header)
from .common import EXIT_BOOT, EXIT_OK, ClientGone, exit_soon, flush_std, log, log_slow

READ_SIZE = 262144
PIPE_SIZE = 1 << 20


def grow_pipe(fd):
    """Room in the channel the worker writes to, so a large response does not wait on the reader.
    Linux pipes hold 64 KiB: ask for 1 MiB (the unprivileged maximum by default). The service's
    channels are not pipes on Linux but unix socketpairs (libuv makes a child's stdio that way),
    whose writer's send buffer bounds what is in flight (212,992 bytes by default): ask it for 1 MiB
    too, which Linux caps at net.core.wmem_max and then doubles for its bookkeeping. Other
    systems keep what they have."""
    if not sys.platform.startswith("linux"):
        return
    import fcntl
    import socket
    import stat
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_SIZE)
            finally:
                sock.close()
        else:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
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
        runnable, serve_request, catch_up = self.runnable, self.server.serve_request, self.catch_up
        try:
            while True:
                while runnable:
                    serve_request(runnable.popleft())
                    if runnable:  # given ahead (the service does so for fast apps): an ABORT
                        catch_up()  # that came for it while this one ran ends it unrun
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


def watch_slow(server, after):
    """Logs, once per request, where a request still running after `after` seconds is (the
    service's slowLogAfter, or a second before its requestTimeout ends the request by killing the
    worker, which would leave no trace of what the app was doing). Wakes a few times a second;
    dict reads under the GIL."""
    running = server.running
    logged = set()  # of the requests running now: said already
    while True:
        time.sleep(min(1.0, max(0.05, after / 4)))
        # The dict changes under us between rounds, not during this copy.
        log_slow([(req.began, req) for req in list(running)], logged, time.monotonic(), after)


def serve_stdio(server, opts, rfd, wfd):
    """READY, then serve the service's pipes until stdin EOF."""
    if opts.stack_after > 0:
        server.running = {}
        threading.Thread(target=watch_slow, args=(server, opts.stack_after), name="corral-slow",
                         daemon=True).start()
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
