"""corral worker: the FastCGI codec: record types and layouts, name-value pairs, STDOUT framing.

FastCGI 1.0 plus corral's extension records (src/fcgi/PROTOCOL.md). Pure functions on bytes: the
channels (channel.py, stdio.py, conn.py) do the I/O.
"""
import struct

PROTOCOL_VERSION = 1  # corral's extension protocol, in READY
MAX_CONTENT = 65535

# FastCGI 1.0 record types, roles and statuses, and corral's extension types (PROTOCOL.md).
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
CORRAL_READY, CORRAL_WINDOW, CORRAL_PING, CORRAL_PONG, CORRAL_FATAL = 0xC0, 0xC1, 0xC2, 0xC3, 0xC4
RESPONDER, KEEP_CONN = 1, 1
REQUEST_COMPLETE, OVERLOADED, UNKNOWN_ROLE = 0, 2, 3
APP_OK, APP_FAILED = 0, 1  # END_REQUEST appStatus; 1 = the app raised after the headers were sent

HEADER = struct.Struct("!BBHHBx")  # version, type, request id, content length, padding length
BEGIN_BODY = struct.Struct("!HB5x")  # role, flags
END_RECORD = struct.Struct("!BBHHBxIB3x")  # a whole END_REQUEST record
TERMINATOR = struct.Struct("!BBHHBxBBHHBxIB3x")  # empty STDOUT record + END_REQUEST record
CREDIT_RECORD = struct.Struct("!BBHHBxI")  # a whole CORRAL_WINDOW record
UINT32 = struct.Struct("!I")
pack_header = HEADER.pack

MAX_REQS = 1024  # requests open at once per channel (FCGI_MAX_REQS); more are refused
GET_VALUES_ANSWERS = {"FCGI_MAX_CONNS": "1024", "FCGI_MAX_REQS": str(MAX_REQS), "FCGI_MPXS_CONNS": "1"}


class ProtocolError(Exception):
    """The incoming record stream is malformed."""


def decode_params(data, env):
    """Decode FastCGI name-value pairs (1- or 4-byte lengths) into env as latin-1 strings."""
    text = data.decode("latin-1")  # one decode; latin-1 keeps byte offsets = char offsets
    unpack = UINT32.unpack_from
    n = len(data)
    i = 0
    while i < n:
        klen = data[i]
        vlen = data[i + 1]  # past the end: IndexError, as a malformed pair
        if klen | vlen < 128:  # both lengths in one byte: nearly every pair
            j = i + 2 + klen
            i = j + vlen
            env[text[j - klen:j]] = text[j:i]
            continue
        if klen < 128:
            i += 1
        else:
            klen = unpack(data, i)[0] & 0x7FFFFFFF
            i += 4
        vlen = data[i]
        if vlen < 128:
            i += 1
        else:
            vlen = unpack(data, i)[0] & 0x7FFFFFFF
            i += 4
        j = i + klen
        i = j + vlen
        env[text[j - klen:j]] = text[j:i]
    if i != n:
        raise ProtocolError("name-value pairs run past the end of PARAMS")


def encode_params(pairs):
    """Encode a dict of str to FastCGI name-value pairs (latin-1)."""
    out = []
    for name, value in pairs.items():
        for item in (name, value):
            size = len(item.encode("latin-1"))
            out.append(bytes([size]) if size < 128 else UINT32.pack(size | 0x80000000))
        out.append(name.encode("latin-1") + value.encode("latin-1"))
    return b"".join(out)


def frame_stdout(out, rid, data):
    """Append STDOUT records carrying data (split at 65535 bytes, no padding) to out."""
    size = len(data)
    if size <= MAX_CONTENT:
        out.append(pack_header(1, STDOUT, rid, size, 0))
        out.append(data)
        return
    view = memoryview(data)
    for start in range(0, size, MAX_CONTENT):
        part = view[start:start + MAX_CONTENT]
        out.append(pack_header(1, STDOUT, rid, len(part), 0))
        out.append(part)
