"""corral_wsgi.exchange: start_response validation, Content-Length, HEAD, write(), app errors."""
import contextlib
import io
import sys
import json
import unittest

import support
from corral_wsgi import codec
from corral_wsgi.common import ResponseEnded


def run(app, method="GET", body=b"", dev_errors=False):
    """(status, headers, body, app status, stderr) of one request to app."""
    chan = support.MemChannel(support.make_server(app, dev_errors=dev_errors))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        used = chan.feed(support.request(1, {"REQUEST_METHOD": method, "PATH_INFO": "/p"}, body))
    stdout, end = support.responses(chan.take())[1]
    status, headers, content = support.split_cgi(stdout)
    return status, headers, content, end[0], err.getvalue(), used


def app_with(status="200 OK", headers=(("Content-Type", "text/plain"),), body=(b"ok",)):
    def app(environ, start_response):
        start_response(status, list(headers))
        return body
    return app


class StartResponse(unittest.TestCase):
    def test_headers_become_the_cgi_head(self):
        status, headers, body, app_status, _, _ = run(app_with("201 Created", [("X-A", "1"), ("X-B", "two")]))
        self.assertEqual((status, headers["x-a"], headers["x-b"], body, app_status), (201, "1", "two", b"ok", 0))

    def assert_500(self, app, message):
        status, _, body, _, err, _ = run(app)
        self.assertEqual((status, body), (500, b"Internal Server Error\n"))
        self.assertIn(message, err)

    def test_bad_status_is_an_app_error(self):
        for bad in ("OK", "20 OK", "200OK", ""):
            self.assert_500(app_with(bad), "bad status")
        self.assertEqual(run(app_with("200"))[0], 200)  # a bare code will do

    def test_non_str_status_or_headers(self):
        self.assert_500(app_with(b"200 OK"), "status must be a str")
        self.assert_500(app_with(headers=[("X", 1)]), "must be str")

    def test_header_injection_is_refused(self):
        self.assert_500(app_with(headers=[("X", "a\r\nSet-Cookie: evil")]), "header injection")
        self.assert_500(app_with(headers=[("X", "a\nb")]), "header injection")
        self.assert_500(app_with("200 OK\r\nX: y"), "header injection")

    def test_non_latin1_header_is_refused(self):
        self.assert_500(app_with(headers=[("X", "\u20ac")]), "UnicodeEncodeError")

    def test_second_call_needs_exc_info(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            start_response("500 Oops", [])
            return [b""]
        self.assert_500(app, "start_response() called twice")

    def test_exc_info_before_sending_replaces_the_headers(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            try:
                raise ValueError("x")
            except ValueError:
                start_response("503 Unavailable", [("X-Err", "1")], sys.exc_info())
            return [b"sorry"]
        status, headers, body, _, _, _ = run(app)
        self.assertEqual((status, headers["x-err"], body), (503, "1", b"sorry"))

    def test_exc_info_after_sending_reraises_and_truncates(self):
        def app(environ, start_response):
            write = start_response("200 OK", [])
            write(b"partial")
            try:
                raise ValueError("late")
            except ValueError:
                start_response("500 Oops", [], sys.exc_info())
            return [b"never"]
        status, _, body, app_status, err, _ = run(app)
        self.assertEqual((status, body, app_status), (200, b"partial", codec.APP_FAILED))
        self.assertIn("ValueError: late", err)

    def test_no_start_response_is_an_error(self):
        self.assert_500(lambda environ, start_response: [b"x"], "without calling start_response")


class Bodies(unittest.TestCase):
    def test_more_than_content_length_is_cut(self):
        app = app_with(headers=[("Content-Length", "3")], body=[b"ab", b"cdef", b"gh"])
        status, _, body, app_status, err, _ = run(app)
        self.assertEqual((body, app_status), (b"abc", 0))
        self.assertIn("more than its Content-Length 3", err)

    def test_less_than_content_length_fails_the_request(self):
        status, _, body, app_status, err, _ = run(app_with(headers=[("Content-Length", "10")], body=iter([b"abc"])))
        self.assertEqual((body, app_status), (b"abc", codec.APP_FAILED))
        self.assertIn("cut short", err)

    def test_head_and_204_send_no_body(self):
        self.assertEqual(run(app_with(headers=[("Content-Length", "2")]), method="HEAD")[2], b"")
        self.assertEqual(run(app_with("204 No Content"))[2], b"ok")  # no length: sent as given
        self.assertEqual(run(app_with("304 Not Modified", [("Content-Length", "2")], [b"ok"]))[2], b"ok")

    def test_body_items_must_be_bytes(self):
        self.assertEqual(run(app_with(body=[bytearray(b"ab"), memoryview(b"cd")]))[2], b"abcd")
        status, _, _, _, err, _ = run(app_with(body=["text"]))
        self.assertEqual(status, 500)
        self.assertIn("must be bytes", err)

    def test_generator_chunks_and_close(self):
        closed = []

        class Result:
            def __iter__(self):
                yield b"a"
                yield b""
                yield b"b"

            def close(self):
                closed.append(True)

        def app(environ, start_response):
            start_response("200 OK", [])
            return Result()
        self.assertEqual(run(app)[2], b"ab")
        self.assertEqual(closed, [True])

    def test_write_after_return_raises(self):
        kept = []

        def app(environ, start_response):
            kept.append(start_response("200 OK", []))
            return [b"x"]
        run(app)
        with self.assertRaises(ResponseEnded):
            kept[0](b"late")

    def test_dev_errors_page(self):
        def app(environ, start_response):
            raise KeyError("<missing>")
        status, headers, body, _, _, _ = run(app, dev_errors=True)
        # dev: the exception's facts for the front's page (devtrace), with the error code
        self.assertEqual((status, headers["content-type"]), (500, "application/vnd.corral.devtrace+json"))
        self.assertEqual(headers["x-corral-error"], "CORRAL_APP_EXCEPTION")
        first = json.loads(body.decode("utf-8"))["exceptions"][0]
        self.assertEqual((first["type"], first["message"]), ("KeyError", "'<missing>'"))
        self.assertEqual(int(headers["content-length"]), len(body))


if __name__ == "__main__":
    unittest.main()
