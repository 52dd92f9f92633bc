"""WebSockets over HTTP/1.1: the Upgrade handover, and the switched connection as a channel.

:class:`refserver.protocols.h1.H1Protocol` parses the opening request like any other. For a request
that asks for a WebSocket (:func:`refserver.wire.fields.is_upgrade`) it calls :func:`start_upgrade`
instead of dispatching it, and at the end of the request :meth:`Upgrade.switch` hands the transport
and the bytes the HTTP parser had not consumed (frames a client sent right behind its handshake)
to a :class:`WSProtocol`. Whether the parser is h11 or the fast one does not matter: both report the
leftover bytes through ``H1Connection.trailing_data()``. The session itself
(:class:`refserver.protocols.ws.WebSocketSession`) does not know it is on HTTP/1.1.
"""

from __future__ import annotations

import asyncio

from ..wire.events import ResponseError
from ..wire.response import TEXT_PLAIN
from ..wire.ws_handshake import HandshakeError, parse_handshake
from .flow import watch_writes
from .ws import CLOSE_TIMEOUT, WebSocketSession, _peer


def start_upgrade(h1, request) -> Upgrade | None:
    """Begin the switch for a request that asks for a WebSocket; ``None`` once a bad handshake
    has been answered (400, or 426 with the supported version) and the connection is closing."""
    try:
        handshake = parse_handshake(request)
    except HandshakeError as exc:
        h1.state.logger.info("%s: %d %s", _peer(h1.client), exc.status, exc.detail)
        conn = h1.conn
        conn.keep_alive = False
        headers = [TEXT_PLAIN, *exc.headers]
        try:
            h1.write(conn.response_head(exc.status, headers, exc.detail.encode(), end=True))
        except ResponseError:
            pass
        h1.close()
        return None
    return Upgrade(h1, request, handshake)


class Upgrade:
    """A valid opening handshake whose request has been parsed up to its head."""

    __slots__ = ("h1", "handshake", "request")

    def __init__(self, h1, request, handshake):
        self.h1 = h1
        self.request = request
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
        session = WebSocketSession(state, self.request, h1, self.handshake)
        proto = WSProtocol(state, transport, h1.conn, session)
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

    def __init__(self, state, transport, conn, session: WebSocketSession):
        self.state = state
        self.loop = state.loop
        self.transport = transport
        self._conn = conn  # the HTTP/1.1 core: writes the 101 or the denial, as on every response
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
            self._write_deadline,
            self.loop,
            self.transport,
            self.state.config.timeout_write,
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

    # ---------------------------------------------------------------- the handshake's answer

    def accept(self, fields: list) -> None:
        self.write(self._conn.switching_protocols(fields))

    def deny(self, status: int, headers: list, body: bytes, end: bool) -> None:
        conn = self._conn
        conn.keep_alive = False  # the client sent "Connection: Upgrade": nothing follows
        self.write(conn.response_head(status, headers, body, end))

    def deny_body(self, data: bytes, end: bool) -> None:
        conn = self._conn
        out = conn.response_body(data) if data else b""
        if end:
            out += conn.response_end()
        if out:
            self.write(out)

    # ---------------------------------------------------------------- the server's registry

    def shutdown(self) -> bool:
        """Server shutdown: close 1001 (going away) now, not a dropped socket later."""
        self.session.shutdown()
        return False

    def close(self, abort: bool = False) -> None:
        if abort:
            self.abort()
        else:
            self.finish()
