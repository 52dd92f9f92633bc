"""A real Flask application served by refserver's WSGI gateway."""

from __future__ import annotations

import threading

import httpx
import pytest

flask = pytest.importorskip("flask")

#: Both paths on both loops, through the pytest plugin (strict mode: a protocol violation fails).
pytestmark = pytest.mark.refserver_matrix(impl=["pure", "fast"], loop=["asyncio", "uvloop"])


DEADLINE = 10.0


def make_app(second_part: threading.Event | None = None):
    app = flask.Flask(__name__)

    @app.get("/hello/<name>")
    def hello(name):
        return f"Hello, {name}!"

    @app.get("/where")
    def where():
        return flask.jsonify(
            url=flask.url_for("hello", name="x"),
            script_root=flask.request.script_root,
            path=flask.request.path,
            remote=flask.request.remote_addr,
            query=flask.request.args.to_dict(),
        )

    @app.post("/sum")
    def total():
        data = flask.request.get_json()
        return flask.jsonify(sum=sum(data["numbers"]), name=data["name"]), 201

    @app.post("/upload")
    def upload():
        # A chunked request body has no Content-Length; wsgi.input_terminated lets Werkzeug read it.
        return flask.jsonify(size=len(flask.request.get_data()))

    @app.get("/stream")
    def stream():
        count = int(flask.request.args.get("n", "3"))

        @flask.stream_with_context
        def generate():
            for i in range(count):
                if i == 1 and second_part is not None:
                    # The first line is on the wire before the rest is produced.
                    assert second_part.wait(DEADLINE)
                yield f"line {i} of {flask.request.path}\n"

        return flask.Response(generate(), mimetype="text/plain")

    @app.get("/error")
    def error():
        raise RuntimeError("flask view failed")

    return app


def test_flask_get(refserver_serve):
    with refserver_serve(make_app()) as srv:
        with httpx.Client(base_url=srv.url) as client:
            response = client.get("/hello/refserver")
            assert response.status_code == 200
            assert response.text == "Hello, refserver!"
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["content-length"] == str(len("Hello, refserver!"))
            assert client.get("/missing").status_code == 404


def test_flask_sees_mount_point_and_request_data(refserver_serve):
    with refserver_serve(make_app(), root_path="/mnt") as srv:
        response = httpx.get(srv.url + "/mnt/where?a=1&b=%C3%A9")
    assert response.status_code == 200
    assert response.json() == {
        "url": "/mnt/hello/x",
        "script_root": "/mnt",
        "path": "/where",
        "remote": "127.0.0.1",
        "query": {"a": "1", "b": "é"},
    }


def test_flask_json_post(refserver_serve):
    with refserver_serve(make_app()) as srv:
        with httpx.Client(base_url=srv.url) as client:
            response = client.post("/sum", json={"numbers": [1, 2, 3.5], "name": "café"})
            assert response.status_code == 201
            assert response.json() == {"sum": 6.5, "name": "café"}

            def chunks():
                yield b"a" * 100_000
                yield b"b" * 50_000

            response = client.post("/upload", content=chunks())
            assert response.json() == {"size": 150_000}


def test_flask_streamed_response(refserver_serve):
    second_part = threading.Event()
    with refserver_serve(make_app(second_part)) as srv:
        with httpx.Client(base_url=srv.url, timeout=DEADLINE) as client:
            with client.stream("GET", "/stream", params={"n": "4"}) as response:
                assert response.status_code == 200
                assert response.headers["transfer-encoding"] == "chunked"
                lines = response.iter_lines()
                first = next(lines)
                second_part.set()
                rest = list(lines)
    assert [first, *rest] == [f"line {i} of /stream" for i in range(4)]


def test_flask_view_error_is_a_500(refserver_serve):
    with refserver_serve(make_app()) as srv:
        with httpx.Client(base_url=srv.url) as client:
            response = client.get("/error")
            assert response.status_code == 500
            assert "Internal Server Error" in response.text
            assert client.get("/hello/again").text == "Hello, again!"
