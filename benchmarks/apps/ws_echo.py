"""WebSocket echo applications for benchmarks/ws_bench.py: the same behaviour on every server.

Each echoes every message back unchanged until the client closes, and answers plain HTTP with
``ok`` so the benchmark can tell that the server is up.
"""

from __future__ import annotations


async def asgi_app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


async def rsgi_app(scope, protocol):
    if scope.proto == "http":
        protocol.response_bytes(200, [("content-type", "text/plain")], b"ok")
        return
    transport = await protocol.accept()
    while True:
        message = await transport.receive()
        if message.kind == 1:
            await transport.send_bytes(message.data)
        elif message.kind == 2:
            await transport.send_str(message.data)
        else:
            return
