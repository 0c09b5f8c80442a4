"""corral_wsgi.channel: record dispatch, malformed requests answered alone, and fd writes."""
import contextlib
import io
import os
import unittest
from unittest import mock

import support
from corral_wsgi import channel, codec
from corral_wsgi.codec import ProtocolError


def feed(chan, data):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        used = chan.feed(data)
    return used, err.getvalue()


def new(app=support.hello, **kw):
    return support.MemChannel(support.make_server(app), **kw)


class Dispatch(unittest.TestCase):
    def test_a_whole_request_runs_and_is_answered(self):
        chan = new()
        data = support.request(1, {"PATH_INFO": "/a"})
        used, _ = feed(chan, data)
        self.assertEqual(used, len(data))
        stdout, end = support.responses(chan.take())[1]
        self.assertEqual(support.split_cgi(stdout)[2], b"hello /a")
        self.assertEqual(end, (0, codec.REQUEST_COMPLETE))
        self.assertEqual(chan.requests, {})

    def test_requests_interleaved_on_one_stream(self):
        chan = new()
        data = (support.begin(1) + support.begin(2) + support.params(2, {"PATH_INFO": "/two"}) +
                support.params(1, {"PATH_INFO": "/one"}) + support.stdin(1) + support.stdin(2))
        feed(chan, data)
        answers = support.responses(chan.take())
        self.assertEqual(support.split_cgi(answers[1][0])[2], b"hello /one")
        self.assertEqual(support.split_cgi(answers[2][0])[2], b"hello /two")

    def test_a_partial_record_is_left_for_later(self):
        chan = new()
        data = support.request(1, {"PATH_INFO": "/a"})
        for cut in (3, 8, 9, len(data) - 1):
            with self.subTest(cut=cut):
                chan = new()
                used, _ = feed(chan, data[:cut])
                self.assertLessEqual(used, cut)
                used2, _ = feed(chan, data[used:])
                self.assertEqual(used + used2, len(data))
                self.assertIn(1, support.responses(chan.take()))

    def test_padding_is_skipped(self):
        chan = new()
        data = (support.begin(1) + support.record(codec.PARAMS, 1, codec.encode_params({"PATH_INFO": "/p"}), 5)
                + support.record(codec.PARAMS, 1, b"", 3) + support.stdin(1))
        feed(chan, data)
        self.assertEqual(support.split_cgi(support.responses(chan.take())[1][0])[2], b"hello /p")

    def test_a_bad_version_byte_is_a_protocol_error(self):
        with self.assertRaises(ProtocolError):
            new().feed(b"\x02" + support.begin(1)[1:])

    def test_get_values(self):
        chan = new()
        asked = codec.encode_params({"FCGI_MPXS_CONNS": "", "FCGI_MAX_REQS": "", "OTHER": ""})
        feed(chan, support.record(codec.GET_VALUES, 0, asked))
        [(rtype, rid, content)] = support.parse(chan.take())
        answer = {}
        codec.decode_params(content, answer)
        self.assertEqual((rtype, rid), (codec.GET_VALUES_RESULT, 0))
        self.assertEqual(answer, {"FCGI_MPXS_CONNS": "1", "FCGI_MAX_REQS": "1024"})

    def test_malformed_get_values_gets_an_empty_answer(self):
        chan = new()
        _, err = feed(chan, support.record(codec.GET_VALUES, 0, bytes([5, 5]) + b"ab"))
        self.assertEqual(support.parse(chan.take()), [(codec.GET_VALUES_RESULT, 0, b"")])
        self.assertIn("malformed GET_VALUES", err)

    def test_unknown_type(self):
        chan = new()
        feed(chan, support.record(99, 0, b"x"))
        self.assertEqual(support.parse(chan.take()), [(codec.UNKNOWN_TYPE, 0, bytes([99]) + bytes(7))])


class MalformedRequests(unittest.TestCase):
    def end_of(self, chan, rid):
        return support.responses(chan.take())[rid][1]

    def test_other_roles_are_refused(self):
        chan = new()
        feed(chan, support.begin(3, role=2))
        self.assertEqual(self.end_of(chan, 3), (0, codec.UNKNOWN_ROLE))

    def test_a_short_begin_request_is_refused_alone(self):
        chan = new()
        _, err = feed(chan, support.record(codec.BEGIN_REQUEST, 4, b"\x00\x01") + support.request(5, {}))
        answers = support.responses(chan.take())
        self.assertEqual(answers[4][1], (0, codec.UNKNOWN_ROLE))
        self.assertEqual(answers[5][1], (0, 0))
        self.assertIn("malformed BEGIN_REQUEST", err)

    def test_begin_for_an_active_id_is_ignored(self):
        chan = new()
        _, err = feed(chan, support.begin(1) + support.begin(1))
        self.assertEqual(chan.take(), b"")
        self.assertIn("still active", err)

    def test_stdin_before_the_end_of_params_is_400(self):
        chan = new()
        _, err = feed(chan, support.begin(1) + support.record(codec.STDIN, 1, b"body"))
        stdout, end = support.responses(chan.take())[1]
        self.assertEqual(support.split_cgi(stdout)[0], 400)
        self.assertEqual(end, (0, 0))
        self.assertIn("STDIN before the end of its PARAMS", err)

    def test_malformed_params_are_400(self):
        chan = new()
        bad = support.record(codec.PARAMS, 1, bytes([4, 50]) + b"NAME") + support.record(codec.PARAMS, 1)
        _, err = feed(chan, support.begin(1) + bad + support.request(2, {"PATH_INFO": "/ok"}))
        answers = support.responses(chan.take())
        self.assertEqual(support.split_cgi(answers[1][0])[0], 400)
        self.assertEqual(support.split_cgi(answers[2][0])[2], b"hello /ok")
        self.assertIn("malformed PARAMS", err)

    def test_params_over_the_limit_are_431(self):
        chan = new()
        chan.max_params = 100
        _, err = feed(chan, support.begin(1) + support.params(1, {"X": "y" * 200}) + support.stdin(1))
        self.assertEqual(support.split_cgi(support.responses(chan.take())[1][0])[0], 431)
        self.assertIn("exceed 100 bytes", err)

    def test_too_many_open_requests_are_overloaded(self):
        chan = new()
        _, err = feed(chan, b"".join(support.begin(rid) for rid in range(1, codec.MAX_REQS + 2)))
        self.assertEqual(self.end_of(chan, codec.MAX_REQS + 1), (0, codec.OVERLOADED))
        self.assertEqual(len(chan.requests), codec.MAX_REQS)
        self.assertIn("FCGI_OVERLOADED", err)

    def test_abort_before_params_ends_the_request(self):
        chan = new()
        feed(chan, support.begin(1) + support.record(codec.ABORT_REQUEST, 1))
        self.assertEqual(self.end_of(chan, 1), (0, 0))
        self.assertEqual(chan.server.active, 0)

    def test_input_closed_aborts_what_cannot_complete(self):
        chan = new()
        feed(chan, support.begin(1))
        chan.input_closed()
        self.assertTrue(support.responses(chan.take())[1][1] is not None)
        self.assertEqual(chan.requests, {})


class FdWrites(unittest.TestCase):
    def test_write_all_writes_everything(self):
        r, w = os.pipe()
        try:
            channel.write_all(w, b"x" * 1000)
            self.assertEqual(os.read(r, 2000), b"x" * 1000)
        finally:
            os.close(r)
            os.close(w)

    @unittest.skipUnless(channel.HAVE_WRITEV, "no os.writev here")
    def test_writev_all_resumes_partial_writes_across_and_inside_parts(self):
        out = bytearray()

        def short_writev(fd, bufs):  # at most 7 bytes per call, as a pipe under a signal can do
            data = b"".join(bytes(b) for b in bufs)[:7]
            out.extend(data)
            return len(data)
        parts = [b"head", b"", memoryview(b"0123456789abcdef")[3:], b"x" * 20, b"tail"]
        with mock.patch.object(channel.os, "writev", short_writev):
            channel.writev_all(1, parts)
        self.assertEqual(bytes(out), b"head3456789abcdef" + b"x" * 20 + b"tail")

    @unittest.skipUnless(channel.HAVE_WRITEV, "no os.writev here")
    def test_writev_all_batches_below_iov_max(self):
        calls = []

        def writev(fd, bufs):
            calls.append(len(bufs))
            return sum(len(b) for b in bufs)
        with mock.patch.object(channel.os, "writev", writev):
            channel.writev_all(1, [b"a"] * (channel.IOV_BATCH * 2 + 1))
        self.assertEqual(calls, [channel.IOV_BATCH, channel.IOV_BATCH, 1])

    def test_write_record_frames_the_payload_and_skips_no_fd(self):
        r, w = os.pipe()
        try:
            channel.write_record(w, codec.CORRAL_READY, b"{}")
            channel.write_record(None, codec.CORRAL_READY, b"ignored")
            self.assertEqual(support.parse(os.read(r, 100)), [(codec.CORRAL_READY, 0, b"{}")])
        finally:
            os.close(r)
            os.close(w)


if __name__ == "__main__":
    unittest.main()
