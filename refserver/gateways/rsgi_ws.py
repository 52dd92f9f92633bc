"""RSGI 1.6, WebSocket: one protocol object per connection, over any
:class:`~.ws_session.WebSocketSession`.

``transport = await protocol.accept()``, then ``await transport.receive()`` (a
:class:`~refserver.rsgi.WebsocketMessage` of kind close, bytes or string),
``await transport.send_bytes(b)`` / ``send_str(s)``, and ``protocol.close(status)``.

Where Granian 2.8 misbehaves or RSGI is silent, refserver decides (each a clause in
spec/websocket.md):

* ``close(status)`` after ``accept()`` sends a close frame *with* a code: the status itself when it
  is a close code an endpoint may send (1000-1003, 1007-1014, 3000-4999), and for an HTTP status
  (frameworks such as Emmett pass their response status) 1000 below 400, 1008 for 4xx and 1011 for
  5xx. Granian drops the status (the client sees 1005).
* ``close(status)`` before ``accept()`` answers HTTP ``status`` (403 when omitted); a status HTTP
  cannot carry is a :class:`ProtocolError` and the request gets a 500, never a dead worker.
* ``accept()`` twice raises :class:`ProtocolError` (Granian's worker panics).
* ``close()`` is idempotent and returns ``(status, accepted)`` as Granian's does.
* ``receive()`` after the end keeps returning the close message; when the connection was dropped
  without a closing handshake (lost socket, unanswered keepalive pings) it raises
  :class:`ProtocolClosed` instead, every time.
* Sending after the end raises :class:`ProtocolClosed`.
"""

from __future__ import annotations

import asyncio

from ..rsgi import (
    ProtocolClosed,
    ProtocolError,
    WebsocketMessage,
    WebsocketMessageType,
)
from ..wire.events import ResponseError
from ..wire.response import TEXT_PLAIN
from ..wire.ws import check_close_code
from .stream import ClientDisconnected

_NONE, _ACCEPTED, _DENIED = 0, 1, 2

_CLOSE = WebsocketMessage(WebsocketMessageType.close, None)
_EMPTY: list = []
_TEXT_500 = [TEXT_PLAIN]


def close_code_for(status) -> int:
    """The close code that ``close(status)`` sends after ``accept()`` (see the module docs)."""
    if status is None:
        return 1000
    if type(status) is not int and (not isinstance(status, int) or isinstance(status, bool)):
        raise ProtocolError(f"close status must be an int or None, got {status!r}")
    status = int(status)
    try:
        return check_close_code(status)
    except ValueError:
        pass
    if 100 <= status < 400:
        return 1000
    if 400 <= status < 500:
        return 1008
    if 500 <= status < 600:
        return 1011
    raise ProtocolError(
        f"close({status}): neither a WebSocket close code an endpoint may send (1000-1003, "
        "1007-1014, 3000-4999) nor an HTTP status"
    )


class WebsocketProtocol:
    """The ``protocol`` argument of an RSGI WebSocket call."""

    __slots__ = ("_session", "_state", "_status", "_transport")

    def __init__(self, session):
        self._session = session
        self._state = _NONE
        self._status = None
        self._transport = None

    async def accept(self) -> WebsocketTransport:
        if self._state != _NONE:
            raise ProtocolError(
                "accept() called twice"
                if self._state == _ACCEPTED
                else "accept() called after close(): the handshake was already answered"
            )
        self._state = _ACCEPTED
        try:
            self._session.accept()
        except ClientDisconnected:
            raise ProtocolClosed(
                "the client disconnected before the handshake was accepted"
            ) from None
        transport = self._transport = WebsocketTransport(self._session)
        return transport

    def close(self, status=None) -> tuple:
        state = self._state
        session = self._session
        if state == _NONE:
            if status is None:
                status = 403
            elif type(status) is not int and (
                not isinstance(status, int) or isinstance(status, bool)
            ):
                raise ProtocolError(f"close status must be an int or None, got {status!r}")
            status = int(status)
            try:
                session.deny(status, _EMPTY, b"")
            except ResponseError as exc:
                raise ProtocolError(
                    f"close({status}) before accept() answers the handshake with HTTP {status}, "
                    f"which is not a valid response status ({exc})"
                ) from None
            except ClientDisconnected:
                pass  # nobody left to answer
            self._state = _DENIED
            self._status = status
            return status, False
        if state == _ACCEPTED and self._status is None:
            code = close_code_for(status)
            self._status = status if status is not None else code
            session.close(code)
            return self._status, True
        return self._status, state == _ACCEPTED


class WebsocketTransport:
    """What ``accept()`` returns."""

    __slots__ = ("_session",)

    def __init__(self, session):
        self._session = session

    async def receive(self) -> WebsocketMessage:
        message = await self._session.receive()
        kind = type(message)
        if kind is bytes:
            return WebsocketMessage(WebsocketMessageType.bytes, message)
        if kind is str:
            return WebsocketMessage(WebsocketMessageType.string, message)
        if message.dropped:
            raise ProtocolClosed("the connection was lost without a closing handshake")
        return _CLOSE

    async def send_bytes(self, data) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ProtocolError(f"send_bytes takes bytes, got {type(data).__name__}")
            data = bytes(data)
        try:
            await self._session.send(data)
        except ClientDisconnected:
            raise ProtocolClosed("the WebSocket is closed") from None

    async def send_str(self, data) -> None:
        if type(data) is not str:
            raise ProtocolError(f"send_str takes str, got {type(data).__name__}")
        try:
            await self._session.send(data)
        except ClientDisconnected:
            raise ProtocolClosed("the WebSocket is closed") from None


class RSGIWebSocketGateway:
    """Runs one RSGI application call per WebSocket (``scope.proto == "ws"``) and guarantees the
    connection an end: 403 when the app returns without accepting, 500 when it fails before
    answering, a close frame (1000, or 1011 after an exception) when it leaves a socket open."""

    def __init__(self, app, server_state):
        rsgi = getattr(app, "__rsgi__", None)
        self.app = rsgi if rsgi is not None else app
        self.server = server_state
        self.logger = server_state.logger
        self.build_scope = server_state.impl.rsgi_scope

    async def __call__(self, session) -> None:
        protocol = WebsocketProtocol(session)
        error = None
        try:
            await self.app(self.build_scope(session, "ws"), protocol)
        except asyncio.CancelledError:
            session.abort()
            raise
        except BaseException as exc:  # noqa: BLE001 - an app error must never kill the server
            error = exc
        if error is not None:
            gone = isinstance(error, (ProtocolClosed, ClientDisconnected))
            if not gone:
                self.logger.error("exception in RSGI WebSocket application", exc_info=error)
            if session.accepted:
                session.close(1000 if gone else 1011)
            elif not session.response_started and not session.disconnected:
                try:
                    session.deny(500, _TEXT_500, b"Internal Server Error")
                except (ResponseError, ClientDisconnected):
                    session.abort()
            if not isinstance(error, Exception):
                raise error
        elif session.accepted:
            session.close(1000)
        elif not session.response_started and not session.disconnected:
            session.deny(403, _EMPTY, b"")  # RSGI: returning without accepting is a refusal
