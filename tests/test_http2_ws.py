"""WebSockets over HTTP/2 (RFC 8441) end to end: an extended CONNECT on one stream of a real
connection, WebSocket frames in its DATA, for ASGI and RSGI, in cleartext and over TLS."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import h2.settings
import pytest

pytest.register_assert_rewrite("h2_helpers")  # before its import, as it is a plugin below
from h2_helpers import H2Client, StreamRecord, buffered, wide_open
from ws_helpers import (
    BINARY, CLOSE, PING, PONG, TEXT, close_code, close_frame, frame, parse_frames, wait_for,
)

pytestmark = pytest.mark.timeout(60)
#: the fixtures certs, tls_mode and h2_serve
pytest_plugins = ("h2_helpers",)


class Log(list):
    """What the application saw, and ``release`` for ``/late-reader``, which reads nothing until
    it is set."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()


async def released(log: Log) -> None:
    for _ in range(1000):
        if log.release.is_set():
            return
        await asyncio.sleep(0.01)


def asgi_app(log: list):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain"})
            return
        assert (await receive())["type"] == "websocket.connect"
        if scope["path"] == "/deny":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        if scope["path"] == "/flood":
            for _ in range(FLOOD):
                await send({"type": "websocket.send", "bytes": b"f" * 1000})
        if scope["path"] == "/late-reader":
            await released(log)
        facts = {"type": scope["type"], "http_version": scope["http_version"],
                 "scheme": scope["scheme"], "path": scope["path"]}
        await send({"type": "websocket.send", "text": json.dumps(facts)})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                log.append(("closed", message["code"]))
                return
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message["text"]})

    return app


def rsgi_app(log: list):
    from refserver.rsgi import ProtocolClosed, WebsocketMessageType

    async def app(scope, protocol):
        if scope.proto == "http":
            protocol.response_bytes(200, [], b"plain")
            return
        if scope.path == "/deny":
            protocol.close()
            return
        transport = await protocol.accept()
        if scope.path == "/flood":
            for _ in range(FLOOD):
                await transport.send_bytes(b"f" * 1000)
        if scope.path == "/late-reader":
            await released(log)
        facts = {"type": scope.proto, "http_version": scope.http_version, "scheme": scope.scheme,
                 "path": scope.path}
        await transport.send_str(json.dumps(facts))
        while True:
            try:
                message = await transport.receive()
            except ProtocolClosed:  # the stream was reset: RSGI's dropped connection
                log.append(("dropped",))
                return
            if message.kind == WebsocketMessageType.close:
                log.append(("closed", message.data))
                return
            if message.kind == WebsocketMessageType.bytes:
                await transport.send_bytes(message.data)
            else:
                await transport.send_str(message.data)

    return app


APPS = {"asgi": asgi_app, "rsgi": rsgi_app}
FLOOD = 20_000  # messages of 1000 bytes /flood sends at once after accepting
CONNECT_WS = [(":protocol", "websocket"), ("sec-websocket-version", "13")]


@pytest.fixture(params=list(APPS))
def interface(request):
    return request.param


class Channel:
    """The WebSocket frames of one HTTP/2 stream, as the client sees them."""

    def __init__(self, client: H2Client, sid: int):
        self.client, self.sid, self.seen = client, sid, 0

    def send(self, data: bytes) -> None:
        self.client.send_body(self.sid, data, end=False)

    def read_frame(self):
        """The next whole server frame as (fin, rsv, opcode, payload)."""
        record = self.client.streams[self.sid]

        def complete():
            frames, _ = parse_frames(bytes(record.data[self.seen :]))
            return frames

        found = []

        def have_one():
            found[:] = complete()
            return bool(found) or record.done

        self.client.wait(have_one)
        assert found, "the stream ended without another frame"
        fin, rsv, opcode, payload = found[0]
        head = 2 + (2 if 126 <= len(payload) < 65536 else 8 if len(payload) >= 65536 else 0)
        self.seen += head + len(payload)
        return fin, rsv, opcode, payload


def open_websocket(client: H2Client, path: str = "/echo") -> int:
    client.wait(lambda: client.remote_settings_seen)
    return client.headers(path, "CONNECT", extra=CONNECT_WS, end=False)


def test_a_websocket_over_http2_echoes_and_closes(h2_serve, interface, tls_mode):
    log = Log()
    with h2_serve(APPS[interface](log), tls=tls_mode == "tls", interface=interface) as srv, \
            H2Client(srv) as client:
        client.wait(lambda: client.remote_settings_seen)
        settings = client.server_settings
        assert settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1

        sid = open_websocket(client)
        client.wait(lambda: client.streams[sid].status is not None)
        record = client.streams[sid]
        assert record.status == 200 and not record.done
        assert record.header(b"sec-websocket-accept") is None  # RFC 8441 5: no key, no accept
        channel = Channel(client, sid)

        _, _, opcode, payload = channel.read_frame()
        assert opcode == TEXT
        assert json.loads(payload) == {
            "type": "websocket" if interface == "asgi" else "ws",
            "http_version": "2",
            "scheme": ("wss" if tls_mode == "tls" else "ws") if interface == "asgi"
            else ("https" if tls_mode == "tls" else "http"),
            "path": "/echo",
        }

        channel.send(frame(TEXT, "héllo".encode()))
        assert channel.read_frame() == (True, 0, TEXT, "héllo".encode())

        # a plain request on the same connection while the WebSocket is open
        plain = client.request("/plain")
        assert bytes(client.response(plain).data) == b"plain"

        # a message larger than the stream windows, both ways
        big = os.urandom(300_000)
        channel.send(frame(BINARY, big))
        assert channel.read_frame() == (True, 0, BINARY, big)

        channel.send(close_frame(1000))
        fin, _, opcode, payload = channel.read_frame()
        assert (opcode, close_code(payload)) == (CLOSE, 1000)
        client.wait(lambda: client.streams[sid].ended)  # the server ends its side of the stream
        if client.streams[sid].reset is None:
            client.send_body(sid, b"", end=True)
        else:  # the core's RST_STREAM(NO_ERROR) after a stream it ended first (H2-STREAM-3)
            assert client.streams[sid].reset == 0
        wait_for(lambda: log)
        assert log == [("closed", 1000 if interface == "asgi" else None)]  # RSGI: no code
        assert client.goaway is None


def test_a_websocket_denied_before_accept_is_403(h2_serve, interface):
    log = Log()
    with h2_serve(APPS[interface](log), interface=interface) as srv, H2Client(srv) as client:
        sid = open_websocket(client, "/deny")
        record = client.response(sid)
        assert record.status == 403 and record.ended
        assert bytes(client.response(client.request("/plain")).data) == b"plain"


def test_a_plain_connect_is_501_and_the_connection_goes_on(h2_serve):
    log = Log()
    with h2_serve(asgi_app(log), interface="asgi") as srv, H2Client(srv) as client:
        client.wait(lambda: client.remote_settings_seen)
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, [(b":method", b"CONNECT"),
                                       (b":authority", b"example.com:443")], end_stream=False)
        client.flush()
        client.streams[sid] = StreamRecord()
        record = client.response(sid)
        assert record.status == 501
        assert bytes(client.response(client.request("/plain")).data) == b"plain"


def test_pings_and_a_client_reset_of_a_websocket_stream(h2_serve, interface):
    log = Log()
    with h2_serve(APPS[interface](log), interface=interface) as srv, H2Client(srv) as client:
        sid = open_websocket(client)
        channel = Channel(client, sid)
        channel.read_frame()
        channel.send(frame(PING, b"are you there"))
        assert channel.read_frame() == (True, 0, PONG, b"are you there")
        client.reset(sid)  # like a TCP RST under an HTTP/1.1 WebSocket
        wait_for(lambda: log)
        if interface == "asgi":
            assert log == [("closed", 1006)]
        else:
            assert log == [("dropped",)]
        assert bytes(client.response(client.request("/plain")).data) == b"plain"
        assert client.goaway is None


def test_shutdown_closes_an_open_websocket_with_1001_then_the_server_exits(h2_serve, interface):
    log = Log()
    with h2_serve(APPS[interface](log), interface=interface) as srv, H2Client(srv) as client:
        sid = open_websocket(client)
        channel = Channel(client, sid)
        channel.read_frame()
        srv.loop.call_soon_threadsafe(srv.server.request_shutdown)
        _, _, opcode, payload = channel.read_frame()
        assert (opcode, close_code(payload)) == (CLOSE, 1001)
        assert not client.streams[sid].done  # the server waits for the client's Close
        channel.send(close_frame(1001))
        client.wait_closed()
        assert client.streams[sid].ended
        assert client.goaway.error_code == 0 and client.goaway.last_stream_id == sid
        srv.thread.join(5)
        assert not srv.thread.is_alive()
        assert log == [("closed", 1001 if interface == "asgi" else None)]


def test_a_websocket_application_that_does_not_read_holds_back_its_stream_only(
    h2_serve, interface
):
    """Messages the application does not take pile up to the session's high-water mark, then
    the stream's window stays shut (the client must wait); the rest of the connection goes on,
    and everything is echoed once the application reads."""
    log = Log()
    with h2_serve(APPS[interface](log), interface=interface) as srv, H2Client(srv) as client:
        try:
            sid = open_websocket(client, "/late-reader")
            client.wait(lambda: client.streams[sid].status == 200)
            blob = b"".join(frame(BINARY, bytes([i]) * 10_000) for i in range(40))
            sent = client.send_available(sid, blob)
            until = time.monotonic() + 0.3  # the window stays shut while nothing is read
            while time.monotonic() < until:
                client.pump(0.05)
                sent += client.send_available(sid, blob[sent:])
            assert client.conn.local_flow_control_window(sid) == 0
            # about the high-water mark (64 KiB) plus one stream window: far from all of it
            assert 65_536 < sent < 65_536 + 65_535 + 20_000, sent
            assert bytes(client.response(client.request("/plain")).data) == b"plain"
        finally:
            log.release.set()
        client.send_body(sid, blob[sent:], end=False)
        channel = Channel(client, sid)
        assert channel.read_frame()[2] == TEXT  # the facts, sent once released
        for i in range(40):
            assert channel.read_frame() == (True, 0, BINARY, bytes([i]) * 10_000)
        channel.send(close_frame(1000))
        assert close_code(channel.read_frame()[3]) == 1000


def test_a_websocket_application_waits_for_a_client_with_wide_windows(h2_serve, interface):
    """The WebSocket counterpart of the HTTP test of the same name: 20 MB of messages to a
    client whose windows never stop them and which reads nothing stay mostly with the
    application, not in the server's buffers."""
    with h2_serve(APPS[interface](Log()), interface=interface, timeout_write=0) as srv, \
            wide_open(srv) as client:
        sid = open_websocket(client, "/flood")
        client.wait(lambda: client.streams[sid].status == 200)
        wait_for(lambda: any(paused for paused, _ in srv.call(buffered, srv)))
        [(_, size)] = srv.call(buffered, srv)
        assert size < 1 << 20, f"{size} bytes buffered for a client that reads nothing"


def test_a_websocket_past_limit_concurrency_is_503_on_its_stream(h2_serve):
    log = Log()
    with h2_serve(asgi_app(log), interface="asgi", limit_concurrency=1) as srv, \
            H2Client(srv) as client:
        channel = Channel(client, open_websocket(client))
        channel.read_frame()  # open, and counted as in flight
        second = client.response(open_websocket(client))
        assert second.status == 503 and second.ended
        channel.send(frame(TEXT, b"still here"))
        assert channel.read_frame() == (True, 0, TEXT, b"still here")


def test_a_client_end_stream_without_a_close_frame_is_a_dropped_websocket(h2_serve, interface):
    """END_STREAM is the TCP FIN of RFC 8441: without a Close frame before it, the application
    sees an abnormal closure, the server ends its side, and the connection goes on."""
    log = Log()
    with h2_serve(APPS[interface](log), interface=interface) as srv, H2Client(srv) as client:
        sid = open_websocket(client)
        Channel(client, sid).read_frame()
        client.send_body(sid, b"", end=True)
        client.wait(lambda: client.streams[sid].done)
        assert client.streams[sid].ended and client.streams[sid].reset is None
        wait_for(lambda: log)
        assert log == ([("closed", 1006)] if interface == "asgi" else [("dropped",)])
        assert bytes(client.response(client.request("/plain")).data) == b"plain"
