"""corral_wsgi.conn: one connection over a socketpair, driven by hand (no loop thread): one
request at a time, body and params limits, reading the body while the app waits."""
import contextlib
import io
import select
import socket
import threading
import unittest

import support
from corral_wsgi import codec
from corral_wsgi.conn import CANT_MPX_CONN, Conn
from corral_wsgi.loop import Loop


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class ConnTest(unittest.TestCase):
    def setup_conn(self, app=echo, **opts):
        listener, cleanup = support.unix_listener()
        self.addCleanup(cleanup)
        self.loop = Loop(support.make_server(app), support.Opts(**opts), listener)
        self.addCleanup(self.loop.wake_w.close)
        self.addCleanup(self.loop.wake_r.close)
        ours, self.peer = socket.socketpair()
        self.addCleanup(self.peer.close)
        ours.setblocking(False)
        conn = Conn(self.loop, ours)
        self.loop.conns[conn.fd] = conn
        self.loop.sel.register(ours, conn)
        conn.watched = True
        self.addCleanup(ours.close)
        self.err = io.StringIO()
        return conn

    def turn(self, conn):
        """What the loop does when conn is readable: read, dispatch, run inline, settle."""
        loop = self.loop
        with contextlib.redirect_stderr(self.err):
            loop.on_readable(conn)
            while loop.pending:
                loop.server.serve_request(loop.pending.popleft())
            while loop.returned:
                loop.settle(loop.returned.popleft())

    def answer(self, rid):
        return support.responses(support.read_until_end(self.peer, rid))[rid]

    def test_a_request_and_the_next_on_the_kept_connection(self):
        conn = self.setup_conn()
        for rid, body in ((1, b"first"), (2, b"second")):
            self.peer.sendall(support.request(rid, {"REQUEST_METHOD": "POST"}, body))
            self.turn(conn)
            stdout, end = self.answer(rid)
            self.assertEqual((support.split_cgi(stdout)[2], end), (body, (0, 0)))
        self.assertIn(conn.fd, self.loop.conns)
        self.assertEqual((self.loop.served, self.loop.busy), (2, 0))
        self.assertEqual([e[2] for e in self.loop.access], [200, 200])

    def test_a_large_response_goes_out_whole_through_a_full_socket_buffer(self):
        body = bytes(range(256)) * (6 << 10) + b"tail"  # 1.5 MiB: sent from its parts, not joined
        conn = self.setup_conn(lambda environ, start_response: start_response("200 OK", []) and [body])
        self.peer.sendall(support.request(1, {}))
        runner = threading.Thread(target=self.turn, args=(conn,))
        runner.start()  # blocks in the socketpair's small buffer until we read
        self.addCleanup(runner.join, 10)
        stdout, end = self.answer(1)
        runner.join(10)
        self.assertEqual(end, (0, 0))
        self.assertEqual(support.split_cgi(stdout)[2], body)

    def test_a_body_arriving_in_odd_pieces_is_read_whole_and_in_order(self):
        body = bytes(range(251)) * 2400  # 602 KB: records of 65535 bytes
        conn = self.setup_conn()
        data = support.request(1, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body))}, body)
        self.peer.sendall(data[:1000])  # the params and the body's first bytes
        self.loop.on_readable(conn)

        def send_the_rest():  # in pieces that cut records anywhere, headers too
            for at in range(1000, len(data), 10007):
                self.peer.sendall(data[at:at + 10007])
        sender = threading.Thread(target=send_the_rest)
        sender.start()
        self.addCleanup(sender.join, 10)
        runner = threading.Thread(target=self.turn, args=(conn,))
        runner.start()
        self.addCleanup(runner.join, 10)
        stdout, end = self.answer(1)
        self.assertEqual(end, (0, 0))
        self.assertEqual(support.split_cgi(stdout)[2], body)

    def test_without_keep_conn_the_connection_closes_after_the_response(self):
        conn = self.setup_conn()
        self.peer.sendall(support.request(1, {}, keep=False))
        self.turn(conn)
        self.assertEqual(self.answer(1)[1], (0, 0))
        self.assertTrue(conn.lingering)
        self.assertEqual(self.peer.recv(10), b"")  # our side is shut

    def test_body_read_while_the_app_waits(self):
        conn = self.setup_conn()
        self.peer.sendall(support.begin(1) + support.params(1, {"REQUEST_METHOD": "POST"}))
        self.loop.on_readable(conn)  # params complete: the request is pending, not run yet
        self.peer.sendall(support.stdin(1, b"late body"))
        self.turn(conn)
        self.assertEqual(support.split_cgi(self.answer(1)[0])[2], b"late body")

    @unittest.skipUnless(hasattr(socket, "TCP_QUICKACK"), "TCP_QUICKACK is Linux's")
    def test_a_tcp_body_that_stalls_gets_our_ack_before_we_wait(self):
        """nginx leaves Nagle on upstream: a body's short last segment waits for our ACK, which a
        kept connection delays 40 ms unless we send it (TCP_QUICKACK) before waiting for it."""
        calls, acked = [], threading.Event()

        class Recording(socket.socket):
            def setsockopt(self, *args):
                calls.append(args)
                if args[1] == socket.TCP_QUICKACK:
                    acked.set()
                return socket.socket.setsockopt(self, *args)
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        self.loop = Loop(support.make_server(echo), support.Opts(), listener)
        self.addCleanup(self.loop.wake_w.close)
        self.addCleanup(self.loop.wake_r.close)
        self.peer = socket.create_connection(listener.getsockname())
        self.addCleanup(self.peer.close)
        accepted, _ = listener.accept()
        ours = Recording(fileno=accepted.detach())
        self.addCleanup(ours.close)
        ours.setblocking(False)
        conn = Conn(self.loop, ours)
        self.loop.conns[conn.fd] = conn
        self.err = io.StringIO()
        body = b"x" * 3000
        data = support.request(1, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "3000"}, body)
        self.peer.sendall(data[:-2000])  # the params and part of the body: the app has to wait
        self.assertTrue(select.select([ours], [], [], 10)[0], "the request's first bytes never arrived")
        runner = threading.Thread(target=self.turn, args=(conn,))
        runner.start()
        self.addCleanup(runner.join, 10)
        self.assertTrue(acked.wait(10), "no TCP_QUICKACK before waiting for the rest of the body")
        self.assertIn((socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1), calls)
        self.peer.sendall(data[-2000:])
        stdout, end = self.answer(1)
        runner.join(10)
        self.assertEqual((support.split_cgi(stdout)[2], end), (body, (0, 0)))

    def test_silence_past_the_body_timeout_aborts_and_closes(self):
        seen = []

        def app(environ, start_response):
            try:
                environ["wsgi.input"].read()
            except OSError as exc:
                seen.append(type(exc).__name__)
            start_response("200 OK", [])
            return [b""]
        conn = self.setup_conn(app, body_timeout=0.05)
        self.peer.sendall(support.begin(1) + support.params(1, {"REQUEST_METHOD": "POST"}) +
                          support.record(codec.STDIN, 1, b"part"))
        self.turn(conn)
        self.assertEqual(seen, ["ClientDisconnected"])
        self.assertTrue(conn.close_now)
        self.assertIn("no progress on the connection", self.err.getvalue())

    def test_a_second_request_id_is_refused_while_one_is_open(self):
        conn = self.setup_conn()
        self.peer.sendall(support.begin(1) + support.begin(2))
        self.turn(conn)
        self.assertEqual(self.answer(2)[1], (0, CANT_MPX_CONN))
        self.assertEqual(conn.req.id, 1)

    def test_content_length_over_the_limit_is_413_before_the_app(self):
        called = []
        conn = self.setup_conn(lambda e, s: called.append(1), max_body_size=10)
        self.peer.sendall(support.request(1, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "11"}, b"x" * 11))
        self.turn(conn)
        self.assertEqual(support.split_cgi(self.answer(1)[0])[0], 413)
        self.assertEqual(called, [])

    def test_a_body_growing_past_the_limit_aborts_and_closes(self):
        conn = self.setup_conn(max_body_size=10)
        self.peer.sendall(support.begin(1) + support.params(1, {"REQUEST_METHOD": "POST"}) +
                          support.record(codec.STDIN, 1, b"x" * 11))
        self.turn(conn)
        self.assertTrue(conn.close_now)
        self.assertIn("--max-body-size 10", self.err.getvalue())

    def test_params_over_the_limit_are_431_and_close(self):
        conn = self.setup_conn(max_params=50)
        self.peer.sendall(support.begin(1) + support.params(1, {"X": "y" * 100}))
        self.turn(conn)
        self.assertEqual(support.split_cgi(self.answer(1)[0])[0], 431)
        self.assertTrue(conn.lingering)

    def test_get_values_says_one_request_per_connection(self):
        conn = self.setup_conn(max_connections=7)
        self.peer.sendall(support.record(codec.GET_VALUES, 0, codec.encode_params(
            {"FCGI_MPXS_CONNS": "", "FCGI_MAX_CONNS": ""})))
        self.turn(conn)
        self.peer.settimeout(5)
        [(rtype, _, content)] = support.parse(self.peer.recv(1000))
        answer = {}
        codec.decode_params(content, answer)
        self.assertEqual(answer, {"FCGI_MPXS_CONNS": "0", "FCGI_MAX_CONNS": "7"})

    def test_a_corrupt_stream_closes_only_this_connection(self):
        conn = self.setup_conn()
        self.peer.sendall(b"\x09" + support.begin(1)[1:])
        self.turn(conn)
        self.assertNotIn(conn.fd, self.loop.conns)
        self.assertIn("bad FastCGI version byte 9", self.err.getvalue())


if __name__ == "__main__":
    unittest.main()
