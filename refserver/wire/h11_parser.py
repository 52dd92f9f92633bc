"""The reference HTTP/1.1 request parser, on h11.

h11 is a full connection state machine; here it is used only for its request side. The response
side and every keep-alive decision belong to :mod:`refserver.wire.h1`, so each request is parsed by a
fresh ``h11.Connection`` fed with whatever the previous one had buffered. That is cheaper than
walking h11's server role through a throwaway response (construction costs ~2 us, the walk ~25 us)
and it lets HTTP/1.0 keep-alive work: h11 itself refuses to reuse a connection after an HTTP/1.0
request.
"""

from __future__ import annotations

import h11

from .chunked import ChunkedReader
from .events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    BadRequest,
    Body,
    RequestHead,
    error_for_status,
)
from .fields import BARE_LF_RE, check_request_values


class H11Parser:
    """Bytes in, :mod:`refserver.wire.events` out, typed errors raised."""

    __slots__ = ("_conn", "_max_head", "_at_start", "_done", "_chunked", "_head")

    def __init__(self, max_head_size: int):
        # h11 itself raises 431 while an incomplete head grows past this size.
        self._max_head = max_head_size
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        self._at_start = True  # nothing but empty lines received yet for this request
        self._done = False  # EndOfMessage delivered: the rest is the next request's
        self._chunked = None  # the ChunkedReader of this request's body, once its head is parsed
        self._head = bytearray()  # the bytes given to h11 until it parsed the head (None then)

    def feed(self, data: bytes) -> None:
        if self._chunked is not None:
            self._chunked.feed(data)
            return
        if self._at_start:
            # RFC 9112 2.2: empty lines before a request line are ignored (h11 rejects them,
            # llhttp skips them; both paths must agree).
            data = data.lstrip(b"\r\n")
            if not data:
                return
            self._at_start = False
        if self._head is not None:
            self._head += data
        self._conn.receive_data(data)

    def feed_eof(self) -> None:
        if self._chunked is not None:
            self._chunked.feed_eof()
        self._conn.receive_data(b"")

    def buffered(self) -> bytes:
        """Bytes received but not parsed yet (the start of a pipelined request)."""
        if self._chunked is not None:
            return self._chunked.leftover()
        return self._conn.trailing_data[0]

    def next_event(self):
        if self._done:
            # Never ask h11 past the end of a request: after a request it will not keep alive
            # (HTTP/1.0, Connection: close) it treats pipelined bytes as an error, but whether
            # they are served is decided above us, once the response is complete.
            data, closed = self._conn.trailing_data
            if self._chunked is not None:
                data = self._chunked.leftover()
            if data:
                return PAUSED
            return None if closed else NEED_DATA
        if self._chunked is not None:
            event = self._chunked.next_event()
            if event is END_OF_MESSAGE:
                self._done = True
            return event
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise error_for_status(exc.error_status_hint, str(exc)) from None
        kind = type(event)
        if kind is h11.Data:
            return Body(bytes(event.data))
        if kind is h11.Request:
            # h11 accepts a bare LF as a line end and keeps controls in values; refserver does
            # not. The head is what h11 consumed of the bytes it was given.
            head = self._head[: len(self._head) - len(self._conn.trailing_data[0])]
            self._head = None
            if BARE_LF_RE.search(head):
                raise BadRequest("bare LF in the request head: lines end with CRLF")
            headers = list(event.headers)
            check_request_values(headers)
            for name, _ in headers:
                if name == b"transfer-encoding":  # h11 let only a single "chunked" through
                    data, closed = self._conn.trailing_data
                    self._chunked = ChunkedReader(data, self._max_head)
                    if closed:
                        self._chunked.feed_eof()
            return RequestHead(event.method, event.target, event.http_version, headers)
        if kind is h11.EndOfMessage:
            self._done = True
            return END_OF_MESSAGE
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:
            # Only after an Upgrade or CONNECT request, which we serve as plain requests.
            return PAUSED
        # ConnectionClosed: the peer half-closed mid-message or between messages.
        return None

    def start_next_cycle(self) -> None:
        data, closed = self._conn.trailing_data
        if self._chunked is not None:
            data = self._chunked.leftover()
            self._chunked = None
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)
        self._at_start = True
        self._done = False
        self._head = bytearray()
        if data:
            self.feed(data)
        if closed:
            self._conn.receive_data(b"")
