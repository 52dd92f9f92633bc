"""The one interface between a WebSocket transport and the gateways.

The WebSocket counterpart of :mod:`.stream`: HTTP/1.1 (the Upgrade, :mod:`refserver.protocols.ws_h1`)
and HTTP/2 (a stream opened with RFC 8441's extended CONNECT) give each WebSocket to the ASGI or RSGI
gateway as the same object (:class:`refserver.protocols.ws.WebSocketSession`) with these attributes
and methods, so the gateways serve both without knowing which one is underneath.

The session is at the level of whole messages: framing, pings, fragmentation, the closing handshake,
size limits and compression are below it.
"""

from __future__ import annotations

from typing import Protocol

from ..wire.request import Request
from ..wire.ws import Closed
from .stream import ClientDisconnected

__all__ = ["ClientDisconnected", "Closed", "WebSocketSession"]


class WebSocketSession(Protocol):
    # The opening request and its connection, as a Stream has them.
    request: Request
    scheme: str  # "http" or "https": the gateways derive "ws"/"wss" where they need it
    client: tuple | None
    server: tuple | None
    tls: dict | None
    subprotocols: list  # offered by the client (Sec-WebSocket-Protocol), in its order

    # State.
    accepted: bool  # the handshake was accepted: messages flow
    response_started: bool  # a denial response (an HTTP response instead of the handshake) began
    response_complete: bool
    disconnected: bool  # the client went away before the session was accepted or denied
    status: int  # 101 (200 over HTTP/2) once accepted, else the denial's status (access log)

    def accept(self, subprotocol: str | None = None, headers: list | tuple = ()) -> None:
        """Complete the opening handshake (``headers`` as ``(bytes, bytes)`` pairs). Raises
        :class:`refserver.wire.events.ResponseError` for a subprotocol the client did not offer or
        an invalid header, and :class:`ClientDisconnected` when the client has gone."""

    async def receive(self):
        """The next whole message (``str`` or ``bytes``), or the :class:`Closed` that ended the
        connection (returned again on every later call). Before :meth:`accept`, waits until the
        client goes away."""

    async def send(self, data) -> None:
        """Send one message; waits while the client is slower than the application. Raises
        :class:`ClientDisconnected` once a close frame was sent or received."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        """After :meth:`accept`, start the closing handshake. Before it, refuse the handshake with
        403, as ASGI and RSGI both prescribe. Idempotent."""

    def deny(self, status: int, headers: list, body: bytes = b"", end: bool = True) -> None:
        """Answer the handshake with an HTTP response instead (``websocket.http.response``, RSGI
        ``close(status)``); the connection closes after it."""

    async def deny_body(self, data: bytes, end: bool = False) -> None:
        """More body of a denial response started with ``end=False``."""

    def abort(self) -> None:
        """Drop the connection (the stream, over HTTP/2) without a closing handshake."""

    async def wait_finished(self) -> None:
        """Return once the session's channel is closed: a graceful shutdown waits for the closing
        handshake, not only for the application."""
