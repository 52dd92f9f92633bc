"""The HTTP field grammar (RFC 9110 5.1, 5.5), once, for every protocol and gateway.

Each pattern exists for bytes (the wire) and for str (WSGI and RSGI hand the server native
strings), compiled from the same source text so the two can never drift apart.
"""

import re

from .events import BadRequest, ResponseError

_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
# Field values may hold HTAB, SP, visible ASCII and obs-text; never CR, LF, NUL or other controls.
# The same rule for requests and responses: RFC 9110 5.5 lets a recipient keep controls other than
# CR, LF and NUL only "within a safe context", which a server handing values to any application
# cannot know it is in.
_BAD_VALUE = r"[\x00-\x08\x0a-\x1f\x7f]"

TOKEN_RE = re.compile(_TOKEN.encode("ascii"))
#: A LF that does not end a CRLF. RFC 9112 2.2 lets a recipient accept it as a line end; refserver
#: does not (spec/http1.md H1-HEADER-4).
BARE_LF_RE = re.compile(rb"(?<!\r)\n")
BAD_VALUE_RE = re.compile(_BAD_VALUE.encode("ascii"))
TOKEN_STR_RE = re.compile(_TOKEN)
BAD_VALUE_STR_RE = re.compile(_BAD_VALUE)

#: The most entries a table of values checked once may hold: response fields and Host values
#: (wire), WSGI status lines and header items, RSGI header items, environ keys. Applications and
#: clients send the same few values over and over, so each is checked (or converted) once and
#: remembered; the bound keeps values that change per request (ETags, cookies, invented header
#: names) from growing a table forever.
CHECKED_TABLE_MAX = 2048


def remember(table: dict, key, value):
    """``table[key] = value`` while the table holds fewer than :data:`CHECKED_TABLE_MAX`
    entries; returns ``value``. The one way a table of values checked once grows."""
    if len(table) < CHECKED_TABLE_MAX:
        table[key] = value
    return value


_FIELD_LINE_RE = re.compile(rb"(%s):[ \t]*(.*?)[ \t]*" % _TOKEN.encode("ascii"), re.DOTALL)


def parse_field_lines(block: bytes) -> list:
    """The ``(lower-case name, value)`` fields of a block of field lines, up to its first empty
    line: the request head's grammar (RFC 9112 5), for the fields no parser library reads.

    A line ends with CRLF; a line that starts with SP or HTAB continues the previous one and is
    joined to it with one SP (obs-fold, RFC 9112 5.2). Each line is ``token ":" OWS value OWS``
    with a value free of controls other than HTAB (a bare CR or LF is one); anything else is 400.
    """
    lines: list = []
    for line in block.split(b"\r\n"):
        if not line:
            break
        if line[0] in b" \t":
            if not lines:
                raise BadRequest("continuation line at start of the field section")
            lines[-1] += b" " + line.lstrip(b" \t")
        else:
            lines.append(line)
    fields = []
    for line in lines:
        match = _FIELD_LINE_RE.fullmatch(line)
        if match is None or BAD_VALUE_RE.search(match.group(2)):
            raise BadRequest("illegal field line: %r" % (line[:64],))
        fields.append((match.group(1).lower(), match.group(2)))
    return fields


def check_request_values(headers: list) -> None:
    """400 for a request field value with a control character that its parser let through."""
    for _, value in headers:
        if BAD_VALUE_RE.search(value):
            raise BadRequest("illegal header value: %r" % (value[:64],))


def field_tokens(value: bytes) -> list:
    """The lower-cased members of a comma-separated field value (RFC 9110 5.6.1), such as
    Connection or Upgrade."""
    return [token.strip().lower() for token in value.split(b",")]


def header_tokens(headers: list, name: bytes) -> list:
    """The members of every ``name`` field in ``headers``: a list field may be sent as several
    fields, and they mean one comma-joined value (RFC 9110 5.3)."""
    out = []
    for field, value in headers:
        if field == name:
            out.extend(field_tokens(value))
    return out


def upgrade_tokens(headers: list):
    """The protocols a request asks to switch to: the members of its Upgrade field, when its
    Connection field names ``upgrade`` (RFC 9110 7.8: an Upgrade field without it means nothing);
    else an empty tuple. A request that asks for ``websocket`` is then either a valid handshake or
    refused with 400/426; one that asks for ``h2c`` is switched to HTTP/2 or served as it is.

    Here rather than beside the WebSocket or HTTP/2 code because every request asks it: the
    HTTP/1.1 protocol must not import those stacks (wsproto, hashlib, h2) to find out.
    """
    for name, _ in headers:
        if name == b"upgrade":
            break
    else:
        return ()  # the common case, decided in one pass with no allocation
    if b"upgrade" not in header_tokens(headers, b"connection"):
        return ()
    return header_tokens(headers, b"upgrade")


def is_upgrade(headers: list) -> bool:
    """True for a request that asks to switch to WebSocket (see :func:`upgrade_tokens`)."""
    return b"websocket" in upgrade_tokens(headers)


def check_field(name: bytes, value: bytes) -> bytes:
    """The lower-case name of a valid response field; ResponseError for an invalid one. Every
    response head is checked here, HTTP/1.1 responses and WebSocket handshakes alike."""
    if not TOKEN_RE.fullmatch(name):
        raise ResponseError("invalid response header name %r" % (name,), "header")
    if BAD_VALUE_RE.search(value):
        raise ResponseError("invalid response header value %r" % (value,), "header")
    return name.lower()
