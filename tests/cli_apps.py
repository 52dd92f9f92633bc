"""Applications started through ``python -m refserver --app-dir tests cli_apps:NAME``."""

import asyncio
import os


async def slow(scope, receive, send):
    """ASGI: GET /slow?S answers after S seconds; lifespan events are printed to stdout."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                print("lifespan startup", flush=True)
                await send({"type": "lifespan.startup.complete"})
            else:
                print("lifespan shutdown", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    delay = float(scope["query_string"] or 0)
    if delay:
        print("request in flight", flush=True)
    await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


async def failing_startup(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


class RSGIHooks:
    """RSGI app that prints its hook calls, so their order can be checked from outside."""

    def __rsgi_init__(self, loop):
        print("init running=%s" % loop.is_running(), flush=True)

    def __rsgi_del__(self, loop):
        print("del running=%s" % loop.is_running(), flush=True)

    async def __rsgi__(self, scope, protocol):
        print("request", flush=True)
        protocol.response_str(200, [("content-type", "text/plain")], "ok")


rsgi_hooks = RSGIHooks()


def factory():
    return slow


not_an_app = 42


if os.environ.get("CLI_APPS_CRASH_ON_IMPORT"):
    raise RuntimeError("boom at import")
