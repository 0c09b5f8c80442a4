"""corral_wsgi.stdio: the service's pipes: threaded and inline channels, extension records."""
import contextlib
import io
import json
import os
import socket
import sys
import unittest
from unittest import mock

import support
from corral_wsgi import codec, stdio


class Pipes(unittest.TestCase):
    def pipes(self):
        """(our read fd, the service's write fd, our write fd, the service's read fd)."""
        rfd, to_worker = os.pipe()
        from_worker, wfd = os.pipe()
        for fd in (rfd, wfd, from_worker):
            self.addCleanup(os.close, fd)
        self.to_worker = to_worker
        return rfd, from_worker, wfd

    def close_input(self):
        os.close(self.to_worker)

    def test_inline_serves_requests_in_order_until_eof(self):
        records = support.request(1, {"PATH_INFO": "/one"}) + support.request(2, {"PATH_INFO": "/two"})
        rfd, from_worker, wfd = self.pipes()
        chan = stdio.InlinePipeChannel(support.make_server(), rfd, wfd)
        os.write(self.to_worker, records)
        self.close_input()
        chan.serve()
        self.assertTrue(chan.served.is_set())
        data = os.read(from_worker, 1 << 16)  # written already: serve() has returned
        answers = support.responses(data)
        self.assertEqual(support.split_cgi(answers[1][0])[2], b"hello /one")
        self.assertEqual(support.split_cgi(answers[2][0])[2], b"hello /two")

    def test_ping_is_answered_with_pong(self):
        rfd, from_worker, wfd = self.pipes()
        chan = stdio.PipeChannel(support.make_server(), rfd, wfd)
        os.write(self.to_worker, support.record(codec.CORRAL_PING, 0, b"n1"))
        self.assertTrue(chan.pump())
        self.assertEqual(support.parse(os.read(from_worker, 100)), [(codec.CORRAL_PONG, 0, b"n1")])

    def test_window_records_grant_credit(self):
        rfd, from_worker, wfd = self.pipes()
        chan = stdio.PipeChannel(support.make_server(window=1024), rfd, wfd)
        os.write(self.to_worker, support.begin(3) + support.record(codec.CORRAL_WINDOW, 3, codec.UINT32.pack(500)))
        chan.pump()
        self.assertEqual(chan.requests[3].credit, 1524)
        os.write(self.to_worker, support.record(codec.CORRAL_WINDOW, 3, b"xx"))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            chan.pump()
        self.assertIn("CORRAL_WINDOW with 2 content bytes", err.getvalue())

    def test_stdout_beyond_the_window_waits_for_credit(self):
        def big(environ, start_response):
            start_response("200 OK", [])
            return [b"x" * 5000]
        records = (support.request(1, {"PATH_INFO": "/"}) +
                   support.record(codec.CORRAL_WINDOW, 1, codec.UINT32.pack(10000)))
        rfd, from_worker, wfd = self.pipes()
        chan = stdio.InlinePipeChannel(support.make_server(big, window=1024), rfd, wfd)
        os.write(self.to_worker, records)
        self.close_input()
        chan.serve()
        stdout, end = support.responses(os.read(from_worker, 1 << 16))[1]
        self.assertEqual((len(support.split_cgi(stdout)[2]), end), (5000, (0, 0)))

    def test_eof_aborts_what_cannot_complete(self):
        rfd, from_worker, wfd = self.pipes()
        chan = stdio.PipeChannel(support.make_server(), rfd, wfd)
        os.write(self.to_worker, support.begin(1) + b"\x01\x04")  # and the start of a record
        self.close_input()
        self.assertTrue(chan.pump())
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertFalse(chan.pump())
        self.assertIn("stdin ended inside a record", err.getvalue())
        self.assertEqual(support.responses(os.read(from_worker, 100))[1][1], (0, 0))
        self.assertFalse(chan.pump())

    def test_unexpected_record_types_are_logged_and_answered(self):
        rfd, from_worker, wfd = self.pipes()
        chan = stdio.PipeChannel(support.make_server(), rfd, wfd)
        os.write(self.to_worker, support.record(0xEE, 0, b""))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            chan.pump()
        self.assertEqual(support.parse(os.read(from_worker, 100))[0][:2], (codec.UNKNOWN_TYPE, 0))
        self.assertIn("unexpected record type 238", err.getvalue())

    @unittest.skipUnless(sys.platform.startswith("linux"), "pipe sizes are Linux's")
    def test_grow_pipe(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        stdio.grow_pipe(w)
        import fcntl
        size = fcntl.fcntl(w, getattr(fcntl, "F_GETPIPE_SZ", 1032))
        self.assertGreaterEqual(size, 65536)  # 1 MiB unless /proc/sys/fs/pipe-max-size is lower
        with open("/proc/sys/fs/pipe-max-size") as f:
            if int(f.read()) >= stdio.PIPE_SIZE:
                self.assertEqual(size, stdio.PIPE_SIZE)


    @unittest.skipUnless(sys.platform.startswith("linux"), "socket buffer sizes are Linux's")
    def test_grow_pipe_on_a_socketpair(self):
        # What the service's channels are on Linux: libuv makes a child's stdio a socketpair.
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        before = a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        stdio.grow_pipe(a.fileno())
        after = a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        with open("/proc/sys/net/core/wmem_max") as f:
            cap = int(f.read())
        self.assertEqual(after, 2 * min(stdio.PIPE_SIZE, cap))  # Linux doubles what it grants
        self.assertGreaterEqual(after, before)
        a.sendall(b"still open")  # grow_pipe worked on a copy of the fd and left this one open
        self.assertEqual(b.recv(100), b"still open")


class Ready(unittest.TestCase):
    def test_serve_stdio_says_ready_with_its_settings(self):
        rfd, to_worker = os.pipe()
        from_worker, wfd = os.pipe()
        self.addCleanup(os.close, from_worker)
        os.close(to_worker)  # EOF at once: READY, then stop

        class Opts:
            app, threads, window, malloc_tuned, stack_after = "x:app", 1, 262144, False, 0
        server = support.make_server()
        with mock.patch.object(stdio, "exit_soon", lambda server, code: code):  # no os._exit here
            code = stdio.serve_stdio(server, Opts, rfd, wfd)
        os.close(rfd)
        os.close(wfd)
        self.assertEqual(code, 0)
        [(rtype, _, content)] = support.parse(os.read(from_worker, 1000))
        ready = json.loads(content)
        self.assertEqual(rtype, codec.CORRAL_READY)
        self.assertEqual((ready["app"], ready["protocol"], ready["pid"]),
                         ("x:app", codec.PROTOCOL_VERSION, os.getpid()))
        self.assertEqual(ready["inline"], hasattr(__import__("select"), "poll"))



class SlowRequests(unittest.TestCase):
    def test_the_stack_of_a_request_running_too_long_is_logged_once(self):
        import threading
        import time
        server = support.make_server()
        server.running = {}
        release = threading.Event()

        class Req:
            environ = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/stuck"}

        req = Req()

        def stuck_in_the_app():
            req.thread = threading.get_ident()
            req.began = time.monotonic()
            server.running[req] = None
            release.wait(10)
            server.running.pop(req, None)

        app = threading.Thread(target=stuck_in_the_app)
        app.start()
        self.addCleanup(app.join)
        self.addCleanup(release.set)
        err = io.StringIO()
        with mock.patch.object(sys, "stderr", err):
            watcher = threading.Thread(target=stdio.watch_slow, args=(server, 0.1), daemon=True)
            watcher.start()
            deadline = time.monotonic() + 5
            while "SlowRequest" not in err.getvalue() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)  # more rounds of the watcher: it must not say it again
        text = err.getvalue()
        self.assertIn("corral_worker: request GET /stuck still running after 0.1s. Where it is:\n"
                      "Traceback (most recent call last):\n", text)
        self.assertIn(", in stuck_in_the_app\n", text)
        self.assertTrue(text.rstrip("\n").endswith("SlowRequest: GET /stuck still running after 0.1s"))
        self.assertEqual(text.count("Traceback"), 1)


if __name__ == "__main__":
    unittest.main()
