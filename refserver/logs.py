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
import logging.handlers
import os
import string
import sys
import time
from datetime import datetime

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


def log_value(text: str) -> str:
    """``text`` for one value of an access line: :func:`printable`, and ``"`` and ``\\``
    escaped too (``\\x22``, ``\\x5c``), so that a value can neither end a quoted field nor
    pass for an escape the server wrote."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return printable(text.replace("\\", "\\x5c").replace('"', "\\x22"))


# ------------------------------------------------------------------------------- access log

#: Statuses whose responses have no body (RFC 9110 6.4.1), whatever the application gave.
_NO_BODY = frozenset((204, 304))


def client_text(client) -> str:
    """``host:port`` of a client (IPv6 in brackets), ``-`` on a UNIX socket."""
    if not client or client[1] is None:
        return "-"
    host, port = client
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client_host(stream):
    client = stream.client
    return client[0] if client and client[1] is not None else "-"


def target_text(request) -> str:
    """The request target as received (not yet escaped)."""
    query = request.query_string
    path = request.raw_path
    return (path + b"?" + query if query else path).decode("latin-1")


def _host(stream):
    request = stream.request
    if request.authority:
        return request.authority
    for name, value in request.headers:
        if name == b"host":
            return value.decode("latin-1")
    return "-"


def _size(stream):
    if stream.request.method == "HEAD" or stream.status < 200 or stream.status in _NO_BODY:
        return "0"
    return str(stream.body_sent)


def _fields(fields, name: bytes) -> str:
    """The values of the fields called ``name`` (lower-case; response fields keep the case the
    application gave them)."""
    if not fields:
        return "-"
    values = [value.decode("latin-1") for key, value in fields if key.lower() == name]
    return ", ".join(values) if values else "-"


#: The atoms of --access-log-format: name -> (value of a stream, at the end time), and whether
#: the atom needs the start time recorded.
_ATOMS = {
    "client": (lambda s, now: client_text(s.client), False),
    "client_host": (lambda s, now: _client_host(s), False),
    "method": (lambda s, now: s.request.method, False),
    "path": (lambda s, now: s.request.raw_path.decode("latin-1"), False),
    "query": (lambda s, now: s.request.query_string.decode("latin-1"), False),
    "target": (lambda s, now: target_text(s.request), False),
    "protocol": (lambda s, now: "HTTP/" + s.request.http_version, False),
    "scheme": (lambda s, now: s.scheme, False),
    "host": (lambda s, now: _host(s), False),
    "status": (lambda s, now: str(s.status), False),
    "size": (lambda s, now: _size(s), False),
    "duration": (lambda s, now: "%.6f" % (now - s.started), True),
    "duration_ms": (lambda s, now: "%.3f" % ((now - s.started) * 1000.0), True),
    "pid": (lambda s, now: str(os.getpid()), False),
    "time": (lambda s, now: datetime.now().astimezone().isoformat(timespec="milliseconds"), False),
}
#: Atoms with an argument: ``{request_header:user-agent}``.
_NAMED_ATOMS = {
    "request_header": lambda name: lambda s, now: _fields(s.request.headers, name),
    "response_header": lambda name: lambda s, now: _fields(s.response_headers, name),
}


class AccessFormat:
    """``--access-log-format``, parsed once into literal text and atoms.

    ``{name}`` is an atom, ``{request_header:NAME}`` / ``{response_header:NAME}`` a named field
    (several fields of one name joined with ``, ``; ``-`` when there is none), ``{{`` and ``}}``
    are braces. Braces rather than gunicorn's ``%(h)s``: the names read as what they are, and
    ``%`` stays free for the text. Every atom's value goes through :func:`log_value`, so a
    request cannot put a control character, a line break or an unescaped quote in the line.
    """

    def __init__(self, text: str):
        self.text = text
        template = []  # the literal text, "%s" for each atom
        atoms = []  # each atom's function
        self.timed = False  # an atom needs the time the application was started
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ConfigError(f"--access-log-format {text!r}: {exc}") from None
        for literal, field, spec, conversion in parsed:
            template.append(literal.replace("%", "%%"))
            if field is None:
                continue
            if conversion is not None:
                raise ConfigError(f"--access-log-format: '!{conversion}' is not supported")
            if field in _NAMED_ATOMS:
                if not spec:
                    raise ConfigError(f"--access-log-format: {{{field}:NAME}} needs a field name")
                atoms.append(_NAMED_ATOMS[field](spec.strip().lower().encode("latin-1")))
            elif field in _ATOMS and not spec:
                function, timed = _ATOMS[field]
                atoms.append(function)
                self.timed = self.timed or timed
            else:
                raise ConfigError(
                    f"--access-log-format: unknown atom {{{field}{':' + spec if spec else ''}}}"
                    f" (known: {', '.join(sorted(_ATOMS))}, request_header:NAME, "
                    "response_header:NAME)"
                )
            template.append("%s")
        self._template = "".join(template)
        self._atoms = tuple(atoms)

    def render(self, stream) -> str:
        now = time.monotonic() if self.timed else 0.0
        return self._template % tuple([log_value(atom(stream, now)) for atom in self._atoms])


def send_access_to_file(path: str) -> logging.Handler:
    """Append the access lines to ``path`` instead of stderr (``--access-log-file``); the
    handler is returned for :func:`stop_access_file`.

    A ``WatchedFileHandler``: before each line it checks that ``path`` is still the file it has
    open, and reopens it when logrotate (or anyone) moved or removed it, so rotation needs no
    signal (gunicorn reopens its log files on SIGUSR1 instead; uvicorn has no such option and
    leaves files to ``--log-config``). ``copytruncate`` rotation works as well, the file being
    opened for appending. Several workers may append to one file: each line is one write.
    """
    try:
        handler = logging.handlers.WatchedFileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--access-log-file {path}: {exc.strerror or exc}") from None
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._refserver_access = True  # type: ignore[attr-defined]  # our mark on the handler
    for old in [h for h in access_logger.handlers if getattr(h, "_refserver_access", False)]:
        access_logger.removeHandler(old)
        old.close()
    handler._refserver_propagate = access_logger.propagate  # type: ignore[attr-defined]
    access_logger.addHandler(handler)
    access_logger.propagate = False
    return handler


def stop_access_file(handler: logging.Handler) -> None:
    """Close what :func:`send_access_to_file` opened; access lines go where they went before."""
    if handler in access_logger.handlers:
        access_logger.removeHandler(handler)
        access_logger.propagate = handler._refserver_propagate  # type: ignore[attr-defined]
    handler.close()


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
        handler._refserver = True  # type: ignore[attr-defined]  # our mark on the handler
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
