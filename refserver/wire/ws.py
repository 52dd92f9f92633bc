"""WebSocket (RFC 6455) connection core, sans-IO, on wsproto's frame protocol.

Bytes go in through :meth:`WSConnection.receive_data`, whole messages and close events come out,
and every frame the server owes the peer (pongs, close replies, the close that fails a connection)
is collected for :meth:`WSConnection.data_to_send`. Nothing here knows about sockets or timers.

wsproto does the framing, the masking and the RFC 6455 checks of each frame. refserver adds, in
this one module, the rules wsproto leaves to its user or does not bound:

- the maximum message size (close 1009), checked on the frame header before any payload is buffered
  and on the decompressed size while inflating, so neither a huge frame nor a deflate bomb costs more
  than ``max_size`` bytes of memory;
- permessage-deflate (RFC 7692): refserver's own extension (:class:`MessageRules`), because it must
  bound decompression, keep the "compressed" bit of a fragmented message across interleaved control
  frames, and honour ``server_max_window_bits=8``, which zlib's deflate cannot produce directly;
- the close codes an application may send (:func:`check_close_code`);
- a leaner frame decoder (:class:`LeanFrameDecoder`) in place of wsproto's own, same checks and
  same events, because per-frame cost decides how a client that sends many small frames is served.

The opening handshake, over HTTP/1.1 or HTTP/2, is :mod:`refserver.wire.ws_handshake`'s: the frames
are the same on both, so this core serves an RFC 8441 stream as it serves an upgraded connection.
"""

from __future__ import annotations

import zlib
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    Frame,
    FrameDecoder,
    Header,
    Opcode,
    ParseFailed,
    RsvBits,
)

from .ws_handshake import DeflateParams

#: zlib level for outgoing messages. 1 (what nginx uses for gzip by default) deflates 2-5 times
#: faster than zlib's default 6 for 10-20% larger output; in a Python server the CPU is the scarcer
#: resource (Autobahn 12.x: a 128 KiB text message costs 2.8 ms at level 1, 14 ms at level 6).
DEFLATE_LEVEL = 1

_NO_RSV = RsvBits(False, False, False)
_RSV1 = RsvBits(True, False, False)


# ------------------------------------------------------------------------------------ close codes


def check_close_code(code) -> int:
    """A close code an endpoint may send (RFC 6455 7.4): 1000-1003, 1007-1014 (IANA registered),
    3000-4999. 1004-1006 and 1015 are reserved, the rest of 1000-2999 is unassigned."""
    if type(code) is not int and not (isinstance(code, int) and not isinstance(code, bool)):
        raise ValueError(f"close code must be an int, got {code!r}")
    code = int(code)
    if 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    raise ValueError(f"{code} is not a close code an endpoint may send (RFC 6455 7.4)")


def check_close_reason(reason) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise ValueError(f"close reason must be a str, got {type(reason).__name__}")
    if len(reason.encode("utf-8")) > 123:
        raise ValueError("close reason is longer than 123 bytes of UTF-8 (RFC 6455 5.5)")
    return reason


# ------------------------------------------------------------------------------------ events


class Closed:
    """The connection's end, as an application sees it.

    ``code``/``reason`` are the peer's close frame when the peer closed (1005 when it gave no
    code), or what the server sent when the server ended it (an application close, a policy or a
    protocol violation, shutdown). ``dropped`` is true when the peer vanished without a closing
    handshake (the socket was lost, or it stopped answering pings).
    """

    __slots__ = ("by_peer", "code", "dropped", "reason")

    def __init__(self, code: int, reason: str = "", dropped: bool = False, by_peer: bool = False):
        self.code = code
        self.reason = reason
        self.dropped = dropped
        self.by_peer = by_peer

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Closed) and (
            self.code,
            self.reason,
            self.dropped,
            self.by_peer,
        ) == (other.code, other.reason, other.dropped, other.by_peer)

    def __repr__(self) -> str:
        return (
            f"Closed({self.code}, {self.reason!r}, dropped={self.dropped}, by_peer={self.by_peer})"
        )


class ProtocolViolation:
    """The peer broke RFC 6455 (or the size limit): the connection must be failed with ``code``.

    Nothing after the offending frame is read. The close frame is not queued yet: the owner calls
    :meth:`WSConnection.fail` when it is ready, so that messages which arrived complete *before*
    the violation can still be delivered to the application and answered (what Autobahn calls the
    strict behaviour) before the connection ends.
    """

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str):
        self.code = code
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProtocolViolation) and (self.code, self.reason) == (
            other.code,
            other.reason,
        )

    def __repr__(self) -> str:
        return f"ProtocolViolation({self.code}, {self.reason!r})"


class PongReceived:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes):
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PongReceived) and self.payload == other.payload

    def __repr__(self) -> str:
        return f"PongReceived({self.payload!r})"


# ------------------------------------------------------------------------------------ extension


class _TooBig(Exception):
    pass


class MessageRules(Extension):
    """The size limit and permessage-deflate, as one wsproto extension that is always enabled.

    wsproto calls it for every frame: the header (before any payload is buffered), each piece of
    payload as it arrives (already unmasked), the end of each frame, and each outgoing frame. One
    object, because the size limit must count *decompressed* bytes and decompression must stop as
    soon as the limit is crossed.
    """

    name = "permessage-deflate"

    def __init__(self, max_size: int, deflate: DeflateParams | None):
        self.max_size = max_size  # 0: no limit
        self.deflate = deflate
        self._claim = _RSV1 if deflate is not None else _NO_RSV
        self._size = 0  # bytes of the current inbound message so far (decompressed)
        self._compressed = False  # the current inbound message is compressed
        self._control = False  # the frame being read is a control frame
        self._fragmented = False  # a data message has begun and its final frame is still to come
        self._inflater: Any = None  # a zlib decompressor while a message is inflated
        self._deflater = None

    def enabled(self) -> bool:
        return True

    def offer(self):
        return False  # the handshake is negotiated by :func:`negotiate_deflate`, not by wsproto

    # -- inbound

    def frame_inbound_header(self, proto, opcode, rsv, payload_length):
        if opcode.iscontrol():
            self._control = True
            if rsv.rsv1 and self.deflate is not None:
                return CloseReason.PROTOCOL_ERROR  # RFC 7692 6.1: never on control frames
            return self._claim
        self._control = False
        # RFC 6455 5.4: a continuation only inside a fragmented message, a new message only
        # outside one. Decided here, on the header, so that the close code never depends on
        # whether the payload (which may fail to inflate or to decode) arrived with it.
        if (opcode is Opcode.CONTINUATION) != self._fragmented:
            return CloseReason.PROTOCOL_ERROR
        if opcode is Opcode.CONTINUATION:
            if rsv.rsv1 and self.deflate is not None:
                return CloseReason.PROTOCOL_ERROR  # RFC 7692 6.1: only on a message's first frame
        else:
            self._size = 0
            self._compressed = bool(rsv.rsv1) and self.deflate is not None
        if self.max_size and not self._compressed and self._size + payload_length > self.max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return self._claim

    def frame_inbound_payload_data(self, proto, data):
        if self._control:
            return data
        if not self._compressed:
            self._size += len(data)
            return data
        return self._inflate(data)

    def frame_inbound_complete(self, proto, fin):
        if not self._control:
            self._fragmented = not fin
        if self._control or not fin or not self._compressed:
            return None
        # RFC 7692 7.2.2: the message's deflate data ends with an empty stored block, which the
        # sender removed; add it back so the inflater flushes everything.
        data = self._inflate(b"\x00\x00\xff\xff")
        if isinstance(data, bytes) and self._inflater is not None and self._inflater.eof:
            self._inflater = None  # a BFINAL block ended the stream: the next message starts anew
        return data

    def _inflate(self, data: bytes):
        inflater = self._inflater
        if inflater is None:
            # The largest window reads what any smaller window wrote (RFC 7692 7.1.2.2).
            inflater = self._inflater = zlib.decompressobj(-15)
        allowance = self.max_size - self._size + 1 if self.max_size else 0
        try:
            out = inflater.decompress(data, allowance)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._size += len(out)
        if self.max_size and (self._size > self.max_size or inflater.unconsumed_tail):
            return CloseReason.MESSAGE_TOO_BIG
        return out

    # -- outbound

    def frame_outbound(self, proto, opcode, rsv, data, fin):
        deflate = self.deflate
        if deflate is None or opcode.iscontrol():
            return rsv, data
        deflater = self._deflater
        if deflater is None:
            bits = deflate.server_max_window_bits
            if bits < 9:
                # zlib cannot deflate with a 256-byte window. Huffman-only coding makes no back
                # references at all, so any window, 2^8 included, can inflate it.
                deflater = zlib.compressobj(
                    DEFLATE_LEVEL, zlib.DEFLATED, -9, 8, zlib.Z_HUFFMAN_ONLY
                )
            else:
                deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -bits)
            if not deflate.server_no_context_takeover:
                self._deflater = deflater
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        # Every message is sent as one frame (fin), so the sync marker always ends it.
        return RsvBits(True, rsv.rsv2, rsv.rsv3), out[:-4]


# ------------------------------------------------------------------------------------ framing

_OPCODES = {op.value: op for op in Opcode}
_XOR = [bytes(a ^ b for a in range(256)) for b in range(256)]


def unmask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` repeated (RFC 6455 5.3).

    Small payloads go through one big-integer XOR (a few C calls); large ones through four
    ``bytes.translate`` passes over strided slices, which stay linear where big-integer
    conversion does not.
    """
    n = len(data)
    if n <= 2048:
        return (
            int.from_bytes(data, "little") ^ int.from_bytes((key * ((n >> 2) + 1))[:n], "little")
        ).to_bytes(n, "little")
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR[key[i]])
    return bytes(out)


class LeanFrameDecoder(FrameDecoder):
    """wsproto's frame decoder with a leaner inner loop: the same checks, the same ``Frame``
    objects and the same extension calls, in fewer Python steps per frame.

    wsproto's own decoder costs ~30 us per frame (header tuples, a masker object per frame, a
    rollback buffer); a client that fragments into small frames (Autobahn 12.x sends 128 KiB
    messages in 256-byte frames) then keeps a connection busy for seconds. Everything above the
    frame -- message assembly, UTF-8 validation, close-frame rules, the connection state -- stays
    wsproto's. The server side only: a client must mask, so an unmasked frame is refused.
    """

    def __init__(self, client: bool, extensions: list, unmask=unmask) -> None:
        super().__init__(client, extensions)
        self._unmask = unmask  # the fast path passes its compiled drop-in
        self._data = bytearray()
        self._pos = 0
        self._key = b""
        self._remaining = 0  # payload bytes of the current frame not yet delivered
        self._control = False  # the current frame is a control frame
        self._error = None  # a violation found while joining frames, raised on the next call

    def receive_bytes(self, data: bytes) -> None:
        if self._pos:
            del self._data[: self._pos]
            self._pos = 0
        self._data += data

    def process_buffer(self):
        """The next frame, or what has arrived of it. A data frame that ends without ending its
        message is joined with the continuation frames already buffered behind it: wsproto would
        hand them up one by one through several layers, and the message is the same either way.
        Control frames between them end the join (they are handled in order)."""
        error = self._error
        if error is not None:
            self._error = None
            raise error
        frame = self._next_piece()
        if frame is None or self._control or not frame.frame_finished or frame.message_finished:
            return frame
        parts = [frame.payload]
        last = frame
        data = self._data
        while len(data) - self._pos >= 2 and not data[self._pos] & 0x0F:
            try:
                piece = self._next_piece()
            except ParseFailed as exc:
                self._error = exc  # raised on the next call, after what came before it
                break
            if piece is None:
                break
            parts.append(piece.payload)
            last = piece
            if not piece.frame_finished or piece.message_finished:
                break
        if last is frame:
            return frame
        return Frame(frame.opcode, b"".join(parts), last.frame_finished, last.message_finished)

    def _next_piece(self):
        header = self.header
        if header is None:
            if not self._parse_header():
                return None
            header = self.header
        data = self._data
        pos = self._pos
        remaining = self._remaining
        available = len(data) - pos
        if self._control:  # the whole payload at once
            if available < remaining:
                return None
            take = remaining
        elif available >= remaining:
            take = remaining
        elif available:
            take = available
        else:
            return None
        if take:
            end = pos + take
            payload = data[pos:end]
            self._pos = end
            key = self._key
            offset = (header.payload_len - remaining) & 3
            if offset:
                key = key[offset:] + key[:offset]
            payload = self._unmask(payload, key)
            remaining -= take
            self._remaining = remaining
        else:
            payload = b""
        extensions = self.extensions
        for extension in extensions:
            result = extension.frame_inbound_payload_data(self, payload)
            if result.__class__ is CloseReason:
                raise ParseFailed("error in extension", result)
            payload = result
        if remaining:
            frame = Frame(self.effective_opcode, payload, False, header.fin)
            self.effective_opcode = Opcode.CONTINUATION
            return frame
        for extension in extensions:
            result = extension.frame_inbound_complete(self, header.fin)
            if result is not None:
                if result.__class__ is CloseReason:
                    raise ParseFailed("error in extension", result)
                payload += result
        frame = Frame(self.effective_opcode, payload, True, header.fin)
        self.header = None
        self.effective_opcode = None
        return frame

    def _parse_header(self) -> bool:
        data = self._data
        pos = self._pos
        available = len(data) - pos
        if available < 2:
            return False
        b0 = data[pos]
        b1 = data[pos + 1]
        opcode = _OPCODES.get(b0 & 0x0F)
        if opcode is None:
            raise ParseFailed(f"Invalid opcode {b0 & 0x0F:#x}")
        fin = b0 & 0x80 != 0
        control = b0 & 0x08 != 0
        if control and not fin:
            raise ParseFailed("Invalid attempt to fragment control frame")
        length = b1 & 0x7F
        if control and length > 125:
            raise ParseFailed("Control frame with payload len > 125")
        need = 2
        if length == 126:
            need = 4
            if available < need:
                return False
            length = (data[pos + 2] << 8) | data[pos + 3]
            if length <= 125:
                raise ParseFailed("Payload length used 2 bytes when 1 would have sufficed")
        elif length == 127:
            need = 10
            if available < need:
                return False
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if length <= 0xFFFF:
                raise ParseFailed("Payload length used 8 bytes when 2 would have sufficed")
            if length >> 63:
                raise ParseFailed("8-byte payload length with non-zero MSB")
        masked = b1 & 0x80
        if masked and available < need + 4:
            return False
        rsv = _RSV_BITS[(b0 >> 4) & 7]
        # wsproto's extension_processing: every RSV bit set must be claimed by an extension.
        claimed = 0
        for extension in self.extensions:
            result = extension.frame_inbound_header(self, opcode, rsv, length)
            if result.__class__ is CloseReason:
                raise ParseFailed("error in extension", result)
            claimed |= (result[0] << 2) | (result[1] << 1) | result[2]  # type: ignore[index]
        if (b0 >> 4) & 7 & ~claimed:
            raise ParseFailed("Reserved bit set unexpectedly")
        if not masked:
            raise ParseFailed("server received unexpected unmasked frame")
        self._key = bytes(data[pos + need : pos + need + 4])
        self._pos = pos + need + 4
        self.header = Header(fin, rsv, opcode, length, None)
        self.effective_opcode = opcode
        self._remaining = length
        self._control = control
        return True


#: RsvBits for the three bits as one number (RSV1 the highest), built once.
_RSV_BITS = [RsvBits(bool(i & 4), bool(i & 2), bool(i & 1)) for i in range(8)]


# ------------------------------------------------------------------------------------ connection


class WSConnection:
    """The server side of one WebSocket connection, after the opening handshake.

    :meth:`receive_data` returns a list of events: ``str`` and ``bytes`` (complete messages),
    :class:`PongReceived`, and at most once a :class:`Closed` or a :class:`ProtocolViolation`
    (nothing follows either). Pings are answered and close frames replied to here; the frames to
    write are in :meth:`data_to_send`. After a :class:`Closed` the transport should be closed once
    those bytes are written; after a :class:`ProtocolViolation`, once :meth:`fail` was called.
    """

    __slots__ = (
        "_conn",
        "_out",
        "_parts",
        "_rules",
        "close_sent",
        "closed",
        "max_size",
        "violation",
    )

    def __init__(
        self,
        max_size: int = 16 * 1024 * 1024,
        deflate: DeflateParams | None = None,
        unmask=unmask,
    ):
        self.max_size = max_size
        self._rules = MessageRules(max_size, deflate)
        self._conn = Connection(ConnectionType.SERVER, extensions=[self._rules])
        proto = self._conn._proto
        proto._frame_decoder = LeanFrameDecoder(False, proto.extensions, unmask)
        self._parts: list = []
        self._out = bytearray()
        self.closed: Closed | None = None  # set once the connection is over for the app
        self.close_sent = False
        self.violation: ProtocolViolation | None = None

    @property
    def open(self) -> bool:
        """Messages may still be sent (no close frame sent or received)."""
        return self._conn.state is ConnectionState.OPEN

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = bytearray()
        return bytes(out)

    def receive_data(self, data: bytes) -> list:
        conn = self._conn
        state = conn.state
        if (
            state is not ConnectionState.OPEN and state is not ConnectionState.LOCAL_CLOSING
        ) or self.violation is not None:
            return []  # after the peer's close frame (or a violation) nothing it sends counts
        conn.receive_data(data)
        events: list = []
        parts = self._parts
        event: Any  # dispatched on its exact type, which mypy does not narrow
        message: Any  # str or bytes, by the kind of message
        for event in conn.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if conn.state is not ConnectionState.OPEN:
                    continue  # RFC 6455 1.4: after our close frame, data is read and discarded
                if event.message_finished:
                    if parts:
                        parts.append(event.data)
                        message = ("" if kind is TextMessage else b"").join(parts)
                        parts.clear()
                    else:
                        message = event.data
                    if kind is BytesMessage and type(message) is not bytes:
                        message = bytes(message)
                    events.append(message)
                elif event.data:
                    parts.append(event.data)
            elif kind is Ping:
                if conn.state is ConnectionState.OPEN:
                    self._out += conn.send(event.response())
            elif kind is Pong:
                events.append(PongReceived(bytes(event.payload)))
            elif kind is CloseConnection:
                events.append(self._on_close(event))
                break
        if self.violation is not None and self.closed is None:
            parts.clear()
        return events

    def _on_close(self, event: CloseConnection):
        conn = self._conn
        code = int(event.code)
        state = conn.state
        self._parts.clear()
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer started the closing handshake: echo its code (RFC 6455 5.5.1); a close
            # without a code is answered with 1000, the normal end it implies.
            self._out += conn.send(CloseConnection(code=1000 if code == 1005 else code))
            closed = Closed(code, event.reason or "", by_peer=True)
        elif state is ConnectionState.CLOSED:
            # The reply to our own close frame: the application already knows the end.
            closed = self.closed or Closed(code, event.reason or "", by_peer=True)
        elif state is ConnectionState.OPEN:
            # wsproto reports a frame that broke the protocol as a close event while the
            # connection is still OPEN: the connection is to be failed with that code (RFC 6455
            # 7.1.7), by :meth:`fail`.
            reason = event.reason or ""
            if code == CloseReason.MESSAGE_TOO_BIG:
                code = CloseReason.MESSAGE_TOO_BIG
                reason = f"message larger than {self.max_size} bytes"
            elif code == CloseReason.INVALID_FRAME_PAYLOAD_DATA:
                reason = "invalid UTF-8 or compressed data"
            self.violation = ProtocolViolation(code, reason[:100])
            return self.violation
        else:
            # A violation after our own close frame: nothing more to say, the socket just ends.
            closed = self.closed or Closed(code, event.reason or "")
        self.closed = closed
        return closed

    def fail(self) -> Closed:
        """Queue the close frame that fails the connection after a :class:`ProtocolViolation`."""
        violation = self.violation
        assert violation is not None, "fail() follows a ProtocolViolation"
        return self.close(violation.code, violation.reason)

    # -- sending

    def send(self, data) -> bytes:
        """The frame of one whole message (``str`` → text, ``bytes`` → binary)."""
        return bytes(self._conn.send(Message(data=data)))

    def ping(self, payload: bytes = b"") -> bytes:
        return bytes(self._conn.send(Ping(payload=payload)))

    def close(self, code: int = 1000, reason: str = "") -> Closed:
        """Queue a close frame (in :meth:`data_to_send`); returns what the application is told.

        Idempotent: after the first close frame (ours or the peer's) it only returns the end that
        was already recorded.
        """
        if self.closed is not None:
            return self.closed
        conn = self._conn
        closed = Closed(code, reason)
        if conn.state is ConnectionState.OPEN or conn.state is ConnectionState.REMOTE_CLOSING:
            self._out += conn.send(CloseConnection(code=code, reason=reason or None))
            self.close_sent = True
        self.closed = closed
        return closed

    def connection_lost(self) -> Closed:
        """The socket is gone: if nothing ended the connection before, it was dropped (1006)."""
        if self.closed is None:
            self.closed = Closed(CloseReason.ABNORMAL_CLOSURE, "", dropped=True)
        return self.closed

    @property
    def handshake_complete(self) -> bool:
        """The closing handshake is over (both close frames exchanged)."""
        return self._conn.state is ConnectionState.CLOSED
