"""Litestar (ASGI): typed handlers, form and multipart bodies, a WebSocket listener."""

from typing import Annotated, Any

from litestar import Litestar, Request, Response, WebSocket, get, post, websocket
from litestar.datastructures import Cookie, UploadFile
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Stream

from . import STREAM_CHUNKS, upload_summary


@get("/hello/{name:str}", media_type=MediaType.TEXT)
async def hello(name: str, greeting: str = "Hello") -> str:
    return f"{greeting}, {name}!"


@post("/json")
async def json_echo(data: Any) -> dict:
    return {"received": data}


@post("/form")
async def form(
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> dict:
    return data


@post("/upload")
async def upload(
    data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
) -> dict:
    file: UploadFile = data["file"]
    return upload_summary(file.filename, await file.read(), data["note"])


@get("/cookies/set", media_type=MediaType.TEXT)
async def set_cookie() -> Response[str]:
    return Response("set", cookies=[Cookie(key="flavour", value="oat")])


@get("/cookies/get")
async def get_cookie(request: Request) -> dict:
    return {"flavour": request.cookies.get("flavour")}


@get("/redirect")
async def redirect() -> Redirect:
    return Redirect("/hello/redirected")


@get("/stream", media_type=MediaType.TEXT)
async def stream() -> Stream:
    async def chunks():
        for chunk in STREAM_CHUNKS:
            yield chunk

    return Stream(chunks())


@get("/error")
async def error() -> str:
    raise RuntimeError("view failed")


@websocket("/ws")
async def echo(socket: WebSocket) -> None:
    await socket.accept()
    while True:
        text = await socket.receive_text()
        if text == "bye":
            await socket.close(1000)
            return
        await socket.send_text(f"echo: {text}")


@websocket("/ws/bytes")
async def echo_bytes(socket: WebSocket) -> None:
    await socket.accept()
    async for data in socket.iter_data(mode="binary"):  # until the client closes
        await socket.send_bytes(b"echo: " + data)


def make_app() -> Litestar:
    return Litestar(
        route_handlers=[hello, json_echo, form, upload, set_cookie, get_cookie, redirect, stream,
                        error, echo, echo_bytes],
    )
