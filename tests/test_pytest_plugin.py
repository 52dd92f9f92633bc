"""The pytest plugin as a framework author meets it: a test file of theirs, run by pytest (pytester,
in this process, with the plugin loaded from its ``pytest11`` entry point).

Each inner run covers both paths itself (its ``refserver_matrix`` lists them): the plugin is the
thing under test, and the matrix is its interface.
"""

from __future__ import annotations

import pytest

# Imported here, before any inner run: pytester restores sys.modules after each one, and a
# cryptography imported first inside it (for the TLS cells) would then be imported again, its
# classes new while its compiled core keeps the old ones ("curve must be an EllipticCurve
# instance" in the next module that makes a certificate).
import trustme  # noqa: F401

pytest_plugins = ["pytester"]

GOOD_APPS = '''
import json

async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await ws_echo(scope, receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.dumps({"path": scope["path"], "http": scope["http_version"],
                          "scheme": scope["scheme"], "size": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


WS_CLOSE_CODES = []  # the code of each websocket.disconnect the app received


async def ws_echo(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][0]})
    agent = dict(scope["headers"]).get(b"x-agent", b"").decode()
    facts = {"http": scope["http_version"], "scheme": scope["scheme"], "agent": agent}
    await send({"type": "websocket.send", "text": json.dumps(facts)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            WS_CLOSE_CODES.append(message["code"])
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            return
        kind = "text" if message.get("text") is not None else "bytes"
        await send({"type": "websocket.send", kind: message[kind]})


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode()]


class RSGIApp:
    def __rsgi__(self, scope, protocol):
        protocol.response_str(200, [("content-type", "text/plain")], scope.path)


rsgi_app = RSGIApp()
'''

BAD_APPS = '''
async def asgi_bad_status(scope, receive, send):
    await send({"type": "http.response.start", "status": "200", "headers": []})
    await send({"type": "http.response.body", "body": b"x"})


def wsgi_bad_header(environ, start_response):
    start_response("200 OK", [("X-Bad", 7)])
    return [b"x"]


async def asgi_no_response(scope, receive, send):
    if scope["type"] == "http":
        await receive()


class RSGITwice:
    def __rsgi__(self, scope, protocol):
        protocol.response_empty(204, [])
        protocol.response_empty(204, [])


rsgi_twice = RSGITwice()
'''


def _inner(pytester, name: str, source: str, *args: str):
    pytester.makepyfile(apps=GOOD_APPS + BAD_APPS, **{name: source})
    pytester.makeini("[pytest]\nrefserver_require_all = true\n")
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", *args)


def _literal(name: str) -> str:
    """``name`` as an fnmatch pattern matching itself (brackets are pattern syntax)."""
    return name.replace("[", "?").replace("]", "?")


def test_good_apps_pass_across_the_matrix(pytester):
    result = _inner(pytester, "test_good", '''
import httpx
import pytest
from apps import asgi_app, rsgi_app, wsgi_app
from refserver.pytest_plugin import serve

pytestmark = pytest.mark.refserver_matrix(
    impl=["pure", "fast"], loop=["asyncio", "uvloop"], http=["1", "2"], tls=[False, True]
)


def test_asgi(refserver_serve, refserver_cell):
    srv = refserver_serve(asgi_app)
    assert srv.port > 0 and srv.url.endswith(str(srv.port))
    with srv.httpx_client() as client:
        response = client.post("/hello", content=b"x" * 1000)
    assert response.json() == {
        "path": "/hello", "size": 1000,
        "http": "2" if refserver_cell.http == "2" else "1.1",
        "scheme": "https" if refserver_cell.tls else "http",
    }


@pytest.fixture(scope="module")
def shared(refserver_cell):
    with serve(wsgi_app, cell=refserver_cell) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/a", "/b"])
def test_one_server_per_cell(shared, path, refserver_cell):
    assert shared.cell == refserver_cell
    with shared.httpx_client() as client:
        assert client.get(path).text == path


@pytest.mark.refserver_matrix({"impl": "pure"}, {"impl": "fast", "loop": "uvloop"})
def test_rsgi_listed_cells(refserver_serve, refserver_cell):
    srv = refserver_serve(rsgi_app)
    assert srv.interface == "rsgi"
    with srv.httpx_client() as client:
        assert client.get("/r").text == "/r"


def test_in_process_client(refserver_client):
    client = refserver_client(asgi_app)
    assert client.get("/in").json()["path"] == "/in"
''')
    # 16 cells x (asgi + 2 shared), 2 listed cells for rsgi, 1 in-process.
    result.assert_outcomes(passed=16 * 3 + 2 + 1)
    result.stdout.no_fnmatch_line("*ProtocolViolation*")


def test_websockets_over_http1_and_http2_across_the_matrix(pytester):
    result = _inner(pytester, "test_ws", '''
import json
import time

import pytest
from apps import WS_CLOSE_CODES, asgi_app
from refserver.pytest_plugin import WebSocketClosed, WebSocketRejected

pytestmark = pytest.mark.refserver_matrix(
    impl=["pure", "fast"], http=["1", "2", "auto"], tls=[False, True]
)


def test_websocket(refserver_serve, refserver_cell):
    srv = refserver_serve(asgi_app)
    # HTTP/2 where the cell serves only HTTP/2, or offers it by ALPN; cleartext "auto" starts
    # with HTTP/1.1, as httpx does.
    http2 = refserver_cell.http == "2" or (refserver_cell.tls and refserver_cell.http == "auto")
    expected = "2" if http2 else "1.1"
    assert srv.http_version == expected
    with srv.httpx_client() as client:
        assert client.get("/").json()["http"] == expected
    with srv.websocket("/echo", subprotocols=["chat", "other"],
                       headers=[("X-Agent", "pytest")]) as ws:
        assert (ws.http_version, ws.subprotocol) == (expected, "chat")
        assert json.loads(ws.recv()) == {
            "http": expected, "scheme": "wss" if refserver_cell.tls else "ws", "agent": "pytest",
        }
        ws.send("héllo")
        assert ws.recv() == "héllo"
        big = bytes(range(256)) * 1000  # past HTTP/2's first windows (64 KiB), both ways
        ws.send(big)
        assert ws.recv() == big
        ws.send("bye")
        with pytest.raises(WebSocketClosed) as closed:
            ws.recv()
        assert (closed.value.code, closed.value.reason) == (4001, "bye")
        with pytest.raises(WebSocketClosed):
            ws.send("after")

    seen = len(WS_CLOSE_CODES)
    with srv.websocket("/echo", subprotocols=["chat"]) as ws:
        ws.recv()
    deadline = time.monotonic() + 5
    while len(WS_CLOSE_CODES) == seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert WS_CLOSE_CODES[seen:] == [1000]  # the client's close(), as the app saw it

    with pytest.raises(WebSocketRejected) as rejected:
        srv.websocket("/deny")
    assert rejected.value.status == 403
''')
    # 2 paths x 3 protocol choices x cleartext and TLS
    result.assert_outcomes(passed=12)


@pytest.mark.parametrize(
    "app, clause",
    [
        ("asgi_bad_status", "ASGI-ERROR-5"),
        ("wsgi_bad_header", "WSGI-START-3"),
        ("rsgi_twice", "RSGI-HTTP-ERROR-4"),
        ("asgi_no_response", "ASGI-ERROR-2"),
    ],
)
def test_an_app_breaking_a_rule_fails_with_the_clause(pytester, app, clause):
    result = _inner(pytester, "test_bad", f'''
import httpx
import pytest
from apps import {app} as app

pytestmark = pytest.mark.refserver_matrix(impl=["pure", "fast"], http=["1", "2"])


def test_served(refserver_serve):
    srv = refserver_serve(app)
    with srv.httpx_client() as client:
        client.get("/")  # whatever the status: the violation is what fails the test


def test_not_strict(refserver_serve):
    srv = refserver_serve(app, strict=False)
    with srv.httpx_client() as client:
        client.get("/")


def test_in_process(refserver_client):
    client = refserver_client(app)
    client.get("/")
''')
    # Served: 4 cells fail, 4 lenient ones pass; the in-process client raises at the request.
    result.assert_outcomes(failed=5, passed=4)
    for test in ("test_served[pure-asyncio-h1]", "test_served[pure-asyncio-h2]",
                 "test_served[fast-asyncio-h1]", "test_served[fast-asyncio-h2]"):
        result.stdout.fnmatch_lines([f"_* {_literal(test)} _*", "",
                                     f"E *ProtocolViolation: refserver --strict: {clause}: *"])
    result.stdout.fnmatch_lines(["_* test_in_process _*", f"*ProtocolViolation*{clause}*"])


def test_a_violation_after_the_response_fails_the_test_that_caused_it(pytester):
    """The ASGI app sends its whole response, then a message more: the client has its answer
    before the server's thread logs the violation, which must still fail this test, not the
    next one."""
    result = _inner(pytester, "test_late", '''
import pytest

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})
    await send({"type": "http.response.body", "body": b"late"})

pytestmark = pytest.mark.refserver_matrix(impl=["pure", "fast"])


def test_first(refserver_serve):
    srv = refserver_serve(app, lifespan="off")
    with srv.httpx_client() as client:
        assert client.get("/").text == "done"


def test_second():
    pass
''')
    result.assert_outcomes(failed=2, passed=1)
    for cell in ("pure", "fast"):
        result.stdout.fnmatch_lines([f"_* {_literal(f'test_first[{cell}-asyncio-h1+h2]')} _*", "",
                                     "E *ProtocolViolation: refserver --strict: ASGI-SEND-4: *"])


def test_the_plugin_is_loaded_from_its_entry_point(pytestconfig):
    plugin = pytestconfig.pluginmanager.get_plugin("refserver")
    assert plugin is not None and plugin.__name__ == "refserver.pytest_plugin"
