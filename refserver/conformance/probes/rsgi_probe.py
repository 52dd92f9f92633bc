"""The RSGI probe: reports what an RSGI server gave it, and misbehaves on request.

Serve it with any RSGI server (``refserver.conformance.probes.rsgi_probe:app``). ``app`` has both
``__call__`` and ``__rsgi__``: a server must call ``__rsgi__`` (``__call__`` answers 418 so a case
can tell). Routes are listed in :mod:`.common`; this module adds:

``/r/resp``       ``kind`` empty | str | bytes | stream | stream-str | empty-first (a stream whose
                  first send is empty) | file | file_range; without a kind, ``bytes`` for at most
                  one part and ``stream`` for several.
``/x/headers``    the results of every method of the headers mapping (``?name=``).
``/x/body-twice``  reads the body twice (``?first=``/``second=`` whole | iter).
``/x/scope-write``  tries to assign a scope attribute.
``/x/disconnect``, ``/x/disconnect-after-response``: record when ``client_disconnect()`` resolves.
``/x/init``       what ``__rsgi_init__`` saw.
``/x/stream-backpressure``  how long the slowest ``send_bytes`` of a large stream waited.
``/m/<name>``     one protocol misuse each (see :data:`MISUSE`).
"""

from __future__ import annotations

import asyncio

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
    write_report,
)
from .ws_probe import rsgi_websocket

JSON_HEADERS = [("content-type", "application/json"), OBSERVATION_HEADER]
SCOPE_ATTRS = (
    "proto",
    "rsgi_version",
    "http_version",
    "server",
    "client",
    "scheme",
    "method",
    "path",
    "query_string",
    "authority",
)


def scope_view(scope) -> tuple:
    view: dict = {}
    types: dict = {}
    for name in SCOPE_ATTRS:
        try:
            value = getattr(scope, name)
        except AttributeError:
            view[name] = "<missing>"
            types[name] = "missing"
            continue
        view[name] = jsonable(value)
        types[name] = type_name(value)
    headers = scope.headers
    view["headers"] = [list(item) for item in headers.items()]
    types["headers"] = type_name(headers)
    return view, types


def respond_json(protocol, status: int, data) -> None:
    protocol.response_bytes(status, JSON_HEADERS, to_json(data))


async def read_chunks(protocol) -> list:
    chunks = []
    async for chunk in protocol:
        chunks.append(chunk)
    return chunks


async def echo(scope, protocol, params) -> None:
    if first(params, "read") == "whole":
        body = await protocol()
        chunks = None
        body_type = type_name(body)
    else:
        parts = await read_chunks(protocol)
        body = b"".join(parts)
        chunks = [len(part) for part in parts]
        body_type = type_name(parts[0]) if parts else "none"
    view, types = scope_view(scope)
    respond_json(
        protocol,
        200,
        {
            "interface": "rsgi",
            "method": scope.method,
            "path": scope.path,
            "query": scope.query_string,
            "version": {"1": "1.0"}.get(scope.http_version, scope.http_version),
            "headers": view["headers"],
            "body": body.decode("latin-1"),
            "body_length": len(body),
            "body_type": body_type,
            "chunks": chunks,
            "scope": view,
            "types": types,
        },
    )


async def respond_plan(scope, protocol, params) -> None:
    plan = Plan(scope.query_string)
    if not plan.noread:
        await protocol()
    if plan.delay:
        await asyncio.sleep(plan.delay)
    kind = plan.kind or ("stream" if len(plan.parts) > 1 else "bytes")
    if kind == "empty":
        protocol.response_empty(plan.status, plan.headers)
    elif kind == "str":
        protocol.response_str(plan.status, plan.headers, "".join(plan.text_parts))
    elif kind == "bytes":
        protocol.response_bytes(plan.status, plan.headers, plan.whole)
    elif kind in ("stream", "stream-str", "empty-first"):
        transport = protocol.response_stream(plan.status, plan.headers)
        if kind == "empty-first":
            await transport.send_bytes(b"")
        if kind != "stream-str":
            for part in plan.parts:
                await transport.send_bytes(part)
        else:
            for text in plan.text_parts:
                await transport.send_str(text)
    elif kind == "file":
        protocol.response_file(plan.status, plan.headers, file_path(plan.file))
    elif kind == "file_range":
        protocol.response_file_range(
            plan.status, plan.headers, file_path(plan.file), plan.start, plan.end
        )
    else:
        protocol.response_str(400, [], "unknown kind " + kind)


# ------------------------------------------------------------------------------------ extra


async def x_headers(scope, protocol, params, key):
    await protocol()
    headers = scope.headers
    name = first(params, "name", "x-dup")
    missing = "x-probe-missing-header"
    result = {
        "type": type_name(headers),
        "keys": list(headers.keys()),
        "values": list(headers.values()),
        "items": [list(item) for item in headers.items()],
        "len": len(headers),
        "iter": list(iter(headers)),
        "get": headers.get(name),
        "get_upper": headers.get(name.upper()),
        "get_missing": headers.get(missing),
        "get_missing_default": headers.get(missing, "fallback"),
        "get_all": headers.get_all(name),
        "get_all_upper": headers.get_all(name.upper()),
        "get_all_missing": headers.get_all(missing),
        "contains": name in headers,
        "contains_upper": name.upper() in headers,
        "contains_missing": missing in headers,
    }
    try:
        result["getitem"] = headers[name]
    except Exception as exc:
        result["getitem"] = {"raised": exception_record(exc)}
    try:
        result["getitem_missing"] = headers[missing]
    except KeyError:
        result["getitem_missing"] = "KeyError"
    except Exception as exc:
        result["getitem_missing"] = {"raised": exception_record(exc)}
    respond_json(protocol, 200, result)


async def _read(protocol, how: str):
    if how == "iter":
        return b"".join(await read_chunks(protocol))
    return await protocol()


async def x_body_twice(scope, protocol, params, key):
    first_way = first(params, "first", "whole")
    second_way = first(params, "second", "whole")
    body = await _read(protocol, first_way)
    try:
        again = await _read(protocol, second_way)
        second = {"returned": again.decode("latin-1")}
    except Exception as exc:
        second = {"raised": exception_record(exc)}
    respond_json(protocol, 200, {"first": body.decode("latin-1"), "second": second})


async def x_scope_write(scope, protocol, params, key):
    await protocol()
    try:
        scope.path = "/changed"
        outcome = {"raised": None, "path": scope.path}
    except Exception as exc:
        outcome = {"raised": exception_record(exc), "path": scope.path}
    respond_json(protocol, 200, outcome)


async def x_disconnect(scope, protocol, params, key):
    """Read the body, then wait for the client to go, without responding."""
    await protocol()
    try:
        await asyncio.wait_for(protocol.client_disconnect(), 5.0)
        record_event(key, {"disconnected": True})
    except asyncio.TimeoutError:
        record_event(key, {"disconnected": False})


async def x_disconnect_after_response(scope, protocol, params, key):
    await protocol()
    protocol.response_str(200, [("content-type", "text/plain")], "done")
    try:
        await asyncio.wait_for(protocol.client_disconnect(), 0.5)
        record_event(key, {"resolved": True})
    except asyncio.TimeoutError:
        record_event(key, {"resolved": False})


async def x_init(scope, protocol, params, key):
    await protocol()
    respond_json(protocol, 200, {"init": app.init_calls, "entered": app.entered})


async def x_file_range_invalid(scope, protocol, params, key):
    await protocol()
    start, end = int(first(params, "start", "5")), int(first(params, "end", "5"))
    try:
        protocol.response_file_range(200, [], file_path("small.txt"), start, end)
    except Exception as exc:
        respond_json(protocol, 200, {"raised": exception_record(exc)})


async def x_stream_backpressure(scope, protocol, params, key):
    """Stream ``size`` bytes in 64 KiB sends and record the longest single send. A server with
    backpressure makes a send wait while the client is not reading; one without never does."""
    import time

    await protocol()
    size = int(first(params, "size", str(16 << 20)))
    piece = b"b" * 65536
    transport = protocol.response_stream(200, [("content-type", "application/octet-stream")])
    longest = 0.0
    sent = 0
    try:
        while sent < size:
            started = time.monotonic()
            await transport.send_bytes(piece)
            longest = max(longest, time.monotonic() - started)
            sent += len(piece)
    finally:
        record_event(key, {"longest_send": round(longest, 3), "sent": sent})


EXTRA = {
    "stream-backpressure": x_stream_backpressure,
    "headers": x_headers,
    "body-twice": x_body_twice,
    "scope-write": x_scope_write,
    "disconnect": x_disconnect,
    "disconnect-after-response": x_disconnect_after_response,
    "init": x_init,
    "file-range-invalid": x_file_range_invalid,
}


# ------------------------------------------------------------------------------------ misuse


async def m_raise(scope, protocol, params, key):
    raise RuntimeError("probe: raised before responding")


async def m_no_response(scope, protocol, params, key):
    await protocol()


async def m_raise_after_response(scope, protocol, params, key):
    protocol.response_str(200, [("content-type", "text/plain")], "complete")
    raise RuntimeError("probe: raised after responding")


async def m_raise_mid_stream(scope, protocol, params, key):
    transport = protocol.response_stream(200, [("content-type", "text/plain")])
    await transport.send_bytes(b"partial")
    raise RuntimeError("probe: raised in the middle of a stream")


#: The longest a probe route that "never" ends runs.
NEVER_CAP = 10.0


async def m_never_finishes(scope, protocol, params, key):
    """Starts a stream and never ends it; returns once its client has left, or after
    NEVER_CAP seconds, so that a server that never tells it cannot keep the probe busy."""
    transport = protocol.response_stream(200, [("content-type", "text/plain")])
    await transport.send_bytes(b"partial")
    try:
        await asyncio.wait_for(protocol.client_disconnect(), NEVER_CAP)
        record_event(key, {"disconnect": True})
    except asyncio.TimeoutError:
        record_event(key, {"disconnect": False})


def _try(key, func, *args) -> dict | None:
    try:
        func(*args)
    except Exception as exc:
        record = exception_record(exc)
        record_event(key, {"raised": record})
        return record
    record_event(key, {"raised": None})
    return None


async def m_second_response(scope, protocol, params, key):
    protocol.response_str(200, [("content-type", "text/plain")], "first")
    kind = first(params, "second", "str")
    if kind == "stream":
        _try(key, protocol.response_stream, 201, [])
    elif kind == "empty":
        _try(key, protocol.response_empty, 201, [])
    else:
        _try(key, protocol.response_str, 201, [], "second")


async def m_second_stream(scope, protocol, params, key):
    transport = protocol.response_stream(200, [("content-type", "text/plain")])
    raised = _try(key, protocol.response_stream, 201, [])
    await transport.send_bytes(b"first stream")
    if raised is None:
        record_event(key, {"note": "second response_stream accepted"})


async def _respond_with(protocol, key, status=200, headers=None, kind="str"):
    headers = [("content-type", "text/plain")] if headers is None else headers
    if kind == "bytes":
        protocol.response_bytes(status, headers, "text, not bytes")
    else:
        protocol.response_str(status, headers, "should not be sent as is")


async def m_status_invalid(scope, protocol, params, key):
    await _respond_with(protocol, key, status=int(first(params, "status", "1000")))


async def m_status_str(scope, protocol, params, key):
    await _respond_with(protocol, key, status="200")


async def m_header_name_invalid(scope, protocol, params, key):
    await _respond_with(protocol, key, headers=[("x bad", "1")])


async def m_header_value_crlf(scope, protocol, params, key):
    await _respond_with(protocol, key, headers=[("x-a", "1\r\nx-injected: 1")])


async def m_header_value_lf(scope, protocol, params, key):
    await _respond_with(protocol, key, headers=[("x-a", "1\nx-injected: 1")])


async def m_header_value_nul(scope, protocol, params, key):
    await _respond_with(protocol, key, headers=[("x-a", "1\x00x-injected: 1")])


async def m_header_not_latin1(scope, protocol, params, key):
    await _respond_with(protocol, key, headers=[("x-a", "\u2603")])


async def m_header_bytes(scope, protocol, params, key):
    await _respond_with(protocol, key, headers=[(b"x-a", b"1")])


async def m_body_type(scope, protocol, params, key):
    await _respond_with(protocol, key, kind="bytes")


async def m_file_missing(scope, protocol, params, key):
    protocol.response_file(200, [("content-type", "text/plain")], file_path("nope"))


async def m_stream_after_disconnect(scope, protocol, params, key):
    transport = protocol.response_stream(200, [("content-type", "text/plain")])
    await transport.send_bytes(b"first")
    try:
        await asyncio.wait_for(protocol.client_disconnect(), 5.0)
    except asyncio.TimeoutError:
        record_event(key, {"disconnect": "timeout"})
        return
    try:
        for _ in range(3):
            await transport.send_bytes(b"after the client left")
            await asyncio.sleep(0.05)
        record_event(key, {"raised": None})
    except Exception as exc:
        record_event(key, {"raised": exception_record(exc)})


async def m_cl_short(scope, protocol, params, key):
    transport = protocol.response_stream(200, [("content-length", "10")])
    await transport.send_bytes(b"12345")


async def m_cl_long(scope, protocol, params, key):
    protocol.response_bytes(200, [("content-length", "3")], b"12345")


MISUSE = {
    "raise": m_raise,
    "no-response": m_no_response,
    "raise-after-response": m_raise_after_response,
    "raise-mid-stream": m_raise_mid_stream,
    "second-response": m_second_response,
    "second-stream": m_second_stream,
    "status-invalid": m_status_invalid,
    "status-str": m_status_str,
    "header-name-invalid": m_header_name_invalid,
    "header-value-crlf": m_header_value_crlf,
    "never-finishes": m_never_finishes,
    "header-value-lf": m_header_value_lf,
    "header-value-nul": m_header_value_nul,
    "header-not-latin1": m_header_not_latin1,
    "header-bytes": m_header_bytes,
    "body-type": m_body_type,
    "file-missing": m_file_missing,
    "stream-after-disconnect": m_stream_after_disconnect,
    "cl-short": m_cl_short,
    "cl-long": m_cl_long,
}


class Probe:
    """Both entry points, so a case can tell which one the server used."""

    def __init__(self):
        self.init_calls = []
        self.entered = {"__rsgi__": 0, "__call__": 0}

    def __rsgi_init__(self, loop) -> None:
        record = {"loop_running": loop.is_running()}
        try:
            record["run_until_complete"] = loop.run_until_complete(asyncio.sleep(0, result="ran"))
        except Exception as exc:
            record["run_until_complete"] = {"raised": exception_record(exc)}
        self.init_calls.append(record)

    def __rsgi_del__(self, loop) -> None:
        write_report(
            "rsgi_del",
            {
                "loop_running": loop.is_running(),
                "init_calls": len(self.init_calls),
                "entered": dict(self.entered),
            },
        )

    async def __call__(self, scope, protocol) -> None:
        self.entered["__call__"] += 1
        protocol.response_str(418, [("content-type", "text/plain")], "entered through __call__")

    async def __rsgi__(self, scope, protocol) -> None:
        self.entered["__rsgi__"] += 1
        if scope.proto == "ws":
            await rsgi_websocket(scope, protocol)
            return
        if scope.proto != "http":
            return
        path = scope.path
        record_seen(path)
        fixed = probe_response(path, scope.query_string)
        if fixed is not None:
            status, headers, body = fixed
            protocol.response_bytes(status, headers, body)
            return
        params = parse_query(scope.query_string)
        key = first(params, "key", "")
        if path == "/r/resp":
            await respond_plan(scope, protocol, params)
        elif path.startswith("/m/") and path[3:] in MISUSE:
            await MISUSE[path[3:]](scope, protocol, params, key)
        elif path.startswith("/x/") and path[3:] in EXTRA:
            await EXTRA[path[3:]](scope, protocol, params, key)
        else:
            await echo(scope, protocol, params)


app = Probe()
