"""WebSockets over HTTP/1.1: the Upgrade handover, the session the gateways use, and its timers.

:class:`refserver.protocols.h1.H1Protocol` parses the opening request like any other. For a request
that asks for a WebSocket (:func:`refserver.wire.fields.is_upgrade`) it calls :func:`start_upgrade`
instead of dispatching it, and at the end of the request :meth:`Upgrade.switch` hands the transport
and the bytes the HTTP parser had not consumed (frames a client sent right behind its handshake)
to a :class:`WSProtocol`. Whether the parser is h11 or the fast one does not matter: both report the
leftover bytes through ``H1Connection.trailing_data()``.

:class:`WebSocketSession` is what the ASGI and RSGI gateways see
(:class:`refserver.gateways.ws_session.WebSocketSession`). Frame-level work is
:class:`refserver.wire.ws.WSConnection`'s; this module adds what needs a clock or a socket: flow
control both ways, keepalive pings, the closing handshake's deadline, and server shutdown.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque

from ..gateways.stream import ClientDisconnected
from ..wire.events import ResponseError
from ..wire.ws import (
    Closed,
    HandshakeError,
    PongReceived,
    ProtocolViolation,
    WSConnection,
    accept_headers,
    negotiate_deflate,
    parse_handshake,
)
from .flow import watch_writes
from .h1 import _split_target

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
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


def start_upgrade(h1, head) -> Upgrade | None:
    """Begin the switch for a request that asks for a WebSocket; ``None`` once a bad handshake
    has been answered (400, or 426 with the supported version) and the connection is closing."""
    try:
        handshake = parse_handshake(head.method, head.http_version, head.headers)
    except HandshakeError as exc:
        h1.state.logger.info("%s: %d %s", _peer(h1.client), exc.status, exc.detail)
        conn = h1.conn
        conn.keep_alive = False
        headers = [_TEXT_PLAIN, *exc.headers]
        try:
            h1.write(conn.response_head(exc.status, headers, exc.detail.encode(), end=True))
        except ResponseError:
            pass
        h1.close()
        return None
    return Upgrade(h1, head, handshake)


class Upgrade:
    """A valid opening handshake whose request has been parsed up to its head."""

    __slots__ = ("h1", "handshake", "head")

    def __init__(self, h1, head, handshake):
        self.h1 = h1
        self.head = head
        self.handshake = handshake

    def switch(self) -> None:
        """The request is complete: move the connection to WebSocket and start the application.

        The HTTP/1.1 protocol object leaves the server's connection registry and the transport;
        nothing of it runs any more.
        """
        h1 = self.h1
        state = h1.state
        transport = h1.transport
        leftover = h1.conn.trailing_data()
        session = WebSocketSession(state, h1, self.head, self.handshake)
        proto = WSProtocol(state, transport, session)
        state.connections.discard(h1)
        transport.set_protocol(proto)
        h1.detach()  # whatever still refers to it must not write or close any more
        state.connections.add(proto)
        if leftover:
            session.feed(leftover)
        state.dispatch_ws(session)


class WSProtocol(asyncio.Protocol):
    """The asyncio side of an upgraded connection: the channel a :class:`WebSocketSession` writes
    to and reads from, and what the server's connection registry shuts down."""

    def __init__(self, state, transport, session: WebSocketSession):
        self.state = state
        self.loop = state.loop
        self.transport = transport
        self.session = session
        self.write_paused = False
        self.closing = False
        self._drain_waiters: list = []
        self._read_paused = False
        self._abort_timer = None
        self._write_deadline = None  # a WriteDeadline, made when sends first have to wait
        session.channel = self

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport) -> None:  # pragma: no cover - set_protocol, not accept
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.session.feed(data)

    def eof_received(self):
        return None  # the transport closes; connection_lost tells the session

    def connection_lost(self, exc) -> None:
        self.closing = True
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self.state.connections.discard(self)
        if self._write_deadline is not None:
            self._write_deadline.stop()
        self._wake_drain()
        self.session.connection_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._write_deadline = watch_writes(
            self._write_deadline, self.loop, self.transport, self.state.config.timeout_write,
            self._on_write_timeout,
        )

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._write_deadline is not None:
            self._write_deadline.stop()
        self._wake_drain()

    def _on_write_timeout(self) -> None:
        """The client has taken nothing of a full buffer for ``--timeout-write``: it is not
        reading, so no close frame would reach it either; the connection is dropped (1006)."""
        self.state.logger.info(
            "%s: the client took no WebSocket bytes for %gs; closing",
            _peer(self.session.client),
            self.state.config.timeout_write,
        )
        self.abort()

    def _wake_drain(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # ---------------------------------------------------------------- the channel

    def write(self, data: bytes) -> None:
        if not self.closing:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.write_paused and not self.closing:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def pause_reading(self) -> None:
        if not self._read_paused and not self.closing:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and not self.closing:
            self._read_paused = False
            self.transport.resume_reading()

    @property
    def read_paused(self) -> bool:
        return self._read_paused

    def finish(self, half_close: bool = False) -> None:
        """End the connection once what was written is flushed.

        ``half_close`` (after the server failed the connection, with the peer's close frame not
        received): send FIN and keep reading until the peer closes, so the close frame is not lost
        to a reset caused by unread data; the peer gets :data:`CLOSE_TIMEOUT` to do so. Either way
        the socket is dropped at that deadline if the flush never completes (a dead peer).
        """
        if self.closing:
            return
        if half_close and self.transport.can_write_eof():
            self.resume_reading()  # read (and discard) until the peer's FIN
            self.transport.write_eof()
        else:
            self.closing = True
            self.transport.close()
        if self._abort_timer is None:
            self._abort_timer = self.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def expect_close(self) -> None:
        """Our close frame is sent: the peer's answer normally closes the connection; without it
        the socket is dropped after :data:`CLOSE_TIMEOUT`."""
        if self._abort_timer is None and not self.closing:
            self._abort_timer = self.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        self._abort_timer = None
        self.closing = True
        self.transport.abort()

    # ---------------------------------------------------------------- the server's registry

    def shutdown(self) -> None:
        """Server shutdown: close 1001 (going away) now, not a dropped socket later."""
        self.session.shutdown()

    def close(self, abort: bool = False) -> None:
        if abort:
            self.abort()
        else:
            self.finish()


class WebSocketSession:
    """One WebSocket, from the handshake to the end (see :mod:`refserver.gateways.ws_session`)."""

    def __init__(self, state, h1, head, handshake):
        config = state.config
        self.state = state
        self.loop = state.loop
        self.channel: WSProtocol | None = None
        self._h1conn = h1.conn  # writes the 101 or the denial, with the server's usual headers
        self.method = head.method.decode("ascii")
        self.raw_path, self.query_string, self.authority = _split_target(head.target)
        self.http_version = head.http_version.decode("ascii")
        self.headers = head.headers
        self.scheme = h1.scheme
        self.client = h1.client
        self.server = h1.server
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
            ws = self._ws
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
        closed = self._ws.fail()
        out = self._ws.data_to_send()
        if out:
            self.channel.write(out)
        self._on_closed(closed)

    def _on_closed(self, closed: Closed) -> None:
        self._closed = closed
        self._cancel_timers()
        ws = self._ws
        if ws.handshake_complete:
            self.channel.finish()  # both close frames exchanged: the server closes first
        else:
            # We failed the connection (a protocol violation, a message too big): our close
            # frame is on its way and the peer's will not be read.
            self._failed = True
            self.channel.finish(half_close=True)
        self._wake()

    def connection_lost(self) -> None:
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
        data = self._h1conn.switching_protocols(fields)
        unmask = self.state.impl.ws_unmask
        if unmask is None:
            self._ws = WSConnection(self._max_size, deflate)
        else:
            self._ws = WSConnection(self._max_size, deflate, unmask)
        self._phase = _OPEN
        self.accepted = True
        self.status = 101
        channel = self.channel
        channel.write(data)
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
                self.deny(403, [_TEXT_PLAIN], b"Forbidden")
        elif phase == _OPEN and self._closed is None:
            self._server_close(code, reason)

    def _server_close(self, code: int, reason: str, dropped: bool = False) -> None:
        """Start the closing handshake from our side; the peer has :data:`CLOSE_TIMEOUT`."""
        ws = self._ws
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
        conn = self._h1conn
        conn.keep_alive = False  # the client sent "Connection: Upgrade": nothing follows
        data = conn.response_head(status, headers, body, end)
        self._phase = _DENIED
        self._pending = None
        self.response_started = True
        self.status = status
        self.channel.write(data)
        if end:
            self._denied()

    async def deny_body(self, data: bytes, end: bool = False) -> None:
        if self._phase != _DENIED or self.response_complete:
            raise ResponseError("no denial response is in progress")
        if self.disconnected or self.channel.closing:
            raise ClientDisconnected("the client disconnected")
        conn = self._h1conn
        out = conn.response_body(data) if data else b""
        if end:
            out += conn.response_end()
        if out:
            self.channel.write(out)
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
        self.channel.write(self._ws.ping(payload))
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
