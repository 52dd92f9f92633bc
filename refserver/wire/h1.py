"""HTTP/1.1 connection core: request limits, keep-alive, response framing.

Sans-IO: bytes go in through :meth:`H1Connection.receive_data`, events come out of
:meth:`H1Connection.next_event`, and the response methods return the bytes to write. The request
parser is a component (h11 on the reference path, httptools on the fast path) and so is the
response-head writer; every rule that decides *what* is sent lives here, once, for both.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from .events import (
    BadRequest,
    Body,
    ContentTooLarge,
    EndOfMessage,
    HeadersTooLarge,
    NotImplementedByServer,
    RequestHead,
    ResponseError,
    URITooLong,
    VersionNotSupported,
)
from .fields import TOKEN_RE, field_tokens, remember
from .request import HOST_RE, Request, from_h1_head
from .response import (
    NO_BODY_STATUSES,
    TEXT_PLAIN,
    ResponseRules,
    check_complete,
    check_informational,
    check_trailers,
    count_body,
)

_METHOD_RE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Z]+")
_COMMON_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"))
_TE_FIELD_RE = re.compile(rb"^transfer-encoding[ \t]*:(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_CL_FIELD_RE = re.compile(rb"^content-length[ \t]*:", re.IGNORECASE | re.MULTILINE)
_FOLD_RE = re.compile(rb"\r?\n[ \t]+")

#: A response body up to this size is joined to its head (one write); a larger one is written on
#: its own, uncopied (a copy of a megabyte costs more than a second write call).
JOIN_LIMIT = 16384
_HEAD_END_RE = re.compile(rb"\n\r?\n")  # the blank line that ends a head (CRLF or bare LF)
_EMPTY_LINE_BYTES = b"\r\n"
REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

#: Host values that passed their check (the keys): a server mostly sees a few.
_CHECKED_HOSTS: dict = {}


class Limits:
    """Request size limits; each one that is exceeded maps to its own status (414, 431, 413)."""

    __slots__ = ("request_line", "head", "header_count", "body")

    def __init__(
        self,
        request_line: int = 8190,
        head: int = 65536,
        header_count: int = 100,
        body: int = 0,
    ):
        self.request_line = request_line
        self.head = head
        self.header_count = header_count
        self.body = body  # 0: unlimited


def write_head(status: int, reason: bytes, headers: list) -> bytes:
    """Serialise a status line and header block; the reference response-head writer.

    Names and values were validated by the caller; this only joins them.
    """
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    for name, value in headers:
        parts.append(b"%s: %s\r\n" % (name, value))
    parts.append(b"\r\n")
    return b"".join(parts)


def _raw_head(data: bytes) -> bytes:
    """The head at the start of ``data``: the read that brought it may have brought its body or
    the next pipelined request too, whose fields must not count."""
    data = data or b""
    end = _HEAD_END_RE.search(data)
    return data if end is None else data[: end.start()]


def _te_unframeable(head: bytes) -> bool:
    """True when the Transfer-Encoding fields in this raw head (see :func:`_raw_head`) do not
    end in one ``chunked``."""
    codings = [
        coding.strip().lower()
        for match in _TE_FIELD_RE.finditer(_FOLD_RE.sub(b" ", head))
        for coding in match.group(1).split(b",")
    ]
    codings = [coding for coding in codings if coding]
    return not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1


# Response framing modes.
_LENGTH = 0
_CHUNKED = 1
_CLOSE_DELIMITED = 2
_NONE = 3


class H1Connection:
    """One HTTP/1.1 connection, request after request.

    The owner feeds bytes, pulls events, and writes whatever the response methods return. When a
    request and its response are both complete it calls :meth:`start_next_cycle` if
    :attr:`keep_alive` is still true, or closes the connection otherwise.
    """

    def __init__(
        self,
        parser,
        limits: Limits,
        *,
        date_header: bool = True,
        server_header: bytes | None = b"refserver",
        head_writer=write_head,
        rules=ResponseRules,
        view=from_h1_head,
    ):
        self._parser = parser
        self._limits = limits
        self._rules = rules(server_header, date_header)
        self._view = view  # the request view's builder (a component: the fast path's is compiled)
        self._write_head = head_writer
        self._head_buffer: bytes | bytearray = b""
        self._last_head: bytes | bytearray = b""
        # A first read this long cannot break the request-line or head limit (see below).
        self._within_limits = min(limits.request_line, limits.head)
        self._unscanned = False
        self._reset()

    def _reset(self) -> None:
        self.request: Request | None = None  # the view of the current request
        self.keep_alive = True
        self.te_trailers = False  # the client accepts a trailer section (TE: trailers)
        self.expect_continue = False
        self.sent_continue = False
        self.request_complete = False
        self.response_started = False
        self.response_complete = False
        self._awaiting_head = True
        self._checking_head = True  # the head limits apply to what is received
        self._line_checked = False  # the request line was complete and within its limit
        self.body_received = 0  # bytes of this request's body so far
        self._framing = _NONE
        self._remaining = 0
        self._head_only = False

    # ------------------------------------------------------------------ receiving

    @property
    def awaiting_head(self) -> bool:
        """True between requests, while the header-read deadline applies."""
        return self._awaiting_head

    @property
    def has_partial_head(self) -> bool:
        return self._awaiting_head and bool(self._head_buffer)

    def receive_data(self, data: bytes) -> None:
        if self._checking_head and data:
            self._check_head_limits(data)
        self._parser.feed(data)

    def receive_eof(self) -> None:
        self._parser.feed_eof()

    def _check_head_limits(self, data: bytes) -> None:
        """The request-line (414) and head (431) limits, checked on a head's bytes as they come.

        Incremental on purpose: a head trickled in one byte per read is scanned once in total,
        not once per read, so a slow client cannot make it quadratic. Leading empty lines are
        skipped (RFC 9112 2.2), as both parsers skip them.
        """
        buf = self._head_buffer
        if buf:
            # The end of the head may straddle two reads; bytes kept unscanned (below) are
            # scanned now, once.
            scan = 0 if self._unscanned else len(buf) - 2
            self._unscanned = False
            buf += data  # a bytearray, extended in place
        else:
            if data[0] in _EMPTY_LINE_BYTES:
                data = data.lstrip(b"\r\n")
                if not data:
                    return
            if len(data) <= self._within_limits:
                # The usual read: however its bytes divide into head and what follows, neither
                # limit can be broken, so they are not searched for the end of the head. The
                # head event resets this state; should more bytes come first, the search
                # starts at the beginning of these.
                self._line_checked = data.find(b"\n") >= 0
                self._head_buffer = self._last_head = data
                self._unscanned = True
                return
            self._unscanned = False
            scan = 0
            buf = data
        limits = self._limits
        if not self._line_checked:
            line_end = buf.find(b"\n", scan if scan > 0 else 0)
            if line_end < 0:
                if len(buf) - (buf[-1] == 13) > limits.request_line:  # a CR may end it next
                    raise URITooLong("request line is longer than %d bytes" % limits.request_line)
            else:
                if line_end - (buf[line_end - 1] == 13) > limits.request_line:
                    raise URITooLong("request line is longer than %d bytes" % limits.request_line)
                self._line_checked = True
        end = _HEAD_END_RE.search(buf, scan if scan > 0 else 0)
        if end is None:
            if len(buf) > limits.head:
                raise HeadersTooLarge("request head is larger than %d bytes" % limits.head)
            self._head_buffer = buf if type(buf) is bytearray else bytearray(buf)
        else:
            if end.end() > limits.head:  # the whole head, its blank line included
                raise HeadersTooLarge("request head is larger than %d bytes" % limits.head)
            self._head_buffer = b""
            self._checking_head = False  # the rest of these bytes is body or the next request
        self._last_head = buf

    def next_event(self):
        """The next event, NEED_DATA, PAUSED, or None when the peer closed its side."""
        try:
            event = self._parser.next_event()
        except NotImplementedByServer:
            # The parsers refuse every Transfer-Encoding but one "chunked" with 501. RFC 9112 6.3
            # makes it 400 when chunked is not the final coding or comes twice: then the body
            # length cannot be known at all; and with a Content-Length beside it, whatever the
            # codings (H1-FRAMING-6). 501 stays for an unknown coding before chunked.
            if self._awaiting_head:
                head = _raw_head(self._last_head)
                if _te_unframeable(head):
                    raise BadRequest("Transfer-Encoding does not end in a single chunked") from None
                if _CL_FIELD_RE.search(head):
                    raise BadRequest("both Content-Length and Transfer-Encoding") from None
            raise
        kind = type(event)
        if kind is Body:
            self.body_received += len(event.data)
            if self._limits.body and self.body_received > self._limits.body:
                raise ContentTooLarge("request body is larger than %d bytes" % self._limits.body)
        elif kind is RequestHead:
            self._on_head(event)
        elif kind is EndOfMessage:
            self.request_complete = True
        return event

    def _on_head(self, head: RequestHead) -> None:
        self._awaiting_head = False
        self._checking_head = False
        self._head_buffer = b""
        self._last_head = b""
        if head.http_version not in (b"1.1", b"1.0"):
            raise VersionNotSupported("HTTP/%s is not supported" % head.http_version.decode())
        if head.method not in _COMMON_METHODS and not _METHOD_RE.fullmatch(head.method):
            if TOKEN_RE.fullmatch(head.method):
                # A valid token in another case names a method no gateway can carry (methods are
                # case-sensitive, RFC 9110 9.1, and ASGI/RSGI promise upper case): not implemented.
                raise NotImplementedByServer("method %r is not implemented" % head.method.decode())
            raise BadRequest("method must be an upper-case token")
        headers = head.headers
        if len(headers) > self._limits.header_count:
            raise HeadersTooLarge("more than %d header fields" % self._limits.header_count)
        has_length = chunked = False
        options = []  # of the Connection fields
        for name, value in headers:
            if name == b"connection":
                options += field_tokens(value)
            elif name == b"expect" and head.http_version == b"1.1":
                self.expect_continue = value.lower() == b"100-continue"
            elif name == b"te":
                self.te_trailers = b"trailers" in field_tokens(value)
            elif name == b"content-length":
                has_length = True
                if self._limits.body and int(value) > self._limits.body:
                    raise ContentTooLarge(
                        "request body is larger than %d bytes" % self._limits.body
                    )
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"host" and value not in _CHECKED_HOSTS:
                if not HOST_RE.fullmatch(value):
                    raise BadRequest("invalid Host header")  # RFC 9112 3.2: MUST be 400
                remember(_CHECKED_HOSTS, value, None)
        if head.http_version == b"1.1":
            self.keep_alive = b"close" not in options
        else:
            self.keep_alive = b"keep-alive" in options and b"close" not in options
        if has_length and chunked:
            # RFC 9112 6.3: a sign of request smuggling, "ought to be handled as an error";
            # the parsers would silently pick one framing and the app would see the other.
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if chunked and head.http_version == b"1.0":
            # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        self._head_only = head.method == b"HEAD"
        self.request = self._view(head)

    def switching_protocols(self, headers: list) -> bytes:
        """A ``101 Switching Protocols`` head (RFC 9110 15.2.2) with the Server and Date fields
        every other response gets; after it the connection belongs to the new protocol.

        ``headers`` were built and checked by the new protocol (:mod:`refserver.wire.ws`).
        """
        if self.response_started:
            raise ResponseError("the response has already started")
        out = self._rules.stamp(headers)
        self.response_started = True
        self.response_complete = True
        self.keep_alive = False  # no further HTTP/1.1 request on this connection
        return self._write_head(101, REASONS[101], out)

    def trailing_data(self) -> bytes:
        """Bytes received after the current request that the parser has not consumed: after a
        protocol switch (WebSocket Upgrade), the first bytes of the new protocol."""
        return self._parser.buffered()

    def start_next_cycle(self) -> bool:
        """Forget the finished exchange; pipelined bytes already received are parsed next.
        True when there are any: with none, the next event can only come from new bytes."""
        self._parser.start_next_cycle()
        self._reset()
        pending = self._parser.buffered()
        if pending:
            self._check_head_limits(pending)
            return True
        return False

    # ------------------------------------------------------------------ sending

    def continue_response(self) -> bytes:
        """``100 Continue``, owed once the application starts reading an expected body."""
        self.sent_continue = True
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def informational(self, status: int, headers: list) -> bytes:
        """A 1xx head an application sends before its response (103 Early Hints); ``b""`` to
        an HTTP/1.0 client, which must not be sent one (RFC 9110 15.2)."""
        fields = check_informational(status, headers)
        if self.response_started or self.request is None or self.request.http_version != "1.1":
            return b""
        return self._write_head(status, REASONS.get(status, b""), fields)

    def response_trailers(self, headers: list) -> bytes:
        """The end of a response with a trailer section: in the last chunk when the response is
        chunked and the client sent ``TE: trailers``, else dropped (RFC 9110 6.5: a recipient that
        did not ask may discard them) and the response simply ends."""
        fields = check_trailers(headers)
        if self._framing != _CHUNKED or not self.te_trailers or self.response_complete:
            return self.response_end()
        self.response_complete = True
        return b"0\r\n" + b"".join(b"%s: %s\r\n" % field for field in fields) + b"\r\n"

    def response_head(self, status: int, headers: list, body: bytes = b"", end: bool = False):
        """The bytes of a response head, plus ``body``, plus the end of the message if ``end``:
        :meth:`response_start` in one piece."""
        head, rest = self.response_start(status, headers, body, end)
        return head + rest if rest else head

    def response_start(self, status: int, headers: list, body: bytes = b"", end: bool = False):
        """The response head, plus ``body``, plus the end of the message if ``end``, as two
        pieces to write in order: a body over :data:`JOIN_LIMIT` bytes comes apart from the head,
        so that it reaches the transport without being copied behind it.

        ``headers`` is a list of ``(name, value)`` bytes pairs as the application gave them. When the
        whole body is known (``end``) and no Content-Length was given, one is added; otherwise a
        body without Content-Length is chunked (HTTP/1.1) or delimited by closing (HTTP/1.0).
        """
        if self.response_started:
            raise ResponseError("the response has already started")
        out, content_length, close = self._rules.head(status, headers, body, end, self._head_only)
        if close:
            self.keep_alive = False
        if content_length >= 0:
            self._framing = _LENGTH
            self._remaining = content_length
        elif status in NO_BODY_STATUSES:
            self._framing = _NONE
        elif self.request is not None and self.request.http_version == "1.1":
            self._framing = _CHUNKED
            out.append((b"transfer-encoding", b"chunked"))
        elif not self._head_only:
            self._framing = _CLOSE_DELIMITED
            self.keep_alive = False
        # else: an HTTP/1.0 HEAD response has no body to delimit, so it need not close.

        if self.expect_continue and not self.sent_continue and not self.request_complete:
            # The client still waits to be told to send its body, and now never will be: the
            # connection cannot carry another request, and the client should know it now.
            self.keep_alive = False
        if not self.keep_alive:
            out.append((b"connection", b"close"))
        elif self.request is not None and self.request.http_version == "1.0":
            out.append((b"connection", b"keep-alive"))

        self.response_started = True
        if self._head_only or status in NO_BODY_STATUSES:
            self._framing = _NONE
        head = self._write_head(status, REASONS.get(status, b""), out)
        rest = self.response_body(body) if body else b""
        if end:
            rest += self.response_end()
        if len(rest) <= JOIN_LIMIT:
            return head + rest, b""
        return head, rest

    def response_body(self, data: bytes) -> bytes:
        if not self.response_started or self.response_complete:
            raise ResponseError("response body sent outside of a response")
        framing = self._framing
        if not data or framing == _NONE:
            return b""
        if framing == _CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data)
        if framing == _LENGTH:
            if len(data) > self._remaining:
                self.keep_alive = False
            self._remaining = count_body(self._remaining, len(data))
        return data

    def response_file(self, size: int):
        """Frame ``size`` body bytes that the caller writes itself, unframed (a file region the
        kernel copies to the socket): ``(before, after)``, the bytes to write around them, or
        None when this response carries no body. They count against the Content-Length as
        :meth:`response_body` counts."""
        if not self.response_started or self.response_complete:
            raise ResponseError("response body sent outside of a response")
        framing = self._framing
        if framing == _NONE:
            return None
        if not size:
            return (b"", b"")
        if framing == _CHUNKED:
            return (b"%x\r\n" % size, b"\r\n")
        if framing == _LENGTH:
            if size > self._remaining:
                self.keep_alive = False
            self._remaining = count_body(self._remaining, size)
        return (b"", b"")

    @property
    def response_close_delimited(self) -> bool:
        """A response is in progress whose end is the end of the connection: closing it normally
        would present what was sent as the whole body, however short."""
        return self._framing == _CLOSE_DELIMITED and not self.response_complete

    def response_end(self) -> bytes:
        if self.response_complete:
            return b""
        self.response_complete = True
        if self._framing == _CHUNKED:
            return b"0\r\n\r\n"
        if self._framing == _LENGTH and self._remaining:
            # The peer cannot find the end of this message: the connection must close.
            self.keep_alive = False
            check_complete(self._remaining)
        if self._framing == _CLOSE_DELIMITED:
            self.keep_alive = False
        return b""

    def error_response(self, status: int) -> bytes:
        """A complete response for a request we refuse; the connection closes after it."""
        self.keep_alive = False
        self.response_started = False
        body = REASONS.get(status, b"Error")
        return self.response_head(status, [TEXT_PLAIN], body, end=True)
