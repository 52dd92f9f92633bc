"""The WebSocket session the ASGI and RSGI gateways see, whatever carries it.

:class:`WebSocketSession` implements :class:`refserver.gateways.ws_session.WebSocketSession` over a
*channel*: the connection switched by an HTTP/1.1 Upgrade (:mod:`refserver.protocols.ws_h1`) or
an HTTP/2 stream opened by an extended CONNECT (RFC 8441, :mod:`refserver.protocols.h2`). The
channel answers the opening handshake in its protocol's terms and carries the frames; the session
holds everything else: frame-level work through :class:`refserver.wire.ws.WSConnection`, flow
control both ways, keepalive pings, the closing handshake's deadline, and server shutdown.

A channel has ``write(data)``, ``async drain()``, ``write_paused``, ``closing``,
``pause_reading()``, ``resume_reading()``, ``read_paused``, ``finish(half_close=False)``,
``expect_close()``, ``abort()``, and answers the handshake with ``accept(fields)``,
``deny(status, headers, body, end)`` and ``deny_body(data, end)``.
"""

from __future__ import annotations

import struct
from collections import deque

from ..gateways.stream import ClientDisconnected
from ..wire.events import ResponseError
from ..wire.response import TEXT_PLAIN
from ..wire.ws import Closed, PongReceived, ProtocolViolation, WSConnection
from ..wire.ws_handshake import accept_headers, negotiate_deflate

#: Stop reading from the socket while this many bytes of messages wait for the application.
HIGH_WATER = 65536
#: Bytes accepted from the client before the application has accepted the handshake.
PENDING_LIMIT = 65536
#: How long the peer has to answer a close frame (or to take its socket down after a failure)
#: before the connection is dropped.
CLOSE_TIMEOUT = 5.0
#: After a protocol violation, how long the application has to take the messages that arrived
#: complete before it; the connection is failed when it has taken them, or after this.
VIOLATION_GRACE = 1.0

_CONNECTING, _OPEN, _DENIED = 0, 1, 2


class WebSocketSession:
    """One WebSocket, from the handshake to the end (see :mod:`refserver.gateways.ws_session`)."""

    def __init__(self, state, request, origin, handshake):
        """``origin`` is the connection (HTTP/1.1) or stream (HTTP/2) the handshake came on:
        its scheme, addresses and TLS facts are the session's."""
        config = state.config
        self.state = state
        self.loop = state.loop
        self.channel = None  # set by the channel when it takes the session
        self.request = request
        self.scheme = origin.scheme
        self.client = origin.client
        self.server = origin.server
        self.tls = origin.tls
        forwarding = state.forwarding
        if forwarding is not None and forwarding.trusts_peer(self.client):
            forwarding.apply(self)  # the origin is a connection, never a rewritten stream
        self.subprotocols = handshake.subprotocols
        self.handshake = handshake
        self.accepted = False
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.status = 0
        self._phase = _CONNECTING
        self._pending = bytearray()  # received before the handshake was accepted
        self._ws: WSConnection | None = None
        self._messages: deque = deque()
        self._queued = 0
        self._waiters: list = []
        self._closed: Closed | None = None
        self._failed = False  # the server failed the connection: input is discarded
        self._violation = None  # a ProtocolViolation waiting for queued messages to be taken
        self._violation_timer = None
        self._max_size = config.ws_max_size
        self._deflate = config.ws_per_message_deflate
        self._ping_interval = config.ws_ping_interval
        self._ping_timeout = config.ws_ping_timeout
        self._ping_timer = None
        self._pong_timer = None
        self._ping_payload = None
        self._pings = 0
        self._shutting_down = False
        self._finished = None  # future: the transport is gone

    # ================================================================ fed by the channel

    def feed(self, data: bytes) -> None:
        phase = self._phase
        if phase == _OPEN:
            if self._failed:
                return
            ws = self._open_ws
            events = ws.receive_data(data)
            out = ws.data_to_send()
            if out:
                self.channel.write(out)
            if events:
                self._on_events(events)
        elif phase == _CONNECTING:
            self._pending += data
            if len(self._pending) > PENDING_LIMIT:
                self.channel.pause_reading()
        # _DENIED: the request is answered; nothing the client sends matters

    def _on_events(self, events: list) -> None:
        messages = self._messages
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                messages.append(event)
                self._queued += len(event)
            elif kind is PongReceived:
                if event.payload == self._ping_payload:
                    self._on_pong()
            elif kind is ProtocolViolation:
                if messages:
                    # Deliver what arrived before the violation first (and let the application
                    # answer it); the connection fails when it asks for more, or after a grace.
                    self._violation = event
                    self.channel.pause_reading()
                    self._violation_timer = self.loop.call_later(
                        VIOLATION_GRACE, self._apply_violation
                    )
                else:
                    self._violation = event
                    self._apply_violation()
            else:
                self._on_closed(event)
        if messages:
            self._wake()
            if self._queued > HIGH_WATER:
                # The application is not keeping up: stop reading, so the client's sends wait.
                self.channel.pause_reading()

    def _apply_violation(self) -> None:
        """Fail the connection (RFC 6455 7.1.7): the close frame with the violation's code, then
        the socket, without waiting for the peer's answer."""
        self._violation = None
        if self._violation_timer is not None:
            self._violation_timer.cancel()
            self._violation_timer = None
        if self._closed is not None:
            return
        closed = self._open_ws.fail()
        out = self._open_ws.data_to_send()
        if out:
            self.channel.write(out)
        self._on_closed(closed)

    def _on_closed(self, closed: Closed) -> None:
        self._closed = closed
        self._cancel_timers()
        ws = self._open_ws
        if ws.handshake_complete:
            self.channel.finish()  # both close frames exchanged: the server closes first
        else:
            # We failed the connection (a protocol violation, a message too big): our close
            # frame is on its way and the peer's will not be read.
            self._failed = True
            self.channel.finish(half_close=True)
        self._wake()

    def connection_lost(self) -> None:
        if self.accepted and not self.disconnected and self.state.metrics is not None:
            self.state.metrics.websockets_closed += 1
        self.disconnected = True
        self._cancel_timers()
        if self._ws is not None:
            self._closed = self._ws.connection_lost()
        elif self._closed is None:
            self._closed = Closed(1006, "", dropped=True)
        self._wake()
        finished = self._finished
        if finished is not None and not finished.done():
            finished.set_result(None)

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()

    # ================================================================ used by gateways

    def accept(self, subprotocol=None, headers=()) -> None:
        if self._phase != _CONNECTING:
            raise ResponseError(
                "the handshake was already %s" % ("accepted" if self.accepted else "answered")
            )
        if self.disconnected:
            raise ClientDisconnected("the client disconnected before the handshake was accepted")
        deflate = negotiate_deflate(self.handshake.extensions) if self._deflate else None
        fields = accept_headers(self.handshake, subprotocol, headers, deflate)
        channel = self.channel
        channel.accept(fields)
        unmask = self.state.impl.ws_unmask
        if unmask is None:
            self._ws = WSConnection(self._max_size, deflate)
        else:
            self._ws = WSConnection(self._max_size, deflate, unmask)
        self._phase = _OPEN
        self.accepted = True
        if self.state.metrics is not None:
            self.state.metrics.websockets += 1
        self.status = 101 if self.request.http_version != "2" else 200
        self.state.log_access(self)
        pending = bytes(self._pending)
        self._pending = None
        channel.resume_reading()
        if self._ping_interval:
            self._ping_timer = self.loop.call_later(self._ping_interval, self._send_ping)
        if pending:
            self.feed(pending)
        if self._shutting_down and self._closed is None:
            self._server_close(1001, "server shutting down")

    async def receive(self):
        while True:
            messages = self._messages
            if messages:
                message = messages.popleft()
                self._queued -= len(message)
                if not messages and self.channel is not None and self._violation is None:
                    self.channel.resume_reading()
                return message
            if self._violation is not None:
                self._apply_violation()
            closed = self._closed
            if closed is not None:
                return closed
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def send(self, data) -> None:
        ws = self._ws
        if ws is None or self._closed is not None or self.channel.closing:
            raise ClientDisconnected("the WebSocket is closed")
        channel = self.channel
        channel.write(ws.send(data))
        if channel.write_paused:
            await channel.drain()
            if self._closed is not None and self._closed.dropped:
                raise ClientDisconnected("the client disconnected")

    def close(self, code: int = 1000, reason: str = "") -> None:
        phase = self._phase
        if phase == _CONNECTING:
            if not self.disconnected:
                self.deny(403, [TEXT_PLAIN], b"Forbidden")
        elif phase == _OPEN and self._closed is None:
            self._server_close(code, reason)

    @property
    def _open_ws(self) -> WSConnection:
        """The WebSocket machine, which exists once the handshake is accepted."""
        ws = self._ws
        assert ws is not None, "the WebSocket handshake is not accepted yet"
        return ws

    def _server_close(self, code: int, reason: str, dropped: bool = False) -> None:
        """Start the closing handshake from our side; the peer has :data:`CLOSE_TIMEOUT`."""
        ws = self._open_ws
        closed = ws.close(code, reason)
        if dropped:
            closed.dropped = True
        self._closed = closed
        out = ws.data_to_send()
        if out:
            self.channel.write(out)
        self._cancel_timers()
        if dropped:
            self.channel.finish()
        else:
            self.channel.expect_close()
        self._wake()

    def deny(self, status: int, headers: list, body: bytes = b"", end: bool = True) -> None:
        if self._phase != _CONNECTING:
            raise ResponseError(
                "the handshake was already %s" % ("accepted" if self.accepted else "answered")
            )
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        self.channel.deny(status, headers, body, end)
        self._phase = _DENIED
        self._pending = None
        self.response_started = True
        self.status = status
        if end:
            self._denied()

    async def deny_body(self, data: bytes, end: bool = False) -> None:
        if self._phase != _DENIED or self.response_complete:
            raise ResponseError("no denial response is in progress")
        if self.disconnected or self.channel.closing:
            raise ClientDisconnected("the client disconnected")
        self.channel.deny_body(data, end)
        if end:
            self._denied()
        elif self.channel.write_paused:
            await self.channel.drain()

    def _denied(self) -> None:
        self.response_complete = True
        self.state.log_access(self)
        self.channel.finish()

    def abort(self) -> None:
        self.channel.abort()

    async def wait_finished(self) -> None:
        """Return once the transport is closed (at most :data:`CLOSE_TIMEOUT` after the closing
        handshake began, since the channel drops it then)."""
        if self.disconnected:
            return
        if self._finished is None:
            self._finished = self.loop.create_future()
        await self._finished

    # ================================================================ server policies

    def shutdown(self) -> None:
        self._shutting_down = True
        if self._phase == _OPEN and self._closed is None:
            self._server_close(1001, "server shutting down")

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self._closed is not None or self.channel.closing:
            return
        self._pings += 1
        self._ping_payload = payload = struct.pack("!I", self._pings)
        self.channel.write(self._open_ws.ping(payload))
        if self._ping_timeout:
            self._pong_timer = self.loop.call_later(self._ping_timeout, self._on_pong_timeout)

    def _on_pong(self) -> None:
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
        if self._ping_interval and self._ping_timer is None and self._closed is None:
            self._ping_timer = self.loop.call_later(self._ping_interval, self._send_ping)

    def _on_pong_timeout(self) -> None:
        self._pong_timer = None
        if self._closed is not None:
            return
        if self.channel.read_paused:
            # Reading is paused because the application is slow: the pong may be sitting unread
            # in the socket. The peer sent enough to fill our buffer, so it is not dead.
            self._pong_timer = self.loop.call_later(self._ping_timeout, self._on_pong_timeout)
            return
        self.state.logger.info(
            "%s: WebSocket keepalive ping not answered in %gs; closing (1011)",
            _peer(self.client),
            self._ping_timeout,
        )
        self._server_close(1011, "keepalive ping timeout", dropped=True)

    def _cancel_timers(self) -> None:
        if self._violation_timer is not None:
            self._violation_timer.cancel()
            self._violation_timer = None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None


def _peer(client) -> str:
    return "%s:%s" % client if client and client[1] is not None else "unix"
