"""Quart (ASGI): Flask's API on asyncio, with a WebSocket route."""

import quart

from . import STREAM_CHUNKS, upload_summary


def make_app() -> quart.Quart:
    app = quart.Quart(__name__)

    @app.get("/hello/<name>")
    async def hello(name):
        greeting = quart.request.args.get("greeting", "Hello")
        return quart.Response(f"{greeting}, {name}!", mimetype="text/plain")

    @app.post("/json")
    async def json_echo():
        return {"received": await quart.request.get_json()}

    @app.post("/form")
    async def form():
        return (await quart.request.form).to_dict()

    @app.post("/upload")
    async def upload():
        files = await quart.request.files
        fields = await quart.request.form
        file = files["file"]
        return upload_summary(file.filename, file.read(), fields["note"])

    @app.get("/cookies/set")
    async def set_cookie():
        response = await quart.make_response("set")
        response.set_cookie("flavour", "oat")
        return response

    @app.get("/cookies/get")
    async def get_cookie():
        return {"flavour": quart.request.cookies.get("flavour")}

    @app.get("/redirect")
    async def redirect():
        return quart.redirect(quart.url_for("hello", name="redirected"))

    @app.get("/stream")
    async def stream():
        async def chunks():
            for chunk in STREAM_CHUNKS:
                yield chunk.encode()

        return chunks(), 200, {"content-type": "text/plain"}

    @app.get("/error")
    async def error():
        raise RuntimeError("view failed")

    @app.websocket("/ws")
    async def echo():
        while True:
            text = await quart.websocket.receive()
            if text == "bye":
                await quart.websocket.close(1000)
                return
            await quart.websocket.send(f"echo: {text}")

    @app.websocket("/ws/bytes")
    async def echo_bytes():
        while True:  # Quart cancels the handler when the client closes
            data = await quart.websocket.receive()
            await quart.websocket.send(b"echo: " + data)

    return app
