"""corral_wsgi.server: running requests (inline or on the thread pool), error bodies, idleness."""
import contextlib
import io
import threading
import unittest

import support
from corral_wsgi.request import Request


class Serving(unittest.TestCase):
    def test_thread_pool_runs_queued_requests(self):
        done = threading.Event()
        seen = []

        def app(environ, start_response):
            seen.append(threading.current_thread().name)
            start_response("200 OK", [])
            return [b"x"]
        server = support.make_server(app, threads=2)
        chan = support.MemChannel(server)
        chan.flush_runnable = support.Channel.flush_runnable.__get__(chan)  # queue them, as the pipes do
        chan.finished = lambda req: (server.request_done(), done.set())
        server.start_threads()
        chan.feed(support.request(1, {"PATH_INFO": "/"}))
        self.assertTrue(done.wait(10))
        self.assertTrue(seen[0].startswith("corral-app-"))
        self.assertEqual(server.active, 0)

    def test_an_aborted_request_never_reaches_the_app(self):
        called = []
        server = support.make_server(lambda e, s: called.append(1))
        chan = support.MemChannel(server)
        req = Request(chan, 1, True)
        chan.requests[1] = req
        server.request_started()
        req.aborted = True
        server.serve_request(req)
        self.assertEqual(called, [])
        self.assertTrue(req.ended)
        self.assertEqual(server.active, 0)

    def test_an_internal_error_still_ends_the_request(self):
        server = support.make_server()
        chan = support.MemChannel(server)
        req = Request(chan, 1, True)
        chan.requests[1] = req
        server.request_started()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            server.serve_request(req)  # no environ: Exchange cannot even start
        self.assertIn("internal error serving request id 1", err.getvalue())
        self.assertTrue(req.ended)

    def test_error_body_plain_or_dev_page(self):
        exc = ValueError("boom")
        plain = (b"Internal Server Error\n", "text/plain; charset=utf-8")
        self.assertEqual(support.make_server().error_body(exc), plain)
        body, ctype = support.make_server(dev_errors=True).error_body(exc)
        self.assertEqual(ctype, "application/vnd.corral.devtrace+json")  # facts the front renders
        self.assertIn(b"boom", body)

    def test_wait_idle(self):
        server = support.make_server()
        self.assertTrue(server.wait_idle(0))
        server.request_started()
        self.assertFalse(server.wait_idle(0.01))
        threading.Timer(0.05, server.request_done).start()
        self.assertTrue(server.wait_idle(10))

    def test_environ_uses_the_request_input_and_trust_flag(self):
        server = support.make_server()
        server.trust_original_url = True
        chan = support.MemChannel(server)
        req = Request(chan, 1, True)
        env = server.environ(req, support.codec.encode_params({
            "SERVER_SOFTWARE": "Microsoft-IIS/10.0", "APPL_MD_PATH": "/LM/W3SVC/1/ROOT",
            "HTTP_X_ORIGINAL_URL": "/orig", "PATH_INFO": "/rewritten"}))
        self.assertIs(env["wsgi.input"], req.input)
        self.assertEqual(env["PATH_INFO"], "/orig")


if __name__ == "__main__":
    unittest.main()
