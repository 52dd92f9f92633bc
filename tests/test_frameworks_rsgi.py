"""A real RSGI framework on refserver: an emmett55 application, served through its ``__rsgi__``.

Emmett's App is ASGI (``__call__``) and RSGI (``__rsgi__``) at once, so this also checks that
refserver picks the RSGI face; its static files go through ``response_file`` and
``response_file_range``, and its ``@stream``/``@sse`` routes through ``response_stream`` and
``client_disconnect()``.
"""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")
emmett55 = pytest.importorskip("emmett55")

from emmett55 import App, request, response  # noqa: E402
from emmett55.tools import service, sse, stream  # noqa: E402

#: Both paths on both loops, through the pytest plugin (strict mode: a protocol violation fails).
pytestmark = pytest.mark.refserver_matrix(impl=["pure", "fast"], loop=["asyncio", "uvloop"])


STATIC_TEXT = b"static hello\n" * 1000


@pytest.fixture(scope="module")
def emmett_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("emmett_app")
    app = App(__name__, root_path=str(root))  # creates root/static and root/logs
    (root / "static" / "hello.txt").write_bytes(STATIC_TEXT)

    @app.route("/")
    async def index():
        response.headers["content-type"] = "text/plain"
        return "Hello from emmett55"

    @app.route("/echo", methods=["post"])
    @service.json
    async def echo():
        data = await request.body_params
        return {
            "got": dict(data),
            "method": request.method,
            "agent": request.headers.get("user-agent"),
            "query": dict(request.query_params),
        }

    @app.route("/raw", methods=["post"], output="bytes")
    async def raw():
        return await request.body

    @app.route("/numbers")
    @stream()
    async def numbers():
        for i in range(3):
            yield f"n{i};"

    @app.route("/events")
    @sse()
    async def events():
        for i in range(2):
            yield {"data": i + 1}

    return app


def test_text_route(refserver_serve, emmett_app):
    with refserver_serve(emmett_app) as srv:
        assert srv.server.interface == "rsgi"
        r = httpx.get(srv.url + "/")
        assert r.status_code == 200
        assert r.text == "Hello from emmett55"
        assert r.headers["content-type"] == "text/plain"
        assert httpx.get(srv.url + "/missing").status_code == 404


def test_json_body_and_raw_body(refserver_serve, emmett_app):
    with refserver_serve(emmett_app) as srv, httpx.Client() as client:
        r = client.post(srv.url + "/echo?x=1&y=2", json={"a": 1, "b": ["x", "y"]})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {
            "got": {"a": 1, "b": ["x", "y"]},
            "method": "POST",
            "agent": client.headers["user-agent"],
            "query": {"x": "1", "y": "2"},
        }
        payload = bytes(range(256)) * 100
        r = client.post(srv.url + "/raw", content=payload)
        assert r.content == payload


def test_static_file_and_range(refserver_serve, emmett_app):
    with refserver_serve(emmett_app) as srv, httpx.Client() as client:
        r = client.get(srv.url + "/static/hello.txt")
        assert r.status_code == 200 and r.content == STATIC_TEXT
        assert r.headers["content-length"] == str(len(STATIC_TEXT))
        r = client.get(srv.url + "/static/hello.txt", headers={"range": "bytes=13-25"})
        assert r.status_code == 206
        assert r.content == STATIC_TEXT[13:26]
        assert r.headers["content-range"] == f"bytes 13-25/{len(STATIC_TEXT)}"
        assert client.get(srv.url + "/static/nope.txt").status_code == 404


def test_stream_and_sse_routes(refserver_serve, emmett_app):
    # Not strict: these routes call response_str() after response_stream() (RSGI-HTTP-ERROR-4),
    # ignored with a warning as Granian does; tests/test_pytest_plugin.py shows strict mode
    # failing such a second response.
    with refserver_serve(emmett_app, strict=False) as srv, httpx.Client() as client:
        r = client.get(srv.url + "/numbers")
        assert r.status_code == 200 and r.text == "n0;n1;n2;"
        r = client.get(srv.url + "/events")
        assert r.headers["content-type"].startswith("text/event-stream")
        assert [line for line in r.text.splitlines() if line.startswith("data:")] == [
            "data: 1",
            "data: 2",
        ]
        assert client.get(srv.url + "/").text == "Hello from emmett55"
