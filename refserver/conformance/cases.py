"""Conformance cases: loading, validation, and turning a request description into bytes.

Cases are data (``cases/*.json``) so that a framework author can read them without reading the
runner, and a peer server's maintainer can argue with one case at a time. Each file holds::

    {"document": "http1", "defaults": {"interfaces": [...]}, "cases": [CASE, ...]}

A CASE names the clauses it checks and describes one exchange, either as the shorthand
``request`` / ``responses`` / ``closed`` / ``not_reached`` or as explicit ``steps``:

``{"send": REQUEST or [REQUEST, ...]}``   one write (a list is pipelined into the same write);
                                          ``"separately": true`` writes each with ``"delay"``
``{"expect": EXPECTATION}``               the next response on this connection
``{"interim": STATUS}``                   the next thing received is a 1xx head with that status
``{"closed": true}``                      the server closes with nothing more to say
``{"open": true}``                        the connection still serves a request
``{"silent": SECONDS}``                   no byte arrives for that long
``{"shutdown_write": true}``, ``{"close": true}``, ``{"sleep": SECONDS}``
``{"check": {"request": REQUEST, "expect": EXPECTATION, "after": SECONDS}}``  on a new
                                          connection, after a pause (default 0.05 s)
``{"not_reached": PATH_PREFIX}``          no request for that path reached the application (checked
                                          even when an earlier step failed)
``{"ws_handshake": ...}``, ``{"ws_send": FRAME}``, ``{"ws_expect": FRAME}``  WebSocket steps
                                          (the opening handshake, client frames, the next server
                                          frame): see :mod:`.ws`
``{"h2_connect": ...}``, ``{"h2_send": FRAME}``, ``{"h2_goaway": ...}``, ...  HTTP/2 steps on a
                                          connection of their own: see :mod:`.h2client`

A REQUEST is ``{"raw": TEXT or [PIECE, ...]}`` (text is latin-1, one character per byte; a piece
may be ``{"repeat": TEXT, "times": N}``) or structured: ``method``, ``target``, ``version``,
``headers`` (list of pairs), ``body`` or ``chunks``, ``host`` (false to send no Host).
``@NONCE@``, ``@HOST@``, ``@PORT@``, ``@SCHEME@`` ("http" or "https") and ``@WS_SCHEME@`` ("ws"
or "wss") are replaced in requests and expectations, so one case holds over cleartext and TLS.

Other case keys: ``interfaces`` (default: the file's ``defaults``), ``hostile`` (a malformed or
hostile HTTP/1.1 request), ``timeout`` (seconds per read, default 3), ``volatile`` (observation
paths the differential mode ignores), ``isolated`` (the case gets a server start of its own, for
misuse that may crash a server), ``app`` (a variant probe attribute, e.g. a lifespan variant),
``startup: "fails"`` (the server must exit non-zero without serving), ``report`` (predicates on
what the probe wrote at shutdown, plus ``exit_code``), ``note``, ``rfc`` (the RFC section the
case checks, e.g. "RFC 9113 6.7"), ``needs``.

``needs`` lists what the target must offer for the case to run (default: the file's
``defaults``), beyond what the steps themselves imply: ``h1`` (any HTTP/1.1 step), ``ws`` (a
WebSocket step, or every case of a WebSocket file), ``h2`` (an HTTP/2 step), ``tls`` (only over
``--tls``), ``cleartext`` (not over ``--tls``: a TCP half-close, which has no TLS counterpart
here, or an expectation TLS changes, whose TLS variant is a case of its own). HTTP/2 and
TLS-only cases are selected by ``--http2`` and ``--tls``; a target found not to offer HTTP/1.1,
WebSockets or HTTP/2 gets the cases that need them skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import re

CASES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases")
INTERFACES = ("asgi", "rsgi", "wsgi")
CASE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*[a-z0-9]")
CLAUSE_ID_RE = re.compile(r"(?:[A-Z][A-Z0-9]*-)+[0-9]+")

CASE_KEYS = {
    "id",
    "title",
    "clauses",
    "interfaces",
    "hostile",
    "request",
    "responses",
    "closed",
    "not_reached",
    "steps",
    "app",
    "startup",
    "report",
    "timeout",
    "volatile",
    "note",
    "isolated",
    "needs",
    "rfc",
}
NEEDS = ("h1", "ws", "h2", "tls", "cleartext")
H2_STEP_KEYS = {
    "h2_connect",
    "h2_send",
    "h2_request",
    "h2_response",
    "h2_goaway",
    "h2_reset",
    "h2_expect",
    "h2_closed",
    "h2_open",
}
STEP_KEYS = {
    "send",
    "separately",
    "delay",
    "expect",
    "closed",
    "open",
    "silent",
    "shutdown_write",
    "close",
    "sleep",
    "check",
    "not_reached",
    "within",
    "interim",
    "ws_handshake",
    "ws_send",
    "ws_expect",
} | H2_STEP_KEYS
REQUEST_KEYS = {"raw", "method", "target", "version", "headers", "body", "chunks", "host"}
EXPECT_KEYS = {
    "status",
    "reason",
    "version",
    "headers",
    "headers_all",
    "headers_absent",
    "headers_match",
    "body",
    "body_length",
    "body_contains",
    "body_absent",
    "chunked",
    "close_delimited",
    "interim",
    "observe",
    "head",
    "incomplete",
    "ignore_body",
}


class CaseError(ValueError):
    """A case file does not follow the format (reported with the file and case id)."""


class Case:
    """One validated case. ``steps`` is always the explicit form."""

    __slots__ = (
        "id",
        "title",
        "clauses",
        "interfaces",
        "hostile",
        "steps",
        "app",
        "startup",
        "report",
        "timeout",
        "volatile",
        "source",
        "note",
        "isolated",
        "needs",
        "rfc",
    )

    def __init__(self, data: dict, defaults: dict, source: str):
        where = f"{source}: case {data.get('id', '?')!r}"
        unknown = set(data) - CASE_KEYS
        if unknown:
            raise CaseError(f"{where}: unknown keys {sorted(unknown)}")
        self.id = data.get("id")
        if not isinstance(self.id, str) or not CASE_ID_RE.fullmatch(self.id):
            raise CaseError(f"{where}: id must be lower-case words joined by '-'")
        self.title = data.get("title", "")
        if not self.title:
            raise CaseError(f"{where}: a title is required")
        self.clauses = list(data.get("clauses", ()))
        if not self.clauses:
            raise CaseError(f"{where}: names no clause")
        for clause in self.clauses:
            if not CLAUSE_ID_RE.fullmatch(clause):
                raise CaseError(f"{where}: {clause!r} is not a clause id (AREA-TOPIC-N)")
        self.interfaces = list(data.get("interfaces", defaults.get("interfaces", INTERFACES)))
        for name in self.interfaces:
            if name not in INTERFACES:
                raise CaseError(f"{where}: unknown interface {name!r}")
        self.hostile = bool(data.get("hostile", defaults.get("hostile", False)))
        self.app = data.get("app", "app")
        self.startup = data.get("startup")
        if self.startup not in (None, "fails"):
            raise CaseError(f"{where}: startup must be 'fails'")
        self.report = data.get("report")
        self.timeout = float(data.get("timeout", defaults.get("timeout", 3.0)))
        self.volatile = list(data.get("volatile", ()))
        self.note = data.get("note", "")
        self.rfc = data.get("rfc", "")  # the section of the protocol's RFC the case checks
        # A case that may kill the server (Granian panics on some misuse) gets a server of its own.
        self.isolated = bool(data.get("isolated", False))
        self.source = source
        if "steps" in data:
            if any(k in data for k in ("request", "responses", "closed", "not_reached")):
                raise CaseError(f"{where}: use either steps or the request/responses shorthand")
            steps = data["steps"]
        else:
            steps = _shorthand(data)
        if self.startup is None and self.report is None and not steps:
            raise CaseError(f"{where}: nothing to do")
        for step in steps:
            _check_step(step, where)
        self.steps = steps
        needs = set(data.get("needs", defaults.get("needs", ())))
        unknown = needs - set(NEEDS)
        if unknown:
            raise CaseError(f"{where}: unknown needs {sorted(unknown)}")
        for step in steps:
            if any(key in H2_STEP_KEYS for key in step):
                needs.add("h2")
            elif "not_reached" not in step and "sleep" not in step:
                needs.add("h1")
            if any(key.startswith("ws_") for key in step):
                needs.add("ws")
            if "shutdown_write" in step:
                needs.add("cleartext")
        if "h2" in needs and "h1" in needs:
            raise CaseError(f"{where}: HTTP/2 steps and HTTP/1.1 steps in one case")
        self.needs = frozenset(needs)

    @property
    def phase(self) -> str:
        if self.startup:
            return "startup"
        if self.report is not None:
            return "shutdown"
        return "run"

    def __repr__(self) -> str:
        return f"Case({self.id!r})"


def _shorthand(data: dict) -> list:
    steps = []
    if "request" in data:
        steps.append({"send": data["request"]})
    for expectation in data.get("responses", ()):
        steps.append({"expect": expectation})
    closed = data.get("closed")
    if closed is True:
        steps.append({"closed": True})
    elif closed is False:
        steps.append({"open": True})
    if "not_reached" in data:
        steps.append({"not_reached": data["not_reached"]})
    return steps


def _check_request(request, where: str) -> None:
    if not isinstance(request, dict):
        raise CaseError(f"{where}: a request must be an object")
    unknown = set(request) - REQUEST_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown request keys {sorted(unknown)}")
    if "raw" in request and len(request) > 1:
        raise CaseError(f"{where}: a raw request has no other keys")


def _check_expect(expect, where: str) -> None:
    if not isinstance(expect, dict):
        raise CaseError(f"{where}: an expectation must be an object")
    unknown = set(expect) - EXPECT_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown expectation keys {sorted(unknown)}")


def _check_step(step, where: str) -> None:
    if not isinstance(step, dict) or not step:
        raise CaseError(f"{where}: a step must be a non-empty object")
    unknown = set(step) - STEP_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown step keys {sorted(unknown)}")
    if "send" in step:
        requests = step["send"] if isinstance(step["send"], list) else [step["send"]]
        for request in requests:
            _check_request(request, where)
    if "expect" in step:
        _check_expect(step["expect"], where)
    if "check" in step:
        check = step["check"]
        _check_request(check.get("request"), where)
        _check_expect(check.get("expect"), where)
    if any(key in H2_STEP_KEYS for key in step):
        from .h2client import check_step  # HTTP/2 steps: see .h2client

        if len(step) != 1:
            raise CaseError(f"{where}: an HTTP/2 step has one key: {sorted(step)}")
        check_step(step, where)
    if any(key in step for key in ("ws_handshake", "ws_send", "ws_expect")):
        from .ws import check_frame_spec, check_handshake_spec  # WebSocket steps: see .ws

        if "ws_handshake" in step:
            check_handshake_spec(step["ws_handshake"], where)
            if "expect" in step["ws_handshake"]:
                _check_expect(step["ws_handshake"]["expect"], where)
        if "ws_send" in step:
            frames = step["ws_send"] if isinstance(step["ws_send"], list) else [step["ws_send"]]
            for frame in frames:
                check_frame_spec(frame, where)
        if "ws_expect" in step:
            check_frame_spec(step["ws_expect"], where, expectation=True)


def load_file(path: str) -> list:
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except ValueError as exc:
            raise CaseError(f"{path}: not valid JSON: {exc}") from None
    source = os.path.basename(path)
    defaults = data.get("defaults", {})
    return [Case(item, defaults, source) for item in data.get("cases", ())]


def load_cases(directory: str = CASES_DIR) -> list:
    """Every case, in file order; duplicate ids are an error."""
    cases = []
    seen: dict = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        for case in load_file(os.path.join(directory, name)):
            if case.id in seen:
                raise CaseError(f"{name}: case id {case.id!r} also used in {seen[case.id]}")
            seen[case.id] = name
            cases.append(case)
    return cases


# ------------------------------------------------------------------------------------ requests


def substitute(value, variables: dict):
    """Replace ``@NAME@`` markers in every string of a JSON value."""
    if isinstance(value, str):
        if "@" in value:
            for name, replacement in variables.items():
                value = value.replace("@" + name + "@", replacement)
        return value
    if isinstance(value, list):
        return [substitute(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, variables) for key, item in value.items()}
    return value


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


def request_bytes(request: dict, variables: dict) -> tuple:
    """(bytes, is_head) for one request description."""
    request = substitute(request, variables)
    if "raw" in request:
        raw = request["raw"]
        pieces = raw if isinstance(raw, list) else [raw]
        out = []
        for piece in pieces:
            if isinstance(piece, dict):
                out.append(_latin1(piece["repeat"]) * int(piece["times"]))
            else:
                out.append(_latin1(piece))
        data = b"".join(out)
        return data, data.startswith(b"HEAD ")
    method = request.get("method", "GET")
    target = request.get("target", "/")
    version = request.get("version", "HTTP/1.1")
    headers = [tuple(pair) for pair in request.get("headers", ())]
    names = {name.lower() for name, _ in headers}
    host = request.get("host", True)
    if host is True and "host" not in names:
        if version == "HTTP/1.1":
            headers.insert(0, ("Host", variables.get("HOST", "127.0.0.1")))
    elif isinstance(host, str):
        headers.insert(0, ("Host", host))
    body = b""
    if "chunks" in request:
        if "transfer-encoding" not in names:
            headers.append(("Transfer-Encoding", "chunked"))
        for chunk in request["chunks"]:
            data = _latin1(chunk)
            body += b"%x\r\n%s\r\n" % (len(data), data)
        body += b"0\r\n\r\n"
    elif "body" in request:
        body = _latin1(request["body"])
        if "content-length" not in names and "transfer-encoding" not in names:
            headers.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, target, version)
    head += "".join("%s: %s\r\n" % pair for pair in headers)
    return _latin1(head) + b"\r\n" + body, method == "HEAD"
