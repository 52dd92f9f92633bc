"""The one interface between a wire protocol and the gateways.

Every protocol (HTTP/1.1, HTTP/2) hands each request to a gateway as an object with the attributes
and methods of :class:`Stream`. Gateways know nothing else about the connection, which is what lets
one ASGI, RSGI or WSGI state machine serve every protocol; tests/memory_stream.py implements it in
memory, with no protocol under it, and the gateways' tests run over it.
"""

from __future__ import annotations

from typing import Protocol

from ..wire.events import ResponseError
from ..wire.request import Request
from ..wire.response import TEXT_PLAIN


class ClientDisconnected(OSError):
    """The client went away. ASGI (spec 2.4) requires ``send()`` on a closed connection to raise an
    ``OSError`` subclass; this is it, and it is not logged as an application error."""


class Stream(Protocol):
    # The request as received: method, path, query, version, fields, authority (wire/request.py).
    request: Request
    # The connection it came on.
    scheme: str  # "http" or "https"
    client: tuple | None  # (host, port); None on a UNIX socket
    server: tuple | None  # (host, port), or (path, None) on a UNIX socket
    tls: dict | None  # the ASGI "tls" extension of a TLS connection (refserver.tls), else None

    # State.
    body_complete: bool  # the whole request body has been received by receive()
    response_started: bool
    response_complete: bool
    disconnected: bool  # the client went away, or the exchange was reset
    status: int  # the response status once started (0 before): for the access log
    # For the access log and the metrics: the response fields as given to start_response (None
    # before), the response body bytes handed to the connection, and the time.monotonic() the
    # application was started (set by the server only when a duration is logged or measured).
    response_headers: list | None
    body_sent: int
    started: float

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
        self,
        status: int,
        headers: list,
        body: bytes = b"",
        end: bool = False,
        close: bool = False,
    ) -> None:
        """Write the response head (``headers`` as ``(bytes, bytes)`` pairs), then ``body``, then
        the end of the response if ``end``. Raises :class:`refserver.wire.events.ResponseError`
        for a response the protocol cannot carry and :class:`ClientDisconnected` after a disconnect.

        ``close``: the server's own answers (a 500 for a failed application, a 503 past a limit)
        ask for the connection to end after this response. HTTP/1.1 closes it (and says so in a
        ``Connection: close`` field); HTTP/2 forbids that field and ends only the stream, so the
        request cannot be made through a header.
        """

    async def send_body(self, data: bytes, end: bool = False) -> None:
        """Write response body; waits while the client is slower than the application."""

    async def send_file(self, fd: int, offset: int, count: int, end: bool = True) -> None:
        """Write ``count`` bytes of the open file ``fd`` from ``offset`` as response body, then
        the end of the response if ``end``.

        A descriptor and an explicit region, not a file object or a path: every source (a path
        a gateway opened, an ASGI ``zerocopysend`` file, a WSGI file, a static file) comes down
        to one, and reads at an offset leave the file object's position (buffered apart from
        its descriptor's) out of it. The caller owns the descriptor and closes it. How the
        bytes travel is the protocol's business (refserver.files): the kernel's ``sendfile``
        on plain HTTP/1.1, blocks read and written with back-pressure on TLS and HTTP/2, so a
        file larger than memory is never held whole. Nothing is read for a response without
        a body (HEAD, 304).

        Raises :class:`ClientDisconnected` when the client goes away (or takes nothing for the
        write timeout) and :class:`refserver.files.FileShrunk` after resetting the exchange
        when the file ends before ``count`` bytes: the response promised them, and a client
        must not take a short body for a whole one.
        """

    def end_response(self) -> None:
        """Finish the response."""

    async def send_trailers(self, headers: list) -> None:
        """Finish the response with a trailer section, which reaches a client that asked for one
        (``TE: trailers``) where the framing can carry it: HTTP/2, or a chunked HTTP/1.1
        response; elsewhere the response simply ends. Raises ResponseError for a field that may
        not be a trailer."""

    def send_informational(self, status: int, headers: list) -> None:
        """A 1xx response before the final one (103 Early Hints); nothing to an HTTP/1.0 client.
        Raises ResponseError for a status outside 102-199."""

    def abort(self) -> None:
        """Reset this exchange, so that the client cannot take what was sent for a whole
        response: the stream under HTTP/2 (RST_STREAM), the connection under HTTP/1.1, where
        nothing smaller exists. Used when a response cannot be completed correctly."""


def fail(stream) -> None:
    """The answer to an application that failed: a 500 when nothing was sent yet; otherwise the
    connection is dropped, since nothing else tells the client its response is incomplete."""
    if stream.disconnected:
        return
    if not stream.response_started:
        try:
            stream.start_response(
                500,
                [TEXT_PLAIN],
                b"Internal Server Error",
                end=True,
                close=True,
            )
            return
        except (ResponseError, ClientDisconnected):
            pass
    if not stream.response_complete:
        stream.abort()
