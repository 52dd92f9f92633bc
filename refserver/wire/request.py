"""The request as every gateway sees it, whichever protocol carried it.

An HTTP/1.1 request target, an HTTP/2 ``:path`` and the handshake of a WebSocket (over either) all
become one :class:`Request`, built once by the wire core that parsed it. The rule for the host is
decided here too: an authority carried outside the header block (an absolute-form target in
HTTP/1.1, ``:authority`` in HTTP/2) replaces any ``Host`` field (RFC 9112 3.2.2, RFC 9113 8.3.1),
so the ``host`` header, the RSGI ``authority`` and the WSGI ``HTTP_HOST`` always agree.
"""

from __future__ import annotations

import re

from .events import BadRequest, NotImplementedByServer

# RFC 9112 3.2 / RFC 3986: uri-host [ ":" port ], uri-host an IP-literal or a reg-name.
HOST_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[-._~!$&'()*+,;=%0-9A-Za-z]*)(?::[0-9]*)?")
_ABSOLUTE_RE = re.compile(rb"(?i:https?)://([^/?#]*)")
# The str forms of the usual methods and versions, decoded once (others are decoded per request).
_NAMES = {
    name: name.decode("ascii")
    for name in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"1.1", b"1.0")
}


class Request:
    """What a request says about itself: method, target, version, fields.

    ``raw_path`` is still percent-encoded and has no query; ``headers`` keep the order and
    duplicates of the wire, names lower-case. ``authority`` is the authority the protocol carried
    apart from the fields (see the module docstring), else ``None``.
    """

    def __init__(
        self,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        http_version: str,
        headers: list,
        authority: str | None = None,
    ):
        self.method = method
        self.raw_path = raw_path
        self.query_string = query_string
        self.http_version = http_version
        self.headers = headers
        self.authority = authority

    def __repr__(self) -> str:
        return "Request(%r, %r, %r, %r)" % (
            self.method,
            self.raw_path,
            self.query_string,
            self.http_version,
        )


def from_h1_head(head):
    """The view of a parsed HTTP/1.1 head (a :class:`refserver.wire.events.RequestHead`).

    CONNECT is 501 (refserver does not tunnel). ``*`` is passed on with any method (only OPTIONS
    gives it a meaning, but extension methods such as M-SEARCH use it too). An absolute-form
    target's authority replaces the Host header (RFC 9112 3.2.2: the origin server MUST ignore
    Host then), so every interface shows the application the same host.
    """
    method = head.method
    if method == b"CONNECT":
        raise NotImplementedByServer("CONNECT is not supported")
    raw_path, query, authority = split_target(head.target)
    headers = head.headers
    if authority is not None:
        headers = with_host(headers, authority)
        authority = authority.decode("latin-1")
    version = head.http_version
    return Request(
        _NAMES.get(method) or method.decode("ascii"),
        raw_path,
        query,
        _NAMES.get(version) or version.decode("ascii"),
        headers,
        authority,
    )


def split_target(target: bytes):
    """``(raw_path, query_string, authority)`` of an HTTP/1.1 request target (RFC 9112 3.2).

    Origin-form and ``*`` pass as they are; an absolute-form target must be http(s) with a valid
    authority, which is returned as bytes (``None`` otherwise). Any other form (authority-form
    belongs to CONNECT, which is refused before this) is a :class:`BadRequest`.
    """
    authority = None
    if target[:1] != b"/":
        if target == b"*":
            return b"*", b"", None
        match = _ABSOLUTE_RE.match(target)
        if match is None:
            raise BadRequest("request target must be origin-form or an http(s) absolute-form")
        authority = match.group(1)
        if not authority or not HOST_RE.fullmatch(authority):
            raise BadRequest("invalid authority in the request target")
        target = target[match.end() :]
        if target[:1] != b"/":
            target = b"/" + target
    path, _, query = target.partition(b"?")
    return path, query, authority


def with_host(headers: list, authority: bytes) -> list:
    """``headers`` with ``authority`` as the one ``host`` field: it replaces every Host value,
    and is added first where none was sent (HTTP/1.0, HTTP/2), where ASGI puts it."""
    if all(n != b"host" for n, _ in headers):
        return [(b"host", authority), *headers]
    return [(n, authority if n == b"host" else v) for n, v in headers]
