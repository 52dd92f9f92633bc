"""ASGI benchmark app: GET / (13 bytes), GET /json, POST /echo (echoes the body), GET /big (1 MiB).

Every response carries an explicit Content-Length so that all servers frame it the same way.
"""

from benchmarks.apps.payloads import BIG, HELLO, NOT_FOUND, json_body

_TEXT = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
_BIG = [(b"content-type", b"application/octet-stream"), (b"content-length", b"%d" % len(BIG))]
_NOT_FOUND = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(NOT_FOUND))]


async def _respond(send, status, headers, body):
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "http":
        return
    path = scope["path"]
    method = scope["method"]
    if path == "/" and method == "GET":
        await _respond(send, 200, _TEXT, HELLO)
    elif path == "/json" and method == "GET":
        body = json_body()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await _respond(send, 200, headers, body)
    elif path == "/echo" and method == "POST":
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", b"%d" % len(body)),
        ]
        await _respond(send, 200, headers, body)
    elif path == "/big" and method == "GET":
        await _respond(send, 200, _BIG, BIG)
    else:
        await _respond(send, 404, _NOT_FOUND, NOT_FOUND)
