"""FastAPI (ASGI): typed parameters, Form and UploadFile, a WebSocket endpoint."""

from typing import Annotated, Any

from fastapi import FastAPI, Form, Request, Response, UploadFile, WebSocket
from fastapi.responses import PlainTextResponse, RedirectResponse, StreamingResponse

from . import STREAM_CHUNKS, upload_summary


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello/{name}", response_class=PlainTextResponse)
    async def hello(name: str, greeting: str = "Hello"):
        return f"{greeting}, {name}!"

    @app.post("/json")
    async def json_echo(body: Any = None, request: Request = None):
        return {"received": await request.json()}

    @app.post("/form")
    async def form(a: Annotated[str, Form()], b: Annotated[str, Form()], c: Annotated[str, Form()]):
        return {"a": a, "b": b, "c": c}

    @app.post("/upload")
    async def upload(file: UploadFile, note: Annotated[str, Form()]):
        return upload_summary(file.filename, await file.read(), note)

    @app.get("/cookies/set", response_class=PlainTextResponse)
    async def set_cookie(response: Response):
        response.set_cookie("flavour", "oat")
        return "set"

    @app.get("/cookies/get")
    async def get_cookie(request: Request):
        return {"flavour": request.cookies.get("flavour")}

    @app.get("/redirect")
    async def redirect():
        return RedirectResponse("/hello/redirected")

    @app.get("/stream")
    async def stream():
        async def chunks():
            for chunk in STREAM_CHUNKS:
                yield chunk

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/error")
    async def error():
        raise RuntimeError("view failed")

    @app.websocket("/ws")
    async def echo(websocket: WebSocket):
        await websocket.accept()
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close(1000)
                return
            await websocket.send_text(f"echo: {text}")

    @app.websocket("/ws/bytes")
    async def echo_bytes(websocket: WebSocket):
        await websocket.accept()
        async for data in websocket.iter_bytes():  # until the client closes
            await websocket.send_bytes(b"echo: " + data)

    return app
