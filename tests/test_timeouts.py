"""Slow clients on real sockets: heads that trickle, bodies that stall, responses and WebSocket
messages nobody reads. Each test runs on both paths (and, where the loop matters, both loops).

The long versions (1,000 slow connections at one byte a second) are ``benchmarks/slow_clients.py``.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import threading
import time

import pytest
from h1_helpers import assert_closed, assert_no_traceback, echo, get, parse, respond, wait_for
from support import ROOT, read_response, read_until_closed, serve
from ws_helpers import RawClient

sys.path.insert(0, ROOT)
from benchmarks.loopback import trickle  # noqa: E402

# ---------------------------------------------------------------------------- slow request heads


def test_a_head_that_keeps_trickling_gets_408_at_its_deadline(server_factory):
    """Bytes arriving do not move the header-read deadline (H1-TIMEOUT-1)."""
    head = get("/slow")
    with server_factory(echo, lifespan="off", http1_header_read_timeout=0.6) as srv, \
            srv.connect() as sock:
        start = time.monotonic()
        sock.setblocking(False)
        answer = b""
        for byte in head[:-2]:  # never complete
            sock.send(bytes([byte]))
            time.sleep(0.05)
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                continue
            break
        sock.setblocking(True)
        answer += read_until_closed(sock, timeout=5)
        elapsed = time.monotonic() - start
        status, headers, _ = parse(answer)
        assert status == 408 and headers["connection"] == "close"
        assert 0.55 <= elapsed < 1.2, elapsed  # the deadline, not extended by the trickle


def _trickle_heads(port, count, interval, until):
    """``count`` connections each sending one byte of a request head every ``interval`` s;
    returns {connection index: (seconds from its connect to its close, bytes received)}."""
    head = get("/slow") * 4  # longer than any run: the head never completes
    return trickle(port, count, head, interval, until)[0]


def test_200_slow_heads_do_not_stall_a_prompt_client(impl, server_logs):
    """200 connections trickle heads at 5 bytes a second; a keep-alive client is served at once
    all along, and each slow connection gets 408 at the header-read deadline (H1-TIMEOUT-1)."""
    timeout, count = 2.0, 200
    with serve(echo, impl=impl, loop="asyncio" if impl == "pure" else "uvloop",
               lifespan="off", http1_header_read_timeout=timeout) as srv:
        box = {}
        slow = threading.Thread(
            target=lambda: box.setdefault(
                "results",
                _trickle_heads(srv.port, count, 0.2, time.monotonic() + timeout + 5),
            )
        )
        slow.start()
        latencies = []
        with srv.connect() as sock:
            while slow.is_alive():
                start = time.monotonic()
                sock.sendall(get("/prompt"))
                status, _, body = parse(read_response(sock))
                latencies.append(time.monotonic() - start)
                assert (status, body) == (200, b"GET /prompt 1:")
                time.sleep(0.01)
        slow.join()
    results = box["results"]
    assert len(results) == count, f"{count - len(results)} slow connections were never closed"
    for elapsed, answer in results.values():
        assert parse(answer)[0] == 408
        assert timeout - 0.1 <= elapsed < timeout + 1.5, elapsed
    p99 = statistics.quantiles(latencies, n=100)[98]
    # Generous for a shared 2-core CI machine; benchmarks/slow_clients.py measures the real p99.
    assert len(latencies) > 50 and p99 < 0.25, (len(latencies), p99)
    assert_no_traceback(server_logs)


# ------------------------------------------------------------------------------- slow bodies


def _post_head(length: int) -> bytes:
    return b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length


def test_a_stalled_body_gets_408_and_the_app_a_disconnect(server_factory, server_logs):
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        if seen[-1] == "http.request":
            await respond(send, body=b"complete")

    with server_factory(app, lifespan="off", http1_body_read_timeout=0.4) as srv, \
            srv.connect() as sock:
        start = time.monotonic()
        sock.sendall(_post_head(10) + b"abc")
        raw = assert_closed(sock)
        elapsed = time.monotonic() - start
        status, headers, _ = parse(raw)
        assert status == 408 and headers["connection"] == "close"
        assert 0.35 <= elapsed < 2, elapsed
        wait_for(lambda: seen[-1:] == ["http.disconnect"], what="the disconnect")
        wait_for(lambda: any(" 408 request body" in r.getMessage() for r in server_logs),
                 what="the log line")
    assert_no_traceback(server_logs)


def test_a_body_that_keeps_coming_is_not_cut(server_factory):
    """The body-read timeout is a stall, not a rate: each byte moves it."""
    with server_factory(echo, lifespan="off", http1_body_read_timeout=0.3) as srv, \
            srv.connect() as sock:
        body = b"0123456789"
        sock.sendall(_post_head(len(body)))
        for byte in body:  # 2 s in all, 0.2 s between bytes
            time.sleep(0.2)
            sock.sendall(bytes([byte]))
        status, _, answer = parse(read_response(sock))
        assert status == 200 and answer.startswith(b"POST /upload ")
        assert answer.endswith(b":" + body)


def test_a_body_the_app_has_not_read_yet_is_not_timed(server_factory):
    """While reading is paused because the application is slow, the client is not waited for."""
    total = 2 * 1024 * 1024
    go = threading.Event()

    async def app(scope, receive, send):
        while not go.is_set():
            await asyncio.sleep(0.01)
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await respond(send, body=b"%d" % size)

    with server_factory(app, lifespan="off", http1_body_read_timeout=0.3) as srv, \
            srv.connect(timeout=10) as sock:
        sender = threading.Thread(target=sock.sendall, args=(_post_head(total) + b"x" * total,))
        sender.start()
        time.sleep(1.0)  # the condition under test: three body timeouts with the app not reading
        go.set()
        sender.join(10)
        status, _, body = parse(read_response(sock, timeout=10))
        assert (status, body) == (200, b"%d" % total)


def test_a_client_waiting_for_100_continue_is_not_timed(server_factory):
    """Until the application asks for the body (and 100 Continue is sent), the client is right
    to send nothing."""
    async def app(scope, receive, send):
        await asyncio.sleep(1.0)  # three body timeouts before the body is asked for
        await echo(scope, receive, send)

    with server_factory(app, lifespan="off", http1_body_read_timeout=0.3) as srv, \
            srv.connect() as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(b"hello")
        status, _, body = parse(read_response(sock))
        assert status == 200 and body.endswith(b":hello")


def test_a_body_that_stalls_after_the_response_began_closes_the_connection(server_factory):
    outcome = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"early", "more_body": True})
        message = await receive()
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
        outcome.append(message["type"])

    with server_factory(app, lifespan="off", http1_body_read_timeout=0.3) as srv, \
            srv.connect() as sock:
        sock.sendall(_post_head(10) + b"abc")
        raw = assert_closed(sock)
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"408" not in rest and not rest.endswith(b"0\r\n\r\n")  # cut, not completed
        wait_for(lambda: outcome == ["http.disconnect"], what="the disconnect")


@pytest.mark.parametrize("interface", ["rsgi", "wsgi"])
def test_a_stalled_body_on_rsgi_and_wsgi(impl, interface):
    """RSGI's body read raises ProtocolClosed, WSGI's wsgi.input.read() an OSError."""
    seen = []
    if interface == "wsgi":
        def app(environ, start_response):
            try:
                environ["wsgi.input"].read()
            except OSError as exc:
                seen.append(type(exc).__name__)
                raise
            start_response("200 OK", [])
            return [b"complete"]
    else:
        from refserver.rsgi import ProtocolClosed

        class App:
            async def __rsgi__(self, scope, protocol):
                try:
                    await protocol()
                except ProtocolClosed:
                    seen.append("ProtocolClosed")
                    return
                protocol.response_bytes(200, [], b"complete")

        app = App()
    with serve(app, impl=impl, interface=interface, http1_body_read_timeout=0.3,
               loop="asyncio" if impl == "pure" else "uvloop") as srv, srv.connect() as sock:
        sock.sendall(_post_head(10) + b"abc")
        assert parse(assert_closed(sock))[0] == 408
        wait_for(lambda: seen, what="the application to see the disconnect")
        assert seen[0] in ("ProtocolClosed", "ClientDisconnected")


# -------------------------------------------------------------------- clients that do not read


def _unread_connection(srv):
    """A connection whose receive buffer is small and never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((srv.host, srv.port))
    return sock


def _buffered(srv):
    """Bytes each open connection holds in its transport's write buffer."""
    return srv.call(
        lambda: [c.transport.get_write_buffer_size() for c in srv.server.state.connections]
    )


CHUNK = 65536
HIGH_WATER = 65536  # asyncio's and uvloop's default high-water mark


def test_a_client_that_never_reads_costs_bounded_memory_then_is_closed(server_factory,
                                                                        server_logs):
    progress = {"sent": 0, "error": None}

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"z" * CHUNK,
                            "more_body": True})
                progress["sent"] += CHUNK
        except OSError as exc:
            progress["error"] = type(exc).__name__

    with server_factory(app, lifespan="off", timeout_write=0.5) as srv:
        sock = _unread_connection(srv)
        try:
            sock.sendall(get())
            wait_for(lambda: progress["sent"] > 0, what="the first write")
            start = time.monotonic()
            samples = []
            while progress["error"] is None and time.monotonic() - start < 5:
                samples.extend(_buffered(srv))
                time.sleep(0.02)
            assert progress["error"] == "ClientDisconnected"
            assert 0.45 <= time.monotonic() - start < 3
            assert samples and max(samples) <= HIGH_WATER + CHUNK + 64, max(samples)
            # The kernel's buffers took what they could; the application stopped right after.
            assert progress["sent"] < 16 * 1024 * 1024
            wait_for(lambda: not srv.call(lambda: len(srv.server.state.connections)),
                     what="the connection to be dropped")
        finally:
            sock.close()
        wait_for(lambda: any("took no response bytes" in r.getMessage() for r in server_logs),
                 what="the log line")


def test_a_response_written_whole_to_a_client_that_never_reads_is_dropped(server_factory):
    """One large write (no drain to wait on) and keep-alive: the write timeout still applies."""
    body = b"w" * (8 * 1024 * 1024)

    async def app(scope, receive, send):
        await respond(send, body=body)

    with server_factory(app, lifespan="off", timeout_write=0.4, timeout_keep_alive=0.2) as srv:
        sock = _unread_connection(srv)
        try:
            sock.sendall(get())
            wait_for(lambda: srv.call(lambda: len(srv.server.state.connections)) == 1)
            start = time.monotonic()
            wait_for(lambda: not srv.call(lambda: len(srv.server.state.connections)),
                     what="the connection to be dropped")
            assert time.monotonic() - start < 3
        finally:
            sock.close()


def test_a_slow_reader_that_keeps_reading_is_not_cut(server_factory):
    """Progress counts in the kernel's send queue too: with a large send buffer the kernel lets
    the transport write again only once much of it has drained, so the transport's own buffer
    stands still for longer than the write timeout while the client reads steadily."""
    total = 1024 * 1024

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % total)]})
        for _ in range(total // CHUNK):
            await send({"type": "http.response.body", "body": b"r" * CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def large_send_buffers():
        for conn in srv.server.state.connections:
            conn.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024
            )

    with server_factory(app, lifespan="off", timeout_write=0.2) as srv:
        sock = _unread_connection(srv)
        try:
            wait_for(lambda: srv.call(lambda: len(srv.server.state.connections)) == 1)
            srv.call(large_send_buffers)
            sock.sendall(get(extra=b"Connection: close\r\n"))
            received, start = 0, time.monotonic()
            while True:  # about 2 s: many write timeouts, each with some progress
                data = sock.recv(16384)
                if not data:
                    break
                received += len(data)
                time.sleep(0.008)
            assert received > total  # the head and the whole body arrived
            assert time.monotonic() - start > 0.6  # slower than a few write timeouts
        finally:
            sock.close()


def _flooding_ws_app(interface, progress):
    """A WebSocket application that sends 64 KiB messages until a send fails, then records what
    the failed send raised and what receiving says afterwards."""
    if interface == "asgi":
        async def app(scope, receive, send):
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            try:
                while True:
                    await send({"type": "websocket.send", "bytes": b"m" * CHUNK})
                    progress["sent"] += CHUNK
            except OSError as exc:
                progress["error"] = type(exc).__name__
            message = await receive()
            progress["disconnect"] = (message["type"], message.get("code"))
        return app

    from refserver.rsgi import ProtocolClosed

    async def rsgi_app(scope, protocol):
        transport = await protocol.accept()
        try:
            while True:
                await transport.send_bytes(b"m" * CHUNK)
                progress["sent"] += CHUNK
        except ProtocolClosed as exc:
            progress["error"] = type(exc).__name__
        try:
            await transport.receive()
        except ProtocolClosed:
            progress["disconnect"] = ("ProtocolClosed", None)
    return rsgi_app


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_a_websocket_client_that_never_reads_is_dropped(server_factory, server_logs, interface):
    progress = {"sent": 0, "error": None, "disconnect": None}
    app = _flooding_ws_app(interface, progress)
    with server_factory(app, interface=interface, lifespan="off", timeout_write=0.5,
                        ws_per_message_deflate=False) as srv:
        client = RawClient(srv.host, srv.port)
        try:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            assert client.handshake().startswith(b"HTTP/1.1 101 ")
            wait_for(lambda: progress["sent"] > 0, what="the first message")
            start = time.monotonic()
            samples = []
            while progress["error"] is None and time.monotonic() - start < 5:
                samples.extend(_buffered(srv))
                time.sleep(0.02)
            assert progress["error"] in ("ClientDisconnected", "ProtocolClosed")
            assert 0.45 <= time.monotonic() - start < 3
            assert samples and max(samples) <= HIGH_WATER + CHUNK + 64, max(samples)
            expected = ("websocket.disconnect", 1006) if interface == "asgi" else (
                "ProtocolClosed", None)
            wait_for(lambda: progress["disconnect"] == expected, what="the disconnect")
        finally:
            client.close()
        wait_for(lambda: any("took no WebSocket bytes" in r.getMessage() for r in server_logs),
                 what="the log line")
