"""The WebSocket routes of the ASGI and RSGI probes (``/ws/...``), one function per interface.

Like the rest of the probes this imports nothing from refserver, so it runs on any server. What an
application observed and cannot say over the socket (a close code it received after the client
left, an exception) is recorded under the ``key`` query parameter and read back through
``/__probe__/events``.

``/ws/echo``         accept, then echo every message until the end (recorded: the end)
``/ws/scope``        accept, send one text message: a JSON view of the scope
``/ws/subprotocol``  accept with the last subprotocol the client offered (ASGI), plus a header
``/ws/close``        accept, then close with ``?code=`` and ``?reason=`` (RSGI: ``close(code)``)
``/ws/deny``         refuse before accepting (ASGI ``websocket.close``; RSGI ``close(?status)``)
``/ws/response``     ASGI: deny with ``websocket.http.response`` 418 and a two-part body
``/ws/raise``        accept, then raise
``/ws/return``       return without answering the handshake
``/ws/send-after-close`` ASGI: accept, close, then send (recorded: what the send raised)
``/ws/accept-twice`` RSGI: accept, accept again (recorded: the exception), then echo
"""

from __future__ import annotations

import json

from .common import exception_record, first, parse_query, record_event


def _params(query) -> tuple:
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    params = parse_query(query)
    return params, first(params, "key", "")


# ------------------------------------------------------------------------------------ ASGI


async def asgi_websocket(scope, receive, send) -> None:
    path = scope["path"]
    params, key = _params(scope.get("query_string", b""))
    await receive()  # websocket.connect
    if path == "/ws/echo":
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                record_event(
                    key,
                    {
                        "disconnect": {
                            "code": message.get("code"),
                            "reason": message.get("reason", ""),
                        }
                    },
                )
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
    elif path == "/ws/scope":
        await send({"type": "websocket.accept"})
        view = {
            "type": scope.get("type"),
            "asgi": scope.get("asgi"),
            "http_version": scope.get("http_version"),
            "scheme": scope.get("scheme"),
            "path": scope.get("path"),
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query_string": scope.get("query_string", b"").decode("latin-1"),
            "root_path": scope.get("root_path"),
            "subprotocols": list(scope.get("subprotocols", [])),
            "extensions": sorted(scope.get("extensions") or {}),
            "has_method": "method" in scope,
        }
        await send({"type": "websocket.send", "text": json.dumps(view, sort_keys=True)})
        await receive()
    elif path == "/ws/subprotocol":
        offered = scope.get("subprotocols") or [None]
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": offered[-1],
                "headers": [(b"x-probe-ws", b"accepted")],
            }
        )
        await receive()
    elif path == "/ws/close":
        await send({"type": "websocket.accept"})
        await send(
            {
                "type": "websocket.close",
                "code": int(first(params, "code", "1000")),
                "reason": first(params, "reason", ""),
            }
        )
    elif path == "/ws/deny":
        await send({"type": "websocket.close"})
    elif path == "/ws/response":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 418,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"tea", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"pot"})
    elif path == "/ws/raise":
        await send({"type": "websocket.accept"})
        raise RuntimeError("probe: raised after accepting")
    elif path == "/ws/return":
        return
    elif path == "/ws/send-after-close":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        try:
            await send({"type": "websocket.send", "text": "late"})
            record_event(key, {"send_after_close": "returned"})
        except Exception as exc:  # noqa: BLE001 - what the server raised is the observation
            record_event(key, {"send_after_close": exception_record(exc)})
    else:
        await send({"type": "websocket.close"})


# ------------------------------------------------------------------------------------ RSGI


async def rsgi_websocket(scope, protocol) -> None:
    path = scope.path
    params, key = _params(scope.query_string)
    if path == "/ws/echo":
        transport = await protocol.accept()
        await _rsgi_echo(transport, key)
    elif path == "/ws/scope":
        transport = await protocol.accept()
        view = {
            "proto": scope.proto,
            "rsgi_version": scope.rsgi_version,
            "http_version": scope.http_version,
            "scheme": scope.scheme,
            "method": scope.method,
            "path": scope.path,
            "query_string": scope.query_string,
        }
        await transport.send_str(json.dumps(view, sort_keys=True))
        await transport.receive()
    elif path == "/ws/close":
        transport = await protocol.accept()
        code = first(params, "code")
        protocol.close(int(code) if code is not None else None)
        await transport.receive()
    elif path == "/ws/deny":
        status = first(params, "status")
        protocol.close(int(status) if status is not None else None)
    elif path == "/ws/raise":
        await protocol.accept()
        raise RuntimeError("probe: raised after accepting")
    elif path == "/ws/return":
        return
    elif path == "/ws/accept-twice":
        transport = await protocol.accept()
        try:
            await protocol.accept()
            record_event(key, {"second_accept": "returned"})
        except Exception as exc:  # noqa: BLE001 - what the server raised is the observation
            record_event(key, {"second_accept": exception_record(exc)})
        await _rsgi_echo(transport, key)
    else:
        protocol.close(None)


async def _rsgi_echo(transport, key) -> None:
    while True:
        try:
            message = await transport.receive()
        except Exception as exc:  # noqa: BLE001
            record_event(key, {"receive": exception_record(exc)})
            return
        kind = int(message.kind)
        if kind == 0:
            record_event(key, {"receive": {"kind": 0}})
            return
        if kind == 1:
            await transport.send_bytes(message.data)
        else:
            await transport.send_str(message.data)
