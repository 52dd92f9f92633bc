"""Many connections: a thousand idle keep-alive connections, all still served, at a bounded
memory cost each; and a server out of file descriptors (EMFILE), which pauses accepting instead
of crashing or spinning, says so once, and serves again when descriptors free up.

``benchmarks/idle_connections.py`` is the long version of the first (10,000 connections, against
uvicorn).
"""

from __future__ import annotations

import gc
import resource
import selectors
import socket
import time
import tracemalloc

from h1_helpers import echo, get
from support import serve

RESPONSE_END = b"GET / 1:"  # the body echo() gives GET /


def _raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _request_all(socks, timeout: float = 30.0) -> int:
    """GET / on every socket, each response read whole; returns how many were answered."""
    selector = selectors.DefaultSelector()
    pending = {}
    for sock in socks:
        sock.sendall(get())
        pending[sock] = b""
        selector.register(sock, selectors.EVENT_READ)
    answered = 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            pending[sock] += data
            if data and not pending[sock].endswith(RESPONSE_END):
                continue
            if data and pending[sock].startswith(b"HTTP/1.1 200 "):
                answered += 1
            selector.unregister(sock)
            del pending[sock]
    selector.close()
    return answered


def _open(srv, count: int) -> list:
    socks = []
    for _ in range(count):
        sock = socket.create_connection((srv.host, srv.port), timeout=10)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def test_a_thousand_idle_connections_cost_little_and_are_all_served_again(impl):
    count = min(1000, (_raise_fd_limit(2 * 1000 + 256) - 256) // 2)
    assert count >= 500, "the file-descriptor limit is too low for this test"
    with serve(echo, impl=impl, loop="asyncio" if impl == "pure" else "uvloop",
               lifespan="off", timeout_keep_alive=60) as srv:
        warm = _open(srv, 20)
        assert _request_all(warm) == 20
        for sock in warm:
            sock.close()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            socks = _open(srv, count)
            try:
                assert _request_all(socks) == count
                time.sleep(0.2)  # the last responses' cycles finish on the server's loop
                gc.collect()
                per_connection = (tracemalloc.get_traced_memory()[0] - before) / count
                # Both ends are in this process: the bound covers the client sockets too.
                # (benchmarks/idle_connections.py measured about 4 KiB of server RSS each.)
                assert per_connection < 6 * 1024, per_connection
                assert srv.call(lambda: len(srv.server.state.connections)) == count
                assert _request_all(socks) == count  # every one still served
            finally:
                for sock in socks:
                    sock.close()
        finally:
            tracemalloc.stop()
