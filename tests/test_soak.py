"""A short soak in the test suite: ~20,000 requests over every interface on both paths, and no
leak afterwards.

Each interface and path serves benchmarks/apps/soak_apps.py in this process (tests/support.py
``serve``) and gets the mix of benchmarks/soak.py from raw-socket clients: kept-alive GETs, POSTs
with a Content-Length and with a chunked body, streamed responses, requests on new connections,
and WebSocket echo sessions (ASGI, RSGI). After a warm-up the process's open file descriptors,
the asyncio tasks of the server's loop, its threads and its traced Python memory are the
baseline; once the load is over (every client connection closed) the fds and the tasks must be
back to it, the threads within the WSGI pool's bound, and the traced memory no more than
:data:`MEMORY_PER_REQUEST` bytes per request above it. The long version is benchmarks/soak.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import threading
import time
import tracemalloc

import pytest
from support import serve
from ws_helpers import CLOSE, handshake_request, frame, parse_frames

from benchmarks.apps import soak_apps

INTERFACES = ["asgi", "rsgi", "wsgi"]
#: Requests per interface and path, warm-up included: 6 x 3,400 is ~20,000 in all.
REQUESTS = 3400
WARMUP = 800
CLIENTS = 4
BLOCKING_THREADS = 4
#: Traced memory that may stay per request of the measured part: it is within +-5 bytes when
#: nothing leaks; one leaked ``object()`` (16 bytes) per request is over it.
MEMORY_PER_REQUEST = 8
ECHO = b"e" * 64
HELLO = soak_apps.HELLO
STREAM = soak_apps.STREAM_PART * soak_apps.STREAM_PARTS

GET = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"
CLOSE_GET = b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
POST = b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 64\r\n\r\n" + ECHO
CHUNKED = (b"POST /echo HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"20;part=1\r\n" + ECHO[:32] + b"\r\n20\r\n" + ECHO[32:] + b"\r\n0\r\n\r\n")
STREAMED = b"GET /stream HTTP/1.1\r\nHost: soak\r\n\r\n"
#: One round of the mix on a kept-alive connection, with the body each request gets back.
ROUND = [(GET, HELLO), (POST, ECHO), (STREAMED, STREAM), (CHUNKED, ECHO), (GET, HELLO),
         (STREAMED, STREAM), (POST, ECHO), (GET, HELLO)]


class Reader:
    """Responses read from a socket through one buffer (Content-Length or chunked bodies)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def _until(self, marker: bytes) -> bytes:
        while (end := self.buf.find(marker)) < 0:
            self._more()
        out, self.buf = self.buf[:end], self.buf[end + len(marker):]
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple:
        """(status, headers dict, body)."""
        lines = self._until(b"\r\n\r\n").split(b"\r\n")
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines[1:])
        )
        status = int(lines[0].split(b" ", 2)[1])
        if b"content-length" in headers:
            return status, headers, self._exactly(int(headers[b"content-length"]))
        assert headers.get(b"transfer-encoding") == b"chunked", headers
        parts = []
        while size := int(self._until(b"\r\n").split(b";")[0], 16):
            parts.append(self._exactly(size))
            assert self._exactly(2) == b"\r\n"
        assert self._until(b"\r\n") == b""  # no trailers
        return status, headers, b"".join(parts)

    def frame(self) -> tuple:
        while True:
            frames, rest = parse_frames(self.buf)
            if frames:
                # One frame at a time: put back what follows the first.
                self.buf = b"".join(_raw(f) for f in frames[1:]) + rest
                return frames[0]
            self._more()


def _raw(server_frame) -> bytes:
    fin, rsv, opcode, payload = server_frame
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    if n < 126:
        return head + bytes([n]) + payload
    return head + bytes([126]) + struct.pack("!H", n) + payload


class Load:
    """``CLIENTS`` threads, each running rounds of the mix until ``count`` requests are done."""

    def __init__(self, port: int, websocket: bool):
        self.port = port
        self.websocket = websocket
        self.lock = threading.Lock()
        self.left = 0
        self.done = 0
        self.errors: list = []

    def run(self, count: int) -> None:
        self.left = count
        threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads), "a client is stuck"
        assert not self.errors, self.errors[:3]

    def _claim(self, n: int) -> int:
        with self.lock:
            n = min(n, self.left)
            self.left -= n
            return n

    def _client(self, index: int) -> None:
        turn = index
        try:
            while n := self._claim(len(ROUND) + 2):
                turn += 1
                if self.websocket and turn % 3 == 0:
                    self._ws_session(n)
                else:
                    self._http_round(n)
                with self.lock:
                    self.done += n
        except Exception as exc:  # noqa: BLE001 -- reported by run()
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _http_round(self, n: int) -> None:
        """``n - 1`` requests of the mix on one kept-alive connection, then one on a connection
        the server closes after its response."""
        with self._connect() as sock:
            reader = Reader(sock)
            for i in range(n - 1):
                request, body = ROUND[i % len(ROUND)]
                sock.sendall(request)
                status, _, got = reader.response()
                assert (status, got) == (200, body), (request, status, got[:40])
        with self._connect() as sock:
            sock.sendall(CLOSE_GET)
            reader = Reader(sock)
            status, headers, got = reader.response()
            assert (status, got, headers.get(b"connection")) == (200, HELLO, b"close")
            assert sock.recv(1) == b""

    def _ws_session(self, n: int) -> None:
        """A WebSocket session of ``n`` echoes, text and binary, closed by the client."""
        with self._connect() as sock:
            sock.sendall(handshake_request("/ws"))
            reader = Reader(sock)
            head = reader._until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            for i in range(n):
                opcode, payload = (1, "soak ✓".encode()) if i % 2 else (2, ECHO)
                sock.sendall(frame(opcode, payload))
                assert reader.frame() == (True, 0, opcode, payload)
            sock.sendall(frame(CLOSE, struct.pack("!H", 1000)))
            assert reader.frame()[2] == CLOSE
            assert sock.recv(1) == b""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def poll(measure, target: int, timeout: float = 10.0) -> int:
    """``measure()`` once it is at most ``target``, or its last value after ``timeout``: the
    server closes its side of each connection when it reads the client's close, a moment later."""
    deadline = time.monotonic() + timeout
    value = measure()
    while value > target and time.monotonic() < deadline:
        time.sleep(0.02)
        value = measure()
    return value


def soak(srv, interface: str) -> dict:
    load = Load(srv.port, websocket=interface != "wsgi")

    def tasks() -> int:
        return srv.call(lambda: len(asyncio.all_tasks(srv.loop)))

    load.run(WARMUP)
    gc.collect()
    base = {"fds": poll(open_fds, 0, 0.5), "tasks": poll(tasks, 0, 0.5),
            "threads": threading.active_count(), "memory": tracemalloc.get_traced_memory()[0]}
    load.run(REQUESTS - WARMUP)
    measured = load.done - WARMUP
    fds = poll(open_fds, base["fds"])
    task_count = poll(tasks, base["tasks"])
    gc.collect()
    return {
        "requests": load.done, "base": base, "fds": fds, "tasks": task_count,
        "threads": threading.active_count(),
        "memory_per_request": (tracemalloc.get_traced_memory()[0] - base["memory"]) / measured,
    }


@pytest.fixture
def traced():
    """tracemalloc for the test's duration, left as it was found."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    yield
    if not was_tracing:
        tracemalloc.stop()


@pytest.mark.parametrize("interface", INTERFACES)
def test_short_soak_leaks_nothing(interface, impl, traced):
    app = getattr(soak_apps, f"{interface}_app")
    loop = "uvloop" if impl == "fast" else "asyncio"
    with serve(app, interface=interface, impl=impl, loop=loop,
               blocking_threads=BLOCKING_THREADS) as srv:
        result = soak(srv, interface)
    assert result["requests"] == REQUESTS
    base = result["base"]
    assert result["fds"] <= base["fds"], result
    assert result["tasks"] <= base["tasks"], result
    # The WSGI pool starts its threads as concurrency needs them, up to its size, and keeps them.
    assert result["threads"] <= base["threads"] + (BLOCKING_THREADS if interface == "wsgi"
                                                   else 0), result
    assert result["memory_per_request"] < MEMORY_PER_REQUEST, result
