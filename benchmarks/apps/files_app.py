"""Applications that answer every request with one file, for benchmarks/files.py.

The file is named by the environment variable ``BENCH_FILE``; each app sends it whole with its
Content-Length, by the interface's own file response.
"""

from __future__ import annotations

import os

PATH = os.environ.get("BENCH_FILE", "")


async def rsgi_app(scope, protocol):
    """RSGI ``response_file``."""
    protocol.response_file(
        200,
        [("content-type", "application/octet-stream"),
         ("content-length", str(os.stat(PATH).st_size))],
        PATH,
    )


async def asgi_app(scope, receive, send):
    """ASGI ``http.response.pathsend`` (the extension refserver lists)."""
    if scope["type"] != "http":
        return
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/octet-stream"),
                    (b"content-length", b"%d" % os.stat(PATH).st_size)],
    })
    await send({"type": "http.response.pathsend", "path": PATH})


def starlette_app():
    """Starlette's ``FileResponse``: pathsend where the server lists it, else reads and sends
    the file in blocks (uvicorn)."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    async def download(request):
        return FileResponse(PATH, media_type="application/octet-stream")

    return Starlette(routes=[Route("/{rest:path}", download)])
