"""Starlette (ASGI), with a WebSocket route."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from . import STREAM_CHUNKS, upload_summary


async def hello(request: Request):
    greeting = request.query_params.get("greeting", "Hello")
    return PlainTextResponse(f"{greeting}, {request.path_params['name']}!")


async def json_echo(request: Request):
    return JSONResponse({"received": await request.json()})


async def form(request: Request):
    async with request.form() as data:
        return JSONResponse(dict(data))


async def upload(request: Request):
    async with request.form() as data:
        file = data["file"]
        return JSONResponse(upload_summary(file.filename, await file.read(), data["note"]))


async def set_cookie(request: Request):
    response = PlainTextResponse("set")
    response.set_cookie("flavour", "oat")
    return response


async def get_cookie(request: Request):
    return JSONResponse({"flavour": request.cookies.get("flavour")})


async def redirect(request: Request):
    return RedirectResponse(request.url_for("hello", name="redirected").path)


async def stream(request: Request):
    async def chunks():
        for chunk in STREAM_CHUNKS:
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def error(request: Request):
    raise RuntimeError("view failed")


async def echo(websocket: WebSocket):
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close(1000)
            return
        await websocket.send_text(f"echo: {text}")


async def echo_bytes(websocket: WebSocket):
    await websocket.accept()
    async for data in websocket.iter_bytes():  # until the client closes
        await websocket.send_bytes(b"echo: " + data)


def make_app() -> Starlette:
    return Starlette(routes=[
        Route("/hello/{name}", hello, name="hello"),
        Route("/json", json_echo, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/cookies/set", set_cookie),
        Route("/cookies/get", get_cookie),
        Route("/redirect", redirect),
        Route("/stream", stream),
        Route("/error", error),
        WebSocketRoute("/ws", echo),
        WebSocketRoute("/ws/bytes", echo_bytes),
    ])
