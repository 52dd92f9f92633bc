"""RSGI 1.6 WebSockets over a real socket, with the ``websockets`` client library, on both
implementations and both loops. Where Granian 2.8 misbehaves (the close status dropped after
accept, a dead worker on accept() twice) refserver's decided behaviour is what is checked."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from ws_helpers import (
    CLOSE,
    PING,
    TEXT,
    RawClient,
    close_code,
    connect,
    frame,
    wait_for,
)

from refserver.rsgi import ProtocolClosed, ProtocolError, WebsocketMessageType

pytestmark = pytest.mark.timeout(30)


def make_app():
    log: list = []
    flood = {"sent": 0}

    async def app(scope, protocol):
        path = scope.path
        if scope.proto == "http":
            log.append(("http", path, scope.headers.get("upgrade")))
            protocol.response_str(200, [], "plain http")
            return
        query = dict(p.split("=") for p in scope.query_string.split("&") if p)
        if path == "/echo":
            transport = await protocol.accept()
            while True:
                message = await transport.receive()
                if message.kind == WebsocketMessageType.close:
                    log.append(("close", message.kind, message.data))
                    return
                if message.kind == WebsocketMessageType.bytes:
                    await transport.send_bytes(message.data)
                else:
                    await transport.send_str(message.data)
        elif path == "/scope":
            transport = await protocol.accept()
            log.append(("scope", scope.proto, scope.http_version, scope.scheme, scope.method,
                        scope.path, scope.query_string, scope.headers.get("x-test"),
                        scope.rsgi_version))
            await transport.send_str("ok")
            await transport.receive()
        elif path == "/deny":
            status = int(query["status"]) if "status" in query else None
            log.append(("closed", protocol.close(status)))
        elif path == "/bad-deny":
            try:
                protocol.close(1000)
            except ProtocolError as exc:
                log.append(("error", str(exc)))
                raise
        elif path == "/return":
            return
        elif path == "/close-after-accept":
            transport = await protocol.accept()
            status = int(query["status"]) if "status" in query else None
            log.append(("closed", protocol.close(status)))
            log.append(("closed-again", protocol.close(4999)))
            log.append(("receive-after", (await transport.receive()).kind))
            try:
                await transport.send_str("late")
            except ProtocolClosed:
                log.append(("send-error", "ProtocolClosed"))
        elif path == "/accept-twice":
            transport = await protocol.accept()
            try:
                await protocol.accept()
            except ProtocolError as exc:
                log.append(("error", type(exc).__name__))
            await transport.send_str("still fine")
            await transport.receive()
        elif path == "/raise":
            await protocol.accept()
            raise RuntimeError("boom")
        elif path == "/raise-before":
            raise RuntimeError("boom")
        elif path == "/dropped":
            transport = await protocol.accept()
            log.append(("accepted",))
            try:
                await transport.receive()
                log.append(("no-error",))
            except ProtocolClosed:
                log.append(("receive-error", "ProtocolClosed"))
            try:
                await transport.receive()
            except ProtocolClosed:
                log.append(("receive-error-again", "ProtocolClosed"))
        elif path == "/send-after-client-close":
            transport = await protocol.accept()
            message = await transport.receive()
            log.append(("close", message.kind, message.data))
            try:
                await transport.send_bytes(b"late")
            except ProtocolClosed:
                log.append(("send-error", "ProtocolClosed"))
        elif path == "/wait":
            transport = await protocol.accept()
            message = await transport.receive()
            log.append(("close", message.kind, message.data))
        elif path == "/flood":
            transport = await protocol.accept()
            chunk = b"x" * 65536
            for _ in range(2000):
                await transport.send_bytes(chunk)
                flood["sent"] += 1
        elif path == "/no-receive":
            await protocol.accept()
            log.append(("accepted",))
            await asyncio.sleep(30)

    return app, log, flood


@pytest.fixture
def served(server_factory):
    app, log, flood = make_app()

    def start(**options):
        options.setdefault("interface", "rsgi")
        return server_factory(app, **options)

    start.log = log
    start.flood = flood
    return start


def test_echo_bytes_and_str(served):
    with served() as srv, connect(srv, "/echo") as ws:
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00" * 70000)
        assert ws.recv() == b"\x00" * 70000


def test_scope(served):
    with served() as srv, connect(srv, "/scope?q=1", additional_headers={"X-Test": "t"}) as ws:
        assert ws.recv() == "ok"
    (entry,) = [e for e in served.log if e[0] == "scope"]
    # proto "ws", and the scheme stays "http" for a WebSocket (RSGI, as Granian).
    assert entry == ("scope", "ws", "1.1", "http", "GET", "/scope", "q=1", "t", "1.6")


def test_client_close_is_a_close_message(served):
    with served() as srv:
        with connect(srv, "/echo") as ws:
            ws.close(4005, "bye")
        wait_for(lambda: any(e[0] == "close" for e in served.log))
    assert ("close", WebsocketMessageType.close, None) in served.log


@pytest.mark.parametrize("query, status", [("", 403), ("?status=404", 404), ("?status=200", 200)])
def test_close_before_accept_is_an_http_response(served, query, status):
    with served() as srv, pytest.raises(InvalidStatus) as info:
        connect(srv, "/deny" + query)
    assert info.value.response.status_code == status
    assert ("closed", (status, False)) in served.log


def test_returning_without_accepting_is_403(served):
    with served() as srv, pytest.raises(InvalidStatus) as info:
        connect(srv, "/return")
    assert info.value.response.status_code == 403


def test_invalid_status_before_accept_is_a_protocol_error_and_500(served):
    with served() as srv:
        with pytest.raises(InvalidStatus) as info:
            connect(srv, "/bad-deny")
        assert info.value.response.status_code == 500
        # The worker is alive and well.
        with connect(srv, "/echo") as ws:
            ws.send("alive")
            assert ws.recv() == "alive"
    assert any(e[0] == "error" for e in served.log)


@pytest.mark.parametrize(
    "query, code",
    [("", 1000), ("?status=4001", 4001), ("?status=1001", 1001), ("?status=200", 1000),
     ("?status=404", 1008), ("?status=500", 1011)],
)
def test_close_after_accept_carries_the_status_as_close_code(served, query, code):
    with served() as srv, connect(srv, "/close-after-accept" + query) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
        wait_for(lambda: ("send-error", "ProtocolClosed") in served.log)
    assert info.value.rcvd.code == code
    status = int(query.split("=")[1]) if query else 1000
    assert ("closed", (status, True)) in served.log
    assert ("closed-again", (status, True)) in served.log  # idempotent
    assert ("receive-after", WebsocketMessageType.close) in served.log


def test_accept_twice_is_a_protocol_error_not_a_dead_worker(served):
    with served() as srv:
        with connect(srv, "/accept-twice") as ws:
            assert ws.recv() == "still fine"
        with connect(srv, "/echo") as ws:
            ws.send("next")
            assert ws.recv() == "next"
    assert ("error", "ProtocolError") in served.log


def test_exception_after_accept_closes_1011(served):
    with served() as srv, connect(srv, "/raise") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 1011


def test_exception_before_accept_is_500(served):
    with served() as srv, pytest.raises(InvalidStatus) as info:
        connect(srv, "/raise-before")
    assert info.value.response.status_code == 500


def test_dropped_connection_makes_receive_raise_protocol_closed(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port)
        client.handshake("/dropped")
        wait_for(lambda: ("accepted",) in served.log)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
        wait_for(lambda: ("receive-error-again", "ProtocolClosed") in served.log)
    assert ("receive-error", "ProtocolClosed") in served.log


def test_send_after_client_close_raises_protocol_closed(served):
    with served() as srv:
        with connect(srv, "/send-after-client-close") as ws:
            ws.close()
        wait_for(lambda: ("send-error", "ProtocolClosed") in served.log)


def test_shutdown_sends_1001(served):
    with served() as srv:
        with connect(srv, "/wait") as ws:
            srv.loop.call_soon_threadsafe(srv.server.request_shutdown)
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
        assert info.value.rcvd.code == 1001
        wait_for(lambda: any(e[0] == "close" for e in served.log))


def test_unanswered_pings_close_1011_and_receive_raises(served):
    with served(ws_ping_interval=0.1, ws_ping_timeout=0.2) as srv:
        client = RawClient(srv.host, srv.port)
        client.handshake("/dropped")
        assert client.read_frame()[2] == PING
        fin, rsv, opcode, payload = client.read_frame()
        assert opcode == CLOSE and close_code(payload) == 1011
        wait_for(lambda: ("receive-error", "ProtocolClosed") in served.log)
        client.close()


def test_ws_off_upgrade_reaches_the_app_as_http(served):
    with served(ws=False) as srv:
        client = RawClient(srv.host, srv.port)
        head = client.handshake("/echo")
        client.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert ("http", "/echo", "websocket") in served.log


def test_invalid_utf8_closes_1007(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port)
        client.handshake("/echo")
        client.send(frame(TEXT, b"\xed\xa0\x80"))
        fin, rsv, opcode, payload = client.read_frame()
        assert opcode == CLOSE and close_code(payload) == 1007
        client.close()


def test_violation_closes_1002_and_spares_other_connections(served):
    with served() as srv, connect(srv, "/echo") as other:
        client = RawClient(srv.host, srv.port)
        client.handshake("/echo")
        client.send(frame(TEXT, b"x", mask=None))
        fin, rsv, opcode, payload = client.read_frame()
        assert opcode == CLOSE and close_code(payload) == 1002
        client.close()
        other.send(b"unaffected")
        assert other.recv() == b"unaffected"


