"""What the three probe applications share: routing words, bookkeeping, response plans.

A probe must run unchanged on any server, so this module imports nothing beyond the standard
library and nothing from refserver itself.

Routes (the same words on every interface, so one HTTP/1.1 case runs against all three):

``/__probe__/ping``     200 ``pong``: readiness, and "is this connection still usable".
``/__probe__/seen``     how many requests whose path starts with ``?prefix=`` reached the app, so a
                        case can prove that a smuggled request never did.
``/__probe__/events``   what the app recorded under ``?key=`` while handling an earlier request
                        (exceptions it saw, a disconnect it waited for, a ``close()`` call).
``/r/...``              response kinds, built from the query (see :class:`Plan`).
``/m/...``              protocol misuse by the application; each probe names its own.
``/x/...``              interface-specific observations (header API, input stream API, ...).
anything else           echo: read the whole body, answer 200 with a JSON observation.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from urllib.parse import parse_qs

PROBE_PREFIX = "/__probe__/"
OBSERVATION_HEADER = ("x-probe", "observation")

_lock = threading.Lock()
_seen: dict = {}
_events: dict = {}
_SEEN_MAX = 100000
_EVENTS_MAX = 10000


def record_seen(path: str) -> None:
    """Remember that a request for ``path`` reached the application."""
    with _lock:
        if len(_seen) < _SEEN_MAX or path in _seen:
            _seen[path] = _seen.get(path, 0) + 1


def seen_count(prefix: str) -> int:
    with _lock:
        return sum(count for path, count in _seen.items() if path.startswith(prefix))


def record_event(key: str, event: dict) -> None:
    """Append ``event`` to the log of ``key`` (a case nonce), to be read back by a later request."""
    if not key:
        return
    with _lock:
        if len(_events) < _EVENTS_MAX or key in _events:
            _events.setdefault(key, []).append(event)


def events_for(key: str) -> list:
    with _lock:
        return list(_events.get(key, ()))


def parse_query(query: str) -> dict:
    return parse_qs(query, keep_blank_values=True)


def first(query: dict, name: str, default=None):
    values = query.get(name)
    return values[0] if values else default


def to_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=True).encode("ascii")


def jsonable(value):
    """A JSON view of scope/environ values: bytes become latin-1 text, tuples lists, the rest
    (objects, callables) their type name, so every probe can report what it was given."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return "<%s>" % type(value).__name__


def type_name(value) -> str:
    if value is None:
        return "None"
    return type(value).__name__


def exception_record(exc: BaseException) -> dict:
    """How an exception looks to the application: its class, its bases that matter, its text."""
    return {
        "type": type(exc).__name__,
        "is_runtime_error": isinstance(exc, RuntimeError),
        "is_os_error": isinstance(exc, OSError),
        "is_value_error": isinstance(exc, ValueError),
        "message": str(exc)[:300],
    }


def probe_response(path: str, query: str):
    """(status, headers, body) for a ``/__probe__/`` route, or None for any other path."""
    if not path.startswith(PROBE_PREFIX):
        return None
    name = path[len(PROBE_PREFIX) :]
    params = parse_query(query)
    json_headers = [("content-type", "application/json"), OBSERVATION_HEADER]
    if name == "ping":
        return 200, [("content-type", "text/plain"), ("x-probe", "fixed")], b"pong"
    if name == "seen":
        body = to_json({"count": seen_count(first(params, "prefix", "\0"))})
        return 200, json_headers, body
    if name == "events":
        body = to_json({"events": events_for(first(params, "key", ""))})
        return 200, json_headers, body
    return None


# ------------------------------------------------------------------------------------ files

#: Files the RSGI and WSGI probes serve. ``big.bin`` spans several 128 KiB reads.
FILE_CONTENTS = {
    "small.txt": b"0123456789abcdef" * 4,
    "big.bin": bytes(range(256)) * 1200,
}
_file_dir = None


def file_path(name: str) -> str:
    """The path of a probe file (created on first use), or a path that does not exist."""
    global _file_dir
    with _lock:
        if _file_dir is None:
            _file_dir = tempfile.mkdtemp(prefix="refserver-probe-")
            for fname, content in FILE_CONTENTS.items():
                with open(os.path.join(_file_dir, fname), "wb") as fh:
                    fh.write(content)
    if name not in FILE_CONTENTS:
        return os.path.join(_file_dir, "missing-" + name.replace("/", "_"))
    return os.path.join(_file_dir, name)


# ------------------------------------------------------------------------------------ plans


class Plan:
    """A response described by the query of a ``/r/`` request.

    ``status`` (default 200); ``h=name:value`` repeated, in order; the body as ``body=`` text,
    ``size=`` bytes of a fixed pattern, or ``part=`` repeated for a body sent in pieces; ``kind``
    picks the interface's way of sending it (each probe documents its kinds); ``file``, ``start``,
    ``end`` for file responses; ``noread=1`` to answer without reading the request body;
    ``delay=SECONDS`` (at most 5) to wait before answering.
    """

    def __init__(self, query: str):
        params = parse_query(query)
        self.params = params
        self.status = int(first(params, "status", "200"))
        self.headers = []
        for item in params.get("h", ()):
            name, _, value = item.partition(":")
            self.headers.append((name, value))
        self.kind = first(params, "kind", "")
        # Text in the query is UTF-8 once percent-decoded; bodies are its UTF-8 bytes.
        self.text_parts = list(params.get("part", ()))
        self.parts = [p.encode("utf-8") for p in self.text_parts]
        if "size" in params:
            size = int(first(params, "size"))
            pattern = b"abcdefghijklmnopqrstuvwxyz0123456789"
            self.body = (pattern * (size // len(pattern) + 1))[:size]
        else:
            self.body = first(params, "body", "").encode("utf-8")
        if not self.parts and self.body:
            self.parts = [self.body]
            self.text_parts = [self.body.decode("utf-8")]
        self.file = first(params, "file", "small.txt")
        self.start = int(first(params, "start", "0"))
        self.end = int(first(params, "end", "0"))
        self.key = first(params, "key", "")
        self.noread = first(params, "noread", "") == "1"
        self.delay = min(float(first(params, "delay", "0")), 5.0)

    @property
    def whole(self) -> bytes:
        return b"".join(self.parts)


def write_report(section: str, data: dict) -> None:
    """Add ``data`` under ``section`` in the JSON file named by ``REFSERVER_PROBE_REPORT``.

    This is how a probe tells the runner what happened at shutdown, when no request can carry it.
    """
    path = os.environ.get("REFSERVER_PROBE_REPORT")
    if not path:
        return
    with _lock:
        try:
            with open(path, encoding="utf-8") as fh:
                report = json.load(fh)
        except (OSError, ValueError):
            report = {}
        report.setdefault(section, []).append(data)
        tmp = path + ".tmp%d" % os.getpid()
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(report, fh, sort_keys=True)
        os.replace(tmp, path)
