"""Real ASGI frameworks on refserver: Starlette and FastAPI (both dependencies of the test suite).
They exercise lifespan state, request.state, bodies and streaming the way applications in the wild
do."""

from __future__ import annotations

import contextlib
import json

import fastapi
import httpx
import pytest

#: Both paths on both loops, through the pytest plugin (strict mode: a protocol violation fails).
pytestmark = pytest.mark.refserver_matrix(impl=["pure", "fast"], loop=["asyncio", "uvloop"])


def starlette_app(events: list):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield {"greeting": "hello from lifespan", "hits": []}
        events.append("shutdown")

    async def state(request: Request):
        request.state.hits.append(request.url.path)  # the same list in every request: shallow
        return JSONResponse({"greeting": request.state.greeting, "hits": len(request.state.hits)})

    async def echo(request: Request):
        body = await request.body()
        return PlainTextResponse(body[::-1], headers={"x-length": str(len(body))})

    async def stream(request: Request):
        async def parts():
            for i in range(5):
                yield f"part {i}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    async def query(request: Request):
        return JSONResponse({"path": request.url.path, "q": dict(request.query_params),
                             "root_path": request.scope["root_path"]})

    return Starlette(
        routes=[
            Route("/state", state),
            Route("/echo", echo, methods=["POST"]),
            Route("/stream", stream),
            Route("/items/{name}", query),
        ],
        lifespan=lifespan,
    )


def test_starlette(refserver_serve):
    events: list = []
    with refserver_serve(starlette_app(events), lifespan="on") as srv:
        assert events == ["startup"]
        with httpx.Client(base_url=srv.url) as client:
            first = client.get("/state").json()
            second = client.get("/state").json()
            assert first == {"greeting": "hello from lifespan", "hits": 1}
            assert second["hits"] == 2

            payload = bytes(range(256)) * 100
            response = client.post("/echo", content=payload)
            assert response.content == payload[::-1]
            assert response.headers["x-length"] == str(len(payload))

            chunked = client.post("/echo", content=iter([b"ab", b"cd", b"ef"]))
            assert chunked.text == "fedcba"

            streamed = client.get("/stream")
            assert streamed.headers["transfer-encoding"] == "chunked"
            assert streamed.text == "".join(f"part {i}\n" for i in range(5))

            with client.stream("GET", "/stream") as response:
                lines = list(response.iter_lines())
            assert lines == [f"part {i}" for i in range(5)]

            missing = client.get("/nope")
            assert missing.status_code == 404

            item = client.get("/items/caf%C3%A9", params={"x": "1 2"}).json()
            assert item == {"path": "/items/café", "q": {"x": "1 2"}, "root_path": ""}
    assert events == ["startup", "shutdown"]


def test_starlette_under_a_root_path(refserver_serve):
    events: list = []
    with refserver_serve(starlette_app(events), root_path="/api") as srv:
        item = httpx.get(srv.url + "/items/x").json()
        assert item == {"path": "/api/items/x", "q": {}, "root_path": "/api"}


def test_fastapi(refserver_serve):
    events: list = []

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield {"name": "fastapi state"}
        events.append("shutdown")

    app = fastapi.FastAPI(lifespan=lifespan)

    @app.get("/state")
    async def state(request: fastapi.Request):
        return {"name": request.state.name}

    @app.post("/items")
    async def items(item: dict):
        return {"received": item}

    with refserver_serve(app) as srv:
        assert httpx.get(srv.url + "/state").json() == {"name": "fastapi state"}
        response = httpx.post(srv.url + "/items", content=json.dumps({"a": 1}),
                              headers={"content-type": "application/json"})
        assert response.json() == {"received": {"a": 1}}
    assert events == ["startup", "shutdown"]
