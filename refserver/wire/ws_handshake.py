"""The WebSocket opening handshake, sans-IO: over HTTP/1.1 (RFC 6455 4) and HTTP/2 (RFC 8441).

Whether a handshake is valid (400, or 426 for an unknown version, RFC 6455 4.2.1/4.4), which
subprotocol and extensions are agreed, and the fields of the answer. Whether an HTTP/1.1 request
asks for a WebSocket at all is :func:`refserver.wire.fields.is_upgrade`; the frames that follow
are :mod:`refserver.wire.ws`'s, the same on both protocols.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from .events import HTTPError, ResponseError
from .fields import TOKEN_STR_RE, check_field

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSION = b"13"

_WINDOW_BITS_RE = re.compile(r"[89]|1[0-5]")

#: Response header names the handshake owns; an application may not set them itself.
_RESERVED_ACCEPT_HEADERS = frozenset(
    (
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"content-length",
        b"transfer-encoding",
    )
)


class HandshakeError(HTTPError):
    """A request that asks for a WebSocket but is not a valid opening handshake (RFC 6455 4.2.1:
    400). ``headers`` go into the error response."""

    status = 400
    headers: tuple = ()


class VersionNotSupported(HandshakeError):
    """RFC 6455 4.4: an unknown ``Sec-WebSocket-Version`` is answered 426 with the versions the
    server speaks, so a client can retry with one of them."""

    status = 426
    headers = ((b"sec-websocket-version", SUPPORTED_VERSION),)


class Handshake:
    """What a valid opening handshake asked for."""

    __slots__ = ("extensions", "key", "subprotocols")

    def __init__(self, key: bytes | None, subprotocols: list, extensions: list):
        self.key = key  # None over HTTP/2 (RFC 8441), which has no key
        self.subprotocols = subprotocols  # offered, in the client's order (str)
        self.extensions = extensions  # [(name, [(param, value or None), ...]), ...]


def parse_handshake(request) -> Handshake:
    """Check an opening handshake (a :class:`refserver.wire.request.Request`) and raise
    :class:`HandshakeError` if it fails: an HTTP/1.1 Upgrade against RFC 6455 4.2.1, an HTTP/2
    extended CONNECT (``:protocol websocket``) against RFC 8441 4 and 5, which has no key.

    A body is refused too: the handshake has none, and bytes after the head are WebSocket frames,
    so a request that announced a body would make its body and the first frames ambiguous.
    """
    headers = request.headers
    over_h2 = request.http_version == "2"
    if over_h2:
        if request.method != "CONNECT":
            raise HandshakeError("a WebSocket over HTTP/2 is an extended CONNECT request")
    elif request.method != "GET":
        raise HandshakeError("a WebSocket handshake must be a GET request")
    elif request.http_version != "1.1":
        raise HandshakeError("a WebSocket handshake needs HTTP/1.1")
    keys = [v for n, v in headers if n == b"sec-websocket-key"]
    versions = [v.strip() for n, v in headers if n == b"sec-websocket-version"]
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            raise HandshakeError("a WebSocket handshake has no body")
    if len(versions) != 1 or versions[0] != SUPPORTED_VERSION:
        raise VersionNotSupported("unsupported Sec-WebSocket-Version (13 is supported)")
    if over_h2:
        key = None  # RFC 8441 5: no Sec-WebSocket-Key and no Sec-WebSocket-Accept
    else:
        if len(keys) != 1:
            raise HandshakeError("a WebSocket handshake needs one Sec-WebSocket-Key")
        key = keys[0].strip()
        try:
            nonce = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            nonce = b""
        if len(nonce) != 16:
            raise HandshakeError("Sec-WebSocket-Key is not a base64-encoded 16-byte nonce")
    subprotocols = [
        t.decode("latin-1")
        for t in (
            p.strip() for n, v in headers if n == b"sec-websocket-protocol" for p in v.split(b",")
        )
        if t
    ]
    offers = []
    for name, value in headers:
        if name == b"sec-websocket-extensions":
            offers.extend(parse_extensions(value.decode("latin-1")))
    return Handshake(key, subprotocols, offers)


def accept_token(key: bytes) -> bytes:
    """RFC 6455 4.2.2: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def parse_extensions(text: str) -> list:
    """``Sec-WebSocket-Extensions`` (RFC 6455 9.1) as ``[(name, [(param, value), ...]), ...]``.

    Values may be quoted strings (RFC 7692 7.1 allows ``client_max_window_bits="10"``); they are
    unquoted here. An element that does not parse is dropped: an offer the server cannot read is an
    offer it declines, which is never an error.
    """
    out = []
    for element in _split_outside_quotes(text, ","):
        parts = _split_outside_quotes(element, ";")
        name = parts[0].strip()
        if not TOKEN_STR_RE.fullmatch(name):
            continue
        params = []
        valid = True
        for part in parts[1:]:
            pname, eq, pvalue = part.partition("=")
            pname = pname.strip()
            if not TOKEN_STR_RE.fullmatch(pname):
                valid = False
                break
            if eq:
                pvalue = pvalue.strip()
                if len(pvalue) >= 2 and pvalue[0] == '"' and pvalue[-1] == '"':
                    pvalue = pvalue[1:-1]
                if not TOKEN_STR_RE.fullmatch(pvalue):
                    valid = False
                    break
                params.append((pname.lower(), pvalue))
            else:
                params.append((pname.lower(), None))
        if valid:
            out.append((name.lower(), params))
    return out


def _split_outside_quotes(text: str, sep: str) -> list:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


class DeflateParams:
    """The permessage-deflate parameters agreed with one client (RFC 7692 7.1)."""

    __slots__ = ("response", "server_max_window_bits", "server_no_context_takeover")

    def __init__(
        self, server_no_context_takeover: bool, server_max_window_bits: int, response: str
    ):
        self.server_no_context_takeover = server_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.response = response  # the Sec-WebSocket-Extensions value that accepts it


def negotiate_deflate(offers: list) -> DeflateParams | None:
    """Accept the first permessage-deflate offer whose parameters are valid (RFC 7692 5 and 7.1).

    - ``server_no_context_takeover`` and ``server_max_window_bits=N`` are honoured and echoed.
    - ``client_max_window_bits`` is accepted and not answered: the server inflates with the largest
      window (15), which reads anything a smaller window produced, so the client keeps its choice.
    - ``client_no_context_takeover`` is echoed (the client offered it; the server inflates either
      way).
    - An offer with an unknown, repeated or out-of-range parameter is declined, and the next one
      is tried (RFC 7692 5: declining is the answer to an offer the server cannot accept).
    """
    for name, params in offers:
        if name != "permessage-deflate":
            continue
        seen = set()
        server_nct = client_nct = False
        server_bits = None
        valid = True
        for pname, pvalue in params:
            if pname in seen:
                valid = False
                break
            seen.add(pname)
            if pname in ("server_no_context_takeover", "client_no_context_takeover"):
                if pvalue is not None:
                    valid = False
                    break
                if pname == "server_no_context_takeover":
                    server_nct = True
                else:
                    client_nct = True
            elif pname == "server_max_window_bits":
                if pvalue is None or not _WINDOW_BITS_RE.fullmatch(pvalue):
                    valid = False
                    break
                server_bits = int(pvalue)
            elif pname == "client_max_window_bits":
                if pvalue is not None and not _WINDOW_BITS_RE.fullmatch(pvalue):
                    valid = False
                    break
            else:
                valid = False
                break
        if not valid:
            continue
        response = ["permessage-deflate"]
        if server_nct:
            response.append("server_no_context_takeover")
        if client_nct:
            response.append("client_no_context_takeover")
        if server_bits is not None:
            response.append(f"server_max_window_bits={server_bits}")
        return DeflateParams(server_nct, server_bits or 15, "; ".join(response))
    return None


def check_subprotocol(handshake: Handshake, subprotocol) -> None:
    if subprotocol is None:
        return
    if not isinstance(subprotocol, str) or not TOKEN_STR_RE.fullmatch(subprotocol):
        raise ResponseError(f"subprotocol must be a token string, got {subprotocol!r}")
    if subprotocol not in handshake.subprotocols:
        # RFC 6455 4.1: a client fails the connection when the server picks one it did not offer.
        raise ResponseError(
            f"subprotocol {subprotocol!r} was not offered by the client "
            f"(offered: {', '.join(handshake.subprotocols) or 'none'})"
        )


def accept_headers(
    handshake: Handshake,
    subprotocol=None,
    extra_headers=(),
    deflate: DeflateParams | None = None,
) -> list:
    """The header fields that accept the handshake: of the ``101 Switching Protocols`` response
    over HTTP/1.1, of the ``200`` over HTTP/2, which has no Upgrade, Connection or
    Sec-WebSocket-Accept (RFC 8441 5). Without Server and Date, which the connection adds as it
    does on every response.

    ``extra_headers`` are the application's ``(bytes, bytes)`` pairs, checked like any response
    field; the fields the handshake itself owns are refused, since a second ``Upgrade`` or
    ``Sec-WebSocket-Protocol`` would make the response ambiguous to the client.
    """
    check_subprotocol(handshake, subprotocol)
    if handshake.key is None:
        headers = []
    else:
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_token(handshake.key)),
        ]
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
    if deflate is not None:
        headers.append((b"sec-websocket-extensions", deflate.response.encode("ascii")))
    for name, value in extra_headers:
        if check_field(name, value) in _RESERVED_ACCEPT_HEADERS:
            raise ResponseError(
                f"the handshake sets {name.decode('latin-1')!r} itself; an application may not"
            )
        headers.append((name, value))
    return headers
