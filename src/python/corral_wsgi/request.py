"""corral worker: one request id on a channel, the protocol side: params, body, output credit,
STDOUT records and END_REQUEST. The WSGI side is exchange.py's."""
from .body import Input
from .codec import (APP_OK, END_REQUEST, MAX_CONTENT, REQUEST_COMPLETE, STDOUT, TERMINATOR, frame_stdout,
                    pack_header)
from .common import ClientGone, ResponseEnded


class Request:
    """One request id on a channel: params, body buffer and output credit."""

    __slots__ = ("chan", "id", "keep_conn", "params", "params_size", "environ", "input", "credit",
                 "queued", "aborted", "ended", "out", "status", "thread", "began")

    def __init__(self, chan, rid, keep_conn):
        self.chan = chan
        self.id = rid
        self.keep_conn = keep_conn
        self.params = []
        self.params_size = 0
        self.environ = None
        self.input = Input(chan, rid)
        self.credit = chan.window
        self.queued = self.aborted = self.ended = False
        self.out = 0  # STDOUT content bytes sent or being sent (CGI head included)
        self.status = 0  # the response's status code, from its CGI head (for the access log)
        self.thread = 0  # the thread running the app for it (its stack is logged at a timeout)
        self.began = 0.0  # when the app got it (stdio mode with --stack-after)

    def send(self, parts, end=False, app_status=APP_OK):
        """Send parts (bytes) as STDOUT records within the credit; end=True ends the request."""
        if self.ended:
            raise ResponseEnded("write() after the response to request id %d ended" % self.id)
        total = 0
        for part in parts:
            total += len(part)
        if total:
            if not self.out:
                head = parts[0]
                if type(head) is bytes and head[:8] == b"Status: " and head[8:11].isdigit():
                    self.status = int(head[8:11])
            self.out += total
            if not end:
                self.chan.catch_up()  # inline: an ABORT may be waiting unread
            if self.aborted:
                raise ClientGone()
            if self.chan.windowed:
                granted = self._reserve(total)
                if granted < total:
                    self._send_by_credit(parts, total, granted, end, app_status)
                    return
            if end and total <= MAX_CONTENT:
                # The usual whole response (head and body) fits one record: one STDOUT record,
                # the terminator, one bytes object, one write.
                rid = self.id
                self._end((b"".join([pack_header(1, STDOUT, rid, total, 0), *parts, TERMINATOR.pack(
                    1, STDOUT, rid, 0, 0, 1, END_REQUEST, rid, 8, 0, app_status, REQUEST_COMPLETE)]),))
                return
        out = []
        for part in parts:
            if part:
                frame_stdout(out, self.id, part)
        self._write(out, end, app_status)

    def _send_by_credit(self, parts, total, granted, end, app_status):
        """Send parts (total bytes) as credit comes, granted bytes of it already reserved;
        slices of the parts, never a joined copy."""
        left = [memoryview(p) for p in parts if p]
        i = 0
        while True:
            out = []
            total -= granted
            while granted:
                part = left[i]
                if len(part) <= granted:
                    frame_stdout(out, self.id, part)
                    granted -= len(part)
                    i += 1
                else:
                    frame_stdout(out, self.id, part[:granted])
                    left[i] = part[granted:]
                    granted = 0
            if not total:
                self._write(out, end, app_status)
                return
            self._write(out, False)
            granted = self._reserve(total)

    def _reserve(self, want):
        """Block (this thread only) until there is credit; take up to want bytes of it."""
        chan = self.chan
        with chan.lock:
            while self.credit <= 0 and not self.aborted and not self.ended and not chan.broken:
                chan.wait()
            if self.ended:  # another thread ended it: no credit will come for this id
                raise ResponseEnded("write() after the response to request id %d ended" % self.id)
            if self.aborted or self.chan.broken:
                raise ClientGone()
            granted = want if want <= self.credit else self.credit
            self.credit -= granted
            return granted

    def _write(self, out, end, app_status=APP_OK):
        if not end:
            self.chan.write_parts(out, self)
            return
        out.append(TERMINATOR.pack(1, STDOUT, self.id, 0, 0, 1, END_REQUEST, self.id, 8, 0,
                                   app_status, REQUEST_COMPLETE))
        self._end(out)

    def _end(self, out):
        """Write out, which ends with END_REQUEST, unless the request has ended already."""
        chan = self.chan
        with chan.lock:  # an abort from the reader thread may race with the app thread
            if self.ended:
                return
            self.ended = self.input.ended = True
            chan.wake()  # a thread waiting for credit for this id: none will come
        chan.requests.pop(self.id, None)  # before END_REQUEST: the service may reuse the id at once
        try:
            chan.write_parts(out)
        finally:
            chan.finished(self)

    def finish_quietly(self, app_status=APP_OK):
        """End the request (END_REQUEST) if that has not happened; ignore a dead channel."""
        if not self.ended:
            try:
                self._write([], True, app_status)
            except ClientGone:
                pass
