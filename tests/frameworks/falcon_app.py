"""Falcon, WSGI (``falcon.App``) and ASGI (``falcon.asgi.App``, with a WebSocket responder): the
same resources written once for each, as Falcon's documentation keeps them apart."""

import falcon
import falcon.asgi

from . import STREAM_CHUNKS, upload_summary


def _hello(req, resp, name):
    resp.content_type = falcon.MEDIA_TEXT
    resp.text = f"{req.get_param('greeting', default='Hello')}, {name}!"


def _set_cookie(req, resp):
    resp.set_cookie("flavour", "oat", secure=False, http_only=False)
    resp.content_type = falcon.MEDIA_TEXT
    resp.text = "set"


def _get_cookie(req, resp):
    values = req.get_cookie_values("flavour")
    resp.media = {"flavour": values[0] if values else None}


class Hello:
    def on_get(self, req, resp, name):
        _hello(req, resp, name)


class JSON:
    def on_post(self, req, resp):
        resp.media = {"received": req.get_media()}


class Form:
    def on_post(self, req, resp):
        resp.media = dict(req.get_media())


class Upload:
    def on_post(self, req, resp):
        fields, file = {}, None
        for part in req.get_media():
            if part.filename:
                file = (part.secure_filename, part.stream.read())
            else:
                fields[part.name] = part.text
        resp.media = upload_summary(file[0], file[1], fields["note"])


class SetCookie:
    def on_get(self, req, resp):
        _set_cookie(req, resp)


class GetCookie:
    def on_get(self, req, resp):
        _get_cookie(req, resp)


class Redirect:
    def on_get(self, req, resp):
        raise falcon.HTTPFound("/hello/redirected")


class Stream:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = (chunk.encode() for chunk in STREAM_CHUNKS)


class Error:
    def on_get(self, req, resp):
        raise RuntimeError("view failed")


class AsyncHello:
    async def on_get(self, req, resp, name):
        _hello(req, resp, name)


class AsyncJSON:
    async def on_post(self, req, resp):
        resp.media = {"received": await req.get_media()}


class AsyncForm:
    async def on_post(self, req, resp):
        resp.media = dict(await req.get_media())


class AsyncUpload:
    async def on_post(self, req, resp):
        fields, file = {}, None
        async for part in await req.get_media():
            if part.filename:
                file = (part.secure_filename, await part.stream.read())
            else:
                fields[part.name] = await part.get_text()
        resp.media = upload_summary(file[0], file[1], fields["note"])


class AsyncSetCookie:
    async def on_get(self, req, resp):
        _set_cookie(req, resp)


class AsyncGetCookie:
    async def on_get(self, req, resp):
        _get_cookie(req, resp)


class AsyncRedirect:
    async def on_get(self, req, resp):
        raise falcon.HTTPFound("/hello/redirected")


class AsyncStream:
    async def on_get(self, req, resp):
        async def chunks():
            for chunk in STREAM_CHUNKS:
                yield chunk.encode()

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = chunks()


class AsyncError:
    async def on_get(self, req, resp):
        raise RuntimeError("view failed")


class Echo:
    async def on_websocket(self, req, ws):
        await ws.accept()
        while True:
            text = await ws.receive_text()
            if text == "bye":
                await ws.close(1000)
                return
            await ws.send_text(f"echo: {text}")


class EchoBytes:
    async def on_websocket(self, req, ws):
        await ws.accept()
        try:
            while True:
                await ws.send_data(b"echo: " + await ws.receive_data())
        except falcon.WebSocketDisconnected:
            return  # the client closed


def _routes(app, resources) -> None:
    for path, resource in zip(
        ["/hello/{name}", "/json", "/form", "/upload", "/cookies/set", "/cookies/get",
         "/redirect", "/stream", "/error"],
        resources,
    ):
        app.add_route(path, resource)


def make_wsgi_app() -> falcon.App:
    app = falcon.App()
    _routes(app, [Hello(), JSON(), Form(), Upload(), SetCookie(), GetCookie(), Redirect(),
                  Stream(), Error()])
    return app


def make_asgi_app() -> falcon.asgi.App:
    app = falcon.asgi.App()
    _routes(app, [AsyncHello(), AsyncJSON(), AsyncForm(), AsyncUpload(), AsyncSetCookie(),
                  AsyncGetCookie(), AsyncRedirect(), AsyncStream(), AsyncError()])
    app.add_route("/ws", Echo())
    app.add_route("/ws/bytes", EchoBytes())
    return app
