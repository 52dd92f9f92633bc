"""The WSGI probe: reports the environ a WSGI server built, and misbehaves on request.

Serve it with any WSGI server (``refserver.conformance.probes.wsgi_probe:app``). Routes are listed
in :mod:`.common`; this module adds:

``/r/resp``      ``kind`` list | tuple | gen | write | file | empty-first; without a kind, a list
                 for at most one part and a generator for several (so a streamed body is chunked
                 and a known one has a Content-Length, as on the other interfaces).
``/x/input``     runs ``?op=`` operations on ``wsgi.input`` in order (``read``, ``read:N``,
                 ``readline``, ``readline:N``, ``readlines``, ``iter``) and reports each result.
``/x/errors``    writes to ``wsgi.errors``.
``/x/close``     a body whose ``close()`` records under ``key`` that it was called.
``/m/<name>``    one PEP 3333 violation each (see :data:`MISUSE`).

The echo reports the environ with dots in key names replaced by ':' (``wsgi:version``), since
case predicates address fields by dotted paths; OS environment variables are never reported.
"""

from __future__ import annotations

import sys
import time
from http import HTTPStatus

from .common import (
    OBSERVATION_HEADER,
    Plan,
    exception_record,
    file_path,
    first,
    jsonable,
    parse_query,
    probe_response,
    record_event,
    record_seen,
    to_json,
    type_name,
)

JSON_HEADERS = [("Content-Type", "application/json"), OBSERVATION_HEADER]


def status_line(code: int) -> str:
    try:
        return "%d %s" % (code, HTTPStatus(code).phrase)
    except ValueError:
        return "%d Custom" % code


#: The CGI variables a WSGI environ may carry (PEP 3333, RFC 3875), beyond ``HTTP_*``.
CGI_KEYS = frozenset(
    (
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "GATEWAY_INTERFACE",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "REMOTE_HOST",
        "REMOTE_USER",
        "AUTH_TYPE",
        "PATH_TRANSLATED",
        "HTTPS",
        "RAW_URI",
        "REQUEST_URI",
    )
)


def reported(key: str) -> bool:
    """Only request-derived keys are reported. PEP 3333 lets a server copy the whole process
    environment into environ (Granian does), and that must never end up in a report."""
    return key in CGI_KEYS or key.startswith("HTTP_") or "." in key


def environ_view(environ: dict) -> tuple:
    view: dict = {}
    types: dict = {}
    others = 0
    for key, value in environ.items():
        if not reported(key):
            others += 1
            continue
        value_key = key
        key = key.replace(".", ":")  # "wsgi.input" -> "wsgi:input": dots separate case paths
        types[key] = type_name(value)
        if value_key in ("wsgi.input", "wsgi.errors"):
            view[key] = {
                attr: callable(getattr(value, attr, None))
                for attr in (
                    "read",
                    "readline",
                    "readlines",
                    "__iter__",
                    "write",
                    "writelines",
                    "flush",
                )
            }
        elif isinstance(value, (str, bool, int, float, tuple, list)) or value is None:
            view[key] = jsonable(value)
        else:
            view[key] = "<%s>" % type(value).__name__
    view["<other keys>"] = others
    return view, types


def headers_from_environ(environ: dict) -> list:
    """Request headers as the application can see them: name lower-cased, sorted (order is lost)."""
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append([key[5:].lower().replace("_", "-"), value])
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value != "":
            out.append([key.lower().replace("_", "-"), value])
    return sorted(out)


def json_response(start_response, data, status: int = 200):
    body = to_json(data)
    start_response(status_line(status), [*JSON_HEADERS, ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response, params):
    stream = environ["wsgi.input"]
    body = stream.read()
    view, types = environ_view(environ)
    path = environ.get("PATH_INFO", "")
    try:
        decoded = path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        decoded = "<not latin-1: %r>" % path
    protocol = environ.get("SERVER_PROTOCOL", "")
    return json_response(
        start_response,
        {
            "interface": "wsgi",
            "method": environ.get("REQUEST_METHOD"),
            "path": decoded,
            "query": environ.get("QUERY_STRING"),
            "version": protocol[5:] if protocol.startswith("HTTP/") else protocol,
            "headers": headers_from_environ(environ),
            "body": body.decode("latin-1"),
            "body_length": len(body),
            "body_type": type_name(body),
            "chunks": None,
            "environ": view,
            "types": types,
        },
    )


def _generate(parts, empty_first=False):
    if empty_first:
        yield b""
    yield from parts


def respond_plan(environ, start_response, params):
    plan = Plan(environ.get("QUERY_STRING", ""))
    if not plan.noread:
        environ["wsgi.input"].read()
    if plan.delay:
        time.sleep(plan.delay)
    kind = plan.kind or ("gen" if len(plan.parts) > 1 else "list")
    write = start_response(status_line(plan.status), plan.headers)
    if kind == "list":
        return list(plan.parts)
    if kind == "tuple":
        return tuple(plan.parts)
    if kind == "gen":
        return _generate(plan.parts)
    if kind == "empty-first":
        return _generate(plan.parts, empty_first=True)
    if kind == "write":
        for part in plan.parts:
            write(part)
        return []
    if kind == "file":
        return environ["wsgi.file_wrapper"](open(file_path(plan.file), "rb"))
    return [b"unknown kind"]


# ------------------------------------------------------------------------------------ extra


def x_input(environ, start_response, params, key):
    stream = environ["wsgi.input"]
    results = []
    for op in params.get("op", ()):
        name, _, arg = op.partition(":")
        try:
            if name == "read":
                value = stream.read(int(arg)) if arg else stream.read()
            elif name == "readline":
                value = stream.readline(int(arg)) if arg else stream.readline()
            elif name == "readlines":
                value = stream.readlines()
            elif name == "iter":
                value = list(stream)
            else:
                value = "unknown op"
            results.append({"op": op, "value": jsonable(value), "type": type_name(value)})
        except Exception as exc:
            results.append({"op": op, "raised": exception_record(exc)})
    return json_response(start_response, {"results": results})


def x_errors(environ, start_response, params, key):
    errors = environ["wsgi.errors"]
    outcome = {}
    for name, call in (
        ("write", lambda: errors.write("refserver conformance probe: wsgi.errors line\n")),
        ("writelines", lambda: errors.writelines(["probe a\n", "probe b\n"])),
        ("flush", lambda: errors.flush()),
    ):
        try:
            call()
            outcome[name] = "ok"
        except Exception as exc:
            outcome[name] = exception_record(exc)
    return json_response(start_response, outcome)


class ClosingBody:
    """An iterable whose ``close()`` the server must call (PEP 3333), here recorded by key."""

    def __init__(self, key, parts, fail_at=None):
        self.key = key
        self.parts = parts
        self.fail_at = fail_at

    def __iter__(self):
        for index, part in enumerate(self.parts):
            if index == self.fail_at:
                raise RuntimeError("probe: raised while iterating the body")
            yield part

    def close(self):
        record_event(self.key, {"closed": True})


def x_close(environ, start_response, params, key):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    fail_at = first(params, "fail_at")
    return ClosingBody(key, [b"one", b"two"], None if fail_at is None else int(fail_at))


EXTRA = {"input": x_input, "errors": x_errors, "close": x_close}


# ------------------------------------------------------------------------------------ misuse

TEXT = [("Content-Type", "text/plain")]


def m_raise(environ, start_response, params, key):
    raise RuntimeError("probe: raised before start_response")


def m_raise_after_start(environ, start_response, params, key):
    start_response("200 OK", TEXT)
    raise RuntimeError("probe: raised after start_response, before any body")


def m_raise_mid_body(environ, start_response, params, key):
    start_response("200 OK", TEXT)

    def body():
        yield b"partial"
        raise RuntimeError("probe: raised in the middle of the body")

    return body()


#: The longest a probe route that "never" ends (or hangs) runs.
NEVER_CAP = 10.0


def m_never_finishes(environ, start_response, params, key):
    """Streams a piece every 50 ms and never ends; stops when a write fails because its client
    has left (the server then closes the iterable), or after NEVER_CAP seconds."""
    start_response("200 OK", TEXT)

    def body():
        deadline = time.monotonic() + NEVER_CAP
        try:
            while time.monotonic() < deadline:
                yield b"partial"
                time.sleep(0.05)
        finally:
            record_event(key, {"disconnect": time.monotonic() < deadline})

    return body()


def m_hang(environ, start_response, params, key):
    """Holds its thread for ``seconds`` (at most NEVER_CAP) before answering."""
    time.sleep(min(float(first(params, "seconds", "1")), NEVER_CAP))
    start_response("200 OK", TEXT)
    return [b"late"]


def m_empty_then_raise(environ, start_response, params, key):
    """Only empty strings before the error: nothing may have been sent, so a 500 is possible."""
    start_response("200 OK", TEXT)

    def body():
        yield b""
        raise RuntimeError("probe: raised after an empty piece of body")

    return body()


def m_no_start(environ, start_response, params, key):
    return [b"body without start_response"]


def m_start_twice(environ, start_response, params, key):
    start_response("200 OK", TEXT)
    try:
        start_response("201 Created", TEXT)
    except Exception as exc:
        record = exception_record(exc)
        # PEP 3333: with exc_info, start_response may replace a status not yet sent.
        start_response("200 OK", JSON_HEADERS, sys.exc_info())
        return [to_json({"raised": record})]
    return [b"second start_response accepted"]


def m_exc_info_replace(environ, start_response, params, key):
    start_response("200 OK", TEXT)
    try:
        raise ValueError("probe: failure before the body")
    except ValueError:
        start_response("503 Service Unavailable", TEXT, sys.exc_info())
    return [b"replaced"]


def m_exc_info_after_sent(environ, start_response, params, key):
    start_response("200 OK", TEXT)

    def body():
        yield b"partial"
        try:
            raise ValueError("probe: failure after the head was sent")
        except ValueError:
            try:
                start_response("500 Internal Server Error", TEXT, sys.exc_info())
            except Exception as exc:
                record_event(key, {"raised": exception_record(exc)})
                raise
            record_event(key, {"raised": None})
        yield b"start_response returned"

    return body()


def m_str_body(environ, start_response, params, key):
    start_response("200 OK", TEXT)
    return ["text, not bytes"]


def m_str_body_gen(environ, start_response, params, key):
    start_response("200 OK", TEXT)

    def body():
        yield "text, not bytes"

    return body()


def _check_start(start_response, key, status, headers):
    try:
        start_response(status, headers)
    except Exception as exc:
        record = exception_record(exc)
        record_event(key, {"raised": record})
        raise
    record_event(key, {"raised": None})
    return [b"accepted"]


def m_status_int(environ, start_response, params, key):
    return _check_start(start_response, key, 200, TEXT)


def m_status_no_reason(environ, start_response, params, key):
    return _check_start(start_response, key, "200", TEXT)


def m_status_bad(environ, start_response, params, key):
    return _check_start(start_response, key, "2000 Too Big", TEXT)


def m_header_bytes(environ, start_response, params, key):
    return _check_start(start_response, key, "200 OK", [(b"X-A", b"1")])


def m_headers_tuple(environ, start_response, params, key):
    return _check_start(start_response, key, "200 OK", (("X-A", "1"),))


def m_header_name_invalid(environ, start_response, params, key):
    return _check_start(start_response, key, "200 OK", [("X Bad", "1")])


def m_header_value_crlf(environ, start_response, params, key):
    return _check_start(start_response, key, "200 OK", [("X-A", "1\r\nX-Injected: 1")])


def m_header_value_lf(environ, start_response, params, key):
    return _check_start(start_response, key, "200 OK", [("X-A", "1\nX-Injected: 1")])


def m_header_value_nul(environ, start_response, params, key):
    return _check_start(start_response, key, "200 OK", [("X-A", "1\x00X-Injected: 1")])


def m_header_not_latin1(environ, start_response, params, key):
    return _check_start(start_response, key, "200 OK", [("X-A", "\u2603")])


def m_cl_short(environ, start_response, params, key):
    start_response("200 OK", [("Content-Length", "10")])
    return iter([b"12345"])


def m_cl_long(environ, start_response, params, key):
    start_response("200 OK", [("Content-Length", "3")])
    return iter([b"12", b"345"])


def m_write_before_start(environ, start_response, params, key):
    def body():
        yield b"body before start_response"
        start_response("200 OK", TEXT)

    return body()


MISUSE = {
    "raise": m_raise,
    "raise-after-start": m_raise_after_start,
    "raise-mid-body": m_raise_mid_body,
    "empty-then-raise": m_empty_then_raise,
    "no-start": m_no_start,
    "start-twice": m_start_twice,
    "exc-info-replace": m_exc_info_replace,
    "exc-info-after-sent": m_exc_info_after_sent,
    "str-body": m_str_body,
    "str-body-gen": m_str_body_gen,
    "status-int": m_status_int,
    "status-no-reason": m_status_no_reason,
    "status-bad": m_status_bad,
    "header-bytes": m_header_bytes,
    "headers-tuple": m_headers_tuple,
    "header-name-invalid": m_header_name_invalid,
    "header-value-crlf": m_header_value_crlf,
    "never-finishes": m_never_finishes,
    "hang": m_hang,
    "header-value-lf": m_header_value_lf,
    "header-value-nul": m_header_value_nul,
    "header-not-latin1": m_header_not_latin1,
    "cl-short": m_cl_short,
    "cl-long": m_cl_long,
    "body-before-start": m_write_before_start,
}


def app(environ, start_response):
    """The probe: every request routed as described in the module docstring."""
    path = environ.get("PATH_INFO", "")
    record_seen(path)
    query = environ.get("QUERY_STRING", "")
    fixed = probe_response(path, query)
    if fixed is not None:
        status, headers, body = fixed
        start_response(status_line(status), headers)
        return [body]
    params = parse_query(query)
    key = first(params, "key", "")
    if path == "/r/resp":
        return respond_plan(environ, start_response, params)
    if path.startswith("/m/") and path[3:] in MISUSE:
        return MISUSE[path[3:]](environ, start_response, params, key)
    if path.startswith("/x/") and path[3:] in EXTRA:
        return EXTRA[path[3:]](environ, start_response, params, key)
    return echo(environ, start_response, params)
