"""The one place where the reference and the fast implementation are chosen.

An implementation is a set of components behind fixed interfaces: the HTTP/1.1 request parser,
the response-head writer, the scope builders and WebSocket unmasking. Everything else is shared.
"""

from __future__ import annotations

from dataclasses import dataclass


class ImplementationUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Implementation:
    name: str
    make_parser: object  # (max_head_size) -> parser with the H11Parser interface
    head_writer: object  # (status, reason, headers) -> bytes
    ws_unmask: object = None  # (data, key) -> bytes, WebSocket unmasking; None: the pure one


def _pure() -> Implementation:
    from .wire.h1 import write_head
    from .wire.h11_parser import H11Parser

    return Implementation("pure", H11Parser, write_head)


def _fast() -> Implementation:
    """Raises ImportError when the extension was not built (or httptools is missing)."""
    from ._speedups import FastParser, write_head

    try:
        from ._speedups import ws_unmask
    except ImportError:  # an extension built before it existed: the pure one is identical
        ws_unmask = None
    return Implementation("fast", FastParser, write_head, ws_unmask)


def select(requested: str) -> tuple[Implementation, str | None]:
    """The implementation for ``--impl``, and a note to log when ``auto`` had to fall back."""
    if requested == "pure":
        return _pure(), None
    try:
        return _fast(), None
    except ImportError as exc:
        if requested == "fast":
            raise ImplementationUnavailable(
                "--impl fast: the fast path (refserver._speedups) is not available in this "
                f"build ({exc})"
            ) from None
        return _pure(), f"fast path not available ({exc}), using the pure-Python reference path"
