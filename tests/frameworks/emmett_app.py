"""Emmett (emmett55, RSGI): its App is ASGI and RSGI at once; the grid serves its ``__rsgi__``."""

import os
import tempfile

from emmett55 import App, request, response, websocket
from emmett55.http import redirect as emmett_redirect
from emmett55.tools import service, stream as streamed

from . import STREAM_CHUNKS, upload_summary


def make_app() -> App:
    # Emmett writes its static/ and logs/ folders under the root path.
    app = App(__name__, root_path=tempfile.mkdtemp(prefix="emmett-grid-"))

    @app.route("/hello/<str:name>")
    async def hello(name):
        response.headers["content-type"] = "text/plain"
        return f"{request.query_params.greeting or 'Hello'}, {name}!"

    @app.route("/json", methods=["post"])
    @service.json
    async def json_echo():
        return {"received": dict(await request.body_params)}

    @app.route("/form", methods=["post"])
    @service.json
    async def form():
        return dict(await request.body_params)

    @app.route("/upload", methods=["post"])
    @service.json
    async def upload():
        file = (await request.files).file
        note = (await request.body_params).note
        return upload_summary(os.path.basename(file.filename), file.read(), note)

    @app.route("/cookies/set")
    async def set_cookie():
        response.cookies["flavour"] = "oat"
        response.cookies["flavour"]["path"] = "/"
        response.headers["content-type"] = "text/plain"
        return "set"

    @app.route("/cookies/get")
    @service.json
    async def get_cookie():
        morsel = request.cookies.get("flavour")
        return {"flavour": morsel.value if morsel else None}

    @app.route("/redirect")
    async def redirect():
        emmett_redirect("/hello/redirected", 302)

    @app.route("/stream")
    @streamed()
    async def stream():
        response.headers["content-type"] = "text/plain"
        for chunk in STREAM_CHUNKS:
            yield chunk

    @app.route("/error")
    async def error():
        raise RuntimeError("view failed")

    @app.websocket("/ws")
    async def echo():
        await websocket.accept()
        while True:
            text = await websocket.receive()
            if text == "bye":
                return  # the server closes the socket with 1000
            await websocket.send(f"echo: {text}")

    @app.websocket("/ws/bytes")
    async def echo_bytes():
        await websocket.accept()
        while True:
            data = await websocket.receive()
            await websocket.send(b"echo: " + data)

    return app
