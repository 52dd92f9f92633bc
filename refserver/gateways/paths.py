"""Request-path decoding shared by every gateway, so ASGI, RSGI and WSGI agree on one rule."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a path as UTF-8; invalid bytes become U+FFFD (the RSGI rule, kept for all).

    The common case (plain ASCII, nothing escaped) skips the unquoting machinery entirely. It is
    found with ``find``: ``b"%" in raw_path`` first tries the operand as an int and formats a
    TypeError that it then discards, three times the cost, on every request.
    """
    if raw_path.find(b"%") < 0:
        try:
            return raw_path.decode("ascii")
        except UnicodeDecodeError:
            pass
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")
