"""The one interface between a WebSocket transport and the gateways.

The WebSocket counterpart of :mod:`.stream`: HTTP/1.1 (the Upgrade, :mod:`refserver.protocols.ws`)
gives each WebSocket to the ASGI or RSGI gateway as an object with these attributes and methods, and
an HTTP/2 stream opened with RFC 8441's extended CONNECT can later give the same object, so the
gateways serve both without knowing which one is underneath.

The session is at the level of whole messages: framing, pings, fragmentation, the closing handshake,
size limits and compression are below it.
"""

from __future__ import annotations

from typing import Protocol

from ..wire.ws import Closed
from .stream import ClientDisconnected

__all__ = ["ClientDisconnected", "Closed", "WebSocketSession"]


class WebSocketSession(Protocol):
    # The opening request, as received (the same attributes as a Stream).
    method: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    headers: list
    scheme: str  # "http" or "https": the gateways derive "ws"/"wss" where they need it
    client: tuple | None
    server: tuple | None
    authority: str | None
    subprotocols: list  # offered by the client (Sec-WebSocket-Protocol), in its order

    # State.
    accepted: bool  # the handshake was accepted: messages flow
    response_started: bool  # a denial response (an HTTP response instead of the handshake) began
    response_complete: bool
    disconnected: bool  # the client went away before the session was accepted or denied
    status: int  # 101 once accepted, else the status of the denial (for the access log)

    def accept(self, subprotocol: str | None = None, headers: list = ()) -> None:
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
        """Drop the connection without a closing handshake."""
