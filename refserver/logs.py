"""Logging setup: ``refserver.error`` for the server, ``refserver.access`` for one line a request."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("refserver.error")
access_logger = logging.getLogger("refserver.access")


def configure(level_name: str) -> None:
    level = TRACE if level_name == "trace" else getattr(logging, level_name.upper())
    root = logging.getLogger("refserver")
    if not any(getattr(h, "_refserver", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:  %(message)s"))
        handler._refserver = True
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)
