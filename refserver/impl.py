"""The one place where the reference and the fast implementation are chosen.

An implementation is a set of components behind fixed interfaces: the HTTP/1.1 request parser,
the response-head writer, the scope builders, WebSocket unmasking, and the HTTP/1.1 connection
core and protocol. The fast path's connection core and protocol are not other code: they are the
reference modules compiled by Cython as extension types (see ``setup.py``). Everything else is
shared as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class ImplementationUnavailable(Exception):
    pass


@dataclass(frozen=True)
class Implementation:
    name: str
    make_parser: object  # (max_head_size) -> parser with the H11Parser interface
    head_writer: object  # (status, reason, headers) -> bytes
    rsgi_scope: object  # (stream, proto) -> refserver.rsgi.Scope
    asgi_scope: object  # (kind, stream, root_path, state, scheme, method) -> dict
    wsgi_environ: object  # (stream, base, root, wsgi_input) -> dict
    h1_connection: object  # refserver.wire.h1.H1Connection, or its compiled copy
    h1_protocol: object  # refserver.protocols.h1.H1Protocol, or its compiled copy: (state, impl)
    response_rules: object  # refserver.wire.response.ResponseRules, or its compiled copy
    request_view: object  # refserver.wire.request.from_h1_head, or its compiled copy
    ws_unmask: object = None  # (data, key) -> bytes, WebSocket unmasking; None: the pure one


def _pure() -> Implementation:
    from .protocols.h1 import H1Protocol
    from .scopes import asgi_scope, rsgi_scope, wsgi_environ
    from .wire.h1 import H1Connection, write_head
    from .wire.h11_parser import H11Parser
    from .wire.request import from_h1_head
    from .wire.response import ResponseRules

    return Implementation(
        "pure",
        H11Parser,
        write_head,
        rsgi_scope,
        asgi_scope,
        wsgi_environ,
        H1Connection,
        H1Protocol,
        ResponseRules,
        from_h1_head,
    )


def _fast() -> Implementation:
    """Raises ImportError when the extensions were not built (or httptools is missing)."""
    from ._speedups import FastParser, asgi_scope, rsgi_scope, write_head, ws_unmask, wsgi_environ
    from .protocols._compiled_h1 import H1Protocol
    from .wire._compiled_h1 import H1Connection
    from .wire._compiled_request import from_h1_head
    from .wire._compiled_response import ResponseRules

    return Implementation(
        "fast",
        FastParser,
        write_head,
        rsgi_scope,
        asgi_scope,
        wsgi_environ,
        H1Connection,
        H1Protocol,
        ResponseRules,
        from_h1_head,
        ws_unmask,
    )


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
        note = f"fast path not available ({exc}), using the pure-Python reference path"
        return _pure(), note + _checkout_hint()


def _checkout_hint() -> str:
    """Why a checkout falls back: ``python -m refserver`` run inside a source checkout imports
    the checkout, not the copy ``pip install .`` compiled into site-packages."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, "setup.py")):
        return ""
    return f" (imported from the source checkout {root}: pip install -e . builds it there)"
