"""Applications for the metrics tests, one per interface, answering alike.

``/`` answers ``ok PID`` (the worker that served it), ``/missing`` 404, ``/fail`` raises (the
server answers 500), ``/partial`` starts a streamed 200, sends ``part`` and raises (the server
cuts the response short), ``/echo`` returns the request body, ``/slow?s=N`` answers after N seconds
without holding the loop, and ``/block?s=N`` holds the event loop (or, for WSGI, its thread) for
N seconds after printing ``blocking PID``. A WebSocket is accepted and echoes each message.
"""

import asyncio
import os
import time
from urllib.parse import parse_qs


def _seconds(query: str) -> float:
    return float(parse_qs(query).get("s", ["0"])[0])


def _answer(path: str, query: str, body: bytes):
    """``(status, body)``, after waiting as the path asks; raises for /fail."""
    if path == "/fail":
        raise RuntimeError("this route fails")
    if path == "/block":
        os.write(1, f"blocking {os.getpid()}\n".encode())
        time.sleep(_seconds(query))
    if path == "/missing":
        return 404, b"no such page"
    if path == "/echo":
        return 200, body
    return 200, f"ok {os.getpid()}".encode()


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/partial":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("this route fails midway")
    query = scope["query_string"].decode()
    if scope["path"] == "/slow":
        await asyncio.sleep(_seconds(query))
    status, payload = _answer(scope["path"], query, body)
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": payload})


class RSGIApp:
    async def __rsgi__(self, scope, protocol):
        if scope.proto == "ws":
            transport = await protocol.accept()
            while True:
                message = await transport.receive()
                if message.kind != 2:  # 2: text; anything else is the end
                    return
                await transport.send_str(message.data)
        if scope.path == "/partial":
            transport = protocol.response_stream(200, [])
            await transport.send_bytes(b"part")
            raise RuntimeError("this route fails midway")
        body = await protocol()
        if scope.path == "/slow":
            await asyncio.sleep(_seconds(scope.query_string))
        status, payload = _answer(scope.path, scope.query_string, body)
        protocol.response_bytes(status, [], payload)


rsgi = RSGIApp()


def _partial():
    yield b"part"
    raise RuntimeError("this route fails midway")


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/partial":
        start_response("200 OK", [])
        return _partial()
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    query = environ["QUERY_STRING"]
    if environ["PATH_INFO"] == "/slow":
        time.sleep(_seconds(query))
    status, payload = _answer(environ["PATH_INFO"], query, body)
    start_response(f"{status} X", [("Content-Length", str(len(payload)))])
    return [payload]
