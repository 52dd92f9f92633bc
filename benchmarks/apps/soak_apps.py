"""The applications benchmarks/soak.py and tests/test_soak.py run, one per interface, with the
same routes so that every interface carries the same traffic:

- ``GET /``: 13 bytes with a Content-Length;
- ``POST /echo``: the request body back (sent with a Content-Length or chunked);
- ``GET /stream``: :data:`STREAM_PARTS` pieces with no Content-Length, so the server streams
  them chunked;
- a WebSocket at any path (ASGI and RSGI): every message echoed until the client closes, by the
  echo applications the Autobahn runs use (which also answer the ASGI lifespan).
"""

from __future__ import annotations

from scripts.autobahn.echo_apps import asgi_echo, rsgi_echo

HELLO = b"Hello, world!"
STREAM_PART = b"0123456789abcdef" * 4
STREAM_PARTS = 4
NOT_FOUND = b"Not Found"


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return await asgi_echo(scope, receive, send)
    path = scope["path"]
    if path == "/":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
        await send({"type": "http.response.body", "body": HELLO})
    elif path == "/echo":
        parts = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for _ in range(STREAM_PARTS):
            await send({"type": "http.response.body", "body": STREAM_PART, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": NOT_FOUND})


async def rsgi_app(scope, protocol):
    if scope.proto == "ws":
        return await rsgi_echo(scope, protocol)
    path = scope.path
    if path == "/":
        protocol.response_bytes(200, [("content-type", "text/plain")], HELLO)
    elif path == "/echo":
        body = await protocol()
        protocol.response_bytes(200, [("content-length", str(len(body)))], body)
    elif path == "/stream":
        transport = protocol.response_stream(200, [("content-type", "text/plain")])
        for _ in range(STREAM_PARTS):
            await transport.send_bytes(STREAM_PART)
    else:
        protocol.response_bytes(404, [], NOT_FOUND)


def wsgi_app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [HELLO]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (STREAM_PART for _ in range(STREAM_PARTS))
    start_response("404 Not Found", [])
    return [NOT_FOUND]
