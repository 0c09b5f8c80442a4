"""corral_wsgi.codec: name-value pairs and STDOUT framing."""
import struct
import unittest

import support
from corral_wsgi import codec
from corral_wsgi.codec import ProtocolError, decode_params, encode_params, frame_stdout


def decoded(data):
    env = {}
    decode_params(data, env)
    return env


class NameValuePairs(unittest.TestCase):
    def test_round_trip_short_and_long_lengths(self):
        pairs = {"A": "", "SHORT": "x" * 127, "LONG": "y" * 128, "N" * 200: "v", "BIG": "z" * 70000,
                 "LATIN": "caf\xe9 \xff"}
        data = encode_params(pairs)
        self.assertEqual(decoded(data), pairs)

    def test_length_encoding_switches_to_four_bytes_at_128(self):
        self.assertEqual(encode_params({"k": "v" * 127})[:2], bytes([1, 127]))
        self.assertEqual(encode_params({"k": "v" * 128})[:5], bytes([1, 0x80, 0, 0, 128]))

    def test_four_byte_length_ignores_the_top_bit(self):
        data = struct.pack("!II", 0x80000001, 0x80000002) + b"kvv"
        self.assertEqual(decoded(data), {"k": "vv"})

    def test_values_are_latin1_strings_of_the_raw_bytes(self):
        data = bytes([4, 3]) + b"PATH\xc3\xa9/"
        self.assertEqual(decoded(data), {"PATH": "\xc3\xa9/"})

    def test_empty_is_nothing(self):
        self.assertEqual(decoded(b""), {})

    def test_a_pair_running_past_the_end_is_an_error(self):
        with self.assertRaises(ProtocolError):
            decode_params(bytes([4, 10]) + b"NAMEshort", {})

    def test_a_truncated_length_is_an_error(self):
        for data in (bytes([4]), bytes([0x80, 0, 0]), bytes([1, 0x80, 0])):
            with self.subTest(data=data), self.assertRaises((ProtocolError, IndexError, struct.error)):
                decode_params(data, {})

    def test_a_huge_declared_length_is_an_error_not_an_allocation(self):
        with self.assertRaises(ProtocolError):
            decode_params(struct.pack("!II", 0xFFFFFFFF, 0xFFFFFFFF) + b"x", {})


class Framing(unittest.TestCase):
    def test_small_data_is_one_record(self):
        out = []
        frame_stdout(out, 7, b"hello")
        self.assertEqual(support.parse(b"".join(out)), [(codec.STDOUT, 7, b"hello")])

    def test_large_data_splits_at_65535_without_copying(self):
        data = bytes(range(256)) * 1000  # 256000 bytes
        out = []
        frame_stdout(out, 3, data)
        records = support.parse(b"".join(bytes(p) for p in out))
        self.assertEqual([len(c) for _, _, c in records], [65535, 65535, 65535, 59395])
        self.assertEqual(b"".join(c for _, _, c in records), data)
        self.assertTrue(all(isinstance(p, memoryview) for p in out[1::2]))

    def test_exactly_max_content_is_one_record(self):
        out = []
        frame_stdout(out, 1, b"x" * codec.MAX_CONTENT)
        self.assertEqual(len(out), 2)

    def test_terminator_is_an_empty_stdout_and_end_request(self):
        data = codec.TERMINATOR.pack(1, codec.STDOUT, 9, 0, 0, 1, codec.END_REQUEST, 9, 8, 0,
                                     codec.APP_FAILED, codec.REQUEST_COMPLETE)
        self.assertEqual(support.parse(data), [(codec.STDOUT, 9, b""),
                                               (codec.END_REQUEST, 9, bytes([0, 0, 0, 1, 0, 0, 0, 0]))])

    def test_get_values_answers_are_encodable(self):
        self.assertEqual(decoded(encode_params(codec.GET_VALUES_ANSWERS)), codec.GET_VALUES_ANSWERS)


if __name__ == "__main__":
    unittest.main()
