"""HTTP/2 connection core (RFC 9113), server side, on the h2 library.

Sans-IO: bytes go in through :meth:`H2Connection.receive_data`, which returns this module's events;
the frames to write come out of :meth:`H2Connection.data_to_send`. h2 keeps the frame codec, HPACK
and the stream state machines; this module decides what h2 leaves to its user or decides
differently from RFC 9113:

- Frames are handed to h2 one at a time, after a look at their 9-octet header. That look is
  where the defences count (floods, rapid reset, CONTINUATION), where an oversized frame is refused
  before its payload is buffered, and where the few frames h2 would answer against the RFC are
  kept from it (a GOAWAY from the peer, which would stop h2 from finishing the streams in flight;
  frames the RFC says to ignore on a stream this side reset; a zero WINDOW_UPDATE on a stream).
- Request heads are validated here (spec/http2.md H2-REQUEST-*), not by h2: h2 turns a malformed
  request into a connection error, RFC 9113 8.1.1 makes it a stream error. h2 is given an empty
  field list, so it has no Content-Length to enforce either; this module tracks the body length.
- h2 is told there is no concurrency limit; the limit advertised is enforced here with
  RST_STREAM(REFUSED_STREAM) (RFC 9113 5.1.2: a stream error, where h2 would end the connection).

Every protocol error ends in a RST_STREAM or a GOAWAY with its code; nothing raises out of
:meth:`H2Connection.receive_data`. There is one implementation of this core (no compiled variant).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection as _H2Machine
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import Decoder
from hpack.exceptions import OversizedHeaderListError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import GoAwayFrame, WindowUpdateFrame

from .events import (
    BadRequest,
    ContentTooLarge,
    HeadersTooLarge,
    HTTPError,
    NotImplementedByServer,
    URITooLong,
)
from .fields import BAD_VALUE_RE, TOKEN_RE
from .h1 import _COMMON_METHODS, _METHOD_RE, Limits
from .request import HOST_RE, Request, with_host
from .response import H2_CONNECTION_FIELDS  # RFC 9113 8.2.2, one set for requests and responses

NO_ERROR = ErrorCodes.NO_ERROR
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR
INTERNAL_ERROR = ErrorCodes.INTERNAL_ERROR
FLOW_CONTROL_ERROR = ErrorCodes.FLOW_CONTROL_ERROR
STREAM_CLOSED = ErrorCodes.STREAM_CLOSED
FRAME_SIZE_ERROR = ErrorCodes.FRAME_SIZE_ERROR
REFUSED_STREAM = ErrorCodes.REFUSED_STREAM
CANCEL = ErrorCodes.CANCEL
COMPRESSION_ERROR = ErrorCodes.COMPRESSION_ERROR
ENHANCE_YOUR_CALM = ErrorCodes.ENHANCE_YOUR_CALM

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65535

# Frame types and flags (RFC 9113 6).
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0, 1, 2, 3, 4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 5, 6, 7, 8, 9
_END_STREAM = _ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8

#: Peer resets of streams not yet answered (and streams refused or reset as malformed) that a
#: connection may cost before it is ended with ENHANCE_YOUR_CALM; each stream answered in full
#: gives one back. The allowance is this or the concurrency limit, whichever is larger.
RESET_ALLOWANCE = 100
#: Frames that make work without carrying a request (SETTINGS, PING, PRIORITY, WINDOW_UPDATE,
#: empty DATA without END_STREAM, RST_STREAM or WINDOW_UPDATE on a closed stream, unknown types)
#: a connection may send before it is ended with ENHANCE_YOUR_CALM; each request and each DATA
#: frame sent to the peer gives one back.
OVERHEAD_ALLOWANCE = 1000
#: Empty DATA frames without END_STREAM one stream may send in a row.
EMPTY_DATA_LIMIT = 10
#: CONTINUATION frames one header block may have (h2 itself stops at 64, with PROTOCOL_ERROR).
CONTINUATION_LIMIT = 32
#: A header list (RFC 9113 6.5.2 size) over the advertised limit is answered 431 while it stays
#: within this many times that limit; beyond, the HPACK decoder stops and the connection ends.
HARD_LIMIT_FACTOR = 2
#: Closed streams remembered to tell late frames apart (RFC 9113 5.1, "closed"): frames on a
#: stream this side reset are ignored, DATA on a stream both sides ended is a connection error.
#: Beyond the memory, h2's own (larger) one answers them with RST_STREAM(STREAM_CLOSED).
_CLOSED_MEMORY = 256

_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
_NAME_RE = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-z]+")  # a token in lower case (RFC 9113 8.2.1)
_PATH_RE = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: what an HTTP/1.1 target may hold
_SCHEME_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986 3.1


class H2Settings:
    """The settings this server advertises (RFC 9113 6.5.2), validated once."""

    __slots__ = (
        "max_concurrent_streams",
        "initial_stream_window",
        "initial_connection_window",
        "max_frame_size",
        "max_header_list_size",
    )

    def __init__(
        self,
        max_concurrent_streams: int = 100,
        initial_stream_window: int = DEFAULT_WINDOW,
        initial_connection_window: int = 1 << 20,
        max_frame_size: int = 16384,
        max_header_list_size: int = 65536,
    ):
        if max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be at least 1")
        for name, value in (
            ("initial_stream_window", initial_stream_window),
            ("initial_connection_window", initial_connection_window),
        ):
            # A window only counts as advertised once the client acknowledges the SETTINGS;
            # until then it may send 65535 bytes (RFC 9113 6.5.3, 6.9.2). A larger window is
            # applied at once (only more lenient); a smaller one would turn the client's first
            # flight into flow-control errors, so it is not offered. The connection window can
            # only grow (a WINDOW_UPDATE), never shrink.
            if not DEFAULT_WINDOW <= value <= 2**31 - 1:
                raise ValueError("%s must be between 65535 and 2**31-1" % name)
        if not 16384 <= max_frame_size <= 2**24 - 1:
            raise ValueError("max_frame_size must be between 16384 and 16777215")
        if max_header_list_size < 1024:
            raise ValueError("max_header_list_size must be at least 1024")
        self.max_concurrent_streams = max_concurrent_streams
        self.initial_stream_window = initial_stream_window
        self.initial_connection_window = initial_connection_window
        self.max_frame_size = max_frame_size
        self.max_header_list_size = max_header_list_size


# ---------------------------------------------------------------------------------- events


class _Event:
    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __repr__(self) -> str:
        args = ", ".join("%s=%r" % (name, getattr(self, name)) for name in self.__slots__)
        return "%s(%s)" % (type(self).__name__, args)


class RequestReceived(_Event):
    """A valid request head. ``protocol`` is the ``:protocol`` of an RFC 8441 extended CONNECT
    (e.g. ``"websocket"``), else ``None``. With ``end_stream`` the request has no body."""

    __slots__ = ("stream_id", "request", "end_stream", "protocol")

    def __init__(self, stream_id: int, request: Request, end_stream: bool, protocol=None):
        self.stream_id = stream_id
        self.request = request
        self.end_stream = end_stream
        self.protocol = protocol


class RequestRejected(_Event):
    """Answer this stream with ``error.status`` (a complete error response) now: its request is
    refused (413, 414, 431, 400, 501). If it had been dispatched (a body grew past the limit),
    the application is to be told the client is gone. Body still arriving is discarded, and once
    the error response ends the stream is reset with NO_ERROR (H2-STREAM-3)."""

    __slots__ = ("stream_id", "error")

    def __init__(self, stream_id: int, error: HTTPError):
        self.stream_id = stream_id
        self.error = error


class BodyReceived(_Event):
    """A piece of request body. Call :meth:`H2Connection.consumed` with ``len(data)`` once the
    application has taken it: that is what lets the client send more on this stream."""

    __slots__ = ("stream_id", "data")

    def __init__(self, stream_id: int, data: bytes):
        self.stream_id = stream_id
        self.data = data


class BodyEnded(_Event):
    """The request body is complete (trailers, if any, were validated and discarded)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int):
        self.stream_id = stream_id


class StreamReset(_Event):
    """A stream is gone: reset by the peer (``by_peer``) or by this side for a protocol error
    in it (``reason`` says which, for the log). Nothing more is sent or received on it; if its
    request had been dispatched, its application is to be told the client disconnected. A
    malformed request is reported this way too, with a stream id the glue has never seen."""

    __slots__ = ("stream_id", "code", "by_peer", "reason")

    def __init__(self, stream_id: int, code: int, by_peer: bool, reason: str = ""):
        self.stream_id = stream_id
        self.code = code
        self.by_peer = by_peer
        self.reason = reason


class WindowOpened(_Event):
    """The peer let more data through on ``stream_id`` (0: the connection, or every stream)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int):
        self.stream_id = stream_id


class PingAcked(_Event):
    """The peer acknowledged a :meth:`H2Connection.ping` with this payload."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes):
        self.payload = payload


class ConnectionEnded(_Event):
    """The connection is over: after it nothing more is read, and once :meth:`data_to_send` is
    written (a GOAWAY, if this side ended it) the transport is closed. ``by_peer``: the peer sent
    GOAWAY (then this comes once the streams it let finish have finished)."""

    __slots__ = ("code", "reason", "by_peer")

    def __init__(self, code: int, reason: str, by_peer: bool):
        self.code = code
        self.reason = reason
        self.by_peer = by_peer


class _Malformed(Exception):
    """RFC 9113 8.1.1: a malformed request or trailer section, a stream error PROTOCOL_ERROR."""


# ---------------------------------------------------------------------------------- internals


class _Decoder(Decoder):
    """h2's HPACK decoder, keeping the field list for this module and handing h2 none.

    h2 would validate the fields (and Content-Length) itself, making a malformed request a
    connection error; it needs none of them on the server side to run its state machines. The
    kind of a decoding failure is kept too: h2 reports every one as PROTOCOL_ERROR, where RFC 9113
    4.3 wants COMPRESSION_ERROR.
    """

    def __init__(self, hard_limit: int):
        super().__init__(max_header_list_size=hard_limit)
        self.block = None
        self.failure = None

    def decode(self, data, raw=False):
        try:
            self.block = super().decode(data, raw=True)
        except OversizedHeaderListError:
            self.failure = (
                ENHANCE_YOUR_CALM,
                "header list larger than %d bytes" % self.max_header_list_size,
            )
            raise
        except Exception as exc:
            self.failure = (COMPRESSION_ERROR, "HPACK decoding failed: %s" % exc)
            raise
        return []


class _Stream:
    """What this module remembers of a stream until both its sides are done."""

    __slots__ = (
        "known",
        "discard",
        "expected",
        "limit",
        "received",
        "unacked",
        "remote_done",
        "head_sent",
        "empties",
    )

    def __init__(self):
        self.known = False  # the glue was told of it (RequestReceived or RequestRejected)
        self.discard = False  # its body is dropped (rejected request)
        self.expected = None  # Content-Length
        self.limit = 0  # the body limit (0: none)
        self.received = 0
        self.unacked = 0  # request body taken by the application, not yet given back
        self.remote_done = False
        self.head_sent = False
        self.empties = 0  # empty DATA frames in a row


def _check_field(name: bytes, value: bytes) -> None:
    """RFC 9113 8.2.1 and the field-value rule every protocol shares (fields.BAD_VALUE_RE)."""
    if not _NAME_RE.fullmatch(name):
        raise _Malformed("invalid field name %r" % (name[:64],))
    if BAD_VALUE_RE.search(value) or value[:1] in b" \t" or value[-1:] in b" \t":
        raise _Malformed("invalid value for field %r" % (name[:64],))
    if name in H2_CONNECTION_FIELDS:
        raise _Malformed("connection-specific field %r" % (name,))
    if name == b"te" and value.lower() != b"trailers":
        raise _Malformed("TE other than trailers")


def _content_length(headers: list):
    """The length Content-Length states (None without one); malformed unless every value is
    the same run of digits."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise _Malformed("invalid Content-Length %r" % (value[:64],))
            length = int(value)
    return length


def _parse_request(block: list, limits: Limits, max_header_list_size: int):
    """``(Request, protocol, content_length)`` of a decoded request header block.

    Raises :class:`_Malformed` for what RFC 9113 8.1.1 / 8.3 calls malformed (a stream error
    PROTOCOL_ERROR), and an :class:`HTTPError` for a valid request refused with a status.
    """
    size = sum(len(n) + len(v) + 32 for n, v in block)
    if size > max_header_list_size:
        raise HeadersTooLarge("header list larger than %d bytes" % max_header_list_size)
    pseudo: dict = {}
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    for name, value in block:
        if name[:1] == b":":
            if headers or cookies:
                raise _Malformed("pseudo-header %r after a regular field" % (name,))
            if name not in _REQUEST_PSEUDO or name in pseudo:
                raise _Malformed("unknown or repeated pseudo-header %r" % (name[:64],))
            pseudo[name] = value
            continue
        _check_field(name, value)
        if name == b"cookie":
            cookies.append(value)  # RFC 9113 8.2.3: joined below, as HTTP/1.1 carries it
        else:
            headers.append((name, value))
    if len(headers) + len(cookies) > limits.header_count:
        raise HeadersTooLarge("more than %d header fields" % limits.header_count)
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))

    method = pseudo.get(b":method")
    if method is None:
        raise _Malformed("no :method")
    protocol = pseudo.get(b":protocol")
    path = pseudo.get(b":path")
    if method == b"CONNECT" and protocol is None:
        if b":scheme" in pseudo or path is not None or b":authority" not in pseudo:
            raise _Malformed("CONNECT must have :authority and no :scheme or :path")
        raise NotImplementedByServer("CONNECT is not supported")
    if protocol is not None and method != b"CONNECT":
        raise _Malformed(":protocol outside an extended CONNECT")
    scheme = pseudo.get(b":scheme")
    if scheme is None or path is None:
        raise _Malformed("no :scheme or no :path")
    if not _SCHEME_RE.fullmatch(scheme):
        raise _Malformed("invalid :scheme")
    if path == b"*":
        if method != b"OPTIONS":
            raise _Malformed(':path "*" outside OPTIONS')
    elif path[:1] != b"/" or not _PATH_RE.fullmatch(path):
        raise _Malformed(":path is not an origin-form target")
    if protocol is not None:
        if b":authority" not in pseudo or not TOKEN_RE.fullmatch(protocol):
            raise _Malformed("extended CONNECT without :authority or with an invalid :protocol")
    if method not in _COMMON_METHODS and not _METHOD_RE.fullmatch(method):
        if TOKEN_RE.fullmatch(method):
            raise NotImplementedByServer("method %r is not implemented" % method.decode())
        raise _Malformed("invalid :method")
    if len(path) > limits.request_line:
        raise URITooLong(":path is longer than %d bytes" % limits.request_line)

    authority = pseudo.get(b":authority")
    if authority is None:
        hosts = [v for n, v in headers if n == b"host"]
        if len(hosts) != 1:
            raise BadRequest("no :authority and not one Host field")
        authority = hosts[0]
    if not authority or not HOST_RE.fullmatch(authority):
        raise BadRequest("invalid authority %r" % (authority[:64],))
    headers = with_host(headers, authority)
    length = _content_length(headers)
    if length is not None and limits.body and length > limits.body:
        raise ContentTooLarge("request body is larger than %d bytes" % limits.body)
    raw_path, _, query = path.partition(b"?")
    request = Request(
        method.decode("ascii"), raw_path, query, "2", headers, authority.decode("ascii")
    )
    return request, None if protocol is None else protocol.decode("ascii"), length


def _check_trailers(block: list) -> None:
    for name, value in block:
        if name[:1] == b":":
            raise _Malformed("pseudo-header %r in trailers" % (name[:64],))
        _check_field(name, value)


# ---------------------------------------------------------------------------------- connection


class H2Connection:
    """One HTTP/2 connection, server side.

    Flow control of request bodies: the connection window is given back as soon as DATA is
    received (every byte received is buffered for its stream), and a stream's window only as its
    application takes the body (:meth:`consumed`). So a stream whose application never reads stops
    only itself: the peer may send at most one stream window to it, and the others go on. The
    memory a connection can hold in unread bodies is therefore bounded by
    ``max_concurrent_streams * initial_stream_window``. (h2's ``acknowledge_received_data``
    gives both windows back together, which is why windows are reopened here with
    ``increment_flow_control_window``, each at its own time.)

    Every method may queue events: :meth:`receive_data` returns them, and :meth:`take_events`
    hands over those queued by the sending methods and :meth:`close`.
    """

    def __init__(self, settings: H2Settings | None = None, limits: Limits | None = None):
        self._settings = settings = settings or H2Settings()
        self._limits = limits or Limits()
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        machine = self._h2 = _H2Machine(config=config)
        machine.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_stream_window,
                SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        machine.max_inbound_frame_size = settings.max_frame_size
        self._decoder = machine.decoder = _Decoder(
            settings.max_header_list_size * HARD_LIMIT_FACTOR
        )
        self._streams: dict = {}
        self._reset_ids: dict = {}  # streams this side reset, oldest first
        self._ended_ids: dict = {}  # streams both sides ended with END_STREAM, oldest first
        self._events: list = []
        self._out = bytearray()
        self._inbuf = bytearray()
        self._preface_left = len(PREFACE)
        self._seen_settings = False
        self._block_stream = 0  # the stream of a header block awaiting CONTINUATION
        self._block_frames = 0
        self._block_bytes = 0
        self._conn_unacked = 0  # DATA received whose connection window h2 gives back
        self._raw_unacked = 0  # DATA kept from h2 whose connection window is given back here
        self._reset_budget = max(RESET_ALLOWANCE, settings.max_concurrent_streams)
        self._overhead_budget = OVERHEAD_ALLOWANCE
        self._ended = False
        self._closing = False  # a GOAWAY(NO_ERROR) was sent: no new stream is served
        self._goaway_last = 2**31 - 1
        self._peer_goaway: tuple[int, str] | None = (
            None  # (code, reason) of the peer's GOAWAY(NO_ERROR)
        )

    # ------------------------------------------------------------------ start

    def initiate(self) -> None:
        """Queue the server connection preface: SETTINGS, then a connection WINDOW_UPDATE when
        the configured connection window is larger than the initial 65535."""
        self._h2.initiate_connection()
        self._after_initiate()

    def initiate_upgrade(self, http2_settings_header: bytes) -> None:
        """Start an h2c connection upgraded from HTTP/1.1 (RFC 7540 3.2): stream 1 is the
        upgraded request, half-closed (remote), answered with :meth:`send_headers` on stream 1.

        Raises :class:`BadRequest` for an HTTP2-Settings value that is not a base64url SETTINGS
        payload: call this before writing ``101 Switching Protocols``, and serve the request over
        HTTP/1.1 instead when it raises.
        """
        value = http2_settings_header.strip()
        value += b"=" * (-len(value) % 4)  # token68: base64url, padding left out
        try:
            payload = base64.b64decode(value, altchars=b"-_", validate=True)
            if len(payload) % 6:
                raise ValueError("not a whole number of settings")
            self._h2.initiate_upgrade_connection(value)
        except (ValueError, binascii.Error, ProtocolError, HyperframeError) as exc:
            raise BadRequest("invalid HTTP2-Settings: %s" % exc) from None
        self._after_initiate()
        stream = self._streams[1] = _Stream()
        stream.known = stream.remote_done = True

    def _after_initiate(self) -> None:
        # The limit was advertised; h2 would end the connection over it (see the module notes).
        del self._h2.local_settings[SettingCodes.MAX_CONCURRENT_STREAMS]
        extra = self._settings.initial_connection_window - DEFAULT_WINDOW
        if extra:
            self._h2.increment_flow_control_window(extra)

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> list:
        """Events for ``data`` (and any queued by other calls since :meth:`take_events`)."""
        if not self._ended and data:
            buf = self._inbuf
            buf += data
            if self._preface_left:
                self._check_preface()
            while not self._ended and len(buf) >= 9:
                length = (buf[0] << 16) | (buf[1] << 8) | buf[2]
                if length > self._h2.max_inbound_frame_size:
                    self._end(FRAME_SIZE_ERROR, "frame of %d bytes" % length)
                    break
                if len(buf) < 9 + length:
                    break
                frame = bytes(buf[: 9 + length])
                del buf[: 9 + length]
                self._frame(frame, length)
            if self._ended:
                buf.clear()
        return self.take_events()

    def take_events(self) -> list:
        """Events queued outside :meth:`receive_data`: by a response that finished the last
        stream of a closing connection (:class:`ConnectionEnded`) or one that was reset."""
        events = self._events
        self._events = []
        return events

    def _check_preface(self) -> None:
        buf = self._inbuf
        done = len(PREFACE) - self._preface_left
        n = min(len(buf), self._preface_left)
        if bytes(buf[:n]) != PREFACE[done : done + n]:
            self._end(PROTOCOL_ERROR, "invalid connection preface")
            return
        del buf[:n]
        self._preface_left -= n
        if not self._preface_left:
            self._h2.receive_data(PREFACE)

    def _frame(self, frame: bytes, length: int) -> None:
        """One whole frame: the checks h2 does not make, then h2, then its events."""
        ftype = frame[3]
        flags = frame[4]
        sid = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
        if not self._seen_settings:
            if ftype != _SETTINGS or flags & _ACK:
                self._end(PROTOCOL_ERROR, "the connection preface must go on with SETTINGS")
                return
            self._seen_settings = True
        if self._block_stream:
            if ftype == _CONTINUATION and sid == self._block_stream:
                self._block_frames += 1
                self._block_bytes += length
                if self._block_frames > CONTINUATION_LIMIT:
                    self._end(
                        ENHANCE_YOUR_CALM, "more than %d CONTINUATION frames" % CONTINUATION_LIMIT
                    )
                    return
                if self._block_bytes > self._decoder.max_header_list_size:
                    self._end(
                        ENHANCE_YOUR_CALM,
                        "header block larger than %d bytes" % self._decoder.max_header_list_size,
                    )
                    return
                if flags & _END_HEADERS:
                    self._block_stream = 0
            # else h2 ends the connection: RFC 9113 6.10, PROTOCOL_ERROR
        elif ftype == _HEADERS:
            if not self._headers_frame(frame, length, flags, sid):
                return
        elif ftype == _DATA:
            if sid in self._reset_ids:
                self._absorb(length)
                return
            if sid in self._ended_ids:
                # RFC 9113 5.1: a connection error (h2 would reset the stream).
                self._end(STREAM_CLOSED, "DATA on stream %d after it ended" % sid)
                return
            if length == 0 and not flags & _END_STREAM and self._empty_data(sid):
                return
        elif ftype == _WINDOW_UPDATE:
            if not self._window_update_frame(frame, length, sid):
                return
        elif ftype == _RST_STREAM and sid and length == 4:
            if sid > self._h2.highest_inbound_stream_id:
                # RFC 9113 6.4: a connection error; h2 would ignore it.
                self._end(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
                return
            if sid not in self._streams:
                if self._spend("RST_STREAM on a closed stream") or sid in self._reset_ids:
                    return  # ignored (RFC 9113 5.1)
        elif ftype == _GOAWAY:
            self._goaway_frame(frame, length, sid)
            return
        elif ftype == _SETTINGS:
            if flags & _ACK and length:
                self._end(FRAME_SIZE_ERROR, "SETTINGS acknowledgement with a payload")
                return  # RFC 9113 6.5 (h2 says PROTOCOL_ERROR)
            # Each setting is work (h2 validates and applies it): a frame costs one per setting.
            if not flags & _ACK and self._spend("SETTINGS", max(1, length // 6)):
                return
        elif ftype == _PING:
            if not flags & _ACK and self._spend("PING"):
                return
        elif ftype == _PRIORITY:
            if self._spend("PRIORITY"):
                return
        elif ftype not in (_PUSH_PROMISE, _CONTINUATION):
            if self._spend("frame of unknown type %d" % ftype):
                return
        self._feed(frame)

    def _headers_frame(self, frame: bytes, length: int, flags: int, sid: int) -> bool:
        if not flags & _END_HEADERS:
            self._block_stream = sid
            self._block_frames = 0
            self._block_bytes = length
        if length > self._decoder.max_header_list_size:
            self._end(
                ENHANCE_YOUR_CALM,
                "header block larger than %d bytes" % self._decoder.max_header_list_size,
            )
            return False
        stream = self._streams.get(sid)
        if stream is not None and not stream.remote_done and not flags & _END_STREAM:
            # A second header block is a trailer section and must end the stream (RFC 9113
            # 8.1); h2 would make this a connection error. The block still goes to h2, whose
            # HPACK state must see it; h2 then answers it as a frame on a reset stream.
            self._reset(sid, PROTOCOL_ERROR, "trailers without END_STREAM")
        return True

    def _window_update_frame(self, frame: bytes, length: int, sid: int) -> bool:
        if length != 4 or not sid:
            # h2 answers a wrong length (FRAME_SIZE_ERROR) and keeps the connection window.
            return not self._spend("WINDOW_UPDATE")
        if sid in self._reset_ids or (
            sid <= self._h2.highest_inbound_stream_id and sid not in self._streams
        ):
            self._spend("WINDOW_UPDATE on a closed stream")
            return False  # ignored (RFC 9113 5.1)
        if int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF == 0 and sid in self._streams:
            # RFC 9113 6.9: a stream error; h2 would end the connection.
            self._reset(sid, PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            return False
        return not self._spend("WINDOW_UPDATE")

    def _goaway_frame(self, frame: bytes, length: int, sid: int) -> None:
        """Kept from h2, which would refuse to send anything after it: the streams the peer
        started are still to be answered (RFC 9113 6.8)."""
        if sid:
            self._end(PROTOCOL_ERROR, "GOAWAY on a stream")
            return
        if length < 8:
            self._end(FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
            return
        code = int.from_bytes(frame[13:17], "big")
        reason = frame[17:].decode("utf-8", "replace")
        if code != NO_ERROR or not self._streams:
            self._ended = True
            self._events.append(ConnectionEnded(_code(code), reason, True))
        else:
            self._peer_goaway = (code, reason)

    def _empty_data(self, sid: int) -> bool:
        """An empty DATA frame without END_STREAM: it costs a frame's work and moves nothing."""
        stream = self._streams.get(sid)
        if stream is not None:
            stream.empties += 1
            if stream.empties > EMPTY_DATA_LIMIT:
                self._end(
                    ENHANCE_YOUR_CALM, "more than %d empty DATA frames in a row" % EMPTY_DATA_LIMIT
                )
                return True
        return self._spend("empty DATA")

    def _absorb(self, length: int) -> None:
        """DATA on a stream this side reset: ignored (RFC 9113 5.1), its connection window
        given back here since h2 never sees it."""
        self._raw_unacked += length
        self._give_back_connection_window()

    def _feed(self, frame: bytes) -> None:
        h2 = self._h2
        decoder = self._decoder
        decoder.block = decoder.failure = None
        self._out += h2.data_to_send()
        try:
            events = h2.receive_data(frame)
        except ProtocolError as exc:
            h2.clear_outbound_data_buffer()  # h2's GOAWAY, replaced with the right code
            code, reason = decoder.failure or (
                _code(exc.error_code),
                "%s: %s" % (type(exc).__name__, exc),
            )
            self._end(code, reason)
            return
        event: Any  # dispatched on its exact type, which mypy does not narrow
        for event in events:
            kind = type(event)
            if kind is h2e.RequestReceived:
                self._on_request(event.stream_id, decoder.block, event.stream_ended is not None)
            elif kind is h2e.DataReceived:
                self._on_data(event)
            elif kind is h2e.TrailersReceived:
                self._on_trailers(event.stream_id, decoder.block)
            elif kind is h2e.StreamReset:
                self._on_reset(event)
            elif kind is h2e.WindowUpdated:
                self._events.append(WindowOpened(event.stream_id))
            elif kind is h2e.RemoteSettingsChanged:
                changed = event.changed_settings
                if SettingCodes.INITIAL_WINDOW_SIZE in changed or (
                    SettingCodes.MAX_FRAME_SIZE in changed
                ):
                    self._events.append(WindowOpened(0))
            elif kind is h2e.PingAckReceived:
                self._events.append(PingAcked(event.ping_data))
            if self._ended:
                return

    # ------------------------------------------------------------------ h2's events

    def _on_request(self, sid: int, block, end_stream: bool) -> None:
        stream = self._streams[sid] = _Stream()
        stream.remote_done = end_stream
        if (self._closing and sid > self._goaway_last) or self._peer_goaway is not None:
            self._reset(sid, REFUSED_STREAM, None, charge=False)
            return
        if len(self._streams) > self._settings.max_concurrent_streams:
            self._reset(sid, REFUSED_STREAM, None)
            return
        self._overhead_budget = min(self._overhead_budget + 1, OVERHEAD_ALLOWANCE)
        try:
            request, protocol, length = _parse_request(
                block or [], self._limits, self._settings.max_header_list_size
            )
            if end_stream and length:
                raise _Malformed("Content-Length %d with no body" % length)
        except _Malformed as exc:
            self._reset(sid, PROTOCOL_ERROR, str(exc))
            return
        except HTTPError as error:
            self._reject(sid, stream, error)
            return
        stream.known = True
        stream.expected = length
        # An extended CONNECT carries a tunnel (a WebSocket), not a body: its own protocol
        # bounds what it carries.
        stream.limit = 0 if protocol is not None else self._limits.body
        self._events.append(RequestReceived(sid, request, end_stream, protocol))

    def _on_data(self, event) -> None:
        sid = event.stream_id
        data = event.data
        end = event.stream_ended is not None
        self._conn_unacked += event.flow_controlled_length
        self._give_back_connection_window()
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.unacked += event.flow_controlled_length - len(data)  # padding: nobody reads it
        if data:
            stream.empties = 0
        stream.received += len(data)
        if end:
            stream.remote_done = True
        if stream.discard:
            stream.unacked += len(data)
            self._give_back_stream_window(sid, stream)
            return
        expected = stream.expected
        if expected is not None and (
            stream.received > expected or (end and stream.received != expected)
        ):
            self._reset(sid, PROTOCOL_ERROR, "body length differs from Content-Length")
            return
        limit = stream.limit
        if limit and stream.received > limit:
            error = ContentTooLarge("request body is larger than %d bytes" % limit)
            if stream.head_sent:
                self._reset(sid, CANCEL, str(error), charge=False)
            else:
                self._reject(sid, stream, error)
            return
        if data:
            self._events.append(BodyReceived(sid, data))
        if end:
            self._events.append(BodyEnded(sid))

    def _on_trailers(self, sid: int, block) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.remote_done = True
        try:
            _check_trailers(block or [])
            if stream.expected is not None and stream.received != stream.expected:
                raise _Malformed("body length differs from Content-Length")
        except _Malformed as exc:
            self._reset(sid, PROTOCOL_ERROR, str(exc))
            return
        if not stream.discard:
            self._events.append(BodyEnded(sid))

    def _on_reset(self, event) -> None:
        sid = event.stream_id
        stream = self._streams.pop(sid, None)
        if stream is None:
            return
        if event.remote_reset:
            if self._charge_reset("streams reset before their response"):
                return
        else:
            self._remember_reset(sid)
        if stream.known:
            reason = "" if event.remote_reset else "frame on a closed or half-closed stream"
            self._events.append(
                StreamReset(sid, _code(event.error_code), event.remote_reset, reason)
            )
        self._maybe_finished()

    # ------------------------------------------------------------------ sending

    def send_informational(self, stream_id: int, status: int, fields: list) -> None:
        """A 1xx response head (e.g. 103 Early Hints) before the final one."""
        if stream_id in self._streams and not self._ended:
            self._h2.send_headers(stream_id, _response_fields(status, fields))

    def send_headers(self, stream_id: int, status: int, fields: list, end_stream: bool) -> None:
        """The final response head. ``fields`` passed the shared response rules; the
        connection-specific ones HTTP/2 forbids (RFC 9113 8.2.2) are left out here."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended:
            return
        self._h2.send_headers(stream_id, _response_fields(status, fields), end_stream=end_stream)
        stream.head_sent = True
        if end_stream:
            self._finish_local(stream_id, stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """Send what the flow-control windows allow of ``data``, in frames of at most the
        peer's frame size; returns the bytes sent. The rest waits for a :class:`WindowOpened`.
        ``end_stream`` takes effect only once the whole of ``data`` is sent. A stream that is
        gone (:class:`StreamReset` told so) takes nothing."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended:
            return 0
        h2 = self._h2
        total = len(data)
        allowed = min(total, h2.local_flow_control_window(stream_id))
        size = h2.max_outbound_frame_size
        view = memoryview(data)
        sent = 0
        frames = 0
        while sent < allowed:
            chunk = view[sent : sent + min(size, allowed - sent)]
            sent += len(chunk)
            h2.send_data(stream_id, chunk, end_stream=end_stream and sent == total)
            frames += 1
        if end_stream and total == 0:
            h2.send_data(stream_id, b"", end_stream=True)
        self._overhead_budget = min(self._overhead_budget + frames, OVERHEAD_ALLOWANCE)
        if end_stream and sent == total:
            self._finish_local(stream_id, stream)
        return sent

    def send_trailers(self, stream_id: int, fields: list) -> None:
        """The trailer section, which ends the response."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended:
            return
        self._h2.send_headers(stream_id, _lower(fields), end_stream=True)
        self._finish_local(stream_id, stream)

    def window(self, stream_id: int) -> int:
        """Bytes :meth:`send_data` can send now on this stream (0 for a stream that is gone)."""
        if stream_id not in self._streams or self._ended:
            return 0
        return self._h2.local_flow_control_window(stream_id)

    def consumed(self, stream_id: int, n: int) -> None:
        """The application took ``n`` bytes of this stream's request body: the stream's window
        reopens (in steps of half a window, so small reads do not each cost a frame)."""
        stream = self._streams.get(stream_id)
        if stream is None or self._ended or n <= 0:
            return
        stream.unacked += n
        self._give_back_stream_window(stream_id, stream)

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        """RST_STREAM: this side abandons the stream (no event follows for it)."""
        stream = self._streams.get(stream_id)
        if stream is not None and not self._ended:
            stream.known = False
            self._reset(stream_id, code, None, charge=False)

    def ping(self, payload: bytes) -> None:
        """Send a PING with an 8-byte payload; its acknowledgement comes as :class:`PingAcked`."""
        if not self._ended:
            self._h2.ping(payload)

    def close(
        self, code: int = NO_ERROR, last_stream_id: int | None = None, reason: str = ""
    ) -> None:
        """GOAWAY. With NO_ERROR a graceful shutdown: streams up to ``last_stream_id`` (by
        default every stream received so far) go on, later ones are refused (REFUSED_STREAM, safe
        to retry), and :class:`ConnectionEnded` comes once the last one has finished. With an
        error code the connection ends now."""
        if self._ended:
            return
        if code != NO_ERROR:
            self._end(code, reason or "closed", event=False)
            return
        if self._closing:
            return
        last = self._h2.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        self._closing = True
        self._goaway_last = last
        self._raw(
            GoAwayFrame(
                0, last_stream_id=last, error_code=NO_ERROR, additional_data=reason.encode("utf-8")
            ).serialize()
        )
        for sid in [sid for sid in self._streams if sid > last]:
            self._reset(sid, REFUSED_STREAM, None, charge=False)
        self._maybe_finished()

    def data_to_send(self) -> bytes:
        """Everything queued for the peer, in order."""
        out = self._out
        if out:
            out += self._h2.data_to_send()
            self._out = bytearray()
            return bytes(out)
        return self._h2.data_to_send()

    @property
    def open_streams(self) -> int:
        """Streams not yet finished on both sides."""
        return len(self._streams)

    @property
    def ended(self) -> bool:
        return self._ended

    # ------------------------------------------------------------------ bookkeeping

    def _raw(self, frame: bytes) -> None:
        """Queue a frame h2 does not know of, after everything h2 queued before it."""
        self._out += self._h2.data_to_send()
        self._out += frame

    def _give_back_connection_window(self) -> None:
        if self._conn_unacked + self._raw_unacked >= self._settings.initial_connection_window // 2:
            if self._conn_unacked:
                self._h2.increment_flow_control_window(self._conn_unacked)
            if self._raw_unacked:
                frame = WindowUpdateFrame(0, window_increment=self._raw_unacked)
                self._raw(frame.serialize())
            self._conn_unacked = self._raw_unacked = 0

    def _give_back_stream_window(self, sid: int, stream: _Stream) -> None:
        if stream.remote_done:
            stream.unacked = 0  # nothing more will come: no window to open
        elif stream.unacked and stream.unacked >= self._settings.initial_stream_window // 2:
            self._h2.increment_flow_control_window(stream.unacked, sid)
            stream.unacked = 0

    def _reject(self, sid: int, stream: _Stream, error: HTTPError) -> None:
        stream.known = True
        stream.discard = True
        self._events.append(RequestRejected(sid, error))
        if stream.unacked:
            self._give_back_stream_window(sid, stream)

    def _finish_local(self, sid: int, stream: _Stream) -> None:
        """The response ended: the stream was answered. A request body still coming is not
        wanted any more (RFC 9113 8.1: RST_STREAM NO_ERROR after a complete response)."""
        self._reset_budget = min(self._reset_budget + 1, self._reset_allowance())
        if stream.remote_done:
            del self._streams[sid]
            _remember(self._ended_ids, sid)
            self._maybe_finished()
        else:
            stream.known = False
            self._reset(sid, NO_ERROR, None, charge=False)

    def _reset(self, sid: int, code, reason, charge: bool = True) -> None:
        """RST_STREAM from this side. The glue hears of it if it knew the stream, or if there is
        a ``reason`` (a protocol error, worth a log line); refusals and resets the glue asked
        for have none."""
        stream = self._streams.pop(sid, None)
        try:
            self._h2.reset_stream(sid, code)
        except ProtocolError:
            pass  # h2 already closed it
        self._remember_reset(sid)
        if reason is not None or (stream is not None and stream.known):
            self._events.append(StreamReset(sid, _code(code), False, reason or ""))
        if charge and self._charge_reset("streams refused or malformed"):
            return
        self._maybe_finished()

    def _remember_reset(self, sid: int) -> None:
        _remember(self._reset_ids, sid)

    def _reset_allowance(self) -> int:
        return max(RESET_ALLOWANCE, self._settings.max_concurrent_streams)

    def _charge_reset(self, what: str) -> bool:
        """Rapid reset (CVE-2023-44487): streams that cost work and were never answered."""
        self._reset_budget -= 1
        if self._reset_budget < 0:
            self._end(ENHANCE_YOUR_CALM, "too many %s" % what)
            return True
        return False

    def _spend(self, what: str, cost: int = 1) -> bool:
        """Frames that cost work and carry no request (floods of CVE-2019-9512/9515/9518)."""
        self._overhead_budget -= cost
        if self._overhead_budget < 0:
            self._end(ENHANCE_YOUR_CALM, "too many %s frames without requests" % what)
            return True
        return False

    def _maybe_finished(self) -> None:
        if self._ended or self._streams:
            return
        if self._peer_goaway is not None:
            code, reason = self._peer_goaway
            self._ended = True
            self._events.append(ConnectionEnded(_code(code), reason, True))
        elif self._closing:
            self._ended = True
            self._events.append(ConnectionEnded(NO_ERROR, "graceful shutdown", False))

    def _end(self, code, reason: str, event: bool = True) -> None:
        """GOAWAY with ``code`` and ``reason``: the connection is over."""
        if self._ended:
            return
        self._ended = True
        self._block_stream = 0
        self._out += self._h2.data_to_send()
        self._h2.close_connection(code, additional_data=reason.encode("utf-8")[:256])
        if event:
            self._events.append(ConnectionEnded(_code(code), reason, False))


def _remember(ids: dict, sid: int) -> None:
    """Add a closed stream to a bounded memory of them (oldest forgotten first)."""
    ids[sid] = None
    if len(ids) > _CLOSED_MEMORY:
        del ids[next(iter(ids))]


def _code(code):
    """An error code as h2's enum where it has a name (it prints as one), else the integer."""
    try:
        return ErrorCodes(code)
    except ValueError:
        return code


def _lower(fields: list) -> list:
    out = []
    for name, value in fields:
        name = name.lower()
        if name not in H2_CONNECTION_FIELDS:
            out.append((name, value))
    return out


def _response_fields(status: int, fields: list) -> list:
    return [(b":status", b"%d" % status), *_lower(fields)]
