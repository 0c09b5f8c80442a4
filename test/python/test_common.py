"""corral_wsgi.common: the log line, exceptions, exit_soon."""
import contextlib
import io
import sys
import unittest
from unittest import mock

import support  # noqa: F401  (sys.path)
from corral_wsgi import common


class Common(unittest.TestCase):
    def test_log_is_one_prefixed_line_on_stderr(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            common.log("hello")
        self.assertEqual(err.getvalue(), "corral_worker: hello\n")

    def test_log_survives_a_closed_or_missing_stderr(self):
        closed = io.StringIO()
        closed.close()
        for stream in (closed, None):
            with mock.patch.object(sys, "stderr", stream):
                common.log("nowhere")  # no exception

    def test_format_exc_has_the_traceback(self):
        try:
            raise KeyError("k")
        except KeyError as exc:
            text = common.format_exc(exc)
        self.assertTrue(text.startswith("Traceback"))
        self.assertIn("KeyError: 'k'", text)

    def test_client_disconnected_is_an_oserror_and_client_gone(self):
        self.assertTrue(issubclass(common.ClientDisconnected, OSError))
        self.assertTrue(issubclass(common.ClientDisconnected, common.ClientGone))
        self.assertTrue(issubclass(common.ResponseEnded, RuntimeError))

    def test_exit_soon_returns_the_code_and_arms_a_watchdog(self):
        started = []

        class Thread:  # not started: its os._exit would end this test run
            def __init__(self, target, name, daemon):
                started.append((name, daemon))
                self.target = target

            def start(self):
                pass
        with mock.patch.object(common.threading, "Thread", Thread):
            self.assertEqual(common.exit_soon(mock.Mock(grace=60.0), 7), 7)
        self.assertEqual(started, [("corral-exit", True)])


if __name__ == "__main__":
    unittest.main()
