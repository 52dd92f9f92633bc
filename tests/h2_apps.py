"""One application per interface for the HTTP/2 tests, answering the same paths the same way.

``/scope``   the request facts the interface gives, as JSON
``/echo``    the request body back, streamed as it is read
``/upload``  reads the whole body first, then answers its length
``/stream``  ``?n`` chunks of 1000 bytes, streamed
``/big``     ``?n`` bytes in one response
``/204``, ``/304``  bodiless statuses
``/keepalive``      a response carrying ``connection: keep-alive`` (not allowed in HTTP/2)
``/error``   the application fails before answering
``/late-error``  the application fails after the response began
``/bigheader``   a response field of ``?n`` bytes (20000 by default)
``/hold``    never reads the body; answers once ``release`` is set (tests set it before leaving)
``/wait``    reads the body, then waits for the client to go away; ``seen`` records it

``state`` is shared with the test thread: ``entered`` (paths that reached the application),
``disconnects`` (paths whose application saw the client leave) and ``release``.
"""

from __future__ import annotations

import asyncio
import json
import threading


class State:
    def __init__(self):
        self.entered: list[str] = []
        self.disconnects: list[str] = []
        self.release = threading.Event()


async def _released(state: State, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if state.release.is_set():
            return
        await asyncio.sleep(0.01)


def _query_int(query: bytes, default: int) -> int:
    return int(query) if query else default


def asgi_app(state: State):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        path = scope["path"]
        state.entered.append(path)
        query = scope["query_string"]

        async def respond(status, body=b"", headers=()):
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"text/plain"), *headers]})
            await send({"type": "http.response.body", "body": body})

        if path == "/scope":
            facts = {
                "http_version": scope["http_version"],
                "scheme": scope["scheme"],
                "method": scope["method"],
                "path": scope["path"],
                "query_string": query.decode(),
                "host": [v.decode() for n, v in scope["headers"] if n == b"host"],
                "server": list(scope["server"]),
                "tls": (scope.get("extensions") or {}).get("tls"),
            }
            await respond(200, json.dumps(facts).encode())
        elif path == "/echo":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while True:
                message = await receive()
                await send({"type": "http.response.body", "body": message.get("body", b""),
                            "more_body": True})
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.body", "body": b""})
        elif path == "/upload":
            size = 0
            while True:
                message = await receive()
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            await respond(200, str(size).encode())
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for i in range(_query_int(query, 5)):
                await send({"type": "http.response.body", "body": b"%03d" % i + b"x" * 997,
                            "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/big":
            await respond(200, b"b" * _query_int(query, 1 << 20))
        elif path in ("/204", "/304"):
            await send({"type": "http.response.start", "status": int(path[1:]), "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/keepalive":
            await respond(200, b"ok", [(b"connection", b"keep-alive"), (b"x-kept", b"yes")])
        elif path == "/error":
            raise RuntimeError("the application failed")
        elif path == "/late-error":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("the application failed after the response began")
        elif path == "/bigheader":
            await respond(200, b"ok", [(b"x-big", b"h" * _query_int(query, 20_000))])
        elif path == "/hold":
            await _released(state)
            await respond(200, b"held")
        elif path == "/wait":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    state.disconnects.append(path)
                    return
        else:
            await respond(404, b"no such path")

    return app


def rsgi_app(state: State):
    async def app(scope, protocol):
        if scope.proto != "http":
            return
        path = scope.path
        state.entered.append(path)
        query = scope.query_string.encode()
        text = [("content-type", "text/plain")]
        if path == "/scope":
            facts = {
                "http_version": scope.http_version,
                "scheme": scope.scheme,
                "method": scope.method,
                "path": scope.path,
                "query_string": scope.query_string,
                "authority": scope.authority,
                "host": scope.headers.get_all("host"),
                "server": scope.server,
            }
            protocol.response_bytes(200, text, json.dumps(facts).encode())
        elif path == "/echo":
            transport = protocol.response_stream(200, [])
            async for chunk in protocol:
                await transport.send_bytes(chunk)
        elif path == "/upload":
            protocol.response_bytes(200, text, str(len(await protocol())).encode())
        elif path == "/stream":
            transport = protocol.response_stream(200, [])
            for i in range(_query_int(query, 5)):
                await transport.send_bytes(b"%03d" % i + b"x" * 997)
        elif path == "/big":
            protocol.response_bytes(200, text, b"b" * _query_int(query, 1 << 20))
        elif path in ("/204", "/304"):
            protocol.response_empty(int(path[1:]), [])
        elif path == "/keepalive":
            protocol.response_bytes(200, [*text, ("connection", "keep-alive"), ("x-kept", "yes")],
                                    b"ok")
        elif path == "/error":
            raise RuntimeError("the application failed")
        elif path == "/late-error":
            transport = protocol.response_stream(200, [])
            await transport.send_bytes(b"partial")
            raise RuntimeError("the application failed after the response began")
        elif path == "/bigheader":
            protocol.response_bytes(200, [*text, ("x-big", "h" * _query_int(query, 20_000))], b"ok")
        elif path == "/hold":
            await _released(state)
            protocol.response_bytes(200, text, b"held")
        elif path == "/wait":
            await protocol()
            await protocol.client_disconnect()
            state.disconnects.append(path)
        else:
            protocol.response_bytes(404, text, b"no such path")

    return app


def wsgi_app(state: State):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        state.entered.append(path)
        query = environ["QUERY_STRING"].encode()
        text = [("Content-Type", "text/plain")]
        if path == "/scope":
            facts = {
                "http_version": environ["SERVER_PROTOCOL"],
                "scheme": environ["wsgi.url_scheme"],
                "https": environ.get("HTTPS"),
                "method": environ["REQUEST_METHOD"],
                "path": path,
                "query_string": environ["QUERY_STRING"],
                "host": environ.get("HTTP_HOST"),
                "server": [environ["SERVER_NAME"], int(environ["SERVER_PORT"])],
            }
            start_response("200 OK", text)
            return [json.dumps(facts).encode()]
        if path == "/echo":
            start_response("200 OK", [])
            stream = environ["wsgi.input"]

            def chunks():
                while True:
                    chunk = stream.read(65536)
                    if not chunk:
                        return
                    yield chunk

            return chunks()
        if path == "/upload":
            size = len(environ["wsgi.input"].read())
            start_response("200 OK", text)
            return [str(size).encode()]
        if path == "/stream":
            start_response("200 OK", [])
            return (b"%03d" % i + b"x" * 997 for i in range(_query_int(query, 5)))
        if path == "/big":
            start_response("200 OK", text)
            return [b"b" * _query_int(query, 1 << 20)]
        if path in ("/204", "/304"):
            start_response(f"{path[1:]} X", [])
            return []
        if path == "/keepalive":
            start_response("200 OK", [*text, ("Connection", "keep-alive"), ("X-Kept", "yes")])
            return [b"ok"]
        if path == "/error":
            raise RuntimeError("the application failed")
        if path == "/late-error":
            start_response("200 OK", [])

            def failing():
                yield b"partial"
                raise RuntimeError("the application failed after the response began")

            return failing()
        if path == "/bigheader":
            start_response("200 OK", [*text, ("X-Big", "h" * _query_int(query, 20_000))])
            return [b"ok"]
        if path == "/hold":
            state.release.wait(10)
            start_response("200 OK", text)
            return [b"held"]
        start_response("404 Not Found", text)
        return [b"no such path"]

    return app


APPS = {"asgi": asgi_app, "rsgi": rsgi_app, "wsgi": wsgi_app}
