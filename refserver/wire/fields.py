"""The HTTP field grammar (RFC 9110 5.1, 5.5), once, for every protocol and gateway.

Each pattern exists for bytes (the wire) and for str (WSGI and RSGI hand the server native
strings), compiled from the same source text so the two can never drift apart.
"""

import re

from .events import ResponseError

_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
# Field values may hold HTAB, SP, visible ASCII and obs-text; never CR, LF, NUL or other controls.
_BAD_VALUE = r"[\x00-\x08\x0a-\x1f\x7f]"

TOKEN_RE = re.compile(_TOKEN.encode("ascii"))
BAD_VALUE_RE = re.compile(_BAD_VALUE.encode("ascii"))
TOKEN_STR_RE = re.compile(_TOKEN)
BAD_VALUE_STR_RE = re.compile(_BAD_VALUE)


def check_field(name: bytes, value: bytes) -> bytes:
    """The lower-case name of a valid response field; ResponseError for an invalid one. Every
    response head is checked here, HTTP/1.1 responses and WebSocket handshakes alike."""
    if not TOKEN_RE.fullmatch(name):
        raise ResponseError("invalid response header name %r" % (name,), "header")
    if BAD_VALUE_RE.search(value):
        raise ResponseError("invalid response header value %r" % (value,), "header")
    return name.lower()
