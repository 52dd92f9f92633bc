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

from .events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    Body,
    RequestHead,
    error_for_status,
)


class H11Parser:
    """Bytes in, :mod:`refserver.wire.events` out, typed errors raised."""

    __slots__ = ("_conn", "_max_head", "_at_start", "_done")

    def __init__(self, max_head_size: int):
        # h11 itself raises 431 while an incomplete head grows past this size.
        self._max_head = max_head_size
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        self._at_start = True  # nothing but empty lines received yet for this request
        self._done = False  # EndOfMessage delivered: the rest is the next request's

    def feed(self, data: bytes) -> None:
        if self._at_start:
            # RFC 9112 2.2: empty lines before a request line are ignored (h11 rejects them,
            # llhttp skips them; both paths must agree).
            data = data.lstrip(b"\r\n")
            if not data:
                return
            self._at_start = False
        self._conn.receive_data(data)

    def feed_eof(self) -> None:
        self._conn.receive_data(b"")

    def buffered(self) -> bytes:
        """Bytes received but not parsed yet (the start of a pipelined request)."""
        return self._conn.trailing_data[0]

    def next_event(self):
        if self._done:
            # Never ask h11 past the end of a request: after a request it will not keep alive
            # (HTTP/1.0, Connection: close) it treats pipelined bytes as an error, but whether
            # they are served is decided above us, once the response is complete.
            data, closed = self._conn.trailing_data
            if data:
                return PAUSED
            return None if closed else NEED_DATA
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise error_for_status(exc.error_status_hint, str(exc)) from None
        kind = type(event)
        if kind is h11.Data:
            return Body(bytes(event.data))
        if kind is h11.Request:
            return RequestHead(
                event.method, event.target, event.http_version, list(event.headers)
            )
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
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)
        self._at_start = True
        self._done = False
        if data:
            self.feed(data)
        if closed:
            self._conn.receive_data(b"")
