"""The public RSGI types, usable without Granian.

Applications and frameworks import their exceptions and scope types from here when they run on
refserver, and tests build scopes with :func:`build_scope`. Names follow Granian's ``granian.rsgi``
module so code written for one runs on the other. The scope itself is built in
:mod:`refserver.scopes`, with the other interfaces' scopes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from operator import itemgetter

RSGI_VERSION = "1.6"

__all__ = [
    "RSGI_VERSION",
    "Headers",
    "ProtocolClosed",
    "ProtocolError",
    "Scope",
    "WebsocketMessage",
    "WebsocketMessageType",
    "build_scope",
]


class ProtocolError(RuntimeError):
    """The application used the protocol in a way RSGI forbids (a second response, a body read
    twice, a response argument of the wrong type). A ``RuntimeError`` like Granian's
    ``RSGIProtocolError``, so ``except RuntimeError`` in framework code catches both."""


class ProtocolClosed(RuntimeError):
    """The other side is gone: the client disconnected, or the response stream has ended.
    Applications treat it as "stop working on this request", not as a bug."""


class WebsocketMessageType(IntEnum):
    """The ``kind`` of a received WebSocket message. An ``IntEnum`` so apps may compare against
    the bare integers RSGI documents (``msg.kind == 0``) as well as the names."""

    close = 0
    bytes = 1
    string = 2


class WebsocketMessage:
    """What ``transport.receive()`` returns: ``kind`` (a :class:`WebsocketMessageType`) and
    ``data`` (``bytes`` for ``bytes``, ``str`` for ``string``, ``None`` for ``close``)."""

    __slots__ = ("kind", "data")

    def __init__(self, kind: WebsocketMessageType, data=None):
        self.kind = kind
        self.data = data

    def __repr__(self) -> str:
        return f"WebsocketMessage(kind={self.kind!r}, data={self.data!r})"


def _key(name) -> bytes | None:
    """A lookup name as the wire stores it (lower-case latin-1 bytes); None can match nothing."""
    if isinstance(name, str):
        try:
            return name.encode("latin-1").lower()
        except UnicodeEncodeError:
            return None
    return None


class Headers(Mapping):
    """The request headers, read-only.

    Wraps the wire's own list of ``(name, value)`` byte pairs (names already lower-case) and
    decodes only what the application asks for: most requests look at a handful of headers, so
    building a dict or decoding every value up front would be wasted work on the hot path. Lookups
    scan the list, which for the usual dozen headers costs less than hashing into a dict built for
    the purpose. Values are decoded as latin-1, which maps every byte to a character, so no value
    is ever dropped (Granian silently skips non-ASCII values; refserver keeps them).
    """

    __slots__ = ("_raw", "_names")

    def __init__(self, raw: list):
        self._raw = raw
        self._names: list[str] | None = None

    def _distinct(self) -> list:
        names = self._names
        if names is None:
            names = self._names = [
                n.decode("latin-1") for n in dict.fromkeys([n for n, _ in self._raw])
            ]
        return names

    def get(self, key, default=None):
        name = _key(key)
        if name is not None:
            for n, v in self._raw:
                if n == name:
                    return v.decode("latin-1")
        return default

    def get_all(self, key) -> list:
        name = _key(key)
        if name is None:
            return []
        return [v.decode("latin-1") for n, v in self._raw if n == name]

    def __getitem__(self, key):
        name = _key(key)
        if name is not None:
            for n, v in self._raw:
                if n == name:
                    return v.decode("latin-1")
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        name = _key(key)
        if name is not None:
            for n, _ in self._raw:
                if n == name:
                    return True
        return False

    def keys(self) -> list:  # type: ignore[override]  # RSGI gives lists, not views
        return list(self._distinct())

    def values(self) -> list:  # type: ignore[override]
        return [v.decode("latin-1") for _, v in self._raw]

    def items(self) -> list:  # type: ignore[override]
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw]

    def __iter__(self):
        return iter(self._distinct())

    def __len__(self) -> int:
        return len(self._distinct())

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


_SCOPE_FIELDS = (
    "proto",
    "http_version",
    "server",
    "client",
    "scheme",
    "method",
    "path",
    "query_string",
    "headers",
    "authority",
)


class Scope(tuple):
    """The per-request scope: read-only attributes, one allocation.

    A tuple subclass (the way ``namedtuple`` builds records) because that is the cheapest
    read-only object CPython can build: one ``tuple.__new__`` call and no ``__init__``, and any
    attempt to set an attribute raises ``AttributeError`` without a ``__setattr__`` hook slowing
    down construction.
    """

    __slots__ = ()

    rsgi_version = RSGI_VERSION

    def __new__(
        cls,
        proto: str,
        http_version: str,
        server: str,
        client: str,
        scheme: str,
        method: str,
        path: str,
        query_string: str,
        headers: Headers,
        authority: str | None = None,
    ):
        return tuple.__new__(
            cls,
            (
                proto,
                http_version,
                server,
                client,
                scheme,
                method,
                path,
                query_string,
                headers,
                authority,
            ),
        )

    def __getnewargs__(self):
        return tuple(self)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}" for name, value in zip(_SCOPE_FIELDS, self, strict=False)
        )
        return f"Scope({fields})"


for _index, _name in enumerate(_SCOPE_FIELDS):
    setattr(Scope, _name, property(itemgetter(_index)))
del _index, _name


def build_scope(stream, proto: str = "http") -> Scope:
    """The RSGI scope of one request (``proto`` "http") or WebSocket connection ("ws"), as the
    server builds it (:func:`refserver.scopes.rsgi_scope`)."""
    from .scopes import rsgi_scope  # imported here: that module builds on the types above

    return rsgi_scope(stream, proto)
