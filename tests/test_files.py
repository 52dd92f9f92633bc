"""File responses: RSGI response_file, ASGI pathsend / zerocopysend, WSGI file_wrapper.

Every file goes through ``Stream.send_file``: the kernel's sendfile(2) on plain HTTP/1.1 (a spy on
the system call proves it is the path taken there, and only there), blocks read with back-pressure
over TLS and HTTP/2. Each outcome is checked on every transport: content, ranges, HEAD, a file
shorter than the response promised, a client that leaves midway.
"""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest

pytest.register_assert_rewrite("h2_helpers")  # before its import, as it is a plugin below
from h2_helpers import H2Client, httpx_client  # noqa: E402
from support import read_until_closed

import refserver.files as files

#: the fixtures certs and h2_serve
pytest_plugins = ("h2_helpers",)

SIZE = 3 * 1024 * 1024 + 12345  # several sendfile calls and fallback blocks, not a round number

TRANSPORTS = ["h1", "h1-tls", "h2", "h2-tls"]


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(SIZE)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return str(path), data


@pytest.fixture
def sendfile_calls(monkeypatch):
    """Every sendfile(2) call the server makes, as (offset, count, returned)."""
    calls = []
    real = files._sendfile

    def spy(out_fd, in_fd, offset, count):
        sent = real(out_fd, in_fd, offset, count)
        calls.append((offset, count, sent))
        return sent

    monkeypatch.setattr(files, "_sendfile", spy)
    return calls


def client_for(srv, transport):
    if transport == "h1":
        return httpx.Client(timeout=10)
    if transport == "h1-tls":
        return httpx.Client(timeout=10, verify=srv.certs.client_context(alpn=("http/1.1",)))
    return httpx_client(srv)


def url(srv, transport, route):
    scheme = "https" if transport.endswith("tls") else "http"
    return f"{scheme}://127.0.0.1:{srv.port}{route}"


def rsgi_app(path, data):
    async def app(scope, protocol):
        if scope.path == "/file":
            protocol.response_file(
                200, [("content-length", str(len(data)))], path
            )
        elif scope.path == "/chunked":
            protocol.response_file(200, [("content-type", "application/octet-stream")], path)
        elif scope.path == "/range":
            protocol.response_file_range(
                206, [("content-length", str(SIZE - 1000 - 70000))], path, 70000, SIZE - 1000
            )
        elif scope.path == "/missing":
            protocol.response_file(200, [], path + ".missing")

    return app


def asgi_app(path, data):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        route = scope["path"]
        assert scope["extensions"]["http.response.pathsend"] == {}
        assert scope["extensions"]["http.response.zerocopysend"] == {}
        start = {"type": "http.response.start", "status": 200, "headers": []}
        if route == "/pathsend":
            await send(start)
            await send({"type": "http.response.pathsend", "path": path})
        elif route == "/zerocopy":
            with open(path, "rb") as fh:
                fh.seek(5)
                await send(start)
                # No offset: from the file's position; then a second region from there on.
                await send({"type": "http.response.zerocopysend", "file": fh, "count": 1000,
                            "more_body": True})
                assert fh.tell() == 1005
                await send({"type": "http.response.body", "body": b"--", "more_body": True})
                await send({"type": "http.response.zerocopysend", "file": fh.fileno(),
                            "offset": 200000, "more_body": True})
                await send({"type": "http.response.body", "body": b"end"})
        elif route == "/short":
            fd = os.open(path, os.O_RDONLY)
            try:
                await send({**start, "headers": [(b"content-length", b"%d" % (SIZE + 1000))]})
                await send({"type": "http.response.zerocopysend", "file": fd, "offset": 0,
                            "count": SIZE + 1000})
            finally:
                os.close(fd)
        elif route == "/missing":
            await send(start)
            await send({"type": "http.response.pathsend", "path": path + ".missing"})
        elif route == "/relative":
            await send(start)
            await send({"type": "http.response.pathsend", "path": "data.bin"})

    return app


def wsgi_app(path, data):
    def app(environ, start_response):
        fh = open(path, "rb")
        if environ["PATH_INFO"] == "/offset":
            fh.read(10)  # the file object's position, buffered ahead of its descriptor's
            start_response("200 OK", [])
        else:
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](fh, 8192)

    return app


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_file_responses_on_every_transport(h2_serve, data_file, sendfile_calls, transport):
    path, data = data_file
    tls = transport.endswith("tls")
    kernel = transport == "h1"

    with h2_serve(rsgi_app(path, data), tls=tls, interface="rsgi") as srv:
        with client_for(srv, transport) as client:
            r = client.get(url(srv, transport, "/file"))
            assert r.status_code == 200 and r.content == data
            r = client.get(url(srv, transport, "/chunked"))
            assert r.status_code == 200 and r.content == data
            r = client.get(url(srv, transport, "/range"))
            assert r.status_code == 206 and r.content == data[70000:SIZE - 1000]
            r = client.head(url(srv, transport, "/file"))
            assert r.headers["content-length"] == str(SIZE) and r.content == b""
            assert client.get(url(srv, transport, "/missing")).status_code == 404
            # Still the same connection: every response ended where it said it would.
            assert client.get(url(srv, transport, "/file")).content == data
    assert bool(sendfile_calls) is kernel
    if kernel:
        assert sum(sent for _, _, sent in sendfile_calls) == 4 * SIZE - 71000
    sendfile_calls.clear()

    with h2_serve(asgi_app(path, data), tls=tls, interface="asgi") as srv:
        with client_for(srv, transport) as client:
            r = client.get(url(srv, transport, "/pathsend"))
            assert r.status_code == 200 and r.content == data
            assert r.headers["content-length"] == str(SIZE)
            r = client.head(url(srv, transport, "/pathsend"))
            assert r.headers["content-length"] == str(SIZE) and r.content == b""
            r = client.get(url(srv, transport, "/zerocopy"))
            assert r.content == data[5:1005] + b"--" + data[200000:] + b"end"
            assert client.get(url(srv, transport, "/missing")).status_code == 404
            assert client.get(url(srv, transport, "/relative")).status_code == 500
    assert bool(sendfile_calls) is kernel
    sendfile_calls.clear()

    with h2_serve(wsgi_app(path, data), tls=tls, interface="wsgi") as srv:
        with client_for(srv, transport) as client:
            r = client.get(url(srv, transport, "/"))
            assert r.content == data and r.headers["content-length"] == str(SIZE)
            r = client.get(url(srv, transport, "/offset"))
            assert r.content == data[10:] and r.headers["content-length"] == str(SIZE - 10)
    assert bool(sendfile_calls) is kernel


def test_kernel_path_on_both_loops(server_factory, data_file, sendfile_calls):
    """Plain HTTP/1.1 sends by sendfile(2) on asyncio and on uvloop (which has no sendfile of
    its own), in several calls each bounded by SENDFILE_STEP, after the head the transport
    held."""
    path, data = data_file
    with server_factory(asgi_app(path, data), interface="asgi") as srv, httpx.Client() as client:
        for _ in range(2):
            r = client.get(srv.url + "/pathsend")
            assert r.content == data
    assert sum(sent for _, _, sent in sendfile_calls) == 2 * SIZE
    assert all(count <= files.SENDFILE_STEP for _, count, _ in sendfile_calls)


def _server_holds(path: str) -> bool:
    """Whether this process (the server runs in a thread of it) has ``path`` open."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == path:
                return True
        except OSError:
            pass
    return False


def _wait_released(path: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _server_holds(path):
        assert time.monotonic() < deadline, "the server still holds the file open"
        time.sleep(0.01)


@pytest.mark.parametrize("transport", ["h1", "h1-tls", "h2", "h2-tls"])
def test_file_shorter_than_promised_resets(h2_serve, data_file, transport):
    """A file that ends before the region the response promised: the connection closes (the
    stream is reset on HTTP/2), never a short body a keep-alive client could take as whole."""
    path, data = data_file
    tls = transport.endswith("tls")
    with h2_serve(asgi_app(path, data), tls=tls, interface="asgi") as srv:
        if transport.startswith("h2"):
            with H2Client(srv) as client:
                sid = client.request("/short")
                record = client.response(sid)
                assert record.reset is not None and not record.ended
                assert len(record.data) <= SIZE
        else:
            with client_for(srv, transport) as client, pytest.raises(httpx.HTTPError):
                client.get(url(srv, transport, "/short"))
    _wait_released(path)


def test_file_truncated_while_sent_closes_the_connection(server_factory, tmp_path):
    """The file shrinks while the kernel sends it: the transfer stops at the new end and the
    connection closes before the promised Content-Length."""
    path = tmp_path / "big.bin"
    size = 64 * 1024 * 1024
    with open(path, "wb") as fh:
        fh.truncate(size)

    async def app(scope, protocol):
        protocol.response_file(200, [("content-length", str(size))], str(path))

    with server_factory(app, interface="rsgi") as srv, srv.connect(timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        os.truncate(path, 1024 * 1024)
        received = read_until_closed(sock, 10)
        assert len(received) < size
    _wait_released(str(path))


@pytest.mark.parametrize("transport", ["h1", "h1-tls", "h2"])
def test_client_leaving_midway_stops_the_send(h2_serve, tmp_path, transport, server_logs):
    """A client that goes away during a large file: the send stops, the file is closed, the
    request is over; nothing is logged as an application error."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(256 * 1024 * 1024)
    app = rsgi_app(str(path), b"x" * (256 * 1024 * 1024))
    tls = transport.endswith("tls")
    with h2_serve(app, tls=tls, interface="rsgi") as srv:
        if transport == "h2":
            with H2Client(srv) as client:
                client.hold.add(1)
                sid = client.request("/file")
                client.wait(lambda: len(client.streams[sid].data) > 0)
            # The raw client closes its socket on exit.
        else:
            sock = srv.connect(timeout=10)
            if tls:
                sock = srv.certs.client_context(alpn=("http/1.1",)).wrap_socket(
                    sock, server_hostname="127.0.0.1"
                )
            sock.sendall(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536)
            sock.close()
        _wait_released(str(path))
        deadline = time.monotonic() + 5
        while srv.server.state.tasks:
            assert time.monotonic() < deadline, "the request is still running"
            time.sleep(0.01)
    assert not [r for r in server_logs if r.levelname == "ERROR"]


def test_client_that_stops_reading_is_cut_by_the_write_timeout(server_factory, tmp_path):
    """sendfile(2) waits for a client that takes nothing no longer than --timeout-write."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(256 * 1024 * 1024)

    async def app(scope, protocol):
        protocol.response_file(200, [], str(path))

    with server_factory(app, interface="rsgi", timeout_write=0.3) as srv:
        with srv.connect(timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 5
            while not _server_holds(str(path)):  # the transfer has begun
                assert time.monotonic() < deadline, "the server never opened the file"
                time.sleep(0.005)
            _wait_released(str(path), timeout=10)
            # The server closed the connection: what the kernel queued, then the end.
            assert len(read_until_closed(sock, 10)) < 256 * 1024 * 1024


# ------------------------------------------------------------------ over the in-memory Stream


def test_gateways_use_send_file_over_the_memory_stream(impl, data_file):
    """Each interface hands its file to Stream.send_file (the contract is all it needs), and a
    file shorter than its promise resets the exchange."""
    import asyncio

    from memory_stream import MemoryStream

    from refserver.config import Config
    from refserver.impl import select
    from refserver.server import ServerState, make_gateway

    path, data = data_file

    def run(interface, app, stream):
        async def main():
            state = ServerState(
                Config(app, access_log=False), asyncio.get_running_loop(), select(impl)[0]
            )
            gateway = make_gateway(interface, app, state)
            try:
                await asyncio.wait_for(gateway(stream), 5)
            finally:
                if hasattr(gateway, "close"):
                    gateway.close(1)

        asyncio.run(main())
        return stream

    stream = run("asgi", asgi_app(path, data), MemoryStream(raw_path=b"/pathsend"))
    assert stream.files == [(0, SIZE, True)] and bytes(stream.sent) == data
    assert (b"content-length", b"%d" % SIZE) in stream.fields
    stream = run("asgi", asgi_app(path, data), MemoryStream(raw_path=b"/zerocopy"))
    assert stream.files == [(5, 1000, False), (200000, SIZE - 200000, False)]
    stream = run("asgi", asgi_app(path, data), MemoryStream(raw_path=b"/short"))
    assert stream.aborted and not stream.response_complete
    stream = run("rsgi", rsgi_app(path, data), MemoryStream(raw_path=b"/range"))
    assert stream.files == [(70000, SIZE - 71000, True)]
    assert bytes(stream.sent) == data[70000:SIZE - 1000]
    stream = run("wsgi", wsgi_app(path, data), MemoryStream(raw_path=b"/offset"))
    assert stream.files == [(10, SIZE - 10, False)] and bytes(stream.sent) == data[10:]
    stream = run("rsgi", rsgi_app(path, data), MemoryStream(method="HEAD", raw_path=b"/file"))
    assert stream.sent == b"" and stream.response_complete


@pytest.mark.parametrize("transport", ["h1-tls", "h2"])
def test_fallback_holds_one_block_not_the_file(h2_serve, tmp_path, transport):
    """Over TLS and HTTP/2 a file is read a block at a time: serving 64 MiB raises the peak of
    the process's Python allocations (the client's included) by a few blocks, not the file."""
    import tracemalloc

    size = 64 * 1024 * 1024
    path = tmp_path / "big.bin"
    with open(path, "wb") as fh:
        fh.truncate(size)
    app = rsgi_app(str(path), b"")
    with h2_serve(app, tls=transport.endswith("tls"), interface="rsgi") as srv:
        with client_for(srv, transport) as client:
            tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC may have started it
            tracemalloc.start()
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            try:
                received = 0
                with client.stream("GET", url(srv, transport, "/chunked")) as response:
                    for chunk in response.iter_raw():
                        received += len(chunk)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                if not tracing:
                    tracemalloc.stop()
    assert received == size
    assert peak - before < 8 * 1024 * 1024, peak - before


def test_the_files_benchmark_runs(tmp_path):
    """benchmarks/files.py, reduced to a few MiB and two targets, still serves, downloads and
    checks the file (a smoke run: the figures are the script's business)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (.ci/run installs it)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "files.py"), "--size", "4",
         "--targets", "refserver-rsgi,refserver-static", "--timeout", "30"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("sha256 ok") == 2, result.stdout
    assert os.listdir(tmp_path) == []  # the temporary directory is gone


@pytest.mark.parametrize("transport", ["h1", "h1-tls"])
def test_a_descriptor_that_cannot_be_read_at_an_offset_fails_the_response(
    h2_serve, transport, server_logs
):
    """zerocopysend of a pipe (neither sendfile nor pread takes one): the application's error,
    reported, and the response cut; not mistaken for a client that left."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        read_end, write_end = os.pipe()
        os.write(write_end, b"0123456789")
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.zerocopysend", "file": read_end, "offset": 0,
                        "count": 10})
        finally:
            os.close(read_end)
            os.close(write_end)

    with h2_serve(app, tls=transport.endswith("tls"), interface="asgi") as srv:
        with client_for(srv, transport) as client, pytest.raises(httpx.HTTPError):
            client.get(url(srv, transport, "/"))
    assert any(r.levelname == "ERROR" and "exception in ASGI application" in r.getMessage()
               for r in server_logs)
