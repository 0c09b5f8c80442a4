#!/usr/bin/env python3
"""CPU cost of the Python worker per request, over its stdio protocol.

Spawns src/python/corral_worker.py on test/fixtures/python/hello_app.py, sends N pipelined
GET requests (up to --depth in flight, ids recycled), reads every response, and reports the
worker's user+system CPU per request from /proc/PID/stat (Linux), measured after a warm-up.

    python3 bench/worker_cpu.py [--requests 20000] [--depth 64] [--path /] [--threads 1]
                                [--repeat 1] [--worker PATH] [--mode stdio|listen|direct]

--mode listen and direct measure the event loop instead: the worker serves a unix socket and
--depth connections each send one request at a time, as nginx's kept connections do (the
client's own CPU is not counted). listen = standalone --listen PATH (no access entries); direct =
--direct-fd on a socket bound here, with the control channel on its stdio as the service has it
(READY, then REPORTs with the access entries, read and dropped by a thread here).

--fresh sends each request on a new connection (closed by the client after the response), as nginx
does beyond its keepalive cache: the difference to the kept figure is what a connection costs.

--depth 1 is what the service does with --threads 1 (one request at a time per worker); with
--threads 1 the worker runs the app inline on its reader thread (no thread hand-off). --repeat N
runs N fresh workers and also prints the median and the best run. --worker measures another
version of the worker (its entry script, with its corral_wsgi package beside it), e.g.
`mkdir /tmp/old && git archive HEAD src/python | tar -x -C /tmp/old` and then
--worker /tmp/old/src/python/corral_worker.py; interleave the runs of both when comparing.

The CPU figure is noisy on a small or shared machine. At --depth 1 the worker sleeps once per
request, and on a VM whose CPUs go idle in between, waking up from idle costs more than the
request (a trivial Python echo process measured ~20 us/round trip idle, ~3 us with the CPUs
kept busy); the context switches per request are the machine-independent part.
"""
import argparse
import os
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = struct.Struct("!BBHHBx")
PARAMS = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "QUERY_STRING": "", "REQUEST_URI": "/",
          "DOCUMENT_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http",
          "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "nginx/1.22.1",
          "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "51234", "SERVER_ADDR": "127.0.0.1",
          "SERVER_PORT": "8080", "SERVER_NAME": "localhost", "CONTENT_TYPE": "",
          "CONTENT_LENGTH": "", "HTTP_HOST": "localhost:8080", "HTTP_USER_AGENT": "wrk",
          "HTTP_ACCEPT": "*/*", "HTTP_CONNECTION": "keep-alive"}


def record(rtype, rid, content=b""):
    return HEADER.pack(1, rtype, rid, len(content), 0) + content


def pairs(env):
    out = []
    for k, v in env.items():
        k, v = k.encode("latin-1"), v.encode("latin-1")
        for x in (k, v):
            out.append(bytes([len(x)]) if len(x) < 128 else struct.pack("!I", len(x) | 1 << 31))
        out.append(k + v)
    return b"".join(out)


def request_bytes(rid, path):
    env = dict(PARAMS, PATH_INFO=path, REQUEST_URI=path)
    return (record(1, rid, struct.pack("!HB5x", 1, 1)) + record(4, rid, pairs(env)) +
            record(4, rid) + record(5, rid))


def cpu_seconds(pid):
    """(user, system) CPU seconds of the process, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def context_switches(pid):
    """Context switches so far, summed over the process's live threads (each block or wake-up
    of a thread is one: a thread hand-off per request shows up here on any machine)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    name, _, value = line.partition(":")
                    if name.endswith("ctxt_switches"):  # voluntary_ and nonvoluntary_
                        total += int(value)
        except OSError:
            pass  # the thread has just exited
    return total


class Reader:
    def __init__(self, fd):
        self.fd, self.buf = fd, b""

    def records(self):
        self.buf += os.read(self.fd, 1 << 20)
        out, pos = [], 0
        while len(self.buf) - pos >= 8:
            _, rtype, rid, clen, plen = HEADER.unpack_from(self.buf, pos)
            if pos + 8 + clen + plen > len(self.buf):
                break
            out.append((rtype, rid))
            pos += 8 + clen + plen
        self.buf = self.buf[pos:]
        return out


def run(proc, reader, count, depth, path):
    free = list(range(depth, 0, -1))
    sent = done = 0
    while done < count:
        batch = []
        while free and sent < count:
            batch.append(request_bytes(free.pop(), path))
            sent += 1
        if batch:
            proc.stdin.write(b"".join(batch))
            proc.stdin.flush()
        for rtype, rid in reader.records():
            if rtype == 3:
                free.append(rid)
                done += 1


def run_conns(sel, count, fresh=None):
    """count requests over the connections registered with sel, one at a time on each; with
    fresh (a function that connects), each on a new connection that the client closes after the
    response, as nginx does with connections beyond its keepalive cache."""
    sent = done = 0
    for key in list(sel.get_map().values()):
        if sent < count:
            key.fileobj.sendall(request_bytes(1, key.data["path"]))
            sent += 1
    while done < count:
        for key, _ in sel.select():
            sock, state = key.fileobj, key.data
            state["buf"] += sock.recv(1 << 20)
            buf, pos, ended = state["buf"], 0, False
            while len(buf) - pos >= 8:
                _, rtype, _, clen, plen = HEADER.unpack_from(buf, pos)
                if pos + 8 + clen + plen > len(buf):
                    break
                pos += 8 + clen + plen
                ended = ended or rtype == 3
            state["buf"] = buf[pos:]
            if ended:
                done += 1
                if fresh is not None:
                    sel.unregister(sock)
                    sock.close()
                    sock = fresh()
                    sel.register(sock, selectors.EVENT_READ, dict(state, buf=b""))
                if sent < count:
                    sock.sendall(request_bytes(1, state["path"]))
                    sent += 1


def drain(fd, counts):
    """Read the worker's control records until EOF (REPORTs must not fill the pipe)."""
    reader = Reader(fd)
    while True:
        try:
            records = reader.records()
        except OSError:
            return
        if not records and not reader.buf:
            return
        for rtype, _ in records:
            counts[rtype] = counts.get(rtype, 0) + 1


def measure_loop(opts):
    """As measure(), for the event loop: the worker on a unix socket, --depth connections."""
    where = tempfile.mkdtemp()
    path = os.path.join(where, "fcgi.sock")
    cmd = opts.prefix.split() + [opts.python, opts.worker, "--root", os.path.join(ROOT, "test/fixtures/python"),
                                 "--app", "hello_app:application", "--threads", str(opts.threads)]
    listener = None
    if opts.mode == "direct":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        proc = subprocess.Popen(cmd + ["--direct-fd", str(listener.fileno())], pass_fds=[listener.fileno()],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        counts = {}
        reader = Reader(proc.stdout.fileno())
        while not reader.records():  # READY
            pass
        threading.Thread(target=drain, args=(proc.stdout.fileno(), counts), daemon=True).start()
    else:
        proc = subprocess.Popen(cmd + ["--listen", path], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = proc.stderr.readline()
        if b"listening on" not in line:
            raise SystemExit("the worker did not start: %r" % line)
    try:
        sel = selectors.DefaultSelector()

        def connect():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            return sock
        for _ in range(opts.depth):
            sel.register(connect(), selectors.EVENT_READ, {"buf": b"", "path": opts.path})
        fresh = connect if opts.fresh else None
        run_conns(sel, opts.warmup, fresh)
        (user0, sys0), t0 = cpu_seconds(proc.pid), time.perf_counter()
        switches0 = context_switches(proc.pid)
        run_conns(sel, opts.requests, fresh)
        (user1, sys1), t1 = cpu_seconds(proc.pid), time.perf_counter()
        switches1 = context_switches(proc.pid)
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        if listener is not None:
            proc.stdin.close()  # drain and exit, as the service stops it
        else:
            proc.terminate()
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        if listener is not None:
            listener.close()
        shutil.rmtree(where, ignore_errors=True)
    n = opts.requests
    user = user1 - user0
    return ((user + sys1 - sys0) / n * 1e6, user / n * 1e6, (switches1 - switches0) / n,
            n / (t1 - t0), code)


def measure(opts):
    """One fresh worker: (CPU us/request, of it user, switches/request, requests/s, exit)."""
    proc = subprocess.Popen(
        opts.prefix.split() + [opts.python, opts.worker, "--root",
                               os.path.join(ROOT, "test/fixtures/python"), "--app", "hello_app:application",
                               "--threads", str(opts.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    reader = Reader(proc.stdout.fileno())
    while not reader.records():
        pass
    run(proc, reader, opts.warmup, opts.depth, opts.path)
    (user0, sys0), t0 = cpu_seconds(proc.pid), time.perf_counter()
    switches0 = context_switches(proc.pid)
    run(proc, reader, opts.requests, opts.depth, opts.path)
    (user1, sys1), t1 = cpu_seconds(proc.pid), time.perf_counter()
    switches1 = context_switches(proc.pid)
    proc.stdin.close()
    code = proc.wait()
    n = opts.requests
    user = user1 - user0
    return ((user + sys1 - sys0) / n * 1e6, user / n * 1e6, (switches1 - switches0) / n,
            n / (t1 - t0), code)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--path", default="/")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--worker", default=os.path.join(ROOT, "src/python/corral_worker.py"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--mode", choices=("stdio", "listen", "direct"), default="stdio")
    ap.add_argument("--fresh", action="store_true", help="listen/direct: each request on a new connection "
                    "(what a connection costs: nginx opens one per request beyond its keepalive cache)")
    ap.add_argument("--warmup", type=int, default=2000, help="requests before measuring")
    ap.add_argument("--prefix", default="", help="command words to run the worker under, e.g. valgrind "
                    "--tool=callgrind")
    opts = ap.parse_args()
    results = []
    for _ in range(opts.repeat):
        cpu, user, switches, rate, code = (measure if opts.mode == "stdio" else measure_loop)(opts)
        results.append((cpu, rate))
        print("%s: python %s, %d requests, depth %d, threads %d: worker CPU %.1f us/request "
              "(user %.1f), %.2f context switches/request, %.0f requests/s, exit %d"
              % (opts.mode, opts.python, opts.requests, opts.depth, opts.threads, cpu, user, switches,
                 rate, code), flush=True)
    if opts.repeat > 1:
        cpus, rates = [r[0] for r in results], [r[1] for r in results]
        print("%d runs: worker CPU median %.1f us/request (best %.1f), median %.0f requests/s"
              % (opts.repeat, statistics.median(cpus), min(cpus), statistics.median(rates)))


if __name__ == "__main__":
    main()
