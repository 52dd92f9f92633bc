"""The one interface between a wire protocol and the gateways.

Every protocol (HTTP/1.1 now, HTTP/2 later) hands each request to a gateway as an object with the
attributes and methods of :class:`Stream`. Gateways know nothing else about the connection, which is
what lets one ASGI, RSGI or WSGI state machine serve every protocol.
"""

from __future__ import annotations

from typing import Protocol

from ..wire.events import ResponseError


class ClientDisconnected(OSError):
    """The client went away. ASGI (spec 2.4) requires ``send()`` on a closed connection to raise an
    ``OSError`` subclass; this is it, and it is not logged as an application error."""


class Stream(Protocol):
    # Request, as received. Header names are lower-case bytes; order and duplicates are kept.
    method: str
    raw_path: bytes  # the target's path, still percent-encoded, without the query
    query_string: bytes
    http_version: str  # "1.0", "1.1" or "2"
    headers: list
    scheme: str  # "http" or "https"
    client: tuple | None  # (host, port); None on a UNIX socket
    server: tuple | None  # (host, port), or (path, None) on a UNIX socket
    authority: str | None  # HTTP/2 :authority, or the host of an absolute-form HTTP/1.1 target

    # State.
    body_complete: bool  # the whole request body has been received by receive()
    response_started: bool
    response_complete: bool
    disconnected: bool

    async def receive(self) -> bytes:
        """The next piece of request body; ``b""`` once it is complete (and on every later call).

        The first call is what sends ``100 Continue`` to a client that asked for it. Raises
        :class:`ClientDisconnected` when the connection is lost before the body is complete.
        """

    def take_body(self) -> bytes | None:
        """The whole request body, when all of it has been received and none of it read yet;
        otherwise ``None``, and the body is read with :meth:`receive`. Never waits and never sends
        ``100 Continue``: it serves a gateway that would otherwise fetch, piece by piece (across
        threads for WSGI, through a coroutine per piece for ASGI and RSGI), a body that is
        already here."""

    async def wait_disconnect(self) -> None:
        """Return once the client has gone or the exchange is over (response complete)."""

    def start_response(
        self, status: int, headers: list, body: bytes = b"", end: bool = False
    ) -> None:
        """Write the response head (``headers`` as ``(bytes, bytes)`` pairs), then ``body``, then
        the end of the response if ``end``. Raises :class:`refserver.wire.events.ResponseError`
        for a response the protocol cannot carry and :class:`ClientDisconnected` after a disconnect.
        """

    async def send_body(self, data: bytes, end: bool = False) -> None:
        """Write response body; waits while the client is slower than the application."""

    def end_response(self) -> None:
        """Finish the response."""

    def abort(self) -> None:
        """Drop the connection: used when a response cannot be completed correctly."""


def fail(stream) -> None:
    """The answer to an application that failed: a 500 when nothing was sent yet; otherwise the
    connection is dropped, since nothing else tells the client its response is incomplete."""
    if stream.disconnected:
        return
    if not stream.response_started:
        try:
            stream.start_response(
                500,
                [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
                b"Internal Server Error",
                end=True,
            )
            return
        except (ResponseError, ClientDisconnected):
            pass
    if not stream.response_complete:
        stream.abort()
