"""Applications for the worker tests (``--app-dir tests worker_apps:NAME``).

Each answers with the PID of the worker that served it, so a test can tell workers apart, and
prints ``start TAG PID`` when a request tagged ``?tag=TAG`` begins, so a test knows which
worker held which request when one of them is killed.
"""

import asyncio
import os
import time
from urllib.parse import parse_qs

_ballast = []


def say(line: str) -> None:
    """One line in one write: the workers share the pipe the test reads."""
    os.write(1, (line + "\n").encode())


def _params(query: bytes) -> dict:
    return {k: v[0] for k, v in parse_qs(query.decode()).items()}


def _begin(params: dict) -> None:
    if "tag" in params:
        say(f"start {params['tag']} {os.getpid()}")
    if "grow" in params:
        _ballast.append(bytearray(int(params["grow"]) * 1024 * 1024))


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].split(".")[-1]
            say(f"lifespan {kind} {os.getpid()}")
            await send({"type": message["type"] + ".complete"})
            if kind == "shutdown":
                return
    params = _params(scope["query_string"])
    _begin(params)
    await asyncio.sleep(float(params.get("delay", 0)))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


class RSGIApp:
    def __rsgi_init__(self, loop):
        say(f"rsgi init {os.getpid()}")

    def __rsgi_del__(self, loop):
        say(f"rsgi del {os.getpid()}")

    async def __rsgi__(self, scope, protocol):
        params = _params(scope.query_string.encode())
        _begin(params)
        await asyncio.sleep(float(params.get("delay", 0)))
        protocol.response_str(200, [], str(os.getpid()))


rsgi = RSGIApp()


def wsgi(environ, start_response):
    params = _params(environ["QUERY_STRING"].encode())
    _begin(params)
    time.sleep(float(params.get("delay", 0)))
    body = f"{os.getpid()} multiprocess={environ['wsgi.multiprocess']}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def failing_startup(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
