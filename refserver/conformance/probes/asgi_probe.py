"""The ASGI probe: reports what an ASGI server gave it, and misbehaves on request.

Serve it with any ASGI server (``refserver.conformance.probes.asgi_probe:app``). Routes are listed
in :mod:`.common`; this module adds:

``/r/resp``        ``kind`` "" (one body message, or one per ``part`` then an empty final one),
                   ``last`` (one message per part, the last closing the body), ``empty-first``
                   (an empty ``more_body`` message before the parts), ``pathsend`` (``file``
                   by http.response.pathsend), ``zerocopy`` (bytes ``[start, end)`` of ``file``,
                   or all of it, by http.response.zerocopysend).
``/x/state-set``   sets a top-level key in ``scope["state"]`` (a shallow copy per request).
``/x/receive-after-response``, ``/x/disconnect``: record, under ``key``, what ``receive()`` gave.
``/m/<name>``      one protocol misuse each (see :data:`MISUSE`).
``/__probe__/lifespan``  what the lifespan scope and messages looked like.

Variant applications for lifespan cases: :data:`lifespan_unsupported_app` (raises on the lifespan
scope), :data:`lifespan_failed_app` (sends ``lifespan.startup.failed``),
:data:`lifespan_raise_app` (raises after receiving ``lifespan.startup``).
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
from .ws_probe import asgi_websocket

LIFESPAN: dict = {"scope": None, "messages": [], "sent": []}
JSON_HEADERS = [
    (b"content-type", b"application/json"),
    tuple(h.encode() for h in OBSERVATION_HEADER),
]


def scope_view(scope: dict) -> tuple:
    """(JSON view, type map) of a scope; types name what each value was before conversion."""
    view = {key: jsonable(value) for key, value in scope.items()}
    types = {key: type_name(value) for key, value in scope.items()}
    headers = scope.get("headers")
    if isinstance(headers, (list, tuple)) and headers:
        pair = headers[0]
        types["headers:item"] = type_name(pair)
        types["headers:name"] = type_name(pair[0])
        types["headers:value"] = type_name(pair[1])
    for key in ("client", "server"):
        value = scope.get(key)
        if isinstance(value, (list, tuple)) and value:
            types[key + ":host"] = type_name(value[0])
            types[key + ":port"] = type_name(value[1]) if len(value) > 1 else "missing"
    asgi = scope.get("asgi")
    if isinstance(asgi, dict):
        types["asgi:version"] = type_name(asgi.get("version"))
    return view, types


async def send_json(send, status: int, data: dict) -> None:
    body = to_json(data)
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def send_text(send, status: int, text: bytes, headers=()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": text})


async def read_body(receive) -> tuple:
    """The whole request body, and the messages it came in (type, size, more_body)."""
    parts, messages = [], []
    while True:
        message = await receive()
        kind = message.get("type")
        body = message.get("body", b"")
        messages.append(
            {
                "type": kind,
                "length": len(body) if isinstance(body, (bytes, bytearray)) else None,
                "body_type": type_name(body) if "body" in message else "missing",
                "more_body": message.get("more_body", "missing"),
            }
        )
        if kind != "http.request":
            break
        parts.append(body)
        if not message.get("more_body", False):
            break
    return b"".join(parts), messages


async def echo(scope, receive, send) -> None:
    body, messages = await read_body(receive)
    view, types = scope_view(scope)
    observation = {
        "interface": "asgi",
        "method": scope.get("method"),
        "path": scope.get("path"),
        "query": view.get("query_string"),
        "version": scope.get("http_version"),
        "headers": view.get("headers"),
        "body": body.decode("latin-1"),
        "body_length": len(body),
        "chunks": [m["length"] for m in messages if m["type"] == "http.request"],
        "messages": messages,
        "scope": view,
        "types": types,
    }
    await send_json(send, 200, observation)


async def respond_plan(scope, receive, send) -> None:
    """``/r/resp``: the response the query describes, after reading the request body (unless
    ``noread=1``: then the server is left to discard it)."""
    plan = Plan(scope.get("query_string", b"").decode("latin-1"))
    if not plan.noread:
        await read_body(receive)
    if plan.delay:
        await asyncio.sleep(plan.delay)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in plan.headers]
    await send({"type": "http.response.start", "status": plan.status, "headers": headers})
    if plan.kind == "pathsend":
        await send({"type": "http.response.pathsend", "path": file_path(plan.file)})
        return
    if plan.kind == "zerocopy":
        with open(file_path(plan.file), "rb") as fh:
            message = {"type": "http.response.zerocopysend", "file": fh, "offset": plan.start}
            if plan.end:
                message["count"] = plan.end - plan.start
            await send(message)
        return
    parts = plan.parts
    if plan.kind == "empty-first":
        await send({"type": "http.response.body", "body": b"", "more_body": True})
    if plan.kind == "last" and parts:
        for index, part in enumerate(parts):
            await send(
                {"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1}
            )
    elif len(parts) > 1 or plan.kind == "empty-first":
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await send({"type": "http.response.body", "body": parts[0] if parts else b""})


# ------------------------------------------------------------------------------------ misuse

#: The longest a probe route that "never" ends runs.
NEVER_CAP = 10.0

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}


async def m_raise(scope, receive, send, key):
    raise RuntimeError("probe: raised before responding")


async def m_raise_after_start(scope, receive, send, key):
    await send(START)
    raise RuntimeError("probe: raised after http.response.start")


async def m_raise_mid_body(scope, receive, send, key):
    await send(START)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("probe: raised in the middle of the body")


async def m_never_finishes(scope, receive, send, key):
    """Starts a body and never ends it; returns once its client has left, or after
    NEVER_CAP seconds, so that a server that never tells it cannot keep the probe busy."""
    await send(START)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    try:
        while (await asyncio.wait_for(receive(), NEVER_CAP))["type"] != "http.disconnect":
            pass
        record_event(key, {"disconnect": True})
    except asyncio.TimeoutError:
        record_event(key, {"disconnect": False})


async def m_no_response(scope, receive, send, key):
    return None


async def m_start_only(scope, receive, send, key):
    await send(START)


async def m_return_mid_body(scope, receive, send, key):
    await send(START)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})


async def _attempt(send, message, key) -> dict | None:
    """Send ``message``; record and return how it failed (None if it did not)."""
    try:
        await send(message)
    except Exception as exc:  # any class: recording what the server raises is the point
        record = exception_record(exc)
        record_event(key, {"raised": record})
        return record
    record_event(key, {"raised": None})
    return None


async def m_body_before_start(scope, receive, send, key):
    raised = await _attempt(send, {"type": "http.response.body", "body": b"x"}, key)
    if raised:
        raise RuntimeError("probe: re-raising the send error")


async def m_start_twice(scope, receive, send, key):
    await send(START)
    raised = await _attempt(send, START, key)
    if raised:
        raise RuntimeError("probe: re-raising the send error")
    await send({"type": "http.response.body", "body": b"second start accepted"})


async def m_after_complete(scope, receive, send, key):
    await send(START)
    await send({"type": "http.response.body", "body": b"complete"})
    await _attempt(send, {"type": "http.response.body", "body": b"more"}, key)


async def m_unknown_message(scope, receive, send, key):
    await _attempt(send, {"type": "http.response.nonsense"}, key)
    raise RuntimeError("probe: after an unknown message")


async def _start_with(send, key, **fields):
    message = dict(START)
    message.update(fields)
    await send(message)
    await send({"type": "http.response.body", "body": b"should not be sent"})


async def m_status_str(scope, receive, send, key):
    await _start_with(send, key, status="200")


async def m_status_invalid(scope, receive, send, key):
    await _start_with(send, key, status=1000)


async def m_status_informational(scope, receive, send, key):
    await _start_with(send, key, status=103)


async def m_header_name_invalid(scope, receive, send, key):
    await _start_with(send, key, headers=[(b"x bad", b"1")])


async def m_header_value_crlf(scope, receive, send, key):
    await _start_with(send, key, headers=[(b"x-a", b"1\r\nx-injected: 1")])


async def m_header_value_lf(scope, receive, send, key):
    await _start_with(send, key, headers=[(b"x-a", b"1\nx-injected: 1")])


async def m_header_value_nul(scope, receive, send, key):
    await _start_with(send, key, headers=[(b"x-a", b"1\x00x-injected: 1")])


async def m_header_str(scope, receive, send, key):
    await _start_with(send, key, headers=[("x-a", "1")])


async def m_body_str(scope, receive, send, key):
    await send(START)
    await send({"type": "http.response.body", "body": "text, not bytes"})


async def m_cl_short(scope, receive, send, key):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
    )
    await send({"type": "http.response.body", "body": b"12345"})


async def m_cl_long(scope, receive, send, key):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]}
    )
    await send({"type": "http.response.body", "body": b"12345"})


async def m_cl_long_streamed(scope, receive, send, key):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]}
    )
    await send({"type": "http.response.body", "body": b"12", "more_body": True})
    await send({"type": "http.response.body", "body": b"345"})


async def m_send_after_disconnect(scope, receive, send, key):
    """Wait until the client has gone, then try to respond (ASGI 2.4: an OSError subclass)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
    record_event(key, {"disconnect": True})
    await _attempt(send, START, key)


MISUSE = {
    "raise": m_raise,
    "raise-after-start": m_raise_after_start,
    "raise-mid-body": m_raise_mid_body,
    "no-response": m_no_response,
    "start-only": m_start_only,
    "return-mid-body": m_return_mid_body,
    "body-before-start": m_body_before_start,
    "start-twice": m_start_twice,
    "after-complete": m_after_complete,
    "unknown-message": m_unknown_message,
    "status-str": m_status_str,
    "status-invalid": m_status_invalid,
    "status-informational": m_status_informational,
    "header-name-invalid": m_header_name_invalid,
    "header-value-crlf": m_header_value_crlf,
    "never-finishes": m_never_finishes,
    "header-value-lf": m_header_value_lf,
    "header-value-nul": m_header_value_nul,
    "header-str": m_header_str,
    "body-str": m_body_str,
    "cl-short": m_cl_short,
    "cl-long": m_cl_long,
    "cl-long-streamed": m_cl_long_streamed,
    "send-after-disconnect": m_send_after_disconnect,
}


# ------------------------------------------------------------------------------------ extra


async def x_state_set(scope, receive, send, key):
    state = scope.get("state")
    before = jsonable(state)
    if isinstance(state, dict):
        state["set_by_request"] = key or True
    await send_json(send, 200, {"before": before, "after": jsonable(state)})


async def x_receive_after_response(scope, receive, send, key):
    await read_body(receive)
    await send_text(send, 200, b"done")
    try:
        message = await asyncio.wait_for(receive(), 2.0)
        record_event(key, {"message": message.get("type")})
    except asyncio.TimeoutError:
        record_event(key, {"message": "timeout"})


async def x_disconnect(scope, receive, send, key):
    """Read the body, then wait for ``http.disconnect`` without responding."""
    messages = []
    while True:
        message = await receive()
        messages.append(message.get("type"))
        if message["type"] == "http.disconnect":
            break
    record_event(key, {"messages": messages})


async def x_body_wait(scope, receive, send, key):
    """Respond before reading the body (a server that sends 100 Continue only when asked)."""
    await send_text(send, 200, b"not reading the body")


EXTRA = {
    "state-set": x_state_set,
    "receive-after-response": x_receive_after_response,
    "disconnect": x_disconnect,
    "respond-without-reading": x_body_wait,
}


# ------------------------------------------------------------------------------------ lifespan


async def lifespan(scope, receive, send) -> None:
    state = scope.get("state")
    LIFESPAN["scope"] = {
        "keys": sorted(scope),
        "asgi": jsonable(scope.get("asgi")),
        "state_type": type_name(state),
        "state_initial": jsonable(state),
    }
    while True:
        message = await receive()
        kind = message.get("type")
        LIFESPAN["messages"].append(kind)
        if kind == "lifespan.startup":
            if isinstance(state, dict):
                state["probe"] = "started"
                state["items"] = ["from-startup"]
            await send({"type": "lifespan.startup.complete"})
            LIFESPAN["sent"].append("lifespan.startup.complete")
        elif kind == "lifespan.shutdown":
            write_report("asgi_lifespan", jsonable(LIFESPAN))
            await send({"type": "lifespan.shutdown.complete"})
            return


async def dispatch(scope, receive, send) -> None:
    path = scope.get("path", "")
    record_seen(path)
    query = scope.get("query_string", b"").decode("latin-1")
    fixed = probe_response(path, query)
    if fixed is not None:
        status, headers, body = fixed
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(n.encode(), v.encode()) for n, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/__probe__/lifespan":
        await send_json(send, 200, jsonable(LIFESPAN))
        return
    key = first(parse_query(query), "key", "")
    if path == "/r/resp":
        await respond_plan(scope, receive, send)
    elif path.startswith("/m/") and path[3:] in MISUSE:
        await MISUSE[path[3:]](scope, receive, send, key)
    elif path.startswith("/x/") and path[3:] in EXTRA:
        await EXTRA[path[3:]](scope, receive, send, key)
    else:
        await echo(scope, receive, send)


async def app(scope, receive, send) -> None:
    """The probe: lifespan supported, every HTTP request routed as described above."""
    kind = scope.get("type")
    if kind == "lifespan":
        await lifespan(scope, receive, send)
    elif kind == "http":
        await dispatch(scope, receive, send)
    elif kind == "websocket":
        await asgi_websocket(scope, receive, send)


async def lifespan_unsupported_app(scope, receive, send) -> None:
    """An app written without lifespan support: it raises on any scope that is not HTTP."""
    if scope["type"] != "http":
        raise RuntimeError("probe: this application only speaks HTTP")
    await dispatch(scope, receive, send)


async def lifespan_failed_app(scope, receive, send) -> None:
    """Reports a failed startup; a server must not serve it."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "probe: startup refused"})
        return
    await dispatch(scope, receive, send)


async def lifespan_raise_app(scope, receive, send) -> None:
    """Raises after receiving ``lifespan.startup``: served without lifespan (ASGI lifespan spec)."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("probe: raised during lifespan startup")
    await dispatch(scope, receive, send)
