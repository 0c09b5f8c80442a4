"""corral_wsgi.request: a request id's protocol side: STDOUT within credit, END_REQUEST."""
import threading
import unittest

import support
from corral_wsgi import codec
from corral_wsgi.common import ClientGone, ResponseEnded
from corral_wsgi.request import Request


def begun(windowed=False, window=262144, keep=True):
    chan = support.MemChannel(support.make_server(window=window), windowed=windowed)
    req = Request(chan, 5, keep)
    chan.requests[5] = req
    chan.server.request_started()
    return chan, req


class Sending(unittest.TestCase):
    def test_a_whole_small_response_is_one_record_and_the_terminator(self):
        chan, req = begun()
        req.send((b"Status: 201 Created\r\n\r\n", b"body"), end=True)
        records = support.parse(chan.take())
        self.assertEqual(records, [(codec.STDOUT, 5, b"Status: 201 Created\r\n\r\nbody"), (codec.STDOUT, 5, b""),
                                   (codec.END_REQUEST, 5, bytes(8))])
        self.assertEqual((req.status, req.out, req.ended), (201, 27, True))
        self.assertNotIn(5, chan.requests)
        self.assertEqual(chan.server.active, 0)

    def test_parts_sent_before_the_end_are_records_of_their_own(self):
        chan, req = begun()
        req.send((b"Status: 200 OK\r\n\r\n", b"first"))
        req.send((b"last",), end=True)
        self.assertEqual([c for _, _, c in support.parse(chan.take())],
                         [b"Status: 200 OK\r\n\r\n", b"first", b"last", b"", bytes(8)])

    def test_a_large_end_response_is_split_at_65535(self):
        chan, req = begun()
        req.send((b"Status: 200 OK\r\n\r\n", b"x" * 70000), end=True)
        sizes = [len(c) for t, _, c in support.parse(chan.take()) if t == codec.STDOUT]
        self.assertEqual(sizes, [18, 65535, 4465, 0])

    def test_empty_parts_are_not_framed(self):
        chan, req = begun()
        req.send((b"", b"x"))
        self.assertEqual(support.parse(chan.take()), [(codec.STDOUT, 5, b"x")])

    def test_status_defaults_to_zero_without_a_status_line(self):
        chan, req = begun()
        req.send((b"Content-Type: text/plain\r\n\r\n",), end=True)
        self.assertEqual(req.status, 0)

    def test_send_after_end_raises(self):
        chan, req = begun()
        req.send((b"x",), end=True)
        with self.assertRaises(ResponseEnded):
            req.send((b"more",))

    def test_app_status_goes_into_end_request(self):
        chan, req = begun()
        req.finish_quietly(codec.APP_FAILED)
        self.assertEqual(support.responses(chan.take())[5], (b"", (codec.APP_FAILED, codec.REQUEST_COMPLETE)))
        req.finish_quietly()  # twice: nothing more
        self.assertEqual(chan.take(), b"")

    def test_aborted_request_raises_client_gone(self):
        chan, req = begun()
        req.aborted = True
        with self.assertRaises(ClientGone):
            req.send((b"x",))


class Credit(unittest.TestCase):
    def test_within_credit_goes_at_once(self):
        chan, req = begun(windowed=True, window=1024)
        req.send((b"a" * 1000,))
        self.assertEqual(req.credit, 24)
        self.assertEqual(len(support.parse(chan.take())), 1)

    def test_beyond_credit_waits_for_window_records(self):
        chan, req = begun(windowed=True, window=1024)
        grants = [2000, 1000]

        def wait():  # the service grants more, as a reader thread would
            req.credit += grants.pop()
        chan.wait = wait
        req.send((b"h" * 10, b"b" * 3990), end=True)
        body, end = support.responses(chan.take())[5]
        self.assertEqual(body, b"h" * 10 + b"b" * 3990)
        self.assertEqual(end, (0, 0))
        self.assertEqual(grants, [])

    def test_waiting_for_credit_ends_on_abort(self):
        chan, req = begun(windowed=True, window=1024)

        def wait():
            req.aborted = True
        chan.wait = wait
        with self.assertRaises(ClientGone):
            req.send((b"x" * 2000,))

    def test_another_thread_ending_the_request_stops_a_waiting_writer(self):
        chan, req = begun(windowed=True, window=1024)
        req.credit = 0
        errors = []

        def writer():
            try:
                req.send((b"x" * 10,))
            except ResponseEnded as exc:
                errors.append(exc)
        thread = threading.Thread(target=writer)
        chan.waiters = 0
        thread.start()
        while not chan.waiters:  # the writer waits on the channel's condition
            thread.join(0.01)
        req.finish_quietly()
        thread.join(5)
        self.assertFalse(thread.is_alive())
        self.assertEqual(len(errors), 1)


if __name__ == "__main__":
    unittest.main()
