"""The echo applications the Autobahn WebSocket cases run against (one per interface).

Autobahn's "fuzzingclient" connects, sends, and expects every message back unchanged; these apps
do exactly that and nothing else, so any failure is the server's. Served with::

    python -m refserver scripts.autobahn.echo_apps:asgi_echo --interface asgi
    python -m refserver scripts.autobahn.echo_apps:rsgi_echo --interface rsgi
"""

from __future__ import annotations


async def asgi_echo(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"echo"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def rsgi_echo(scope, protocol):
    if scope.proto == "http":
        protocol.response_bytes(200, [], b"echo")
        return
    transport = await protocol.accept()
    while True:
        message = await transport.receive()
        if message.kind == 0:
            return
        if message.kind == 1:
            await transport.send_bytes(message.data)
        else:
            await transport.send_str(message.data)
