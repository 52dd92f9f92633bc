"""The rules of a response head that hold whatever protocol carries it.

HTTP/1.1 and HTTP/2 both call :class:`ResponseRules` with the status and fields an application
gave and then add only their own framing: HTTP/1.1 its Transfer-Encoding, Connection and reason
phrase, HTTP/2 its ``:status`` and frames. So a status range, the field grammar, Content-Length
accounting, the bodiless statuses and methods, connection-specific fields, Date and Server are
decided here once (spec/http1.md H1-RESPONSE-*, spec/http2.md H2-RESPONSE-*).

The fast path runs a compiled copy of this module (``refserver.wire._compiled_response``, chosen
in :mod:`refserver.impl`), as it does the HTTP/1.1 core.
"""

from __future__ import annotations

from . import dates
from .events import ResponseError
from .fields import check_field, field_tokens, remember

#: Statuses whose responses never have a body (RFC 9110 15.3.5, 15.4.5).
NO_BODY_STATUSES = frozenset((204, 304))

#: Fields that describe one connection rather than the message, which the server sets or drops:
#: over HTTP/1.1 the framing is the server's (ASGI, RSGI) and ``Connection: close`` becomes a
#: decision to close; HTTP/2 forbids all of these in a message (RFC 9113 8.2.2).
H1_CONNECTION_FIELDS = frozenset((b"transfer-encoding", b"connection"))
H2_CONNECTION_FIELDS = frozenset(
    (b"transfer-encoding", b"connection", b"keep-alive", b"proxy-connection", b"upgrade")
)

#: The type of the short bodies the server writes itself (errors, refusals).
TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")

#: Response fields that passed the name and value checks, with their lower-case names.
_CHECKED_FIELDS: dict = {}


def parse_content_length(value: bytes) -> int:
    """The length a Content-Length value states, or -1 when it is not one: ASCII digits, with
    optional whitespace around them. (``bytes.isdigit`` is ASCII-only, unlike ``str.isdigit``.)"""
    digits = value.strip()
    return int(digits) if digits.isdigit() else -1


class ResponseRules:
    """The shared part of every response head, configured once per server and protocol."""

    def __init__(
        self,
        server_header: bytes | None = b"refserver",
        date_header: bool = True,
        connection_fields: frozenset = H1_CONNECTION_FIELDS,
    ):
        self.server_header = server_header
        self.date_header = date_header
        self.connection_fields = connection_fields

    def head(self, status, headers, body: bytes, end: bool, head_only: bool):
        """``(fields, content_length, close)`` for a response about to start.

        ``fields`` are the application's, checked, minus the connection fields, with a
        Content-Length when the whole body is known (``end``) and none was given, and the Server
        and Date fields unless the application gave its own. ``content_length`` is what the body
        must add up to (-1: unknown, the protocol frames it). ``close`` is true when the
        application asked for ``Connection: close``. Raises :class:`ResponseError` for a status
        or field no protocol can carry, and for a whole body that contradicts its length.
        """
        if type(status) is not int or not 200 <= status <= 999:
            raise ResponseError("invalid response status %r" % (status,), "status")
        out = []
        content_length = -1
        close = False
        has_date = has_server = False
        checked = _CHECKED_FIELDS
        connection_fields = self.connection_fields
        for field in headers:
            name, value = field
            # Only (bytes, bytes) tuples are hashable by value; anything else is checked each time.
            cacheable = type(field) is tuple and type(name) is bytes and type(value) is bytes
            lname = checked.get(field) if cacheable else None
            if lname is None:
                lname = check_field(name, value)
                if cacheable:
                    remember(checked, field, lname)
            if lname == b"content-length":
                length = parse_content_length(value)
                if length < 0 or (content_length >= 0 and content_length != length):
                    raise ResponseError("invalid Content-Length %r" % (value,), "header")
                content_length = length
            elif lname in connection_fields:
                if lname == b"connection" and b"close" in field_tokens(value):
                    close = True
                continue
            elif lname == b"date":
                has_date = True
            elif lname == b"server":
                has_server = True
            out.append(field if cacheable else (name, value))

        if content_length >= 0:
            if status == 204:
                # RFC 9110 8.6: never a Content-Length on a 204.
                out = [(n, v) for n, v in out if n.lower() != b"content-length"]
                content_length = -1
            elif end and not head_only and status != 304 and len(body) != content_length:
                # The whole response is known and wrong: refuse it before a byte is written, so
                # the caller can still answer 500 instead.
                raise ResponseError(
                    "response body is %d bytes but its Content-Length is %d"
                    % (len(body), content_length),
                    "length",
                )
        elif end and status not in NO_BODY_STATUSES:
            content_length = len(body)
            if not head_only or body:
                out.append((b"content-length", b"%d" % len(body)))
        if self.server_header and not has_server:
            out.append((b"server", self.server_header))
        if self.date_header and not has_date:
            out.append(dates.DATES.field())
        return out, content_length, close

    def stamp(self, fields: list) -> list:
        """``fields`` plus the Server and Date fields every response carries: for the heads the
        server writes itself (``101 Switching Protocols``)."""
        out = list(fields)
        if self.server_header:
            out.append((b"server", self.server_header))
        if self.date_header:
            out.append(dates.DATES.field())
        return out


#: Fields a trailer section may not carry: they frame, route or authenticate the message, and a
#: recipient must have them before the body (RFC 9110 6.5.1).
_NOT_IN_TRAILERS = frozenset(
    (
        b"content-length",
        b"transfer-encoding",
        b"content-type",
        b"content-encoding",
        b"content-range",
        b"host",
        b"authorization",
        b"set-cookie",
        b"trailer",
        b"te",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"upgrade",
        b"cache-control",
        b"expect",
        b"max-forwards",
        b"pragma",
        b"range",
        b"www-authenticate",
        b"proxy-authenticate",
        b"age",
        b"expires",
        b"date",
        b"location",
        b"retry-after",
        b"vary",
        b"warning",
    )
)


def check_trailers(headers) -> list:
    """The fields of a trailer section, checked: the field grammar, and none of the fields that
    must come before the body (:data:`_NOT_IN_TRAILERS`). Names lower-cased."""
    out = []
    for name, value in headers:
        lname = check_field(name, value)
        if lname in _NOT_IN_TRAILERS:
            raise ResponseError("%r is not allowed in a trailer section" % (name,), "header")
        out.append((lname, value))
    return out


def check_informational(status, headers) -> list:
    """The fields of a 1xx response an application may send (103 Early Hints): the status must
    be informational and neither 100 (the server's, for Expect) nor 101 (a protocol switch)."""
    if type(status) is not int or not 102 <= status <= 199:
        raise ResponseError("invalid informational status %r" % (status,), "status")
    return [(check_field(name, value), value) for name, value in headers]


def count_body(remaining: int, size: int) -> int:
    """What is left of a Content-Length once ``size`` more bytes are sent; a :class:`ResponseError`
    for bytes beyond it."""
    if size > remaining:
        raise ResponseError(
            "response body is longer than its Content-Length (%d bytes too many)"
            % (size - remaining),
            "length",
        )
    return remaining - size


def check_complete(remaining: int) -> None:
    """A :class:`ResponseError` for a response that ends before its Content-Length is reached."""
    if remaining:
        raise ResponseError(
            "response ended %d bytes short of its Content-Length" % remaining, "length"
        )
