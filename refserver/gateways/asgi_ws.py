"""ASGI 3, WebSocket scope (spec 2.5): one state machine per connection, over any
:class:`~.ws_session.WebSocketSession`.

The application's view: ``websocket.connect`` first; then it accepts (``websocket.accept``), refuses
(``websocket.close`` → HTTP 403) or answers with its own HTTP response (the
``websocket.http.response`` extension, advertised in the scope). Once accepted, messages flow both
ways until one side closes; the close code and reason reach the other side in both directions.

Decisions where ASGI leaves room (each a clause in spec/websocket.md):

* ``websocket.receive`` carries both keys, ``bytes`` and ``text``, one of them ``None``: the spec
  allows either form, and apps that index ``message["bytes"]`` do not break.
* ``websocket.send`` after the connection closed raises :class:`ClientDisconnected` (an
  ``OSError``, spec 2.4) and is not logged; ``websocket.close`` then is accepted and ignored, since
  what it asks for is already true and apps commonly close in a ``finally``.
* An app that returns without answering the handshake gets a 500 and an error log (the same as an
  HTTP app that returns without responding); one that returns without closing an accepted socket
  gets a normal close (1000).
* An exception before the handshake is answered is a 500; after it, a close 1011.
"""

from __future__ import annotations

import asyncio

from ..scopes import asgi_scope
from ..wire.events import ResponseError
from ..wire.response import TEXT_PLAIN
from ..wire.ws import Closed, check_close_code, check_close_reason
from .asgi import ASGIProtocolError, _header_list
from .stream import ClientDisconnected

WS_EXTENSIONS: dict[str, dict] = {"websocket.http.response": {}}

# Phases of one connection, as the application drives it.
_CONNECTING = 0  # websocket.connect delivered (or not yet); no answer sent
_RESPONDING = 1  # websocket.http.response.start received; the denial body follows
_ACCEPTED = 2
_DONE = 3  # the app closed, or its denial response is complete

# The denial closes the connection anyway (a WebSocket's) or only its stream (HTTP/2): no
# Connection field, which HTTP/2 forbids.
_EMPTY_500 = [TEXT_PLAIN]


def build_websocket_scope(session, root_path: str, state: dict, connection_scope=asgi_scope):
    """The ``websocket`` scope: the shared keys from ``connection_scope`` (the implementation's
    builder), then the WebSocket ones."""
    scope = connection_scope(
        "websocket",
        session,
        root_path,
        state,
        "wss" if session.scheme == "https" else "ws",
        None,
    )
    scope["subprotocols"] = list(session.subprotocols)
    extensions = scope["extensions"]  # may hold "tls" already
    for name in WS_EXTENSIONS:
        extensions[name] = {}
    return scope


class WebSocketCycle:
    """``receive`` and ``send`` for one WebSocket connection."""

    __slots__ = ("_answered", "_connect_sent", "_headers", "_status", "phase", "session")

    def __init__(self, session):
        self.session = session
        self.phase = _CONNECTING
        self._connect_sent = False
        self._status = 0
        self._headers = None
        self._answered = None  # future: the app answered the handshake, while a receive() waits

    async def receive(self) -> dict:
        session = self.session
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self.phase == _CONNECTING and not session.accepted:
            # Nothing is received before the handshake is answered. A receive() may wait in one
            # task of the app while another accepts (Quart's): it then gives the messages.
            if self._answered is None:
                self._answered = asyncio.get_running_loop().create_future()
            # Not cancelled once the answer comes: it awaits the session's own future, which a
            # cancellation would cancel too; it ends with the connection.
            finished = asyncio.ensure_future(session.wait_finished())
            await asyncio.wait([self._answered, finished], return_when=asyncio.FIRST_COMPLETED)
            if not session.accepted:
                await finished
                return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        elif self.phase != _ACCEPTED and not session.accepted:
            # Refused, or answered with an HTTP response: the next event is the end.
            await session.wait_finished()
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        message = await session.receive()
        kind = type(message)
        if kind is str:
            return {"type": "websocket.receive", "bytes": None, "text": message}
        if kind is bytes:
            return {"type": "websocket.receive", "bytes": message, "text": None}
        return _disconnect(message)

    async def send(self, message: dict) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        session = self.session
        phase = self.phase
        if phase == _CONNECTING:
            answered = self._answered
            if answered is not None and not answered.done():
                answered.set_result(None)
            if kind == "websocket.accept":
                subprotocol = message.get("subprotocol")
                headers = _header_list(message.get("headers") or ())
                if any(name.lower() == b"sec-websocket-protocol" for name, _ in headers):
                    raise ASGIProtocolError(
                        "websocket.accept headers must not set sec-websocket-protocol; use the "
                        "'subprotocol' key (ASGI WebSocket spec 2.1)"
                    )
                try:
                    session.accept(subprotocol, headers)
                except ResponseError as exc:
                    raise ASGIProtocolError(f"invalid websocket.accept: {exc}") from None
                self.phase = _ACCEPTED
            elif kind == "websocket.close":
                self.phase = _DONE
                session.close()  # before the handshake: HTTP 403
            elif kind == "websocket.http.response.start":
                status = message.get("status")
                if type(status) is not int:
                    raise ASGIProtocolError(f"'status' must be an int, got {status!r}")
                self._status = status
                self._headers = _header_list(message.get("headers", ()))
                self.phase = _RESPONDING
            else:
                raise ASGIProtocolError(
                    f"expected 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', got {kind!r} (the handshake must be "
                    "answered first)"
                )
        elif phase == _ACCEPTED:
            if kind == "websocket.send":
                data = _payload(message)
                await session.send(data)
            elif kind == "websocket.close":
                try:
                    code = check_close_code(message.get("code", 1000))
                    reason = check_close_reason(message.get("reason"))
                except ValueError as exc:
                    raise ASGIProtocolError(f"invalid websocket.close: {exc}") from None
                self.phase = _DONE
                session.close(code, reason)
            else:
                raise ASGIProtocolError(
                    f"expected 'websocket.send' or 'websocket.close', got {kind!r}"
                )
        elif phase == _RESPONDING:
            if kind != "websocket.http.response.body":
                raise ASGIProtocolError(f"expected 'websocket.http.response.body', got {kind!r}")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise ASGIProtocolError(f"'body' must be bytes, got {type(body).__name__}")
            more = bool(message.get("more_body", False))
            if not more:
                self.phase = _DONE
            headers = self._headers
            try:
                if headers is not None:
                    self._headers = None
                    session.deny(self._status, headers, bytes(body), end=not more)
                else:
                    await session.deny_body(bytes(body), end=not more)
            except ResponseError as exc:
                raise ASGIProtocolError(f"invalid websocket.http.response: {exc}") from None
        else:
            if kind == "websocket.close":
                return  # already closed: nothing left to do
            if kind == "websocket.send" and session.accepted:
                raise ClientDisconnected("the WebSocket is closed")
            raise ASGIProtocolError(f"{kind!r} sent after the WebSocket was closed")


def _payload(message: dict):
    data = message.get("bytes")
    text = message.get("text")
    if data is not None:
        if text is not None:
            raise ASGIProtocolError("websocket.send must carry 'bytes' or 'text', not both")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ASGIProtocolError(f"'bytes' must be bytes, got {type(data).__name__}")
        return bytes(data) if type(data) is not bytes else data
    if text is None:
        raise ASGIProtocolError("websocket.send must carry 'bytes' or 'text'")
    if not isinstance(text, str):
        raise ASGIProtocolError(f"'text' must be str, got {type(text).__name__}")
    return text


def _disconnect(closed: Closed) -> dict:
    return {"type": "websocket.disconnect", "code": closed.code, "reason": closed.reason}


class ASGIWebSocketGateway:
    """Runs one ASGI application call per WebSocket and guarantees the connection an end: the
    app's own, a 500 before the handshake was answered, or a close frame after it."""

    def __init__(self, app, server_state):
        self.app = app
        self.server = server_state
        self.logger = server_state.logger
        self.root_path = server_state.config.root_path
        self.connection_scope = server_state.impl.asgi_scope

    async def __call__(self, session) -> None:
        scope = build_websocket_scope(
            session, self.root_path, self.server.lifespan_state, self.connection_scope
        )
        cycle = WebSocketCycle(session)
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except ClientDisconnected:
            _finish(session, 1000)
            return
        except asyncio.CancelledError:
            session.abort()
            raise
        except BaseException as exc:
            if not session.disconnected:
                self.logger.error("exception in ASGI WebSocket application", exc_info=exc)
            _fail(session)
            if not isinstance(exc, Exception):
                raise
        else:
            if not session.accepted and not session.response_started and not session.disconnected:
                self.logger.error(
                    "ASGI application returned without answering the WebSocket handshake "
                    "[WS-ASGI-3]"
                )
            _finish(session, 1000)


def _finish(session, code: int) -> None:
    """The application is done: whatever it left open ends normally."""
    if session.accepted:
        session.close(code)
    elif not session.disconnected:
        _fail(session)


def _fail(session) -> None:
    if session.disconnected:
        return
    if session.accepted:
        session.close(1011, "")
        return
    if not session.response_started:
        try:
            session.deny(500, _EMPTY_500, b"Internal Server Error")
            return
        except (ResponseError, ClientDisconnected):
            pass
    if not session.response_complete:
        session.abort()
