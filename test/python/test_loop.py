"""corral_wsgi.loop: the event loop on its own thread over a unix listener: accepting, kept
connections, many connections per worker, the connection limit, a bad peer, draining."""
import contextlib
import io
import socket
import threading
import time
import unittest

import support
from corral_wsgi import codec
from corral_wsgi.loop import REPORT_BATCH, REPORT_EVERY, Loop, Poller


class LoopTest(unittest.TestCase):
    def start(self, app=support.hello, threads=1, tcp=False, **opts):
        if tcp:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(listener.close)
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            listener.setblocking(False)
        else:
            listener, cleanup = support.unix_listener()
            self.addCleanup(cleanup)
        self.path = listener.getsockname()
        self.family = listener.family
        server = support.make_server(app, threads=threads)
        self.loop = loop = Loop(server, support.Opts(**opts), listener)
        self.addCleanup(loop.wake_w.close)
        self.addCleanup(loop.wake_r.close)
        loop.access_log = True
        if threads > 1:
            server.start_threads()
        self.err = io.StringIO()
        self.thread = threading.Thread(target=self.run_loop, daemon=True)
        self.thread.start()
        self.addCleanup(self.stop)
        return loop

    def run_loop(self):
        with contextlib.redirect_stderr(self.err):
            self.loop.run()

    def stop(self):
        self.loop.ask_drain()
        self.thread.join(10)

    def connect(self):
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.connect(self.path)
        sock.settimeout(10)
        self.addCleanup(sock.close)
        return sock

    def get(self, sock, rid, path="/", keep=True):
        sock.sendall(support.request(rid, {"PATH_INFO": path}, keep=keep))
        stdout, end = support.responses(support.read_until_end(sock, rid))[rid]
        self.assertEqual(end, (0, 0))
        return support.split_cgi(stdout)[2]

    def until(self, predicate, what):
        deadline = time.monotonic() + 10
        while not predicate():
            if time.monotonic() > deadline:
                self.fail("timed out waiting for " + what)
            time.sleep(0.005)

    def test_requests_on_kept_connections(self):
        self.start()
        a, b = self.connect(), self.connect()
        for i in range(3):
            self.assertEqual(self.get(a, 1, "/a%d" % i), b"hello /a%d" % i)
            self.assertEqual(self.get(b, 1, "/b%d" % i), b"hello /b%d" % i)
        self.until(lambda: self.loop.served == 6, "6 served")
        self.assertEqual(len(self.loop.conns), 2)

    def test_tcp_connections_are_served_without_nagle(self):
        # Accepted as the C socket type (no socket.py wrapper), TCP_NODELAY from the listener
        # (Linux copies it to what it accepts) or set per connection: every connection has it.
        self.start(tcp=True)
        socks = [self.connect() for _ in range(3)]
        for round_ in range(2):
            for i, sock in enumerate(socks):
                self.assertEqual(self.get(sock, 1, "/t%d" % i), b"hello /t%d" % i)
        self.until(lambda: self.loop.served == 6, "6 served")
        conns = list(self.loop.conns.values())
        self.assertEqual(len(conns), 3)
        for conn in conns:
            self.assertTrue(conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            self.assertFalse(conn.sock.getblocking())
        socks[0].close()
        self.until(lambda: len(self.loop.conns) == 2, "the closed connection gone")

    def test_each_request_leaves_an_access_entry_tuple(self):
        self.start()
        sock = self.connect()
        self.assertEqual(self.get(sock, 1, "/x"), b"hello /x")
        self.until(lambda: self.loop.served == 1, "1 served")
        with self.loop.lock:
            [entry] = list(self.loop.access)
        method, path, status, sent, micros = entry
        self.assertEqual((method, path, status), ("GET", "/x", 200))
        self.assertGreater(sent, len(b"hello /x"))  # the CGI head counts
        self.assertIsInstance(micros, int)
        self.assertGreaterEqual(micros, 0)

    def test_a_batch_of_access_entries_is_reported_at_once(self):
        # By the loop's own thread, as the request that completes the batch ends.
        loop = self.start()
        calls = []
        loop.report_now = lambda: calls.append((threading.get_ident(), len(loop.access)))
        sock = self.connect()
        for i in range(REPORT_BATCH - 1):
            self.get(sock, 1, "/%d" % i)
        self.until(lambda: loop.served == REPORT_BATCH - 1, "served")
        # (the loop's periodic REPORTs, every REPORT_EVERY while it turns, may have come before)
        self.assertNotIn(REPORT_BATCH, [n for _, n in calls])
        self.get(sock, 1, "/last")
        self.until(lambda: (self.thread.ident, REPORT_BATCH) in calls, "the batch reported")
        self.assertEqual({tid for tid, _ in calls}, {self.thread.ident})

    def test_a_turning_loop_reports_periodically(self):
        loop = self.start()
        calls = []
        loop.report_now = lambda: calls.append(time.monotonic())
        sock = self.connect()
        began = time.monotonic()
        while time.monotonic() - began < 3 * REPORT_EVERY:
            self.get(sock, 1, "/")
        self.until(lambda: len(calls) >= 2, "two periodic reports")
        self.assertGreaterEqual(calls[-1] - calls[-2], REPORT_EVERY * 0.99)

    def test_threaded_mode_serves_on_app_threads(self):
        names = []

        def app(environ, start_response):
            names.append(threading.current_thread().name)
            return support.hello(environ, start_response)
        self.start(app, threads=2)
        sock = self.connect()
        self.assertEqual(self.get(sock, 1, "/t"), b"hello /t")
        self.assertEqual(self.get(sock, 2, "/u"), b"hello /u")
        self.assertTrue(all(n.startswith("corral-app-") for n in names), names)

    def test_without_keep_conn_the_peer_sees_eof(self):
        self.start()
        sock = self.connect()
        self.get(sock, 1, keep=False)
        self.assertEqual(sock.recv(10), b"")

    def test_the_connection_limit_stops_accepting(self):
        loop = self.start(max_connections=1)
        first = self.connect()
        self.get(first, 1)
        self.assertFalse(loop.accepting)
        second = self.connect()  # queued in the backlog, not accepted
        second.sendall(support.request(1, {"PATH_INFO": "/second"}))
        first.close()
        stdout, _ = support.responses(support.read_until_end(second, 1))[1]
        self.assertEqual(support.split_cgi(stdout)[2], b"hello /second")

    def test_a_bad_peer_costs_only_its_connection(self):
        self.start()
        good, bad = self.connect(), self.connect()
        bad.sendall(b"\x07" + support.begin(1)[1:])
        self.assertEqual(bad.recv(10), b"")
        self.assertEqual(self.get(good, 1, "/still"), b"hello /still")
        self.assertIn("bad FastCGI version byte 7", self.err.getvalue())

    def test_idle_connections_are_closed_after_the_idle_timeout(self):
        loop = self.start(idle_timeout=0.2)
        sock = self.connect()
        self.get(sock, 1)
        self.assertEqual(sock.recv(10), b"")  # closed by the sweep, within about a second
        self.until(lambda: not loop.conns, "the connection to be dropped")

    def test_params_that_never_complete_are_closed(self):
        self.start(params_timeout=0.2)
        sock = self.connect()
        sock.sendall(support.begin(1))
        self.assertEqual(sock.recv(10), b"")
        self.until(lambda: "did not complete within" in self.err.getvalue(), "the log line")

    def test_drain_finishes_the_running_request_then_returns(self):
        release = threading.Event()
        started = threading.Event()

        def slow(environ, start_response):
            started.set()
            release.wait(10)
            return support.hello(environ, start_response)
        loop = self.start(slow, threads=2)
        sock = self.connect()
        sock.sendall(support.request(1, {"PATH_INFO": "/slow"}))
        self.assertTrue(started.wait(10))
        loop.ask_drain()
        self.until(lambda: loop.draining, "the drain")
        self.assertFalse(loop.accepting)
        release.set()
        stdout, _ = support.responses(support.read_until_end(sock, 1))[1]
        self.assertEqual(support.split_cgi(stdout)[2], b"hello /slow")
        self.thread.join(10)
        self.assertFalse(self.thread.is_alive())

    def test_get_values_on_the_loop(self):
        self.start(max_connections=5)
        sock = self.connect()
        sock.sendall(support.record(codec.GET_VALUES, 0, codec.encode_params({"FCGI_MAX_REQS": ""})))
        [(rtype, _, content)] = support.parse(sock.recv(1000))
        self.assertEqual(rtype, codec.GET_VALUES_RESULT)
        answer = {}
        codec.decode_params(content, answer)
        self.assertEqual(answer, {"FCGI_MAX_REQS": "5"})


class Polling(unittest.TestCase):
    def test_poller_reports_the_data_of_ready_sockets(self):
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        poller = Poller()
        poller.register(a, "a-data")
        self.assertEqual(poller.poll(0), [])
        b.send(b"x")
        self.assertEqual(poller.poll(1), ["a-data"])
        poller.unregister(a)
        self.assertEqual(poller.poll(0), [])


if __name__ == "__main__":
    unittest.main()
