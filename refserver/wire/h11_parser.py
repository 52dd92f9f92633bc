"""The reference HTTP/1.1 request parser, on h11.

h11 is a full connection state machine; here it is used only for its request side. The response
side belongs to :mod:`refserver.wire.h1`, so after each request we walk h11's server role through a
throwaway response to let it parse the next pipelined request.
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

_FAKE_RESPONSE = h11.Response(status_code=400, headers=[(b"content-length", b"0")])
_FAKE_END = h11.EndOfMessage()


class H11Parser:
    """Bytes in, :mod:`refserver.wire.events` out, typed errors raised."""

    __slots__ = ("_conn",)

    def __init__(self, max_head_size: int):
        # h11 itself raises 431 while an incomplete head grows past this size.
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)

    def feed(self, data: bytes) -> None:
        self._conn.receive_data(data)

    def feed_eof(self) -> None:
        self._conn.receive_data(b"")

    def buffered(self) -> bytes:
        """Bytes received but not parsed yet (the start of a pipelined request)."""
        return self._conn.trailing_data[0]

    def next_event(self):
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
            return END_OF_MESSAGE
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:
            return PAUSED
        # ConnectionClosed: the peer half-closed mid-message or between messages.
        return None

    def start_next_cycle(self) -> None:
        conn = self._conn
        if conn.our_state is h11.SEND_RESPONSE:
            conn.send(_FAKE_RESPONSE)
            conn.send(_FAKE_END)
        conn.start_next_cycle()
