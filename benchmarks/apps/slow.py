"""Slow requests for ``benchmarks/shutdown_under_load.py``, the same for each interface.

``GET /work?ms=700&id=c3-5`` writes ``seen c3-5`` on stdout as soon as the application has the
request (so the caller knows which requests the server read), waits ``ms`` milliseconds (asleep:
``asyncio.sleep`` for ASGI and RSGI, ``time.sleep`` in the pool thread for WSGI), then answers
``done c3-5`` with a Content-Length. Any other path answers ``ok`` at once.
"""

import asyncio
import sys
import time
from urllib.parse import parse_qs


def _params(query: str):
    values = parse_qs(query)
    return int(values.get("ms", ["0"])[0]), values.get("id", ["-"])[0]


def _seen(request_id: str) -> None:
    # One write per line: lines from different threads never interleave.
    sys.stdout.write(f"seen {request_id}\n")
    sys.stdout.flush()


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"] == "/work":
        ms, request_id = _params(scope["query_string"].decode())
        _seen(request_id)
        await asyncio.sleep(ms / 1000)
        body = f"done {request_id}".encode()
    else:
        body = b"ok"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def rsgi(scope, protocol):
    if scope.path == "/work":
        ms, request_id = _params(scope.query_string)
        _seen(request_id)
        await asyncio.sleep(ms / 1000)
        body = f"done {request_id}"
    else:
        body = "ok"
    protocol.response_str(200, [("content-type", "text/plain")], body)


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/work":
        ms, request_id = _params(environ["QUERY_STRING"])
        _seen(request_id)
        time.sleep(ms / 1000)
        body = f"done {request_id}".encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
