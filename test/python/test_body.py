"""corral_wsgi.body: wsgi.input over a channel (reads, lines, credit, aborts) and FileWrapper."""
import io
import threading
import unittest

import support
from corral_wsgi import codec
from corral_wsgi.body import FileWrapper, Input
from corral_wsgi.common import ClientDisconnected


class FakeChannel:
    """What Input needs of a channel: lock, wait/wake, windowed, quarter, write."""

    def __init__(self, windowed=False, quarter=4, on_wait=None):
        self.lock = threading.Lock()
        self.windowed = windowed
        self.quarter = quarter
        self.written = []
        self.waits = 0
        self.waiters = 0  # feed() wakes waiters itself when there are any
        self.on_wait = on_wait  # called with the lock released: feeds more, like a reader would

    def wait(self):
        self.waits += 1
        if self.on_wait is None:
            raise AssertionError("the input waited with nothing to come")
        self.lock.release()
        try:
            self.on_wait()
        finally:
            self.lock.acquire()

    def wake(self):
        pass

    def write(self, data):
        self.written.append(data)


def fed(chunks, **kw):
    chan = FakeChannel(**kw)
    inp = Input(chan, 1)
    for chunk in chunks:
        inp.feed(chunk)
    return inp, chan


class Reading(unittest.TestCase):
    def test_read_all_joins_the_chunks(self):
        inp, _ = fed([b"ab", b"cd", b""])
        self.assertEqual(inp.read(), b"abcd")
        self.assertEqual(inp.read(), b"")
        self.assertEqual(inp.read(10), b"")

    def test_read_size_stops_at_size(self):
        inp, _ = fed([b"abcdef", b""])
        self.assertEqual(inp.read(4), b"abcd")
        self.assertEqual(inp.read(None), b"ef")

    def test_readline_and_its_limit(self):
        inp, _ = fed([b"one\ntw", b"o\nthree", b""])
        self.assertEqual(inp.readline(), b"one\n")
        self.assertEqual(inp.readline(2), b"tw")
        self.assertEqual(inp.readline(), b"o\n")
        self.assertEqual(inp.readline(), b"three")
        self.assertEqual(inp.readline(), b"")

    def test_iteration_and_readlines_hint(self):
        inp, _ = fed([b"a\nb\nc\n", b""])
        self.assertEqual(list(inp), [b"a\n", b"b\n", b"c\n"])
        inp, _ = fed([b"a\nb\nc\n", b""])
        self.assertEqual(inp.readlines(3), [b"a\n", b"b\n"])  # stops once the hint is reached, as io does

    def test_views_from_the_channel_come_out_as_bytes_whatever_the_read(self):
        """Channel.feed hands on body bytes as views into what it read: the app gets bytes, read
        in any sizes and mixed with readline, in order, and the views are not copied twice."""
        data = memoryview(b"first line\nsecond\nthird part of the body")
        pieces = [data[0:7], data[7:20], data[20:]]
        inp, _ = fed(pieces + [b""])
        got = [inp.read(3), inp.readline(), inp.read(4), inp.readline(), inp.read(5), inp.read()]
        self.assertEqual([type(g) for g in got], [bytes] * 6)
        self.assertEqual(b"".join(got), data.tobytes())
        self.assertEqual(got[:4], [b"fir", b"st line\n", b"seco", b"nd\n"])
        inp, _ = fed([data[0:11], b""])
        whole = inp.read(100)  # one whole view: copied once, into bytes
        self.assertEqual((type(whole), whole), (bytes, b"first line\n"))
        inp, _ = fed(pieces + [b""])
        self.assertEqual(list(inp), [b"first line\n", b"second\n", b"third part of the body"])

    def test_held_counts_unread_bytes(self):
        inp, _ = fed([b"abc", b"de"])
        self.assertEqual(inp.held, 5)
        inp.read(2)
        self.assertEqual(inp.held, 3)

    def test_a_read_waits_for_more_and_gets_it(self):
        later = [b"", b"cd"]
        holder = []
        inp, chan = fed([b"ab"], on_wait=lambda: holder[0].feed(later.pop()))
        holder.append(inp)
        self.assertEqual(inp.read(), b"abcd")
        self.assertEqual(chan.waits, 2)

    def test_feed_after_end_is_ignored(self):
        inp, _ = fed([b"a", b"", b"late"])
        self.assertEqual(inp.read(), b"a")


class Aborts(unittest.TestCase):
    def test_cut_before_the_end_raises_client_disconnected(self):
        inp, _ = fed([b"partial"])
        inp.cut()
        with self.assertRaises(ClientDisconnected):
            inp.read()
        self.assertTrue(isinstance(ClientDisconnected(), OSError))

    def test_cut_after_everything_was_read_is_end_of_data(self):
        inp, _ = fed([b"all", b""])
        self.assertEqual(inp.read(), b"all")
        inp.cut()
        self.assertEqual(inp.read(), b"")


class Credit(unittest.TestCase):
    def credits(self, chan):
        return [(rid, codec.UINT32.unpack(content)[0]) for data in chan.written
                for rtype, rid, content in support.parse(data) if rtype == codec.CORRAL_WINDOW]

    def test_credit_goes_back_per_quarter_window(self):
        inp, chan = fed([b"x" * 10], windowed=True, quarter=4)
        inp.read(3)
        self.assertEqual(self.credits(chan), [])
        inp.read(2)
        self.assertEqual(self.credits(chan), [(1, 5)])

    def test_no_credit_once_the_whole_body_is_here(self):
        inp, chan = fed([b"x" * 10, b""], windowed=True, quarter=4)
        inp.read()
        self.assertEqual(chan.written, [])

    def test_unacked_credit_goes_back_before_waiting(self):
        holder = []
        inp, chan = fed([b"xy"], windowed=True, quarter=100, on_wait=lambda: holder[0].feed(b""))
        holder.append(inp)
        self.assertEqual(inp.read(), b"xy")
        self.assertEqual(self.credits(chan), [(1, 2)])

    def test_no_credit_after_the_request_ended(self):
        inp, chan = fed([b"x" * 10], windowed=True, quarter=4)
        inp.ended = True
        inp.read(8)
        self.assertEqual(chan.written, [])


class FileWrapping(unittest.TestCase):
    def test_blocks_and_close(self):
        f = io.BytesIO(b"a" * 10)
        wrapper = FileWrapper(f, 4)
        self.assertEqual(list(wrapper), [b"aaaa", b"aaaa", b"aa"])
        wrapper.close()
        self.assertTrue(f.closed)

    def test_without_close(self):
        class Reader:
            def __init__(self):
                self.left = [b"z"]

            def read(self, size):
                return self.left.pop() if self.left else b""
        wrapper = FileWrapper(Reader())
        self.assertEqual(list(wrapper), [b"z"])
        self.assertFalse(hasattr(wrapper, "close"))


if __name__ == "__main__":
    unittest.main()
