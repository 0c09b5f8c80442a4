"""corral_wsgi.direct: listeners, REPORTs (split to fit a record), the control channel."""
import contextlib
import io
import json
import os
import socket
import tempfile
import threading
import time
import unittest
from unittest import mock

import support
from corral_wsgi import codec, direct, stdio
from corral_wsgi.common import UsageError
from corral_wsgi.loop import Loop


def read_all(fd):
    """Everything from fd until EOF."""
    out = bytearray()
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return bytes(out)
        out += chunk


class Listeners(unittest.TestCase):
    def test_tcp_host_port(self):
        sock, shown = direct.open_listener("127.0.0.1:0")
        self.addCleanup(sock.close)
        self.assertRegex(shown, r"^127\.0\.0\.1:\d+$")
        self.assertEqual(direct.sockname(sock), shown)

    @unittest.skipUnless(socket.has_ipv6, "no IPv6")
    def test_ipv6_brackets(self):
        try:
            sock, shown = direct.open_listener("[::1]:0")
        except OSError as exc:
            self.skipTest("no IPv6 loopback: %s" % exc)
        self.addCleanup(sock.close)
        self.assertRegex(shown, r"^\[::1\]:\d+$")

    @unittest.skipUnless(hasattr(socket, "AF_UNIX"), "no unix sockets")
    def test_unix_path_replaces_a_stale_socket(self):
        with tempfile.TemporaryDirectory() as where:
            path = os.path.join(where, "fcgi.sock")
            with open(path, "w"):
                pass
            sock, shown = direct.open_listener("unix:" + path)
            sock.close()
            self.assertEqual(shown, path)
            sock, shown = direct.open_listener(path)
            self.addCleanup(sock.close)
            self.assertEqual(direct.sockname(sock), path)

    def test_bad_addresses(self):
        for bad in ("nohost", "host:port", "127.0.0.1:"):
            with self.subTest(address=bad), self.assertRaises(UsageError):
                direct.open_listener(bad)


class Supervision(unittest.TestCase):
    def setUp(self):
        listener, cleanup = support.unix_listener()
        self.addCleanup(cleanup)
        self.loop = Loop(support.make_server(), support.Opts(), listener)
        self.addCleanup(self.loop.wake_w.close)
        self.addCleanup(self.loop.wake_r.close)
        self.from_worker, wfd = os.pipe()
        self.addCleanup(os.close, self.from_worker)
        self.addCleanup(os.close, wfd)
        stdio.grow_pipe(wfd)  # room for every report of a test: nobody reads until it is done
        self.sup = direct.Supervisor(self.loop, wfd)

    def reports(self):
        data = os.read(self.from_worker, 1 << 20)
        out = []
        for rtype, _, content in support.parse(data):
            self.assertEqual(rtype, direct.CORRAL_REPORT)
            out.append(json.loads(content))
        return out

    def test_a_report_only_when_something_changed(self):
        self.sup.report()
        [first] = self.reports()
        self.assertEqual((first["busy"], first["conns"], first["served"], first["queue"]), (0, 0, 0, None))
        self.sup.report()  # nothing changed: nothing sent
        self.sup.report(final=True)
        self.assertEqual(len(self.reports()), 1)

    def test_the_loop_reports_through_a_guard(self):
        # The loop (and an app thread) call loop.report_now: a bug in report() must cost a log
        # line, not the loop or the request that just ended.
        self.assertEqual(self.loop.report_now, self.sup.report_safely)
        err = io.StringIO()
        with mock.patch.object(self.sup, "queue_depth", side_effect=RuntimeError("boom")), \
                contextlib.redirect_stderr(err):
            self.loop.report_now()
        self.assertIn("report error", err.getvalue())
        self.assertIn("boom", err.getvalue())
        self.loop.report_now()  # and the next one goes
        self.assertEqual(len(self.reports()), 1)
        # Standalone (no control channel): the loop has nobody to report to.
        alone = Loop(support.make_server(), support.Opts(), self.loop.listener)
        self.addCleanup(alone.wake_w.close)
        self.addCleanup(alone.wake_r.close)
        direct.Supervisor(alone, None)
        self.assertIsNone(alone.report_now)

    def test_a_slow_request_leaves_its_stack_once_and_goes_on(self):
        # --stack-after (slowLogAfter): the watchdog's tick logs where a request running longer
        # is, once per request, and does nothing else to it.
        class Held:  # a connection / request as the loop holds them (hashable, by identity)
            pass
        release = threading.Event()
        started = threading.Event()

        def stuck_in_the_app():
            started.set()
            release.wait(10)
        app = threading.Thread(target=stuck_in_the_app)
        app.start()
        self.addCleanup(app.join)
        self.addCleanup(release.set)
        started.wait(5)
        self.loop.opts.stack_after = 0.5
        conn, req = Held(), Held()
        conn.began = time.monotonic() - 0.2
        req.environ = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/stuck?x=1"}
        req.thread = app.ident
        self.loop.running[conn] = req
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.sup.tick()  # 0.2 s: not yet
            self.assertEqual(err.getvalue(), "")
            conn.began -= 0.5
            self.sup.tick()
            self.sup.tick()  # said once
        text = err.getvalue()
        self.assertEqual(text.count("Traceback"), 1, text)
        self.assertIn("corral_worker: request GET /stuck?x=1 still running after 0.5s. Where it is:\n"
                      "Traceback (most recent call last):\n", text)
        self.assertIn(", in stuck_in_the_app\n", text)
        self.assertIn("SlowRequest: GET /stuck?x=1 still running after 0.5s", text)
        self.assertIn(conn, self.loop.running)  # it goes on
        # Once it ended, what was logged is forgotten.
        del self.loop.running[conn]
        with contextlib.redirect_stderr(io.StringIO()):
            self.sup.tick()
        self.assertEqual(self.sup.slow_logged, set())

    def test_access_entries_are_split_over_records_that_fit(self):
        entry = ("GET", "/" + "p" * 300, 200, 1, 1000)
        with self.loop.lock:
            self.loop.access.extend(entry for _ in range(250))
            self.loop.access_dropped = 3
        self.sup.report(final=True)
        reports = self.reports()
        self.assertGreater(len(reports), 1)
        self.assertEqual(sum(len(r["access"]) for r in reports), 250)
        self.assertEqual([r.get("access_dropped") for r in reports][0], 3)
        self.assertEqual(sum(1 for r in reports if "access_dropped" in r), 1)
        self.assertEqual(len(self.loop.access), 0)

    def test_one_huge_entry_is_cut(self):
        with self.loop.lock:
            self.loop.access.append(("GET", "/" + "p" * 100000, 200, 5, 1000, "aborted"))
        self.sup.report(final=True)
        [report] = self.reports()
        self.assertEqual(report["access"], [["GET", "/" + "p" * 1999, 200, 5, 1000, "aborted"]])

    def test_control_reader_answers_ping_and_drains_at_eof(self):
        rfd, to_worker = os.pipe()
        self.addCleanup(os.close, rfd)
        os.write(to_worker, support.record(codec.CORRAL_PING, 0, b"p1") + support.record(0x77, 0, b""))
        os.close(to_worker)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.sup.control_reader(rfd)
        self.assertEqual(support.parse(os.read(self.from_worker, 100)), [(codec.CORRAL_PONG, 0, b"p1")])
        self.assertTrue(self.loop.draining_asked)
        self.assertIn("unexpected record type 119 on the control channel", err.getvalue())

    def test_a_service_that_stops_reading_never_blocks_the_watchdog(self):
        from_worker, wfd = os.pipe()  # the default pipe size: a few REPORTs fill it
        self.addCleanup(os.close, from_worker)
        closed = []
        self.addCleanup(lambda: closed or os.close(wfd))
        sup = direct.Supervisor(self.loop, wfd)
        entry = ("GET", "/" + "p" * 300, 200, 1, 1000)
        sent = 0

        def flood():
            nonlocal sent
            for _ in range(60):  # ~2 MiB of REPORTs while nobody reads
                with self.loop.lock:
                    self.loop.access.extend(entry for _ in range(100))
                sent += 100
                sup.report(final=True)

        with mock.patch.object(direct, "PENDING_LIMIT", 200000):
            writer = threading.Thread(target=flood, daemon=True)
            writer.start()
            writer.join(10)
            self.assertFalse(writer.is_alive(), "a REPORT blocked on a full control pipe")
            self.assertLess(len(sup.pending), 200000 + 70000)
            self.assertGreater(self.loop.access_dropped, 0)
            # The service reads again: what waited arrives whole and in order, and every entry is
            # either in a REPORT or counted as dropped.
            data = bytearray()
            reader = threading.Thread(target=lambda: data.extend(read_all(from_worker)), daemon=True)
            reader.start()
            sup.report(final=True)  # carries the count of what was dropped
            sup.drain_pending(5)
            self.assertEqual(sup.pending, bytearray())
            os.close(wfd)
            closed.append(True)
            reader.join(5)
        got = dropped = 0
        for rtype, _, content in support.parse(bytes(data)):
            self.assertEqual(rtype, direct.CORRAL_REPORT)
            body = json.loads(content)
            got += len(body["access"])
            dropped += body.get("access_dropped", 0)
        self.assertEqual(got + dropped, sent)
        self.assertGreater(got, 0)

    def test_a_gone_control_channel_asks_for_a_drain(self):
        os.close(self.from_worker)
        self.from_worker = os.open(os.devnull, os.O_RDONLY)  # for the cleanup
        self.sup.send_control(direct.CORRAL_REPORT, b"{}")
        self.assertIsNone(self.sup.control)
        self.assertTrue(self.loop.draining_asked)

    def test_queue_depth_of_a_tcp_listener(self):
        sock, _ = direct.open_listener("127.0.0.1:0")
        self.addCleanup(sock.close)
        loop = Loop(support.make_server(), support.Opts(), sock)
        self.addCleanup(loop.wake_w.close)
        self.addCleanup(loop.wake_r.close)
        depth = direct.Supervisor(loop, None).queue_depth()
        if hasattr(socket, "TCP_INFO"):
            self.assertEqual(depth, 0)
            client = socket.create_connection(sock.getsockname())
            self.addCleanup(client.close)
            client.sendall(support.begin(1))  # the inline loop set TCP_DEFER_ACCEPT: queued once it speaks
            for _ in range(500):
                depth = direct.Supervisor(loop, None).queue_depth()
                if depth:
                    break
                threading.Event().wait(0.01)
            self.assertEqual(depth, 1)
        else:
            self.assertIsNone(depth)


class Standalone(unittest.TestCase):
    def test_serve_standalone_until_drained(self):
        loops = []

        class KeptLoop(Loop):
            def __init__(self, *args):
                Loop.__init__(self, *args)
                loops.append(self)
        with tempfile.TemporaryDirectory() as where:
            path = os.path.join(where, "s")
            opts = support.Opts(listen=path, listener=None)
            result = []
            err = io.StringIO()

            def serve():
                with contextlib.redirect_stderr(err):
                    result.append(direct.serve(support.make_server(), opts, None, None))
            thread = threading.Thread(target=serve, daemon=True)
            # signal.signal works on the main thread only; SIGTERM's handler would call ask_drain.
            with mock.patch.object(direct, "Loop", KeptLoop), mock.patch.object(direct.signal, "signal"), \
                    mock.patch.object(direct, "exit_soon", lambda server, code: code), \
                    mock.patch.object(direct.Supervisor, "watchdog", lambda sup: None):  # no os._exit here
                thread.start()
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.addCleanup(client.close)
                while True:
                    try:
                        client.connect(path)
                        break
                    except (FileNotFoundError, ConnectionRefusedError):
                        self.assertTrue(thread.is_alive(), err.getvalue())
                        threading.Event().wait(0.01)
                client.sendall(support.request(1, {"PATH_INFO": "/alone"}))
                data = support.read_until_end(client, 1)
                self.assertEqual(support.split_cgi(support.responses(data)[1][0])[2], b"hello /alone")
                loops[0].ask_drain()
                thread.join(10)
            for loop in loops:
                loop.wake_r.close()
                loop.wake_w.close()
            self.assertEqual(result, [0])
            self.assertIn("listening on " + path, err.getvalue())
            self.assertFalse(os.path.exists(path))  # its socket file is removed at the stop


if __name__ == "__main__":
    unittest.main()
