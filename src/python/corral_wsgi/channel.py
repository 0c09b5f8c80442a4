"""corral worker: a record stream (the service's pipes, or one FastCGI connection): records
dispatched to requests, malformed requests answered alone, writes serialized between threads.

The subclasses do the I/O: PipeChannel and InlinePipeChannel (stdio.py), Conn (conn.py).
"""
import os
import struct
import sys
import threading

from .codec import (BEGIN_BODY, BEGIN_REQUEST, END_RECORD, END_REQUEST, GET_VALUES,
                    GET_VALUES_ANSWERS, GET_VALUES_RESULT, HEADER, KEEP_CONN, MAX_REQS, OVERLOADED,
                    PARAMS, RESPONDER, STDIN, UNKNOWN_ROLE, UNKNOWN_TYPE, ABORT_REQUEST,
                    ProtocolError, decode_params, encode_params, pack_header)
from .common import ClientGone, ResponseEnded, log
from .request import Request

# Writes above this size go out with writev from the parts as they are, not joined into one
# bytes object (a copy that costs as much as the write). Below it, one joined write: measured
# behind corral, a 64 KiB response took a median 730 us with writev and 250 us joined (the reader
# got it in more pieces), while at 1 MiB the two were alike.
WRITEV_FROM = 512 << 10
IOV_BATCH = 512  # parts per writev call, below every platform's IOV_MAX


def write_all(fd, data):
    done = os.write(fd, data)
    if done < len(data):
        view = memoryview(data)
        while done < len(data):
            done += os.write(fd, view[done:])


HAVE_WRITEV = hasattr(os, "writev")  # not on Windows


def writev_all(fd, parts):
    """Write every part, in order, with writev (partial writes resumed where they stopped)."""
    parts = list(parts)
    i, n = 0, len(parts)
    while i < n:
        batch = parts[i:i + IOV_BATCH]
        done = os.writev(fd, batch)
        for part in batch:
            size = len(part)
            if done < size:
                parts[i] = memoryview(part)[done:]
                break
            done -= size
            i += 1


def write_record(fd, rtype, payload):
    if fd is not None:
        write_all(fd, pack_header(1, rtype, 0, len(payload), 0) + payload)


class Channel:
    """One record stream (the service's pipes, or one socket): dispatches records to requests."""

    windowed = False  # corral credit windows on STDIN/STDOUT
    peer = "client"  # who sends the records, for log lines
    waits_on_cond = True  # False where wait() is overridden and never uses cond (no waiters)
    counted = True  # requests count in server.active (what stdio mode's graceful stop waits for)

    def __init__(self, server):
        self.server = server
        self.window = server.window if self.windowed else sys.maxsize
        self.quarter = max(1, server.window // 4)
        self.requests = {}
        # `with lock` is C code; `with cond` would add a Python call per use. Same lock.
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock) if self.waits_on_cond else None
        self.wlock = threading.Lock()
        self.broken = False
        self.waiters = 0  # threads waiting on cond: most records need no notify
        self.runnable = []  # requests whose params are complete, queued after each read
        self.overloaded = False  # logged once until a request is accepted again

    def write(self, data):
        """Write all of data, serialized with other threads; ClientGone if the peer is gone."""
        self.write_parts((data,))

    def write_parts(self, parts, req=None):
        """Write the parts (bytes or memoryviews) in order, as write() does; for req, only while
        it has not ended (checked under the write lock: its END_REQUEST may be written first)."""
        with self.wlock:
            if self.broken:
                raise ClientGone()
            if req is not None and req.ended:
                raise ResponseEnded("write() after the response to request id %d ended" % req.id)
            try:
                if len(parts) == 1:
                    self._write_all(parts[0])
                else:
                    self._write_parts(parts)
                return
            except OSError as exc:
                self.broken = True
                error = exc
        self.on_broken(error)
        raise ClientGone()

    def _write_parts(self, parts):
        self._write_all(b"".join(parts))

    def wait(self):
        """Block until a record may have changed what the caller waits for: body bytes, credit,
        an abort (call with lock held, and re-check after). Here: cond.wait(), counted; the
        reader thread wakes it. InlinePipeChannel reads the records itself instead."""
        self.waiters += 1
        try:
            self.cond.wait()
        finally:
            self.waiters -= 1

    def catch_up(self):
        """Dispatch records that have arrived and not been read yet, without blocking. Nothing
        to do here: the reader thread dispatches them at once. (InlinePipeChannel.)"""

    def wake(self):
        """Wake every waiter, if any (call with cond held)."""
        if self.waiters:
            self.cond.notify_all()

    def reply(self, data):
        """A write from the reader thread; a dead peer shows up as EOF soon enough."""
        try:
            self.write(data)
        except ClientGone:
            pass

    def on_broken(self, error):
        with self.lock:
            self.wake()

    def feed(self, data, pos=0):
        """Handle every whole record in data from pos on; return the offset up to which it was used."""
        unpack = HEADER.unpack_from
        requests = self.requests
        size = len(data)
        view = None  # body bytes are handed on as views into data, not copies (body.Input)
        while size - pos >= 8:
            version, rtype, rid, clen, plen = unpack(data, pos)
            if version != 1:  # the stream itself is corrupt: no record boundary can be trusted
                raise ProtocolError("bad FastCGI version byte %d (record type %d, id %d)"
                                    % (version, rtype, rid))
            start = pos + 8
            end = start + clen
            if end + plen > size:
                break
            pos = end + plen
            req = requests.get(rid) if rid else None
            if rtype == STDIN:
                if req is not None:
                    if clen:
                        if view is None:
                            view = memoryview(data)
                        self.stdin(req, view[start:end])
                    else:
                        self.stdin(req, b"")
                continue
            content = data[start:end]
            if rtype == PARAMS:
                if req is not None and not req.queued:
                    self.params(req, content)
            elif rtype == BEGIN_REQUEST:
                self.begin(rid, content)
            elif rtype == ABORT_REQUEST:
                if req is not None:
                    self.abort(req)
            elif rid == 0 and rtype == GET_VALUES:
                self.get_values(content)
            else:
                self.other(rtype, req, content)
        if self.runnable:
            self.flush_runnable()
        return pos

    def flush_runnable(self):
        # Queued only after parsing, so that an app thread does not wake up just to wait for
        # the GIL while this thread is still parsing.
        put = self.server.queue.put
        for req in self.runnable:
            put(req)
        del self.runnable[:]

    def begin(self, rid, content):
        # A malformed BEGIN_REQUEST is that request's error, not the stream's: the record was
        # framed fine, so the records after it can still be read.
        if rid == 0:
            log("BEGIN_REQUEST with request id 0: ignored")
            self.other(BEGIN_REQUEST, None, content)
            return
        if len(content) != 8:
            log("malformed BEGIN_REQUEST for request id %d (%d content bytes, not 8)%s"
                % (rid, len(content), ": ignored" if rid in self.requests else ""))
            if rid not in self.requests:
                self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, UNKNOWN_ROLE))
            return
        role, flags = BEGIN_BODY.unpack(content)
        if role != RESPONDER:
            self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, UNKNOWN_ROLE))
            if not flags & KEEP_CONN:
                self.close_after_end()
            return
        if rid in self.requests:
            log("BEGIN_REQUEST for request id %d, which is still active: ignored" % rid)
            return
        if len(self.requests) >= MAX_REQS:  # what it advertised: each open request holds memory
            if not self.overloaded:
                log("more than %d requests open on one channel: refusing new ones (FCGI_OVERLOADED)"
                    % MAX_REQS)
            self.overloaded = True
            self.reply(END_RECORD.pack(1, END_REQUEST, rid, 8, 0, 0, OVERLOADED))
            return
        self.overloaded = False
        self.requests[rid] = Request(self, rid, flags & KEEP_CONN)
        if self.counted:
            self.server.request_started()

    max_params = sys.maxsize  # bytes of PARAMS per request (the service bounds its own)

    def params(self, req, content):
        if content:
            req.params.append(content)
            req.params_size += len(content)
            if req.params_size > self.max_params:
                self.reject(req, "its params exceed %d bytes" % self.max_params,
                            "431 Request Header Fields Too Large")
            return
        data = b"".join(req.params)
        req.params = None
        try:
            req.environ = self.server.environ(req, data)
        except Exception as exc:  # framing (IndexError, struct.error, ProtocolError) or worse
            self.reject(req, "malformed PARAMS: %s" % (exc,))
            return
        req.queued = True
        self.runnable.append(req)

    def stdin(self, req, content):
        """Body bytes for req; False if they came before its params ended (req is answered)."""
        if not req.queued:  # nobody can read them yet, and the params may never end
            self.reject(req, "STDIN before the end of its PARAMS")
            return False
        req.input.feed(content)
        return True

    def reject(self, req, reason, status="400 Bad Request"):
        """A malformed request costs only itself: a CGI error answer and END_REQUEST for it,
        one log line, and the channel goes on with its other requests."""
        log("bad request id %d from the %s: %s; answered %s" % (req.id, self.peer, reason, status))
        body = ("%s\n" % status[4:]).encode("latin-1")
        head = ("Status: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % (status, len(body))).encode("latin-1")
        req.params = None
        with self.lock:
            req.input.cut()
            self.wake()
        try:
            req.send((head, body), end=True)  # within its untouched credit: never waits
        except ClientGone:
            pass

    def abort(self, req):
        with self.lock:
            req.aborted = True
            req.input.cut()
            self.wake()
        if not req.queued:
            req.finish_quietly()  # no app thread has it: end it here

    values_answers = GET_VALUES_ANSWERS

    def get_values(self, content):
        asked = {}
        try:
            decode_params(content, asked)
        except (IndexError, struct.error, ProtocolError):
            log("malformed GET_VALUES from the %s: answered with no values" % self.peer)
            asked = {}
        known = self.values_answers
        answer = encode_params({k: known[k] for k in asked if k in known})
        self.reply(pack_header(1, GET_VALUES_RESULT, 0, len(answer), 0) + answer)

    def other(self, rtype, req, content):
        self.reply(pack_header(1, UNKNOWN_TYPE, 0, 8, 0) + bytes([rtype]) + bytes(7))

    def input_closed(self):
        """The peer closed its side: requests that cannot get their params or body are aborted."""
        for req in list(self.requests.values()):
            if not req.queued or not req.input.eof:
                self.abort(req)

    def finished(self, req):
        """After END_REQUEST was written (or could not be)."""
        if self.counted:
            self.server.request_done()

    def close_after_end(self):
        pass
