"""corral_wsgi.args: the command line; usage errors are UsageError (exit 3), with the usage."""
import os
import unittest
from unittest import mock

import support  # noqa: F401  (sys.path)
from corral_wsgi.args import DEFAULT_APP, DEFAULT_WINDOW, parse_args
from corral_wsgi.common import UsageError


class Args(unittest.TestCase):
    def setUp(self):
        patcher = mock.patch.dict(os.environ)
        patcher.start()
        self.addCleanup(patcher.stop)
        for name in ("WSGI_APP", "WSGI_HANDLER"):
            os.environ.pop(name, None)

    def test_defaults(self):
        opts = parse_args([])
        self.assertEqual((opts.app, opts.threads, opts.window, opts.eof_grace), (DEFAULT_APP, 1, DEFAULT_WINDOW, 2.0))
        self.assertEqual((opts.listen, opts.direct_fd, opts.backlog, opts.max_params), (None, None, 1024, 65536))
        self.assertEqual((opts.request_timeout, opts.params_timeout, opts.idle_timeout, opts.body_timeout),
                         (0.0, 10.0, 75.0, 60.0))
        self.assertFalse(opts.trust_x_original_url)

    def test_app_from_the_environment(self):
        os.environ["WSGI_HANDLER"] = "handler.app"
        self.assertEqual(parse_args([]).app, "handler.app")
        os.environ["WSGI_APP"] = "first:app"
        self.assertEqual(parse_args([]).app, "first:app")
        self.assertEqual(parse_args(["--app", "given:app"]).app, "given:app")

    def test_values(self):
        opts = parse_args(["--threads", "4", "--window", "1024", "--direct-fd", "3", "--max-body-size", "10",
                           "--request-timeout", "1.5", "--trust-x-original-url"])
        self.assertEqual((opts.threads, opts.window, opts.direct_fd, opts.max_body_size, opts.request_timeout),
                         (4, 1024, 3, 10, 1.5))
        self.assertTrue(opts.trust_x_original_url)

    def test_bad_usage(self):
        for argv, message in ((["--threads", "0"], "--threads"), (["--window", "1023"], "--window"),
                              (["--window", str(1 << 31)], "--window"), (["--eof-grace", "-1"], "--eof-grace"),
                              (["--backlog", "0"], "--backlog"), (["--max-connections", "0"], "--max-connections"),
                              (["--idle-timeout", "-1"], "--idle-timeout"), (["--max-params", "-5"], "--max-params"),
                              (["--listen", "x:1", "--direct-fd", "3"], "exclude each other"),
                              (["--threads", "many"], "invalid int"), (["--bogus"], "unrecognized")):
            with self.subTest(argv=argv), self.assertRaisesRegex(UsageError, message):
                parse_args(argv)

    def test_usage_text_comes_with_argparse_errors(self):
        with self.assertRaises(UsageError) as caught:
            parse_args(["--bogus"])
        self.assertIn("usage: corral_worker", caught.exception.usage)


if __name__ == "__main__":
    unittest.main()
