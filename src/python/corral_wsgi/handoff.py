"""corral worker, direct mode: a draining worker hands its kept FastCGI connections to a live one.

nginx keeps connections to the upstream (`keepalive` + `fastcgi_keep_conn on`) and may send a
request on one at any moment: a worker that closes a kept connection races with it, and nginx
answers a non-idempotent request it cannot retry with 502. So a draining worker does not close
its idle kept connections: it passes each (the socket itself, SCM_RIGHTS) to a live worker of the
same pool, which serves it from then on; nginx never sees a close.

Every direct worker listens on a private unix socket, DIR/<pid>, in a directory the service made
for it (mode 0700, --handoff-dir): a path, not Linux's abstract namespace, because a directory's
mode keeps other users out on every POSIX system and a name nobody else can take over (an abstract
name is free to any local user once its worker exits). The service tells a draining worker where
to hand off (CORRAL_HANDOFF, before stdin EOF: the live workers' sockets, one a line; it takes
them in turn).

One message per connection: HANDOFF_HEAD (magic, length of the bytes the sender read but did not
parse yet: the start of a record) and those bytes, the socket's fd in SCM_RIGHTS on the first
byte; the receiver answers one byte: TAKEN, or REFUSED (then the sender keeps the connection and
closes it as before, right after a response). A receiver trusts nothing it gets: only the same
user's processes with its own parent (Linux: SO_PEERCRED, /proc), one fd, a stream socket of its
own listener's family and port (or path), at most MAX_CARRY bytes; anything else costs only that
handoff. See src/fcgi/PROTOCOL.md, "Handing off kept connections".
"""
import os
import socket
import stat
import struct
import threading
import time

from .codec import ProtocolError
from .common import log
from .conn import Conn

HANDOFF_HEAD = struct.Struct("!4sI")
MAGIC = b"CHO1"
MAX_CARRY = 8 + 65535 + 255  # less than one whole record: a whole one would have been parsed
TAKEN, REFUSED = b"\x01", b"\x00"
TIMEOUT = 2.0  # seconds a sender waits for the receiver's answer (it answers from its own thread)
HAVE_FDS = hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


def listener_key(sock):
    """What a connection accepted on sock has in common with sock: family and port (or path)."""
    name = sock.getsockname()
    return sock.family, (name[1] if isinstance(name, tuple) else name)


def parent_of(pid):
    """The parent pid of a process (Linux /proc), or None where unknown."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Port:
    """The receiving side: a unix socket at DIR/<pid>; one thread accepts senders, one thread per
    sender (a draining worker: short-lived) reads its handoffs. What it takes goes to the loop
    (take_adopted, on the loop's thread); the limits are the loop's."""

    def __init__(self, loop, directory):
        self.loop = loop
        self.path = os.path.join(directory, str(os.getpid()))
        self.key = listener_key(loop.listener)
        self.lock = threading.Lock()
        self.closed = False
        if os.path.lexists(self.path):
            os.unlink(self.path)  # a pid reused after a crash left its file
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600: the directory is private already; the socket too
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        self.sock.listen(16)
        threading.Thread(target=self._accept, name="corral-handoff", daemon=True).start()

    def close(self):
        """Stop taking connections (the loop drains): later senders are refused or cannot connect."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() below (Linux)
        except OSError:
            pass
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                peer, _ = self.sock.accept()
            except OSError:
                if self.closed:
                    return
                time.sleep(0.1)  # EMFILE and the like: try again, without spinning
                continue
            if not self.trusted(peer):
                log("handoff: refused a connection from a process that is not a worker of this service")
                peer.close()
                continue
            threading.Thread(target=self._serve, args=(peer,), name="corral-handoff-peer", daemon=True).start()

    def trusted(self, peer):
        """Same user, same parent (the service), where the system says (Linux); else the
        directory's mode is the check."""
        cred = getattr(socket, "SO_PEERCRED", None)
        if cred is None:
            return True
        try:
            pid, uid, _ = struct.unpack("3i", peer.getsockopt(socket.SOL_SOCKET, cred, 12))
        except OSError:
            return False
        if uid != os.geteuid():
            return False
        parent = parent_of(pid)
        return parent is None or parent == os.getppid()

    def _serve(self, peer):
        """One sender's handoffs, until it closes or sends something we cannot frame."""
        try:
            while True:
                answer = self.receive(peer)
                if answer is None:
                    return
                peer.sendall(answer)
        except OSError:
            pass
        finally:
            peer.close()

    def receive(self, peer):
        """One handoff: TAKEN or REFUSED to answer, or None to end this sender's connection (EOF,
        or framing we cannot trust any further)."""
        # The next message may be long in coming (the sender waits for a response to end before it
        # hands that connection over): no timeout until it starts, TIMEOUT for the rest of it.
        peer.settimeout(None)
        head, fds, flags, _ = socket.recv_fds(peer, HANDOFF_HEAD.size, 1)
        peer.settimeout(TIMEOUT)
        fd = fds[0] if fds else -1
        for extra in fds[1:]:
            os.close(extra)
        try:
            if not head:
                return None
            while len(head) < HANDOFF_HEAD.size:
                more = peer.recv(HANDOFF_HEAD.size - len(head))
                if not more:
                    return None
                head += more
            magic, size = HANDOFF_HEAD.unpack(head)
            if magic != MAGIC or size > MAX_CARRY:
                log("handoff: malformed message from a sibling worker: its connection is closed")
                return None
            carried = b""
            while len(carried) < size:
                more = peer.recv(size - len(carried))
                if not more:
                    return None
                carried += more
            if flags & getattr(socket, "MSG_CTRUNC", 0) or fd < 0:
                return REFUSED
            sock = self.check(fd)
            if sock is None:
                return REFUSED
            fd = -1  # the socket object owns it now
            if not self.offer(sock, carried):
                sock.close()  # our descriptor only: the sender's copy keeps the connection open
                return REFUSED
            return TAKEN
        finally:
            if fd >= 0:
                os.close(fd)

    def check(self, fd):
        """A socket object for fd if it is a stream socket of our listener's family and port (or
        path); else None (fd left to the caller)."""
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                log("handoff: a sibling sent a descriptor that is not a socket: refused")
                return None
            sock = socket.socket(fileno=fd)
        except OSError:
            return None
        try:
            if sock.type == socket.SOCK_STREAM and listener_key(sock) == self.key:
                return sock
        except OSError:
            pass
        sock.detach()
        log("handoff: a sibling sent a socket that is not a connection of our listener: refused")
        return None

    def offer(self, sock, carried):
        """The loop takes it unless draining or at its connection limit."""
        loop = self.loop
        with self.lock:
            if self.closed or loop.draining_asked:
                return False
            if len(loop.conns) + len(loop.adopted) >= loop.opts.max_connections:
                return False
            loop.adopted.append((sock, carried))
        loop.wake()
        return True


class Link:
    """One stream connection to a receiver's Port, used from the loop's thread."""

    def __init__(self, path):
        self.path = path
        self.sock = None
        self.broken = False

    def give(self, conn):
        """Hand conn's socket over: TAKEN, REFUSED, or None when the channel failed (then it is
        broken for good)."""
        carried = conn.rest
        try:
            if self.sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(TIMEOUT)
                self.sock = sock
                sock.connect(self.path)
            socket.send_fds(self.sock, [HANDOFF_HEAD.pack(MAGIC, len(carried)) + carried], [conn.fd])
            answer = self.sock.recv(1)
        except OSError as exc:
            log("handoff to %s failed: %s" % (self.path, exc))
            answer = b""
        if answer in (TAKEN, REFUSED):
            return answer
        self.close()
        self.broken = True
        return None

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Sender:
    """The draining side: a Link to each live worker the service named (CORRAL_HANDOFF: their
    sockets, one a line), taken in turn, so that the front's connections spread over them."""

    def __init__(self, paths):
        self.links = [Link(p) for p in paths.split("\n") if p]
        self.turn = 0
        self.handed = 0

    @property
    def broken(self):
        """No receiver left: the rest of the drain closes connections as without a handoff."""
        return all(link.broken for link in self.links)

    def give(self, conn):
        """Hand conn's socket to the next receiver that takes it; True if one did (the caller then
        drops its copy without closing the connection)."""
        if len(conn.rest) > MAX_CARRY:
            return False
        links = self.links
        for _ in range(len(links)):
            link = links[self.turn % len(links)]
            self.turn += 1
            if not link.broken and link.give(conn) == TAKEN:
                self.handed += 1
                return True
        return False

    def close(self):
        for link in self.links:
            link.close()


def between_requests(conn):
    """conn may change hands: no request on it and nothing to finish first."""
    return conn.req is None and not conn.running and not conn.lingering and not conn.close_now \
        and not conn.broken and not conn.no_handoff


# -- the loop's side (loop.py calls these on its own thread)

def take_adopted(loop):
    """Register the connections a draining sibling handed us (our Port queued them)."""
    while loop.adopted:
        sock, carried = loop.adopted.popleft()
        sock.setblocking(False)
        conn = Conn(loop, sock)
        loop.conns[conn.fd] = conn
        loop.sel.register(sock, conn)
        conn.watched = True
        loop.changed = True
        if carried:
            try:
                conn.take(carried)
            except ProtocolError as exc:
                loop.bad_peer(conn, exc)
                loop.close(conn)
    loop.want_accept()


def hand_off(loop, conn):
    """Draining: pass conn to the live worker if it is between requests; True if it went."""
    sender = loop.sender
    if sender is None or not between_requests(conn) or not sender.give(conn):
        return False
    loop.conns.pop(conn.fd, None)
    if conn.watched:
        conn.watched = False
        loop.sel.unregister(conn.sock)  # before close: the receiver keeps the socket open
    with conn.wlock:
        conn.broken = True
        conn.sock.close()  # our descriptor only: no FIN, the receiver holds the connection
    loop.changed = True
    return True


def hand_off_idle(loop, quiet):
    """Draining: every connection between requests goes; one refused is closed as before (at the
    time `quiet` if no request comes)."""
    for conn in [c for c in loop.conns.values() if between_requests(c)]:
        if not hand_off(loop, conn):
            if loop.sender.broken:
                return
            conn.no_handoff = True
            conn.deadline = min(conn.deadline, quiet)
