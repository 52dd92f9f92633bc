"""Applications that answer with what they were told about the client, scheme and host, one per
interface, in one shape: ``{"client": [host, port] or None, "scheme": ..., "host": ...}``.

Each also reports the interface's own spelling (``raw``) so a test can check that the fields of
one interface agree among themselves (RSGI ``authority`` and its ``host`` header; WSGI ``HTTPS``).
"""

from __future__ import annotations

import json


def _split(hostport: str):
    if not hostport:
        return None
    host, _, port = hostport.rpartition(":")
    return [host.strip("[]"), int(port)]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    hosts = [v.decode("latin-1") for n, v in scope["headers"] if n == b"host"]
    facts = {
        "client": list(scope["client"]) if scope["client"] else None,
        "scheme": scope["scheme"],
        "host": hosts[0] if len(hosts) == 1 else hosts,
        "raw": {"type": scope["type"]},
    }
    body = json.dumps(facts)
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body})
        await send({"type": "websocket.close"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body.encode()})


async def rsgi_app(scope, protocol):
    facts = {
        "client": _split(scope.client),
        "scheme": scope.scheme,
        "host": scope.authority or scope.headers.get("host"),
        "raw": {"authority": scope.authority, "host_header": scope.headers.get("host")},
    }
    body = json.dumps(facts)
    if scope.proto == "ws":
        transport = await protocol.accept()
        await transport.send_str(body)
        return
    protocol.response_str(200, [("content-type", "application/json")], body)


def wsgi_app(environ, start_response):
    port = environ.get("REMOTE_PORT")
    facts = {
        "client": [environ["REMOTE_ADDR"], int(port)] if "REMOTE_ADDR" in environ else None,
        "scheme": environ["wsgi.url_scheme"],
        "host": environ.get("HTTP_HOST"),
        "raw": {"HTTPS": environ.get("HTTPS"), "SERVER_PORT": environ.get("SERVER_PORT")},
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(facts).encode()]


APPS = {"asgi": asgi_app, "rsgi": rsgi_app, "wsgi": wsgi_app}
