"""The frameworks grid: real applications of each framework (tests/frameworks/, unchanged
framework code), served through the pytest plugin on both paths, over HTTP/1.1, over HTTP/2 in
cleartext (prior knowledge) and over HTTP/2 with TLS (ALPN); WebSockets take each cell's HTTP
version, over HTTP/2 an extended CONNECT (RFC 8441).

One server per framework and cell (module-scoped), shared by the tests of that pair; the plugin's
strict mode fails any test whose requests made refserver log a protocol violation.
"""

from __future__ import annotations

import importlib
import random
import sys
from dataclasses import dataclass

import pytest

from frameworks import STREAM_CHUNKS, upload_summary
from refserver.pytest_plugin import WebSocketClosed, serve

httpx = pytest.importorskip("httpx")


@dataclass(frozen=True)
class Framework:
    package: str  # what must import, else the framework's cells are skipped with the reason
    module: str  # the application's module under tests/frameworks/
    factory: str
    interface: str
    websocket: bool
    #: refserver's strict mode. Off for Emmett only: its streamed routes call response_str()
    #: after response_stream(), a second response (RSGI-HTTP-ERROR-4) that refserver, like
    #: Granian, ignores with a warning by default, and that --strict refuses.
    strict: bool = True


FRAMEWORKS = {
    "django-wsgi": Framework("django", "frameworks.django_app", "make_wsgi_app", "wsgi", False),
    "django-asgi": Framework("channels", "frameworks.django_app", "make_asgi_app", "asgi", True),
    "flask": Framework("flask", "frameworks.flask_app", "make_app", "wsgi", False),
    "falcon-wsgi": Framework("falcon", "frameworks.falcon_app", "make_wsgi_app", "wsgi", False),
    "falcon-asgi": Framework("falcon", "frameworks.falcon_app", "make_asgi_app", "asgi", True),
    "starlette": Framework("starlette", "frameworks.starlette_app", "make_app", "asgi", True),
    "fastapi": Framework("fastapi", "frameworks.fastapi_app", "make_app", "asgi", True),
    "litestar": Framework("litestar", "frameworks.litestar_app", "make_app", "asgi", True),
    "quart": Framework("quart", "frameworks.quart_app", "make_app", "asgi", True),
    "emmett": Framework("emmett55", "frameworks.emmett_app", "make_app", "rsgi", True, False),
}

pytestmark = [
    pytest.mark.refserver_matrix(
        {"impl": "pure", "loop": "asyncio", "http": "1"},
        {"impl": "fast", "loop": "uvloop", "http": "1"},
        {"impl": "pure", "loop": "asyncio", "http": "2"},
        {"impl": "fast", "loop": "uvloop", "http": "2"},
        {"impl": "pure", "loop": "asyncio", "http": "auto", "tls": True},
        {"impl": "fast", "loop": "uvloop", "http": "auto", "tls": True},
    ),
    # Litestar 2.x's advice on its own parameter declarations, not about refserver.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar.*"),
]

#: Several MiB, not compressible, the same in every run.
UPLOAD = random.Random(19).randbytes(3 * 1024 * 1024 + 17)


def pytest_generate_tests(metafunc):
    """Every test on every framework; the WebSocket test on those that have WebSockets."""
    if "framework" in metafunc.fixturenames:
        names = [
            name for name, spec in FRAMEWORKS.items()
            if spec.websocket or not metafunc.definition.originalname.startswith("test_websocket")
        ]
        metafunc.parametrize("framework", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def framework(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def served(framework, refserver_cell, request):
    spec = FRAMEWORKS[framework]
    pytest.importorskip(
        spec.package,
        reason=f"{spec.package} is not installed (it does not install on Python "
        f"{sys.version_info.major}.{sys.version_info.minor})",
    )
    app = getattr(importlib.import_module(spec.module), spec.factory)()
    with serve(app, cell=refserver_cell, interface=spec.interface, strict=spec.strict,
               pytest_config=request.config) as srv:
        yield srv


@pytest.fixture
def client(served):
    with served.httpx_client() as client:
        yield client


def test_routing_and_query(served, client):
    response = client.get("/hello/caf%C3%A9", params={"greeting": "Bonjour & hi"})
    assert response.status_code == 200
    assert response.http_version == f"HTTP/{served.http_version}"
    assert response.text == "Bonjour & hi, café!"
    assert response.headers["content-type"].startswith("text/")
    assert client.get("/hello/refserver").text == "Hello, refserver!"


def test_json(client):
    payload = {"name": "café", "numbers": [1, 2.5, None], "nested": {"ok": True}}
    response = client.post("/json", json=payload)
    assert response.status_code in (200, 201)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"received": payload}


def test_form(client):
    fields = {"a": "1", "b": "x y & z", "c": "é"}
    response = client.post("/form", data=fields)
    assert response.status_code in (200, 201)
    assert response.json() == fields


def test_multipart_upload(client):
    response = client.post(
        "/upload",
        files={"file": ("big.bin", UPLOAD, "application/octet-stream")},
        data={"note": "three MiB"},
    )
    assert response.status_code in (200, 201)
    assert response.json() == upload_summary("big.bin", UPLOAD, "three MiB")


def test_cookies(client, served):
    assert client.get("/cookies/get").json() == {"flavour": None}
    response = client.get("/cookies/set")
    assert response.status_code == 200
    assert "flavour=oat" in response.headers["set-cookie"]
    assert client.get("/cookies/get").json() == {"flavour": "oat"}
    with served.httpx_client(headers={"cookie": "other=1; flavour=rye"}) as fresh:
        assert fresh.get("/cookies/get").json() == {"flavour": "rye"}


def test_redirect(client):
    response = client.get("/redirect")
    assert 301 <= response.status_code <= 308
    assert response.headers["location"].endswith("/hello/redirected")
    followed = client.get("/redirect", follow_redirects=True)
    assert followed.status_code == 200 and followed.text == "Hello, redirected!"


def test_streamed_response(served, client):
    with client.stream("GET", "/stream") as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        if response.http_version == "HTTP/1.1":
            assert response.headers["transfer-encoding"] == "chunked"
        text = "".join(response.iter_text())
    assert text == "".join(STREAM_CHUNKS)


def test_not_found(client):
    response = client.get("/nowhere/at/all")
    assert response.status_code == 404
    assert client.get("/hello/again").text == "Hello, again!"


def test_server_error(client):
    response = client.get("/error")
    assert response.status_code == 500
    assert "view failed" not in response.text  # the framework's page, not the traceback
    assert client.get("/hello/again").text == "Hello, again!"


def _connect(served, path: str):
    """The websockets library over HTTP/1.1 (a client that shares no code with refserver, which
    frames with wsproto); over HTTP/2, which it does not speak, the plugin's RFC 8441 client.
    Returns the connection, its closed exception and how to read the server's close code."""
    if served.http_version == "2":
        ws = served.websocket(path, timeout=5)
        assert ws.http_version == "2"
        return ws, WebSocketClosed, lambda closed: closed.code
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ws = connect(served.ws_url + path, ssl=served.ssl_context, open_timeout=5, close_timeout=5)
    return ws, ConnectionClosed, lambda closed: closed.rcvd and closed.rcvd.code


def test_websocket(served):
    ws, closed_error, close_code = _connect(served, "/ws")
    with ws:
        for text in ("hello", "café " * 1000):
            ws.send(text)
            assert ws.recv(timeout=5) == f"echo: {text}"
        ws.send("bye")
        with pytest.raises(closed_error) as closed:
            ws.recv(timeout=5)
    assert close_code(closed.value) == 1000


def test_websocket_bytes(served):
    """Binary messages both ways, and a close from the client, which the server answers."""
    ws, closed_error, close_code = _connect(served, "/ws/bytes")
    with ws:
        for data in (b"\x00\x01\xff", bytes(range(256)) * 40):
            ws.send(data)
            assert ws.recv(timeout=5) == b"echo: " + data
    with pytest.raises(closed_error) as closed:
        ws.recv(timeout=5)
    assert close_code(closed.value) == 1000
