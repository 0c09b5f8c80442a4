#!/usr/bin/env python3
"""CPU cost of the Python worker per request, over its stdio protocol.

Spawns src/python/corral_worker.py on test/fixtures/python/hello_app.py, sends N pipelined
GET requests (up to --depth in flight, ids recycled), reads every response, and reports the
worker's user+system CPU per request from /proc/PID/stat (Linux), measured after a warm-up.

    python3 bench/worker_cpu.py [--requests 20000] [--depth 64] [--path /] [--threads 1]
"""
import argparse
import os
import struct
import subprocess
import sys
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
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--path", default="/")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--python", default=sys.executable)
    opts = ap.parse_args()
    proc = subprocess.Popen(
        [opts.python, os.path.join(ROOT, "src/python/corral_worker.py"), "--root",
         os.path.join(ROOT, "test/fixtures/python"), "--app", "hello_app:application",
         "--threads", str(opts.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    reader = Reader(proc.stdout.fileno())
    while not reader.records():
        pass
    run(proc, reader, 2000, opts.depth, opts.path)  # warm-up
    cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
    run(proc, reader, opts.requests, opts.depth, opts.path)
    cpu1, t1 = cpu_seconds(proc.pid), time.perf_counter()
    proc.stdin.close()
    code = proc.wait()
    n = opts.requests
    print("python %s, %d requests, depth %d, threads %d: worker CPU %.1f us/request, "
          "%.0f requests/s, exit %d" % (opts.python, n, opts.depth, opts.threads,
                                        (cpu1 - cpu0) / n * 1e6, n / (t1 - t0), code))


if __name__ == "__main__":
    main()
