"""corral_wsgi.errorpage: the CORRAL_DEV_ERRORS=1 page."""
import unittest

import support  # noqa: F401  (sys.path)
from corral_wsgi.errorpage import error_page


class ErrorPage(unittest.TestCase):
    def raised(self):
        try:
            raise ValueError("<script>alert(1)</script>")
        except ValueError as exc:
            return exc

    def test_names_the_exception_and_escapes_everything(self):
        page = error_page(self.raised(), []).decode("utf-8")
        self.assertTrue(page.startswith("<!doctype html>"))
        self.assertIn("<h1>ValueError</h1>", page)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", page)
        self.assertNotIn("<script>", page)
        self.assertIn("Traceback", page)

    def test_says_file_and_line(self):
        exc = self.raised()
        page = error_page(exc, []).decode("utf-8")
        self.assertIn("at %s, line %d" % (__file__, exc.__traceback__.tb_lineno), page)

    def test_unencodable_text_is_escaped_not_fatal(self):
        page = error_page(RuntimeError("\udcff"), [])
        self.assertIn(b"unknown location", page)
        self.assertIn(b"\\udcff", page)


if __name__ == "__main__":
    unittest.main()
