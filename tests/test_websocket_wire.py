"""WebSocket framing, limits and flow control over a real socket: the part of a WebSocket that
does not depend on the interface. Each test runs with the ASGI and the RSGI echo app, on both
implementations and both loops; the interface-specific behaviour is in test_websocket_asgi.py and
test_websocket_rsgi.py, whose apps serve the routes used here (/echo, /flood, /no-receive)."""

from __future__ import annotations

import socket
import time

import pytest
import test_websocket_asgi
import test_websocket_rsgi
from websockets.exceptions import ConnectionClosed
from ws_helpers import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawClient,
    close_frame,
    connect,
    frame,
    wait_for,
)

pytestmark = pytest.mark.timeout(30)

_APPS = {"asgi": test_websocket_asgi.make_app, "rsgi": test_websocket_rsgi.make_app}


@pytest.fixture(params=sorted(_APPS))
def served(request, server_factory):
    app, log, flood = _APPS[request.param]()

    def start(**options):
        return server_factory(app, interface=request.param, **options)

    start.log = log
    start.flood = flood
    return start


def test_max_size_closes_1009(served):
    with served(ws_max_size=1024) as srv, connect(srv, "/echo") as ws:
        ws.send(b"x" * 1024)
        assert ws.recv() == b"x" * 1024
        ws.send(b"x" * 1025)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd.code == 1009


def test_per_message_deflate_on_by_default(served):
    with served() as srv, connect(srv, "/echo") as ws:
        assert ws.response.headers["sec-websocket-extensions"] == "permessage-deflate"
        ws.send("compress me " * 1000)
        assert ws.recv() == "compress me " * 1000


def test_slow_client_makes_sends_wait(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.handshake("/flood")
        # The client reads nothing: the app is held once the socket buffers are full.
        wait_for(lambda: served.flood["sent"] > 0)
        time.sleep(0.5)
        held = served.flood["sent"]
        assert held < 200, held  # 2000 x 64 KiB would be sent at once without backpressure
        time.sleep(0.3)
        assert served.flood["sent"] - held <= 1
        # Reading lets it go on.
        for _ in range(50):
            client.read_frame()
        wait_for(lambda: served.flood["sent"] > held)
        client.close()


def test_app_that_does_not_receive_stops_the_reading(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port, timeout=1.0)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        client.handshake("/no-receive")
        wait_for(lambda: ("accepted",) in served.log)
        message = frame(BINARY, b"y" * 65536)
        sent = 0
        with pytest.raises(socket.timeout):
            for _ in range(1000):  # 64 MiB: more than every buffer on the way (tcp_rmem max 32)
                client.sock.sendall(message)
                sent += 1
        assert sent < 900, sent
        client.close()


def test_frames_in_the_same_packet_as_the_handshake(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port)
        head = client.handshake("/echo", extra=frame(TEXT, b"early") + frame(BINARY, b"bird"))
        assert head.startswith(b"HTTP/1.1 101 ")
        assert client.read_frame()[2:] == (TEXT, b"early")
        assert client.read_frame()[2:] == (BINARY, b"bird")
        client.close()


def test_fragmented_message_with_interleaved_ping(served):
    with served() as srv:
        client = RawClient(srv.host, srv.port)
        client.handshake("/echo")
        client.send(frame(TEXT, b"frag", fin=False))
        client.send(frame(PING, b"ping!"))
        client.send(frame(CONT, b"ment", fin=False) + frame(CONT, b"ed"))
        assert client.read_frame() == (True, 0, PONG, b"ping!")
        assert client.read_frame() == (True, 0, TEXT, b"fragmented")
        client.send(close_frame(1000))
        assert client.read_frame()[2] == CLOSE
        assert client.read_until_eof() == b""
        client.close()
