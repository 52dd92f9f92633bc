"""HTTP/1.1 connection core: request limits, keep-alive, response framing.

Sans-IO: bytes go in through :meth:`H1Connection.receive_data`, events come out of
:meth:`H1Connection.next_event`, and the response methods return the bytes to write. The request
parser is a component (h11 on the reference path, httptools on the fast path) and so is the
response-head writer; every rule that decides *what* is sent lives here, once, for both.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from .events import (
    NEED_DATA,
    PAUSED,
    BadRequest,
    Body,
    ContentTooLarge,
    EndOfMessage,
    HeadersTooLarge,
    RequestHead,
    ResponseError,
    URITooLong,
    VersionNotSupported,
)

_METHOD_RE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Z]+")
_TOKEN_RE = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_BAD_VALUE_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS_RE = re.compile(rb"[0-9]+")

_NO_BODY_STATUSES = frozenset((204, 304))
REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


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


class DateCache:
    """The ``Date`` header value, formatted at most once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self):
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


DATES = DateCache()


def write_head(status: int, reason: bytes, headers: list) -> bytes:
    """Serialise a status line and header block; the reference response-head writer.

    Names and values were validated by the caller; this only joins them.
    """
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    for name, value in headers:
        parts.append(b"%s: %s\r\n" % (name, value))
    parts.append(b"\r\n")
    return b"".join(parts)


def connection_tokens(headers: list) -> set:
    tokens = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


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
    ):
        self._parser = parser
        self._limits = limits
        self._date_header = date_header
        self._server_header = server_header
        self._write_head = head_writer
        self._head_buffer = b""
        self._reset()

    def _reset(self) -> None:
        self.request: RequestHead | None = None
        self.keep_alive = True
        self.expect_continue = False
        self.sent_continue = False
        self.request_complete = False
        self.response_started = False
        self.response_complete = False
        self._awaiting_head = True
        self._body_received = 0
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
        if self._awaiting_head and data:
            self._check_head_limits(data)
        self._parser.feed(data)

    def receive_eof(self) -> None:
        self._parser.feed_eof()

    def _check_head_limits(self, data: bytes) -> None:
        buf = self._head_buffer + data if self._head_buffer else data
        limits = self._limits
        # Leading empty lines before a request line are allowed (RFC 9112 2.2).
        start = 0
        while buf.startswith(b"\r\n", start) or buf.startswith(b"\n", start):
            start += 2 if buf[start] == 13 else 1
        line_end = buf.find(b"\n", start)
        if (line_end < 0 and len(buf) - start > limits.request_line) or (
            line_end - start > limits.request_line + 1
        ):
            raise URITooLong("request line is longer than %d bytes" % limits.request_line)
        head_end = buf.find(b"\r\n\r\n", start)
        if (head_end < 0 and len(buf) - start > limits.head) or head_end - start > limits.head:
            raise HeadersTooLarge("request head is larger than %d bytes" % limits.head)
        self._head_buffer = buf if head_end < 0 else b""

    def next_event(self):
        """The next event, NEED_DATA, PAUSED, or None when the peer closed its side."""
        event = self._parser.next_event()
        kind = type(event)
        if kind is Body:
            self._body_received += len(event.data)
            if self._limits.body and self._body_received > self._limits.body:
                raise ContentTooLarge("request body is larger than %d bytes" % self._limits.body)
        elif kind is RequestHead:
            self._on_head(event)
        elif kind is EndOfMessage:
            self.request_complete = True
        return event

    def _on_head(self, head: RequestHead) -> None:
        self._awaiting_head = False
        self._head_buffer = b""
        if head.http_version not in (b"1.1", b"1.0"):
            raise VersionNotSupported("HTTP/%s is not supported" % head.http_version.decode())
        if not _METHOD_RE.fullmatch(head.method):
            raise BadRequest("method must be an upper-case token")
        headers = head.headers
        if len(headers) > self._limits.header_count:
            raise HeadersTooLarge("more than %d header fields" % self._limits.header_count)
        tokens = connection_tokens(headers)
        if head.http_version == b"1.1":
            self.keep_alive = b"close" not in tokens
        else:
            self.keep_alive = b"keep-alive" in tokens and b"close" not in tokens
        for name, value in headers:
            if name == b"expect" and head.http_version == b"1.1":
                self.expect_continue = value.lower() == b"100-continue"
            elif name == b"content-length" and self._limits.body:
                if int(value) > self._limits.body:
                    raise ContentTooLarge(
                        "request body is larger than %d bytes" % self._limits.body
                    )
        self._head_only = head.method == b"HEAD"
        self.request = head

    def start_next_cycle(self) -> None:
        """Forget the finished exchange; pipelined bytes already received are parsed next."""
        self._parser.start_next_cycle()
        self._reset()
        pending = self._parser.buffered()
        if pending:
            self._check_head_limits(pending)

    # ------------------------------------------------------------------ sending

    def continue_response(self) -> bytes:
        """``100 Continue``, owed once the application starts reading an expected body."""
        self.sent_continue = True
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def response_head(self, status: int, headers: list, body: bytes = b"", end: bool = False):
        """The bytes of a response head, plus ``body``, plus the end of the message if ``end``.

        ``headers`` is a list of ``(name, value)`` bytes pairs as the application gave them. When the
        whole body is known (``end``) and no Content-Length was given, one is added; otherwise a
        body without Content-Length is chunked (HTTP/1.1) or delimited by closing (HTTP/1.0).
        """
        if self.response_started:
            raise ResponseError("the response has already started")
        if type(status) is not int or not 200 <= status <= 999:
            raise ResponseError("invalid response status %r" % (status,))
        out = []
        content_length = None
        has_date = has_server = False
        for name, value in headers:
            if not _TOKEN_RE.fullmatch(name):
                raise ResponseError("invalid response header name %r" % (name,))
            if _BAD_VALUE_RE.search(value):
                raise ResponseError("invalid response header value %r" % (value,))
            lname = name.lower()
            if lname == b"content-length":
                if not _DIGITS_RE.fullmatch(value.strip()) or (
                    content_length is not None and content_length != int(value)
                ):
                    raise ResponseError("invalid Content-Length %r" % (value,))
                content_length = int(value)
            elif lname == b"transfer-encoding":
                continue  # framing is the server's job (ASGI, RSGI)
            elif lname == b"connection":
                if b"close" in (t.strip().lower() for t in value.split(b",")):
                    self.keep_alive = False
                continue
            elif lname == b"date":
                has_date = True
            elif lname == b"server":
                has_server = True
            out.append((name, value))

        no_body = self._head_only or status in _NO_BODY_STATUSES or status < 200
        if content_length is not None:
            self._framing = _LENGTH
            self._remaining = content_length
        elif status in _NO_BODY_STATUSES:
            self._framing = _NONE
        elif end:
            self._framing = _LENGTH
            self._remaining = len(body)
            if not self._head_only or body:
                out.append((b"content-length", b"%d" % len(body)))
        elif self.request is not None and self.request.http_version == b"1.1":
            self._framing = _CHUNKED
            out.append((b"transfer-encoding", b"chunked"))
        else:
            self._framing = _CLOSE_DELIMITED
            self.keep_alive = False

        if self._server_header and not has_server:
            out.append((b"server", self._server_header))
        if self._date_header and not has_date:
            out.append((b"date", DATES.value()))
        if not self.keep_alive:
            out.append((b"connection", b"close"))
        elif self.request is not None and self.request.http_version == b"1.0":
            out.append((b"connection", b"keep-alive"))

        self.response_started = True
        if no_body:
            self._framing = _NONE
        data = self._write_head(status, REASONS.get(status, b""), out)
        if body:
            data += self.response_body(body)
        if end:
            data += self.response_end()
        return data

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
                raise ResponseError(
                    "response body is longer than its Content-Length (%d bytes too many)"
                    % (len(data) - self._remaining)
                )
            self._remaining -= len(data)
        return data

    def response_end(self) -> bytes:
        if self.response_complete:
            return b""
        self.response_complete = True
        if self._framing == _CHUNKED:
            return b"0\r\n\r\n"
        if self._framing == _LENGTH and self._remaining:
            # The peer cannot find the end of this message: the connection must close.
            self.keep_alive = False
            raise ResponseError(
                "response ended %d bytes short of its Content-Length" % self._remaining
            )
        if self._framing == _CLOSE_DELIMITED:
            self.keep_alive = False
        if not self.request_complete and self.expect_continue and not self.sent_continue:
            # The client is still waiting to be told to send its body.
            self.keep_alive = False
        return b""

    def error_response(self, status: int) -> bytes:
        """A complete response for a request we refuse; the connection closes after it."""
        self.keep_alive = False
        self.response_started = False
        body = REASONS.get(status, b"Error")
        return self.response_head(
            status, [(b"content-type", b"text/plain; charset=utf-8")], body, end=True
        )
