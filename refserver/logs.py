"""Logging setup: ``refserver.error`` for the server, ``refserver.access`` for one line a request.

Request data reaches the logs (the path in the access log, the request named in a warning), and a
client chooses those bytes: control characters in them would let a client move a terminal's cursor,
recolour or erase what an operator reads, or start a line that looks like one of the server's own
(uvicorn CVE-2020-7694). :func:`printable` is the one rule that prevents it; the server applies it
to request data wherever it logs some, and the handler installed by :func:`configure` applies it to
every message as well, for the messages that quote request data in other words.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys

from .config import ConfigError

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("refserver.error")
access_logger = logging.getLogger("refserver.access")


def printable(text: str) -> str:
    """``text`` with every character that is not printable (C0 and C1 controls, DEL, line and
    paragraph separators...) written as a Python escape (``\\x1b``), so that a log line shows what
    was received and cannot contain anything a terminal or a log reader would interpret.

    Printable text, the usual case, is returned as it is after one C-speed scan. A backslash is
    left alone: messages quote request bytes with ``repr()``, whose escapes would be doubled.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return "\\x%02x" % code
    if code <= 0xFFFF:
        return "\\u%04x" % code
    return "\\U%08x" % code


class PrintableFormatter(logging.Formatter):
    """Escapes what is not printable in the message; a traceback, added after it, keeps its
    lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def configure(level_name: str) -> None:
    level = TRACE if level_name == "trace" else getattr(logging, level_name.upper())
    root = logging.getLogger("refserver")
    if not any(getattr(h, "_refserver", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PrintableFormatter("%(levelname)s:  %(message)s"))
        handler._refserver = True
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


def apply_config_file(path: str) -> None:
    """Apply a user's logging configuration on top of :func:`configure`'s, so that it may
    redirect or reformat ``refserver.error`` and ``refserver.access``.

    Loggers the file does not name stay enabled (``disable_existing_loggers`` defaults to False
    here): a file written for the application must not silence the server's errors.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"--log-config {path}: no such file")
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension in (".json", ".yaml", ".yml"):
            with open(path, encoding="utf-8") as file:
                if extension == ".json":
                    settings = json.load(file)
                else:
                    settings = _load_yaml(file)
            if not isinstance(settings, dict):
                raise ValueError("the file must hold a mapping (a dictConfig dictionary)")
            settings.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(settings)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except ConfigError:
        raise
    except Exception as exc:
        if isinstance(exc, KeyError):  # fileConfig: a section or key the file lacks
            detail = f"missing {exc.args[0]!r}" if exc.args else "missing section or key"
        else:
            detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"--log-config {path}: {detail}") from None


def _load_yaml(file):
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            "--log-config with a YAML file needs PyYAML: pip install 'refserver[yaml]'"
        ) from None
    return yaml.safe_load(file)
