"""Many connections: a thousand idle keep-alive connections, all still served, at a bounded
memory cost each; and a server out of file descriptors (EMFILE), which pauses accepting instead
of crashing or spinning, says so once, and serves again when descriptors free up.

``benchmarks/idle_connections.py`` is the long version of the first (10,000 connections, against
uvicorn).
"""

from __future__ import annotations

import gc
import os
import resource
import socket
import subprocess
import sys
import time
import tracemalloc

import pytest
from h1_helpers import echo, get, wait_for
from support import ROOT, free_port, serve, wait_for_port

sys.path.insert(0, ROOT)
from benchmarks.loopback import raise_fd_limit, request_all  # noqa: E402

RESPONSE_END = b"GET / 1:"  # the body echo() gives GET /


def _request_all(socks, timeout: float = 30.0) -> int:
    """GET / on every socket, each response read whole; returns how many were answered."""
    return request_all(socks, get(), RESPONSE_END, time.monotonic() + timeout)


def _open(srv, count: int) -> list:
    socks = []
    for _ in range(count):
        sock = socket.create_connection((srv.host, srv.port), timeout=10)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def test_a_thousand_idle_connections_cost_little_and_are_all_served_again(impl):
    count = min(1000, (raise_fd_limit(2 * 1000 + 256) - 256) // 2)
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


# ----------------------------------------------------------------------- out of descriptors

FD_LIMIT = 64  # the server's RLIMIT_NOFILE: reached with a few dozen connections


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines(path: str, text: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return sum(text in line for line in fh)


def _limited_server(impl: str, loop: str, port: int, log_path: str):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (FD_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    log = open(log_path, "w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "refserver", "--app-dir", "tests", "cli_apps:slow",
             "--host", "127.0.0.1", "--port", str(port), "--impl", impl, "--loop", loop,
             "--lifespan", "off", "--no-access-log", "--timeout-keep-alive", "60"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit,
        )
    finally:
        log.close()


def _get(port: int, timeout: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(get())
        return sock.recv(4096)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_file_descriptors_pauses_accepting_and_logs_once(impl, loop, tmp_path):
    pytest.importorskip(loop)
    port = free_port()
    log_path = str(tmp_path / "server.log")
    proc = _limited_server(impl, loop, port, log_path)
    clients = []
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        # Past the limit: the server holds what it could accept, the rest wait in the backlog.
        for _ in range(2 * FD_LIMIT):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_for(lambda: _lines(log_path, "cannot accept connections") > 0, timeout=10,
                 what="the log line")
        cpu = _cpu_seconds(proc.pid)
        time.sleep(1.5)  # the condition under test: three retries' worth of being out of fds
        assert _cpu_seconds(proc.pid) - cpu < 0.5, "the accept loop spins"
        assert proc.poll() is None, "the server died"
        assert _lines(log_path, "cannot accept connections") == 1
        # No waiting client was dropped: each is still connected, none has been answered.
        for sock in clients:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        for sock in clients:
            sock.close()
        clients.clear()
        assert _get(port, timeout=10).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: _lines(log_path, "accepting connections again") == 1,
                 what="the resume line")
        assert _lines(log_path, "cannot accept connections") == 1
        assert _lines(log_path, "Traceback") == 0
    finally:
        for sock in clients:
            sock.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_resuming_is_logged_when_a_batch_ends_on_the_last_waiting_client(loop, caplog):
    """An acceptor that was out of descriptors says it accepts again once the backlog is empty,
    even when its last batch of accepts took exactly the clients that were waiting."""
    import asyncio
    import logging

    from refserver.accept import Acceptor
    from refserver.server import new_event_loop

    pytest.importorskip(loop)
    listener = socket.create_server(("127.0.0.1", 0))
    clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
    accepted = []

    class Refuse(asyncio.Protocol):
        def connection_made(self, transport):
            accepted.append(transport)
            transport.close()

    event_loop = new_event_loop(loop)
    acceptor = Acceptor(event_loop, listener, Refuse, logging.getLogger("refserver.accept-test"),
                        batch=len(clients))
    acceptor._paused = True  # as after a failed accept: the state under test
    try:
        with caplog.at_level(logging.INFO, logger="refserver.accept-test"):
            acceptor.start()
            deadline = time.monotonic() + 5
            while "accepting connections again" not in caplog.text:
                assert time.monotonic() < deadline, "the resume line never came"
                event_loop.run_until_complete(asyncio.sleep(0.01))
        assert len(accepted) == len(clients)
    finally:
        acceptor.close()
        event_loop.run_until_complete(acceptor.wait_closed())
        event_loop.close()
        listener.close()
        for sock in clients:
            sock.close()
