"""corral_wsgi.answer: the answerer's app serves the page file the service rendered."""
import os
import shutil
import tempfile
import unittest

import support  # noqa: F401  (src/python on sys.path)
from corral_wsgi import answer

PAGE = (b"Status: 503 Service Unavailable\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"X-Corral-Error: CORRAL_IMPORT_FAILED\r\nRetry-After: 4\r\n\r\n<h1>down</h1>\n")


def call(app):
    seen = []
    body = b"".join(app({}, lambda status, headers, exc_info=None: seen.append((status, headers))))
    return seen[0][0], seen[0][1], body


class Answer(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, "page")

    def write(self, data):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)  # as the service does: write, then rename

    def test_parse_page_takes_status_headers_and_body(self):
        status, headers, body = answer.parse_page(PAGE)
        self.assertEqual(status, "503 Service Unavailable")
        self.assertIn(("X-Corral-Error", "CORRAL_IMPORT_FAILED"), headers)
        self.assertEqual(body, b"<h1>down</h1>\n")
        with self.assertRaises(ValueError):
            answer.parse_page(b"Status: 503 no end of head")
        with self.assertRaises(ValueError):
            answer.parse_page(b"no colon here\r\n\r\nbody")

    def test_serves_the_file_and_follows_a_replaced_page(self):
        self.write(PAGE)
        app = answer.Answer(self.path)
        self.assertEqual(call(app)[0], "503 Service Unavailable")
        self.write(PAGE.replace(b"503 Service Unavailable", b"500 Internal Server Error").replace(b"down", b"traceback!"))
        status, _, body = call(app)
        self.assertEqual((status, body), ("500 Internal Server Error", b"<h1>traceback!</h1>\n"))

    def test_a_missing_or_bad_file_keeps_the_last_good_page_and_says_why_once(self):
        app = answer.Answer(self.path)  # no file yet: the fallback 503
        err_r, err_w = os.pipe()
        saved = os.dup(2)
        os.dup2(err_w, 2)
        try:
            self.assertEqual(call(app)[0], "503 Service Unavailable")
            call(app)
            self.write(PAGE)
            self.assertEqual(call(app)[2], b"<h1>down</h1>\n")
            self.write(b"garbage without a head end")
            self.assertEqual(call(app)[2], b"<h1>down</h1>\n")  # the last good page stays
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(err_w)
        with os.fdopen(err_r, "rb") as f:
            said = f.read().decode()
        self.assertEqual(said.count("No such file"), 1, said)  # once, not per request
        self.assertIn("no end of head", said)


if __name__ == "__main__":
    unittest.main()
