"""corral worker: the request body the app reads (wsgi.input) and wsgi.file_wrapper."""
import sys

from .codec import CORRAL_WINDOW, CREDIT_RECORD
from .common import ClientDisconnected, ClientGone


class Input:
    """wsgi.input: reads block until body bytes or the end of the body arrive.

    The body arrives as the STDIN records' contents, views into the bytes each read of the
    connection or pipe returned (Channel.feed): a read() copies them once, into the bytes it
    returns; only readline() joins what is pending to search it.

    On a windowed channel the bytes the app has read are handed back to the sender as credit
    (CORRAL_WINDOW), batched per a quarter window or whenever the app has to wait.
    """

    __slots__ = ("_chan", "_rid", "_buf", "_pos", "_pending", "held", "eof", "ended", "_unacked",
                 "cut_off")

    def __init__(self, chan, rid):
        self._chan = chan  # no reference to the Request: no cycle, freed at once when done
        self._rid = rid
        self._buf = b""
        self._pos = 0
        self._pending = []
        self.held = 0  # bytes received and not yet read by the app
        self.eof = False
        self.ended = False  # the request has ended: no more credit
        self._unacked = 0
        self.cut_off = False  # aborted: reads raise ClientDisconnected

    def feed(self, data):
        """Reader thread: body bytes arrived (b'' = end of body)."""
        chan = self._chan
        with chan.lock:
            if self.eof:
                return
            if data:
                self._pending.append(data)
                self.held += len(data)
            else:
                self.eof = True
            if chan.waiters:  # chan.wake(), inline: most records find nobody waiting
                chan.cond.notify_all()

    def cut(self):
        """The request is aborted: drop what is held; reads raise ClientDisconnected unless the
        app had read the whole body already (then they return end-of-data)."""
        self.cut_off = not self.eof or self.held > 0
        self._buf, self._pos, self._pending, self.held, self.eof = b"", 0, [], 0, True

    def read(self, size=-1):
        return self._collect(size, False)

    def readline(self, limit=-1):
        return self._collect(limit, True)

    def _collect(self, limit, line):
        """Up to limit bytes (None or negative: no limit); with line, up to and including a newline."""
        if limit is None or limit < 0:
            limit = sys.maxsize
        parts = []
        while limit > 0:
            piece = self._take(limit, line)
            if not piece:
                break
            parts.append(piece)
            limit -= len(piece)
            if line and piece[-1:] == b"\n":
                break
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    def readlines(self, hint=-1):
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def _take(self, limit, to_newline):
        """Up to limit bytes (stopping after a newline if asked), as bytes or a view the caller
        copies; b'' at the end of the body."""
        chan = self._chan
        while True:
            piece = None
            with chan.lock:
                pending = self._pending
                if self._pos >= len(self._buf) and pending:
                    if to_newline:  # a line is searched for in bytes: join what is pending
                        self._buf, self._pos, self._pending = b"".join(pending), 0, []
                    else:
                        piece = pending[0]  # a view: _collect makes the bytes it returns
                        if len(piece) <= limit:
                            del pending[0]
                        else:
                            pending[0], piece = piece[limit:], piece[:limit]
                if piece is None and self._pos < len(self._buf):
                    piece = self._slice(limit, to_newline)
                if piece is not None:
                    credit = self._consumed(len(piece))
                elif self.eof:
                    if self.cut_off:
                        raise ClientDisconnected("the client went away before the whole body arrived")
                    return b""
                else:  # nothing to read: give back credit first so the sender can go on
                    credit, self._unacked = self._unacked, 0
                    if not credit:
                        chan.wait()
            if credit:
                self._give_credit(credit)
            if piece is not None:
                return piece

    def _slice(self, limit, to_newline):
        buf, pos = self._buf, self._pos
        end = min(len(buf), pos + limit)
        if to_newline:
            nl = buf.find(b"\n", pos, end)
            if nl >= 0:
                end = nl + 1
        self._pos = end
        if end >= len(buf):
            self._buf, self._pos = b"", 0
            return buf[pos:] if pos else buf
        return buf[pos:end]

    def _consumed(self, size):
        """Account size bytes read; return the credit to give back now (0 = not yet)."""
        self.held -= size
        chan = self._chan
        if not chan.windowed:
            chan.wake()  # the connection's reader may wait for room (standalone mode)
            return 0
        if self.eof:
            return 0  # the whole body is here: the sender needs no more credit
        self._unacked += size
        if self._unacked < chan.quarter:
            return 0
        credit, self._unacked = self._unacked, 0
        return credit

    def _give_credit(self, size):
        """Tell the sender the app has read size more body bytes."""
        if not self.ended and not self.eof:
            try:
                self._chan.write(CREDIT_RECORD.pack(1, CORRAL_WINDOW, self._rid, 4, 0, size))
            except ClientGone:
                pass


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks and closes it."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read, size = self.filelike.read, self.blksize
        while True:
            block = read(size)
            if not block:
                return
            yield block
