"""ASGI WebSockets (spec 2.5) over a real socket, with the ``websockets`` client library.

Every test runs on both implementations (pure, fast) and both loops (asyncio, uvloop): the switch
from HTTP/1.1 to WebSocket must work whichever HTTP parser read the handshake.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from ws_helpers import (
    CLOSE,
    PING,
    TEXT,
    RawClient,
    close_code,
    close_frame,
    connect,
    frame,
    wait_for,
)

pytestmark = pytest.mark.timeout(30)


def make_app():
    """A router of small WebSocket apps; ``log`` collects what they observed."""
    log: list = []
    flood = {"sent": 0}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        path = scope["path"]
        if scope["type"] == "http":
            log.append(("http", path, dict(scope["headers"]).get(b"upgrade")))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain http"})
            return
        connect = await receive()
        log.append(("connect", connect))
        if path == "/echo":
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    log.append(("disconnect", message))
                    return
                await send({"type": "websocket.send", "bytes": message["bytes"],
                            "text": message["text"]})
        elif path == "/scope":
            await send({"type": "websocket.accept"})
            view = {k: v for k, v in scope.items() if k not in ("headers", "state")}
            view["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
            view["raw_path"] = scope["raw_path"].decode()
            view["query_string"] = scope["query_string"].decode()
            await send({"type": "websocket.send", "text": json.dumps(view)})
            await receive()
        elif path == "/subprotocol":
            await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1],
                        "headers": [(b"x-extra", b"yes")]})
            await receive()
        elif path == "/bad-subprotocol":
            try:
                await send({"type": "websocket.accept", "subprotocol": "never-offered"})
            except Exception as exc:
                log.append(("error", type(exc).__name__))
                raise
        elif path == "/close":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            log.append(("after-close", await receive()))
        elif path == "/deny":
            await send({"type": "websocket.close"})
        elif path == "/http-response":
            await send({"type": "websocket.http.response.start", "status": 418,
                        "headers": [(b"x-teapot", b"1")]})
            await send({"type": "websocket.http.response.body", "body": b"tea", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"pot"})
        elif path == "/raise-after-accept":
            await send({"type": "websocket.accept"})
            raise RuntimeError("boom")
        elif path == "/raise-before-accept":
            raise RuntimeError("boom")
        elif path == "/return-without-accept":
            return
        elif path == "/return-open":
            await send({"type": "websocket.accept"})
        elif path == "/send-after-close":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            try:
                await send({"type": "websocket.send", "text": "late"})
            except OSError as exc:
                log.append(("send-error", type(exc).__name__))
            await send({"type": "websocket.close"})  # closing again is accepted
        elif path == "/send-after-disconnect":
            await send({"type": "websocket.accept"})
            log.append(("disconnect", await receive()))
            try:
                await send({"type": "websocket.send", "text": "late"})
            except OSError as exc:
                log.append(("send-error", type(exc).__name__))
        elif path == "/flood":
            await send({"type": "websocket.accept"})
            chunk = b"x" * 65536
            for _ in range(2000):
                await send({"type": "websocket.send", "bytes": chunk})
                flood["sent"] += 1
        elif path == "/no-receive":
            await send({"type": "websocket.accept"})
            log.append(("accepted",))
            await asyncio.sleep(30)
        elif path == "/wait":
            await send({"type": "websocket.accept"})
            log.append(("disconnect", await receive()))
        elif path in ("/receive-while-accepting", "/receive-while-denying"):
            # One task reads while another answers the handshake, as Quart's apps do.
            reader = asyncio.ensure_future(receive())
            await asyncio.sleep(0)
            if path == "/receive-while-denying":
                await send({"type": "websocket.close"})
                log.append(("pending", await reader))
                return
            await send({"type": "websocket.accept"})
            message = await reader
            await send({"type": "websocket.send", "text": "got " + message["text"]})
            log.append(("disconnect", await receive()))

    return app, log, flood


@pytest.fixture
def served(server_factory):
    app, log, flood = make_app()

    def start(**options):
        return server_factory(app, **options)

    start.log = log
    start.flood = flood
    return start


def test_echo_text_and_bytes(served):
    with served() as srv, connect(srv, "/echo") as ws:
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv() == b"\x00\xff" * 1000
        ws.send("")
        assert ws.recv() == ""


def test_scope(served):
    with served() as srv, connect(
        srv, "/sc%6Fpe?a=1", subprotocols=["one", "two"], additional_headers={"X-Test": "t"}
    ) as ws:
        scope = json.loads(ws.recv())
    # The router saw the decoded path; the scope keeps both.
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope" and scope["raw_path"] == "/sc%6Fpe"
    assert scope["query_string"] == "a=1"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope
    assert scope["server"] == ["127.0.0.1", srv.port]
    assert scope["client"][0] == "127.0.0.1"
    assert ["x-test", "t"] in scope["headers"]
    assert ["sec-websocket-protocol", "one, two"] in scope["headers"]


def test_subprotocols_from_several_fields_and_accept_headers(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port)
        head = client.handshake(
            "/subprotocol",
            headers=[("Sec-WebSocket-Protocol", "a, b"), ("Sec-WebSocket-Protocol", "c")],
        )
        client.close()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nsec-websocket-protocol: c\r\n" in head
    assert b"\r\nx-extra: yes\r\n" in head
    assert ("connect", {"type": "websocket.connect"}) in served.log


def test_subprotocol_with_websockets_client(served):
    with served() as srv, connect(srv, "/subprotocol", subprotocols=["x", "y"]) as ws:
        assert ws.subprotocol == "y"
        assert ws.response.headers["x-extra"] == "yes"


def test_accepting_a_subprotocol_not_offered_is_an_error_and_500(served):
    with served() as srv, pytest.raises(InvalidStatus) as info:
        connect(srv, "/bad-subprotocol", subprotocols=["a"])
    assert info.value.response.status_code == 500
    assert ("error", "ASGIProtocolError") in served.log


def test_app_close_code_and_reason_reach_the_client(served):
    with served() as srv, connect(srv, "/close") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 4001 and info.value.rcvd.reason == "bye"
    wait_for(lambda: any(e[0] == "after-close" for e in served.log))
    after = [e[1] for e in served.log if e[0] == "after-close"][0]
    assert after == {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}


def test_client_close_code_and_reason_reach_the_app(served):
    with served() as srv:
        with connect(srv, "/echo") as ws:
            ws.close(4002, "ciao")
        wait_for(lambda: any(e[0] == "disconnect" for e in served.log))
    (message,) = [e[1] for e in served.log if e[0] == "disconnect"]
    assert message == {"type": "websocket.disconnect", "code": 4002, "reason": "ciao"}


def test_close_before_accept_is_403(served):
    with served() as srv, pytest.raises(InvalidStatus) as info:
        connect(srv, "/deny")
    assert info.value.response.status_code == 403


def test_a_receive_pending_while_the_app_accepts_gets_the_messages(served):
    with served() as srv:
        with connect(srv, "/receive-while-accepting") as ws:
            ws.send("first")
            assert ws.recv() == "got first"
        wait_for(lambda: ("disconnect", {"type": "websocket.disconnect", "code": 1000,
                                         "reason": ""}) in served.log)
        with pytest.raises(InvalidStatus) as info:
            connect(srv, "/receive-while-denying")
        assert info.value.response.status_code == 403
        wait_for(lambda: ("pending", {"type": "websocket.disconnect", "code": 1006,
                                      "reason": ""}) in served.log)


def test_websocket_http_response_extension(served):
    with served() as srv, pytest.raises(InvalidStatus) as info:
        connect(srv, "/http-response")
    response = info.value.response
    assert response.status_code == 418
    assert response.headers["x-teapot"] == "1"
    assert response.body == b"teapot"


def test_exception_after_accept_closes_1011(served):
    with served() as srv, connect(srv, "/raise-after-accept") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 1011


@pytest.mark.parametrize("path", ["/raise-before-accept", "/return-without-accept"])
def test_no_answer_to_the_handshake_is_500(served, path):
    with served() as srv, pytest.raises(InvalidStatus) as info:
        connect(srv, path)
    assert info.value.response.status_code == 500


def test_returning_with_an_open_socket_closes_1000(served):
    with served() as srv, connect(srv, "/return-open") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 1000


def test_send_after_close_raises_an_oserror(served):
    with served() as srv, connect(srv, "/send-after-close") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv()
        wait_for(lambda: ("send-error", "ClientDisconnected") in served.log)


def test_send_after_client_disconnect_raises_an_oserror(served):
    with served() as srv:
        with connect(srv, "/send-after-disconnect") as ws:
            ws.close()
        wait_for(lambda: ("send-error", "ClientDisconnected") in served.log)
    disconnect = [e[1] for e in served.log if e[0] == "disconnect"][0]
    assert disconnect["code"] == 1000


def test_dropped_connection_is_disconnect_1006(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port)
        assert client.handshake("/echo").startswith(b"HTTP/1.1 101 ")
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # RST, no close frame
        wait_for(lambda: any(e[0] == "disconnect" for e in served.log))
    (message,) = [e[1] for e in served.log if e[0] == "disconnect"]
    assert message["code"] == 1006


# ------------------------------------------------------------------------------------ policies


def test_per_message_deflate_off(served):
    with served(ws_per_message_deflate=False) as srv, connect(srv, "/echo") as ws:
        assert "sec-websocket-extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv() == "plain"


def test_unanswered_pings_close_1011(served):
    with served(ws_ping_interval=0.1, ws_ping_timeout=0.3) as srv:
        client = RawClient(srv.host, srv.port)
        client.handshake("/wait")
        fin, rsv, opcode, payload = client.read_frame()
        assert opcode == PING
        started = time.monotonic()
        fin, rsv, opcode, payload = client.read_frame()  # never answered
        assert opcode == CLOSE and close_code(payload) == 1011
        assert 0.2 < time.monotonic() - started < 3
        client.read_until_eof()
        client.close()
        wait_for(lambda: any(e[0] == "disconnect" for e in served.log))
    (message,) = [e[1] for e in served.log if e[0] == "disconnect"]
    assert message["code"] == 1011


def test_answered_pings_keep_the_connection(served):
    with served(ws_ping_interval=0.05, ws_ping_timeout=0.1) as srv, connect(srv, "/echo") as ws:
        time.sleep(0.5)  # several ping rounds; the client answers each
        ws.send("still here")
        assert ws.recv() == "still here"


def test_ws_off_upgrade_reaches_the_app_as_http(served):
    with served(ws=False) as srv:
        client = RawClient(srv.host, srv.port)
        head = client.handshake("/echo")
        client.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert ("http", "/echo", b"websocket") in served.log


def test_shutdown_sends_1001(served):
    with served() as srv, connect(srv, "/wait") as ws:
        srv.loop.call_soon_threadsafe(srv.server.request_shutdown)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd.code == 1001
    wait_for(lambda: any(e[0] == "disconnect" for e in served.log))
    (message,) = [e[1] for e in served.log if e[0] == "disconnect"]
    assert message["code"] == 1001


# ------------------------------------------------------------------------------------ flow control


# ------------------------------------------------------------------------------------ the wire


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(TEXT, b"\xc3\x28"), 1007),  # invalid UTF-8
        (frame(TEXT, b"x", mask=None), 1002),  # unmasked
        (frame(5, b""), 1002),  # reserved opcode
        (frame(TEXT, b"x", rsv=1), 1002),  # reserved bit
    ],
    ids=["invalid-utf8", "unmasked", "reserved-opcode", "reserved-bit"],
)
def test_violations_close_with_the_rfc_code_and_spare_other_connections(served, data, code):
    with served() as srv, connect(srv, "/echo") as other:
        client = RawClient(srv.host, srv.port)
        client.handshake("/echo")
        client.send(frame(TEXT, b"valid") + data)
        # The message before the violation is still answered (Autobahn's strict behaviour).
        assert client.read_frame() == (True, 0, TEXT, b"valid")
        fin, rsv, opcode, payload = client.read_frame()
        assert opcode == CLOSE and close_code(payload) == code
        client.send(close_frame(code))
        client.read_until_eof()
        client.close()
        other.send("unaffected")
        assert other.recv() == "unaffected"


@pytest.mark.parametrize(
    "version, key, status",
    [(b"8", None, 426), (b"13", b"not-a-nonce", 400)],
)
def test_bad_handshakes(served, version, key, status):
    from ws_helpers import KEY, handshake_request

    with served() as srv:
        sock = socket.create_connection((srv.host, srv.port), timeout=5)
        sock.sendall(handshake_request("/echo", key=key or KEY, version=version))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
    assert data.startswith(b"HTTP/1.1 %d " % status)
    if status == 426:
        assert b"\r\nsec-websocket-version: 13\r\n" in data.lower()
    assert not any(e[0] == "connect" for e in served.log)


def test_plain_http_still_served_alongside(served):
    with served() as srv:
        assert httpx.get(srv.url + "/").text == "plain http"
        with connect(srv, "/echo") as ws:
            ws.send("x")
            assert ws.recv() == "x"


def test_many_connections_at_once(served):
    with served() as srv:
        errors = []

        def run(i):
            try:
                with connect(srv, "/echo") as ws:
                    for j in range(20):
                        ws.send(f"{i}-{j}")
                        assert ws.recv() == f"{i}-{j}"
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert errors == []
