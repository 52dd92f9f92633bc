"""Trusted forwarding headers: the client, scheme and host a reverse proxy saw.

Behind a proxy the peer of every connection is the proxy; what the application needs is what
the proxy received. The proxy says so in request fields (``X-Forwarded-For``, ``-Proto``,
``-Host``, ``-Port``, or RFC 7239 ``Forwarded``), which any client can also send. So they are
read only from a peer listed in ``--forwarded-allow-ips``, and a chain of addresses is read from
the right: each proxy appends the address it received the request from, so the entries a client
wrote itself are on the left, and the rightmost address that is not one of our proxies is the
client. Taking the leftmost entry (as some servers do) lets any client choose its address.

Nothing here rejects a request: a value that cannot be used is ignored (spec/server.md,
SERVER-PROXY-*), and every value that is used is validated first (an IP address, a host that is a
valid authority, ``http``/``https``, a port number), so what reaches the scope and the logs is
never raw client text.
"""

from __future__ import annotations

import ipaddress
import re

from .config import ConfigError
from .wire.request import HOST_RE, with_host

#: The literal that trusts peers on a UNIX socket (they have no IP address to list).
UNIX = "unix"

_X_FIELDS = frozenset(
    (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port")
)
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
#: The most entries of a chain that are read, from the right (SERVER-PROXY-2).
MAX_HOPS = 64


class Forwarding:
    """The trust rule of one server, and the rewriting of a request from a trusted peer."""

    def __init__(self, entries):
        self.trust_all = False
        self.trust_unix = False
        networks = []
        for entry in entries:
            if entry == "*":
                self.trust_all = True
            elif entry.lower() == UNIX:
                self.trust_unix = True
            else:
                try:
                    networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError:
                    raise ConfigError(
                        f"--forwarded-allow-ips: {entry!r} is not an IP address, a network "
                        f"(CIDR), '*' or '{UNIX}'"
                    ) from None
        self.networks = tuple(networks)

    def trusts_peer(self, client) -> bool:
        """Whether the connection's peer (``(host, port)``, ``(path, None)`` or ``None`` on a
        UNIX socket) may speak for its clients. Decided once per connection."""
        if self.trust_all:
            return True
        if client is None or client[1] is None:
            return self.trust_unix
        address = _ip(client[0])
        return address is not None and self._trusts(address)

    def _trusts(self, address) -> bool:
        if self.trust_all:
            return True
        return any(address in network for network in self.networks)

    def apply(self, target) -> None:
        """Rewrite ``target`` (a stream or WebSocket session from a trusted peer: its
        ``client``, ``scheme`` and ``request``) from the forwarding fields of its request.

        The ``X-Forwarded-*`` fields are used when any is present, ``Forwarded`` otherwise: one
        family, never a mix (SERVER-PROXY-3 says why).
        """
        request = target.request
        x_fields: dict[bytes, bytes] | None = None
        forwarded = None
        for name, value in request.headers:
            if name in _X_FIELDS:
                if x_fields is None:
                    x_fields = {}
                x_fields[name] = x_fields[name] + b"," + value if name in x_fields else value
            elif name == b"forwarded":
                forwarded = forwarded + b"," + value if forwarded is not None else value
        if x_fields is not None:
            client, scheme, host, port = self._from_x_fields(x_fields)
        elif forwarded is not None:
            client, scheme, host, port = self._from_forwarded(forwarded)
        else:
            return
        if client is not None:
            target.client = client
        if scheme is not None:
            target.scheme = scheme
        if host is not None or port is not None:
            authority = _authority(request, host, port)
            if authority is not None:
                request.authority = authority
                request.headers = with_host(request.headers, authority.encode("ascii"))

    # ------------------------------------------------------------------ the two families

    def _from_x_fields(self, fields):
        client = None
        chain = fields.get(b"x-forwarded-for")
        if chain is not None:
            client = self._walk(_hop(item) for item in reversed(_items(_rightmost(chain))))[0]
        scheme = host = port = None
        value = _last(fields.get(b"x-forwarded-proto"))
        if value is not None:
            scheme = _SCHEMES.get(value.lower())
        value = _last(fields.get(b"x-forwarded-host"))
        if value is not None:
            host = _valid_host(value)
        value = _last(fields.get(b"x-forwarded-port"))
        if value is not None:
            port = _valid_port(value)
        return client, scheme, host, port

    def _from_forwarded(self, value):
        elements = _parse_forwarded(_rightmost(value))
        if not elements:
            return None, None, None, None
        client, reached = self._walk(_hop(e.get("for", "")) for e in reversed(elements))
        # The element of the hop the walk ended on: its proto and host are what the outermost
        # proxy that is believed received.
        element = elements[-reached]
        scheme = _SCHEMES.get(element.get("proto", "").lower())
        host = _valid_host(element["host"]) if "host" in element else None
        return client, scheme, host, None

    # ------------------------------------------------------------------ the walk

    def _walk(self, hops):
        """``(client, reached)``: the client ``(host, port)`` from the hops of a chain, nearest
        first, or ``None`` to keep the peer; and how many hops were looked at. ``hops`` is an
        iterator, so only the hops up to the client are parsed, however long a chain a client
        sent.

        The client is the first hop that is not a trusted proxy, or the last one when all are.
        A hop without a usable address (malformed, ``unknown``, an obfuscated identifier) ends
        the walk; the client is then the last hop reached that had one, which is the nearest
        proxy vouching for what follows."""
        client = None
        reached = 0
        for hop in hops:
            reached += 1
            if hop is None:
                break
            client = (hop[0], hop[1])
            if not self._trusts(hop[2]):
                break
        return client, reached


def _rightmost(value: bytes) -> bytes:
    """``value`` without what lies left of its :data:`MAX_HOPS` rightmost commas: a chain is
    read from the right, no real one is that long, and the rest (a client's to write) is then
    not parsed at all, however long it is."""
    if value.count(b",") <= MAX_HOPS:
        return value
    return b",".join(value.rsplit(b",", MAX_HOPS)[1:])


def _items(value: bytes):
    """The elements of a comma list (several fields of one name were already joined with
    commas, RFC 9110 5.3), empty elements skipped."""
    return [item.strip() for item in value.decode("latin-1").split(",") if item.strip()]


def _last(value):
    if value is None:
        return None
    items = _items(value)
    return items[-1] if items else None


def _ip(text: str):
    """The address ``text`` names, IPv4-mapped IPv6 as IPv4 (a dual-stack socket reports IPv4
    peers that way), or ``None``."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _hop(text: str):
    """``(host, port, address)`` of one entry of X-Forwarded-For or one ``for=`` value:
    ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]`` or ``[2001:db8::1]:5678``.
    ``None`` for anything else (``unknown``, ``_obfuscated``, garbage). The port is 0 where the
    hop names none, as ASGI's ``client`` needs one."""
    port = 0
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if rest[0] != ":" or _valid_port(rest[1:]) is None:
                return None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        if _valid_port(rest) is None:
            return None
        port = int(rest)
    else:
        host = text
    address = _ip(host)
    if address is None or (text.startswith("[") and address.version != 6):
        return None
    if getattr(address, "scope_id", None):
        return None  # a zone names an interface of the proxy's host, not a client
    return (str(address), port, address)


def _valid_host(text: str):
    if text and text.isascii() and HOST_RE.fullmatch(text.encode("ascii")):
        return text
    return None


def _valid_port(text: str):
    if text.isdigit() and len(text) <= 5 and 0 < int(text) <= 65535:
        return text
    return None


def _authority(request, host, port):
    """The authority to show the application: ``host`` (or the request's own) with ``port``
    replacing its port when one was forwarded."""
    if host is None:
        host = request.authority
        if host is None:
            for name, value in request.headers:
                if name == b"host":
                    host = value.decode("latin-1")
                    break
        if not host:
            return None
    if port is not None:
        if host.startswith("["):
            host = host[: host.find("]") + 1]
        else:
            host = host.partition(":")[0]
        host = f"{host}:{port}"
    return host


_TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
#: One forwarded-pair (RFC 7239 4): a token, "=", a token or a quoted string; then the
#: separators that follow it (";" between pairs, "," between elements, optional whitespace, and
#: the empty pairs and elements the list rules allow).
_PAIR_RE = re.compile(r'(%s)=(?:(%s)|"((?:[^"\\]|\\.)*)")([ \t;,]*)' % (_TOKEN, _TOKEN))
_SKIP_RE = re.compile(r"[ \t;,]*")
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


def _parse_forwarded(value: bytes):
    """The elements of a ``Forwarded`` field value (RFC 7239 4), each a dict of lower-case
    parameter names to their values (quoted strings unquoted), left to right. An empty list
    when the value does not parse: a field that cannot be read says nothing. One regular
    expression match per pair, so that a long value is not a Python loop per character."""
    text = value.decode("latin-1")
    elements = []
    element: dict = {}
    pos = _SKIP_RE.match(text).end()  # type: ignore[union-attr]  # "*": it always matches
    end = len(text)
    while pos < end:
        pair = _PAIR_RE.match(text, pos)
        if pair is None:
            return []
        name, token, quoted, separators = pair.groups()
        name = name.lower()
        item = token if token is not None else _QUOTED_PAIR_RE.sub(r"\1", quoted)
        if name in element or not item.isprintable():
            return []  # RFC 7239 4: a parameter appears at most once per element
        element[name] = item
        pos = pair.end()
        if "," in separators:
            elements.append(element)
            element = {}
        elif pos < end and ";" not in separators:
            return []  # two pairs with nothing between them
    if element:
        elements.append(element)
    return elements
