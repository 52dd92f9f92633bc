"""Which protocol a connection speaks, decided in one place.

``--http 1`` serves HTTP/1.1 only and ``--http 2`` HTTP/2 only. ``--http auto`` (the default)
follows the client: over TLS, the protocol agreed by ALPN (h2, else HTTP/1.1); in cleartext,
HTTP/1.1 until the client shows otherwise, either by opening with the HTTP/2 connection preface
(prior knowledge, RFC 9113 3.3) or by asking for ``Upgrade: h2c`` (RFC 7540 3.2; deprecated by
RFC 9113 but still sent by some clients). The HTTP/1.1 protocol asks this module when either
happens, and hands its transport over; a connection that never does pays nothing for HTTP/2.
"""

from __future__ import annotations

from ..wire.events import BadRequest
from ..wire.fields import header_tokens
from ..wire.request import Request

#: Fields of an h2c upgrade request that belong to the HTTP/1.1 hop, not to the request.
_UPGRADE_FIELDS = frozenset((b"connection", b"upgrade", b"http2-settings", b"keep-alive"))


def protocol_factory(state, impl, tls: bool):
    """The factory of protocol objects for accepted connections (one per listening server)."""
    mode = state.config.http
    if mode == "2":
        from .h2 import H2Protocol

        return lambda: H2Protocol(state, impl)
    if tls and mode == "auto":
        return lambda: ALPNChoice(state, impl)
    return lambda: impl.h1_protocol(state, impl)


class ALPNChoice:
    """The protocol of a TLS connection before its handshake is over: once it is, hands the
    transport to HTTP/2 or HTTP/1.1 by the protocol ALPN agreed (HTTP/1.1 when none was)."""

    def __init__(self, state, impl):
        self.state = state
        self.impl = impl

    def connection_made(self, transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        agreed = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if agreed == "h2":
            from .h2 import H2Protocol

            proto = H2Protocol(self.state, self.impl)
        else:
            proto = self.impl.h1_protocol(self.state, self.impl)
        transport.set_protocol(proto)
        proto.connection_made(transport)

    def connection_lost(self, exc) -> None:  # pragma: no cover - the handshake is over first
        pass

    def data_received(self, data: bytes) -> None:  # pragma: no cover - idem
        pass

    def eof_received(self):  # pragma: no cover - idem
        return None


def switch_to_h2(h1, data: bytes = b"", upgraded=None) -> None:
    """Hand ``h1``'s transport to a new HTTP/2 protocol: with the bytes read so far (a prior
    knowledge preface), or after an h2c upgrade (``upgraded``: the HTTP/2 protocol already made
    by :class:`H2cUpgrade`). The HTTP/1.1 protocol object runs no more."""
    from .h2 import H2Protocol

    state = h1.state
    transport = h1.transport
    proto = upgraded or H2Protocol(state, state.impl)
    state.connections.discard(h1)
    transport.set_protocol(proto)
    h1.detach()
    proto.connection_made(transport, data, proto.upgrade_request)


def start_upgrade(h1, request):
    """The switch a request asks for with ``Upgrade``: a WebSocket (answered here if its
    handshake is bad) or, in cleartext ``--http auto``, HTTP/2. ``None`` when the request is
    served as it is (or was refused); else an object whose ``switch()`` runs at the end of the
    request."""
    tokens = header_tokens(request.headers, b"upgrade")
    if b"websocket" in tokens and h1.state.ws_handler is not None:
        from .ws_h1 import start_upgrade as start_websocket

        return start_websocket(h1, request)
    if b"h2c" in tokens and h1.h2c:
        return H2cUpgrade.start(h1, request)
    return None


class H2cUpgrade:
    """An ``Upgrade: h2c`` request, answered ``101`` at its end and then served as stream 1 of
    an HTTP/2 connection. A request with a body, or without a valid ``HTTP2-Settings``, is
    served over HTTP/1.1 instead, as RFC 9110 7.8 lets a server ignore an upgrade."""

    __slots__ = ("h1", "proto")

    def __init__(self, h1, proto):
        self.h1 = h1
        self.proto = proto

    @classmethod
    def start(cls, h1, request):
        headers = request.headers
        settings = [v for n, v in headers if n == b"http2-settings"]
        if len(settings) != 1 or b"http2-settings" not in header_tokens(headers, b"connection"):
            return None
        for name, value in headers:
            if name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() != b"0"
            ):
                return None  # the body would have to be read over HTTP/1.1 first: not worth it
        from .h2 import H2Protocol

        proto = H2Protocol(h1.state, h1.state.impl)
        try:
            proto.conn.initiate_upgrade(settings[0])
        except BadRequest:
            return None
        host = [v for n, v in headers if n == b"host"]
        options = set(header_tokens(headers, b"connection"))
        proto.upgrade_request = Request(
            request.method,
            request.raw_path,
            request.query_string,
            "2",
            [(n, v) for n, v in headers if n not in _UPGRADE_FIELDS and n not in options],
            request.authority or (host[0].decode("latin-1") if host else None),
        )
        return cls(h1, proto)

    def switch(self) -> None:
        h1 = self.h1
        leftover = h1.conn.trailing_data()
        h1.write(h1.conn.switching_protocols([(b"connection", b"Upgrade"), (b"upgrade", b"h2c")]))
        switch_to_h2(h1, leftover, self.proto)
