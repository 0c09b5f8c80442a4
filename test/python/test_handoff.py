"""corral_wsgi.handoff: a draining worker's kept connections change hands without being closed.

Port and Sender over a real unix socket with a stand-in loop (what is taken, what is refused, and
that a bad handoff costs only itself); then two real event loops on one listener, as two workers
of a pool: the first drains and the client's kept connection goes on, served by the second.
"""
import collections
import contextlib
import io
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import unittest

import support
from corral_wsgi import handoff
from corral_wsgi.loop import Loop


class StandInLoop:
    """What a Port reads of its loop."""

    def __init__(self, listener, max_connections=100):
        self.listener = listener
        self.conns = {}
        self.adopted = collections.deque()
        self.opts = support.Opts(max_connections=max_connections)
        self.draining_asked = False
        self.wakes = 0

    def wake(self):
        self.wakes += 1


class StandInConn:
    def __init__(self, sock, rest=b""):
        self.sock = sock
        self.fd = sock.fileno()
        self.rest = rest


@unittest.skipUnless(handoff.HAVE_FDS, "no SCM_RIGHTS here")
class PortTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.listener, cleanup = support.unix_listener()
        self.addCleanup(cleanup)
        self.loop = StandInLoop(self.listener)
        self.err = io.StringIO()
        with contextlib.redirect_stderr(self.err):
            self.port = handoff.Port(self.loop, self.dir)
        self.addCleanup(self.port.close)
        for sock, _ in self.loop.adopted:
            self.addCleanup(sock.close)

    def pair(self):
        """(client, the server side as the loop accepted it) on the listener."""
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(self.listener.getsockname())
        client.settimeout(5)
        self.addCleanup(client.close)
        for _ in range(500):
            try:
                server, _ = self.listener.accept()
                self.addCleanup(server.close)
                return client, server
            except BlockingIOError:
                time.sleep(0.01)
        self.fail("no connection to accept")

    def raw(self):
        """A plain connection to the port, to send it anything."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.port.path)
        sock.settimeout(5)
        self.addCleanup(sock.close)
        return sock

    def adopted(self):
        """The sockets the port queued for the loop (closed at cleanup)."""
        out = list(self.loop.adopted)
        for sock, _ in out:
            self.addCleanup(sock.close)
        return out

    def test_socket_is_private_and_named_by_pid(self):
        self.assertEqual(self.port.path, os.path.join(self.dir, str(os.getpid())))
        self.assertEqual(os.stat(self.port.path).st_mode & 0o777, 0o600)

    def test_a_connection_changes_hands_with_its_unparsed_bytes_and_no_close(self):
        client, server = self.pair()
        sender = handoff.Sender(self.port.path)
        self.addCleanup(sender.close)
        self.assertTrue(sender.give(StandInConn(server, b"\x01\x01\x00")))
        server.close()  # the sender's copy: the connection stays open
        (taken, carried), = self.adopted()
        self.assertEqual(carried, b"\x01\x01\x00")
        self.assertEqual(self.loop.wakes, 1)
        client.sendall(b"ping")
        taken.settimeout(5)
        self.assertEqual(taken.recv(10), b"ping")
        taken.sendall(b"pong")
        self.assertEqual(client.recv(10), b"pong")
        self.assertEqual(sender.handed, 1)

    def test_refused_at_the_connection_limit_and_when_draining(self):
        self.loop.opts.max_connections = 1
        self.loop.conns[99] = object()
        client, server = self.pair()
        sender = handoff.Sender(self.port.path)
        self.addCleanup(sender.close)
        self.assertFalse(sender.give(StandInConn(server)))
        self.assertFalse(sender.broken)  # a refusal is no failure: the next one may be taken
        self.loop.conns.clear()
        self.loop.draining_asked = True
        self.assertFalse(sender.give(StandInConn(server)))
        self.loop.draining_asked = False
        self.assertTrue(sender.give(StandInConn(server)))
        # The refused ones left the sender's connection open: it still talks to the client.
        server.sendall(b"still here")
        self.assertEqual(client.recv(20), b"still here")

    def test_bad_handoffs_cost_only_themselves(self):
        head = handoff.HANDOFF_HEAD.pack(handoff.MAGIC, 0)
        chan = self.raw()
        # Not a socket: a pipe.
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        with contextlib.redirect_stderr(self.err):
            socket.send_fds(chan, [head], [r])
            self.assertEqual(chan.recv(1), handoff.REFUSED)
            # A socket, but no connection of our listener (another unix socket pair).
            a, b = socket.socketpair()
            self.addCleanup(a.close)
            self.addCleanup(b.close)
            socket.send_fds(chan, [head], [a.fileno()])
            self.assertEqual(chan.recv(1), handoff.REFUSED)
            # Two descriptors in one message.
            _, server = self.pair()
            socket.send_fds(chan, [head], [server.fileno(), server.fileno()])
            self.assertEqual(chan.recv(1), handoff.REFUSED)
            # No descriptor at all.
            chan.sendall(head)
            self.assertEqual(chan.recv(1), handoff.REFUSED)
            # The same channel then hands over a good one.
            socket.send_fds(chan, [head], [server.fileno()])
            self.assertEqual(chan.recv(1), handoff.TAKEN)
        self.assertEqual(len(self.adopted()), 1)
        self.assertIn("not a socket", self.err.getvalue())

    def test_garbage_and_oversized_carry_end_that_channel_only(self):
        _, server = self.pair()
        before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        with contextlib.redirect_stderr(self.err):
            for message in (b"GARBAGE!" + b"x" * 40,
                            handoff.HANDOFF_HEAD.pack(handoff.MAGIC, handoff.MAX_CARRY + 1)):
                chan = self.raw()
                socket.send_fds(chan, [message], [server.fileno()])
                try:
                    answer = chan.recv(1)
                except ConnectionResetError:  # it hung up with our unread bytes
                    answer = b""
                self.assertEqual(answer, b"")  # the port hung up on it
                chan.close()
        self.assertEqual(list(self.loop.adopted), [])
        if before is not None:  # the descriptors that came with them were closed
            deadline = time.monotonic() + 5
            while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertLessEqual(len(os.listdir("/proc/self/fd")), before)
        # The port serves the next sender as before.
        sender = handoff.Sender(self.port.path)
        self.addCleanup(sender.close)
        self.assertTrue(sender.give(StandInConn(server)))
        self.assertIn("malformed", self.err.getvalue())

    def test_a_sender_that_cannot_reach_the_port_gives_up_for_good(self):
        _, server = self.pair()
        self.port.close()
        self.assertFalse(os.path.exists(self.port.path))
        sender = handoff.Sender(self.port.path)
        with contextlib.redirect_stderr(self.err):
            self.assertFalse(sender.give(StandInConn(server)))
        self.assertTrue(sender.broken)
        self.assertFalse(sender.give(StandInConn(server)))
        self.assertIn("handoff to %s failed" % self.port.path, self.err.getvalue())

    def test_connections_go_round_the_named_workers_skipping_one_that_fails_or_refuses(self):
        other_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, other_dir, True)
        other_loop = StandInLoop(self.listener)
        with contextlib.redirect_stderr(self.err):
            other = handoff.Port(other_loop, other_dir)
        self.addCleanup(other.close)
        gone = os.path.join(self.dir, "gone")
        sender = handoff.Sender("\n".join([self.port.path, gone, other.path]))
        self.addCleanup(sender.close)
        servers = [self.pair()[1] for _ in range(4)]
        with contextlib.redirect_stderr(self.err):
            self.assertTrue(all(sender.give(StandInConn(s)) for s in servers))
        self.assertEqual((len(self.loop.adopted), len(other_loop.adopted)), (2, 2))
        self.assertFalse(sender.broken)  # one of three failed: the others still take
        for sock, _ in list(self.loop.adopted) + list(other_loop.adopted):
            self.addCleanup(sock.close)
        # One full: the connection goes to the other.
        self.loop.opts.max_connections = 2
        _, server = self.pair()
        self.assertTrue(sender.give(StandInConn(server)))
        self.assertEqual(len(other_loop.adopted), 3)
        other_loop.adopted[-1][0].close()
        # Both full: refused, not broken.
        other_loop.opts.max_connections = 3
        self.assertFalse(sender.give(StandInConn(server)))
        self.assertFalse(sender.broken)
        self.assertEqual(sender.handed, 5)

    def test_the_parent_of_a_process(self):
        if not os.path.isdir("/proc/self"):
            self.skipTest("no /proc")
        self.assertEqual(handoff.parent_of(os.getpid()), os.getppid())
        self.assertIsNone(handoff.parent_of(-1))

    def test_only_the_same_user_and_parent_are_trusted(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertTrue(self.port.trusted(a))  # this very process: same user, same parent
        if hasattr(socket, "SO_PEERCRED"):
            fake = type("Peer", (), {"getsockopt": lambda *_: struct.pack("3i", 1, os.geteuid() + 1, 0)})()
            self.assertFalse(self.port.trusted(fake))


@unittest.skipUnless(handoff.HAVE_FDS, "no SCM_RIGHTS here")
class TwoLoopsTest(unittest.TestCase):
    """Two workers' loops on one listener, in one process: A drains, B takes over A's connection."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        listener, cleanup = support.unix_listener()
        self.addCleanup(cleanup)
        self.path = listener.getsockname()
        self.err = io.StringIO()
        self.crashes = []
        # A runs its requests on 2 app threads (a request can run while it drains), B inline.
        self.a = self.loop(self.app(b"loop-a"), listener, "loop-a", threads=2)
        # B: its own descriptor of the same listening socket, as a second worker has.
        mine = socket.socket(fileno=os.dup(listener.fileno()))
        self.addCleanup(mine.close)
        self.b = self.loop(self.app(b"loop-b"), mine, "loop-b")
        with contextlib.redirect_stderr(self.err):
            self.b.port = handoff.Port(self.b, self.dir)

    @staticmethod
    def app(label):
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                time.sleep(0.6)
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(label)))])
            return [label]
        return app

    def loop(self, app, listener, name, threads=1):
        server = support.make_server(app, threads=threads)
        if threads > 1:
            server.start_threads()
        loop = Loop(server, support.Opts(), listener)
        self.addCleanup(loop.wake_w.close)
        self.addCleanup(loop.wake_r.close)
        thread = threading.Thread(target=self.run_loop, args=(loop,), name=name, daemon=True)
        loop.accept_on(False)  # A accepts first; B once A is stopped (run() calls want_accept)
        loop.thread = thread
        return loop

    def run_loop(self, loop):
        try:
            with contextlib.redirect_stderr(self.err):
                loop.run()
        except BaseException as exc:  # the test fails on it (tearDown), not just the thread
            self.crashes.append(exc)
            raise

    def tearDown(self):
        self.assertEqual(self.crashes, [])

    def start(self, loop):
        loop.thread.start()

        def stop():
            loop.ask_drain()
            loop.thread.join(10)
        self.addCleanup(stop)

    def connect(self):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(self.path)
        client.settimeout(10)
        self.addCleanup(client.close)
        return client

    def get(self, sock, rid, path="/"):
        sock.sendall(support.request(rid, {"PATH_INFO": path}))
        stdout, end = support.responses(support.read_until_end(sock, rid))[rid]
        self.assertEqual(end, (0, 0))
        return support.split_cgi(stdout)[2]

    def test_a_kept_connection_goes_on_at_the_other_worker(self):
        self.start(self.a)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(self.path)
        self.addCleanup(client.close)
        self.assertEqual(self.get(client, 1), b"loop-a")
        self.start(self.b)
        # Half a record already read by A when it drains: it travels with the connection.
        request = support.request(2, {"PATH_INFO": "/"})
        client.sendall(request[:5])
        deadline = time.monotonic() + 5
        while not any(c.rest for c in list(self.a.conns.values())):
            self.assertLess(time.monotonic(), deadline, "A never read the first bytes")
            time.sleep(0.005)
        self.a.handoff_target = self.b.port.path
        self.a.ask_drain()
        self.a.thread.join(10)
        self.assertFalse(self.a.thread.is_alive())
        self.assertEqual(self.a.sender.handed, 1)
        self.assertEqual(self.a.drain_closed, 0)
        client.sendall(request[5:])
        stdout, end = support.responses(support.read_until_end(client, 2))[2]
        self.assertEqual(support.split_cgi(stdout)[2], b"loop-b")
        self.assertEqual(self.get(client, 3), b"loop-b")

    def test_a_connection_mid_request_is_handed_over_right_after_its_response(self):
        self.start(self.a)
        busy, idle = self.connect(), self.connect()
        self.assertEqual(self.get(busy, 1), b"loop-a")
        self.assertEqual(self.get(idle, 1), b"loop-a")
        self.start(self.b)
        # The sender's channel stays quiet longer than the receiver's per-message timeout while the
        # slow response runs: the channel must still be there for it.
        old, handoff.TIMEOUT = handoff.TIMEOUT, 0.2
        self.addCleanup(setattr, handoff, "TIMEOUT", old)
        busy.sendall(support.request(2, {"PATH_INFO": "/slow"}))
        deadline = time.monotonic() + 5
        while self.a.busy == 0:
            self.assertLess(time.monotonic(), deadline, "the slow request never started")
            time.sleep(0.005)
        self.a.handoff_target = self.b.port.path
        self.a.ask_drain()
        stdout, end = support.responses(support.read_until_end(busy, 2))[2]
        self.assertEqual(support.split_cgi(stdout)[2], b"loop-a")  # A finished what it had begun
        self.a.thread.join(10)
        self.assertFalse(self.a.thread.is_alive())
        self.assertEqual((self.a.sender.handed, self.a.drain_closed), (2, 0))
        self.assertEqual(self.get(busy, 3), b"loop-b")
        self.assertEqual(self.get(idle, 3), b"loop-b")

    def test_without_a_target_a_drain_closes_as_before(self):
        self.start(self.a)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(self.path)
        client.settimeout(10)
        self.addCleanup(client.close)
        self.assertEqual(self.get(client, 1), b"loop-a")
        self.a.ask_drain()
        self.assertEqual(client.recv(10), b"")  # closed after its quiet time
        self.a.thread.join(10)
        self.assertIsNone(self.a.sender)
        self.assertEqual(self.a.drain_closed, 1)


if __name__ == "__main__":
    unittest.main()
