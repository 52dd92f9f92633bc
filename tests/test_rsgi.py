"""RSGI 1.6 over HTTP/1.1: real sockets against the running server, plus unit tests of the
public scope and headers types."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import socket
import threading
import time
from memory_stream import MemoryStream

import httpx
import pytest
from support import ROOT, free_port, read_response, read_until_closed, start_cli, wait_for_port

from refserver.rsgi import (
    Headers,
    ProtocolClosed,
    ProtocolError,
    Scope,
    WebsocketMessageType,
    build_scope,
)

GET = b"GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


# ---------------------------------------------------------------------------- helpers


def split(raw: bytes):
    """(status, {name: value}, body) of one raw HTTP/1.1 response; a chunked body is decoded."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status, headers, body


def dechunk(data: bytes) -> bytes:
    out = []
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return b"".join(out)
        out.append(data[:size])
        data = data[size + 2 :]


def wait_until(predicate, timeout: float = 5.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.005)


def respond_json(protocol, data, status: int = 200) -> None:
    protocol.response_str(status, [("content-type", "application/json")], json.dumps(data))


@pytest.fixture
def error_log():
    """Records of ``refserver.error`` (independent of whatever logging setup ran before)."""
    records: list = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("refserver.error")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def messages(records, level=logging.ERROR) -> str:
    out = []
    for record in records:
        if record.levelno >= level:
            out.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                out.append(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
    return "\n".join(out)


# ---------------------------------------------------------------------------- unit: types


RAW_HEADERS = [
    (b"host", b"example.com"),
    (b"x-dup", b"one"),
    (b"accept", b"*/*"),
    (b"x-dup", b"two"),
    (b"x-latin", b"caf\xe9"),
]


def test_headers_mapping_semantics():
    headers = Headers(list(RAW_HEADERS))
    assert headers.keys() == ["host", "x-dup", "accept", "x-latin"]
    assert list(headers) == ["host", "x-dup", "accept", "x-latin"]
    assert len(headers) == 4
    assert headers.values() == ["example.com", "one", "*/*", "two", "café"]
    assert headers.items() == [
        ("host", "example.com"),
        ("x-dup", "one"),
        ("accept", "*/*"),
        ("x-dup", "two"),
        ("x-latin", "café"),
    ]
    assert headers.get("X-DUP") == "one"
    assert headers["x-Dup"] == "one"
    assert headers.get_all("X-Dup") == ["one", "two"]
    assert headers.get_all("missing") == []
    assert headers.get("missing") is None
    assert headers.get("missing", "default") == "default"
    assert "HOST" in headers and "missing" not in headers
    assert 42 not in headers and headers.get(b"host") is None
    assert headers["x-latin"] == "café"  # non-ASCII values are kept, decoded as latin-1
    assert headers.get("€") is None and "€" not in headers
    with pytest.raises(KeyError):
        headers["missing"]
    assert dict(headers) == {
        "host": "example.com",
        "x-dup": "one",
        "accept": "*/*",
        "x-latin": "café",
    }
    empty = Headers([])
    assert len(empty) == 0 and empty.keys() == [] and list(empty) == []


def _fake_stream(**overrides):
    overrides.setdefault("headers", [(b"host", b"h")])
    return MemoryStream(**overrides)


def test_build_scope_addresses_versions_and_paths():
    scope = build_scope(_fake_stream())
    assert (scope.proto, scope.rsgi_version, scope.http_version) == ("http", "1.6", "1.1")
    assert (scope.server, scope.client) == ("127.0.0.1:8000", "127.0.0.1:5000")
    assert scope.authority is None and scope.headers.get("host") == "h"

    v6 = build_scope(_fake_stream(client=("::1", 5000), server=("::1", 8000)))
    assert (v6.server, v6.client) == ("[::1]:8000", "[::1]:5000")

    unix = build_scope(_fake_stream(client=None, server=("/tmp/app.sock", None)))
    assert (unix.server, unix.client) == ("/tmp/app.sock", "")

    old = build_scope(_fake_stream(http_version="1.0"), proto="ws")
    assert (old.http_version, old.proto) == ("1", "ws")

    paths = build_scope(_fake_stream(raw_path=b"/a%2Fb/caf%C3%A9/%FF", query_string=b"q=%20x"))
    assert paths.path == "/a/b/café/\ufffd"
    assert paths.query_string == "q=%20x"


def test_scope_is_read_only_and_picklable():
    scope = build_scope(_fake_stream())
    for name in ("proto", "path", "headers", "rsgi_version", "anything"):
        with pytest.raises(AttributeError):
            setattr(scope, name, "x")
    assert "path='/'" in repr(scope)
    again = pickle.loads(pickle.dumps(Scope("http", "2", "s", "c", "https", "GET", "/", "", None)))
    assert (again.http_version, again.scheme, again.authority) == ("2", "https", None)


def test_public_exceptions_and_message_kinds():
    assert issubclass(ProtocolError, RuntimeError) and issubclass(ProtocolClosed, RuntimeError)
    assert [int(k) for k in WebsocketMessageType] == [0, 1, 2]
    assert WebsocketMessageType.close == 0 and WebsocketMessageType(2).name == "string"


# ---------------------------------------------------------------------------- scope over the wire


async def scope_app(scope, protocol):
    data = {
        name: getattr(scope, name)
        for name in (
            "proto",
            "rsgi_version",
            "http_version",
            "server",
            "client",
            "scheme",
            "method",
            "path",
            "query_string",
            "authority",
        )
    }
    try:
        scope.path = "/changed"
        data["writable"] = True
    except AttributeError:
        data["writable"] = False
    respond_json(protocol, data)


def test_scope_attributes(server_factory):
    with server_factory(scope_app) as srv:
        with srv.connect() as sock:
            sock.sendall(
                b"POST /a%2Fb/caf%C3%A9/%FF?x=%20y&z HTTP/1.1\r\nHost: test\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            client_port = sock.getsockname()[1]
            status, _, body = split(read_until_closed(sock))
        assert status == 200
        assert json.loads(body) == {
            "proto": "http",
            "rsgi_version": "1.6",
            "http_version": "1.1",
            "server": f"127.0.0.1:{srv.port}",
            "client": f"127.0.0.1:{client_port}",
            "scheme": "http",
            "method": "POST",
            "path": "/a/b/café/\ufffd",
            "query_string": "x=%20y&z",
            "authority": None,
            "writable": False,
        }

        raw = srv.request(b"GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: example.com\r\n"
                          b"Connection: close\r\n\r\n")
        data = json.loads(split(raw)[2])
        assert (data["authority"], data["path"], data["query_string"]) == (
            "example.com:8080", "/p", "q=1"
        )

        data = json.loads(split(srv.request(b"GET / HTTP/1.0\r\n\r\n"))[2])
        assert (data["http_version"], data["query_string"], data["path"]) == ("1", "", "/")


async def headers_app(scope, protocol):
    headers = scope.headers
    try:
        headers["missing"]
        key_error = False
    except KeyError:
        key_error = True
    respond_json(
        protocol,
        {
            "keys": headers.keys(),
            "iter": list(headers),
            "values": headers.values(),
            "items": headers.items(),
            "get": headers.get("X-DUP"),
            "getitem": headers["X-Latin"],
            "get_all": headers.get_all("x-Dup"),
            "get_all_missing": headers.get_all("missing"),
            "default": headers.get("missing", "dflt"),
            "contains": ["X-Dup" in headers, "missing" in headers],
            "len": len(headers),
            "key_error": key_error,
        },
    )


def test_headers_over_the_wire(server_factory):
    with server_factory(headers_app) as srv:
        raw = srv.request(
            b"GET / HTTP/1.1\r\nHost: test\r\nX-Dup: one\r\nX-Latin: caf\xe9\r\n"
            b"x-dup: two\r\nConnection: close\r\n\r\n"
        )
    data = json.loads(split(raw)[2])
    assert data == {
        "keys": ["host", "x-dup", "x-latin", "connection"],
        "iter": ["host", "x-dup", "x-latin", "connection"],
        "values": ["test", "one", "café", "two", "close"],
        "items": [["host", "test"], ["x-dup", "one"], ["x-latin", "café"], ["x-dup", "two"],
                  ["connection", "close"]],
        "get": "one",
        "getitem": "café",
        "get_all": ["one", "two"],
        "get_all_missing": [],
        "default": "dflt",
        "contains": [True, False],
        "len": 4,
        "key_error": True,
    }


# ---------------------------------------------------------------------------- request body


def test_body_read_whole(server_factory):
    async def app(scope, protocol):
        body = await protocol()
        protocol.response_bytes(200, [("content-type", "application/octet-stream")], body)

    payload = os.urandom(300_000)
    with server_factory(app) as srv, httpx.Client() as client:
        assert client.post(srv.url, content=payload).content == payload
        assert client.post(srv.url, content=b"").content == b""


def test_body_read_in_chunks_from_a_chunked_request(server_factory):
    first_seen = threading.Event()

    async def app(scope, protocol):
        chunks = []
        async for chunk in protocol:
            chunks.append(chunk.decode())
            first_seen.set()
        respond_json(protocol, chunks)

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n5\r\nhello\r\n"
            )
            assert first_seen.wait(5)
            sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
            chunks = json.loads(split(read_until_closed(sock))[2])
        # Every chunk but the last carries data; the last is the empty end marker, as in Granian.
        assert "".join(chunks) == "hello world"
        assert chunks[0] == "hello" and chunks[-1] == "" and all(chunks[:-1])

        chunks = json.loads(split(srv.request(GET % b"/"))[2])
        assert chunks == [""]


def test_body_can_be_read_only_once(server_factory):
    async def app(scope, protocol):
        results = []
        if scope.path == "/call-then-iter":
            results.append((await protocol()).decode())
            try:
                async for _ in protocol:
                    pass
            except ProtocolError as exc:
                results.append(f"ProtocolError: {exc}")
        else:
            async for chunk in protocol:
                results.append(chunk.decode())
            for _ in range(2):
                try:
                    await protocol()
                except ProtocolError as exc:
                    results.append(f"ProtocolError: {exc}")
        respond_json(protocol, results)

    with server_factory(app) as srv, httpx.Client() as client:
        first = client.post(srv.url + "/call-then-iter", content=b"data").json()
        assert first[0] == "data"
        assert first[1].startswith("ProtocolError: the request body was already read")
        second = client.post(srv.url + "/iter-then-call", content=b"data").json()
        assert second[:2] == ["data", ""]
        assert len(second) == 4 and all(r.startswith("ProtocolError") for r in second[2:])


def test_body_read_raises_protocol_closed_when_client_leaves(server_factory):
    outcome = []
    done = threading.Event()

    async def app(scope, protocol):
        try:
            await protocol()
            outcome.append("body")
        except ProtocolClosed:
            outcome.append("closed")
        done.set()

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        assert done.wait(5)
    assert outcome == ["closed"]


# ---------------------------------------------------------------------------- client_disconnect


def test_client_disconnect_resolves_when_the_client_drops_mid_request(server_factory, error_log):
    waiting = threading.Event()
    gone = threading.Event()
    late_response = []

    async def app(scope, protocol):
        waiting.set()
        await protocol.client_disconnect()
        gone.set()
        # Responding to a client that has gone is not an error: the answer is discarded.
        try:
            protocol.response_str(200, [], "too late")
            late_response.append("accepted")
        except Exception as exc:  # noqa: BLE001
            late_response.append(repr(exc))

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
            assert waiting.wait(5)
            assert not gone.is_set()
        assert gone.wait(5)
        wait_until(lambda: late_response, message="the late response")
        # The same for a complete request whose client leaves while the app works on it.
        waiting.clear()
        gone.clear()
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert waiting.wait(5)
        assert gone.wait(5)
        wait_until(lambda: len(late_response) == 2, message="the second late response")
    assert late_response == ["accepted", "accepted"]
    assert messages(error_log) == ""


def test_client_disconnect_resolves_once_the_response_is_complete(server_factory):
    async def app(scope, protocol):
        protocol.response_str(200, [], "done")
        # Must not hang on a kept-alive connection.
        await asyncio.wait_for(protocol.client_disconnect(), 5)

    with server_factory(app) as srv, httpx.Client() as client:
        for _ in range(3):
            assert client.get(srv.url).text == "done"


# ---------------------------------------------------------------------------- responses


def test_response_kinds_headers_and_head(server_factory):
    async def app(scope, protocol):
        path = scope.path
        if path == "/empty":
            protocol.response_empty(204, [("X-Kind", "empty")])
        elif path == "/str":
            protocol.response_str(
                201, [("Content-Type", "text/plain; charset=utf-8"), ("X-Latin", "café")], "héllo"
            )
        elif path == "/bytes":
            protocol.response_bytes(200, [("content-type", "application/x-bin")], b"\x00\x01")
        elif path == "/bytearray":
            protocol.response_bytes(200, [], bytearray(b"ba"))
        elif path == "/defaults":
            protocol.response_empty()
        elif path == "/httpstatus":
            from http import HTTPStatus

            protocol.response_str(HTTPStatus.ACCEPTED, (), "accepted")

    with server_factory(app) as srv, httpx.Client() as client:
        r = client.get(srv.url + "/empty")
        assert (r.status_code, r.headers["x-kind"], r.content) == (204, "empty", b"")
        raw = srv.request(GET % b"/str")
        status, headers, body = split(raw)
        assert (status, body) == (201, "héllo".encode())
        assert b"\r\nX-Latin: caf\xe9\r\n" in raw  # encoded as latin-1, case as given
        assert headers["content-length"] == str(len("héllo".encode()))
        assert client.get(srv.url + "/bytes").content == b"\x00\x01"
        assert client.get(srv.url + "/bytearray").content == b"ba"
        r = client.get(srv.url + "/defaults")
        assert (r.status_code, r.content) == (200, b"")
        assert client.get(srv.url + "/httpstatus").status_code == 202
        # HEAD: no body on the wire, Content-Length kept; the next request on the same
        # connection would be corrupted if body bytes had been sent.
        r = client.head(srv.url + "/str")
        assert (r.status_code, r.headers["content-length"], r.content) == (201, "6", b"")
        assert client.get(srv.url + "/bytes").content == b"\x00\x01"
        assert client.head(srv.url + "/bytes").headers["content-length"] == "2"
        assert client.get(srv.url + "/str").text == "héllo"


def test_rsgi_method_is_preferred_over_call(server_factory):
    class App:
        async def __call__(self, scope, receive, send):  # an ASGI face
            raise AssertionError("__call__ must not be used when __rsgi__ exists")

        async def __rsgi__(self, scope, protocol):
            protocol.response_str(200, [], "rsgi")

    with server_factory(App(), interface="rsgi") as srv:
        assert httpx.get(srv.url).text == "rsgi"
    with server_factory(App()) as srv:  # interface detection
        assert httpx.get(srv.url).text == "rsgi"


def test_second_response_is_ignored_and_logged(server_factory, error_log):
    outcome = []

    async def app(scope, protocol):
        if scope.path == "/stream-first":
            transport = protocol.response_stream(200, [])
            await transport.send_bytes(b"streamed")
            # What Emmett's @stream routes do once the stream is sent: must not break it.
            protocol.response_str(200, [], "late")
            return
        protocol.response_str(200, [], "first")
        protocol.response_str(201, [], "second")
        protocol.response_empty(204, [])
        protocol.response_file(200, [], __file__)
        protocol.response_str(202, [], "third")
        try:
            protocol.response_stream(200, [])
            outcome.append("stream accepted")
        except ProtocolError as exc:
            outcome.append(str(exc))

    with server_factory(app) as srv, httpx.Client() as client:
        r = client.get(srv.url)
        assert (r.status_code, r.text) == (200, "first")
        assert client.get(srv.url).text == "first"  # the connection is still sound
        r = client.get(srv.url + "/stream-first")
        assert (r.status_code, r.text) == (200, "streamed")
    assert outcome == [
        "response_stream called after the response was sent; RSGI allows one response per "
        "request [RSGI-HTTP-ERROR-4]"
    ] * 2
    warnings = [r.getMessage() for r in error_log if r.levelno == logging.WARNING]
    # One warning per kind of call; repeats go to debug.
    assert len(warnings) == 3
    assert all("ignored, as RSGI allows one response per request [RSGI-HTTP-ERROR-4]" in w
               for w in warnings)
    assert "response_str after its response was sent (GET /)" in warnings[0]
    assert any("response_file" in w for w in warnings)
    assert messages(error_log) == ""


BAD_RESPONSES = {
    "/status-1000": lambda p: p.response_str(1000, [], "x"),
    "/status-99": lambda p: p.response_empty(99, []),
    "/status-str": lambda p: p.response_str("200", [], "x"),
    "/status-bool": lambda p: p.response_empty(True, []),
    "/headers-dict": lambda p: p.response_empty(200, {"a": "b"}),
    "/header-bytes": lambda p: p.response_empty(200, [(b"x-a", b"b")]),
    "/header-int": lambda p: p.response_empty(200, [("x-a", 1)]),
    "/header-triple": lambda p: p.response_empty(200, [("x-a", "b", "c")]),
    "/header-str-item": lambda p: p.response_empty(200, ["ab"]),
    "/header-non-latin1": lambda p: p.response_empty(200, [("x-a", "€")]),
    "/header-bad-name": lambda p: p.response_empty(200, [("bad name", "v")]),
    "/header-newline": lambda p: p.response_empty(200, [("x-a", "a\r\nx-b: c")]),
    "/content-length-mismatch": lambda p: p.response_bytes(200, [("content-length", "10")], b"abc"),
    "/str-body-bytes": lambda p: p.response_str(200, [], b"x"),
    "/bytes-body-str": lambda p: p.response_bytes(200, [], "x"),
    "/stream-status": lambda p: p.response_stream(1000, []),
    "/file-status": lambda p: p.response_file(1000, [], __file__),
    "/file-path-type": lambda p: p.response_file(200, [], 42),
}


def test_invalid_responses_are_500_and_the_server_keeps_serving(server_factory, error_log):
    raised = {}

    async def app(scope, protocol):
        if scope.path == "/ok":
            protocol.response_str(200, [], "ok")
            return
        try:
            BAD_RESPONSES[scope.path](protocol)
        except ProtocolError as exc:
            raised[scope.path] = str(exc)
            raise

    with server_factory(app) as srv, httpx.Client() as client:
        for path in BAD_RESPONSES:
            r = client.get(srv.url + path)
            assert (r.status_code, r.content) == (500, b""), path
            assert r.headers["content-length"] == "0"
            assert client.get(srv.url + "/ok").text == "ok"
    assert set(raised) == set(BAD_RESPONSES)
    assert "invalid response status 1000" in raised["/status-1000"]
    assert "must be an int" in raised["/status-str"]
    assert "outside latin-1" in raised["/header-non-latin1"]
    assert "invalid response header name" in raised["/header-bad-name"]
    assert "Content-Length" in raised["/content-length-mismatch"]
    logged = messages(error_log)
    assert logged.count("exception in RSGI application") == len(BAD_RESPONSES)
    assert "ProtocolError: invalid response: invalid response status 1000" in logged


def test_header_items_are_checked_on_every_response(server_factory):
    """Encoded header items are remembered; whether they are valid is still decided each time."""

    async def app(scope, protocol):
        if scope.path == "/bad":
            protocol.response_empty(200, [("bad name", "v")])
        else:
            protocol.response_str(200, [("x-a", "b"), ["x-list", "c"]], scope.path)

    with server_factory(app) as srv, httpx.Client() as client:
        for i in range(3):
            assert client.get(srv.url + "/bad").status_code == 500
            r = client.get(srv.url + f"/ok{i}")
            assert (r.text, r.headers["x-a"], r.headers["x-list"]) == (f"/ok{i}", "b", "c")


def test_app_failures_give_500(server_factory, error_log):
    async def app(scope, protocol):
        if scope.path == "/raise":
            raise ValueError("boom")
        if scope.path == "/swallowed":
            try:
                protocol.response_str(1000, [], "x")
            except ProtocolError:
                pass
        # "/none" and "/swallowed" return without responding.

    with server_factory(app) as srv, httpx.Client() as client:
        for path in ("/raise", "/none", "/swallowed"):
            r = client.get(srv.url + path)
            assert (r.status_code, r.content, r.headers["content-length"]) == (500, b"", "0")
    logged = messages(error_log)
    assert "exception in RSGI application" in logged and "ValueError: boom" in logged
    assert logged.count("RSGI application returned without responding") == 2
    assert (
        "returned without responding (its response was refused: invalid response: "
        "invalid response status 1000 [RSGI-HTTP-ERROR-5])" in logged
    )


# ---------------------------------------------------------------------------- files


@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(300_000)  # more than two read chunks
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return str(path), data


def test_response_file_and_ranges(server_factory, data_file, error_log):
    path, data = data_file
    range_errors = []

    async def app(scope, protocol):
        route = scope.path
        if route == "/file":
            protocol.response_file(
                200,
                [("content-type", "application/octet-stream"), ("content-length", str(len(data)))],
                path,
            )
            # The file goes out while the app waits: awaiting the disconnect must not deadlock.
            await asyncio.wait_for(protocol.client_disconnect(), 5)
        elif route == "/file-chunked":
            protocol.response_file(200, [("content-type", "application/octet-stream")], path)
        elif route == "/range":
            start, end = 1000, 200_000
            protocol.response_file_range(
                206,
                [("content-range", f"bytes {start}-{end - 1}/{len(data)}"),
                 ("content-length", str(end - start))],
                path,
                start,
                end,
            )
        elif route == "/bad-range":
            for start, end in ((10, 10), (10, 5), (-1, 5)):
                try:
                    protocol.response_file_range(206, [], path, start, end)
                except ValueError as exc:
                    range_errors.append(str(exc))
            protocol.response_empty(416, [])
        elif route == "/missing":
            protocol.response_file(200, [("content-type", "text/plain")], path + ".missing")
        elif route == "/directory":
            protocol.response_file(200, [], os.path.dirname(path))
        elif route == "/short":
            # The file ends before the range the app promised: the connection must drop.
            protocol.response_file_range(
                206, [("content-length", "1000")], path, len(data) - 10, len(data) + 990
            )

    with server_factory(app) as srv, httpx.Client() as client:
        r = client.get(srv.url + "/file")
        assert r.status_code == 200 and r.content == data
        r = client.get(srv.url + "/file-chunked")
        assert r.headers["transfer-encoding"] == "chunked" and r.content == data
        r = client.get(srv.url + "/range")
        assert r.status_code == 206 and r.content == data[1000:200_000]
        assert r.headers["content-range"] == f"bytes 1000-199999/{len(data)}"
        r = client.head(srv.url + "/file")
        assert (r.headers["content-length"], r.content) == (str(len(data)), b"")
        assert client.get(srv.url + "/range").content == data[1000:200_000]
        assert client.get(srv.url + "/bad-range").status_code == 416
        for route in ("/missing", "/directory"):
            r = client.get(srv.url + route)
            assert r.status_code == 404, route
        raw = srv.request(GET % b"/short")
        assert raw.startswith(b"HTTP/1.1 206") and len(split(raw)[2]) == 10
    assert len(range_errors) == 3
    assert "cannot open file" in messages(error_log, logging.INFO)
    assert "ended 990 bytes before the requested range" in messages(error_log)


# ---------------------------------------------------------------------------- streams


def test_response_stream(server_factory):
    kept = {}
    errors = []

    async def app(scope, protocol):
        if scope.path == "/sized":
            transport = protocol.response_stream(200, [("content-length", "10")])
            await transport.send_bytes(b"01234")
            await transport.send_bytes(b"56789")
            return
        transport = protocol.response_stream(200, [("content-type", "text/plain; charset=utf-8")])
        await transport.send_bytes(b"hello ")
        await transport.send_str("w\u00f6rld")
        await transport.send_bytes(memoryview(b"!"))
        await transport.send_bytes(b"")
        try:
            await transport.send_str(b"bytes")
        except ProtocolError as exc:
            errors.append(str(exc))
        kept["transport"] = transport

    with server_factory(app) as srv, httpx.Client() as client:
        r = client.get(srv.url + "/")
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.text == "hello wörld!"
        assert errors == ["send_str takes str, got bytes"]
        r = client.get(srv.url + "/sized")
        assert "transfer-encoding" not in r.headers and r.content == b"0123456789"
        r = client.head(srv.url + "/")
        assert r.status_code == 200 and r.content == b""
        assert client.get(srv.url + "/sized").content == b"0123456789"
        # The stream ended when the app returned: later sends raise ProtocolClosed.
        future = asyncio.run_coroutine_threadsafe(kept["transport"].send_bytes(b"x"), srv.loop)
        with pytest.raises(ProtocolClosed):
            future.result(5)


def test_stream_app_failure_aborts_the_connection(server_factory, error_log):
    async def app(scope, protocol):
        transport = protocol.response_stream(200, [])
        await transport.send_bytes(b"partial")
        raise RuntimeError("mid-stream failure")

    with server_factory(app) as srv:
        raw = srv.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"partial" in body
    assert not body.endswith(b"0\r\n\r\n")  # no terminating chunk: the client sees the failure
    assert "RuntimeError: mid-stream failure" in messages(error_log)


def test_stream_backpressure(server_factory):
    chunk = b"x" * 65536
    total = 32 * 1024 * 1024
    progress = {"sent": 0}
    done = threading.Event()

    async def app(scope, protocol):
        transport = protocol.response_stream(
            200, [("content-type", "application/octet-stream"), ("content-length", str(total))]
        )
        while progress["sent"] < total:
            await transport.send_bytes(chunk)
            progress["sent"] += len(chunk)
        done.set()

    with server_factory(app) as srv:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(10)
        with sock:
            sock.connect((srv.host, srv.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            # Read nothing: the app's sends must stall once the socket buffers are full.
            wait_until(lambda: progress["sent"] > 0, message="the stream to start")
            last, stable_since = -1, time.monotonic()
            deadline = time.monotonic() + 10
            while time.monotonic() - stable_since < 0.3:
                assert time.monotonic() < deadline, "the stream never stalled"
                now = progress["sent"]
                if now != last:
                    last, stable_since = now, time.monotonic()
                time.sleep(0.01)
            assert not done.is_set()
            assert progress["sent"] < total // 2, progress["sent"]
            received = len(read_until_closed(sock, timeout=10).partition(b"\r\n\r\n")[2])
        assert done.wait(5)
        assert received == total


def test_stream_send_raises_protocol_closed_after_client_left(server_factory, error_log):
    outcome = []
    finished = threading.Event()

    async def app(scope, protocol):
        if scope.path == "/ok":
            protocol.response_str(200, [], "ok")
            return
        transport = protocol.response_stream(200, [])
        try:
            while True:
                await transport.send_bytes(b"y" * 65536)
        except ProtocolClosed as exc:
            outcome.append(str(exc))
            try:
                await transport.send_str("again")
            except ProtocolClosed:
                outcome.append("still closed")
        finally:
            finished.set()

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        assert finished.wait(5)
        assert httpx.get(srv.url + "/ok").text == "ok"  # the server is unaffected
    assert outcome == ["the client disconnected", "still closed"]
    assert messages(error_log) == ""


# ---------------------------------------------------------------------------- hooks


class HookedApp:
    def __init__(self):
        self.events = []
        self.init_loop = None

    def __rsgi_init__(self, loop):
        self.init_loop = loop
        self.events.append(("init", loop.is_running()))
        # RSGI lets the app run setup coroutines on the loop before serving.
        loop.run_until_complete(asyncio.sleep(0))

    async def __rsgi__(self, scope, protocol):
        same_loop = asyncio.get_running_loop() is self.init_loop
        self.events.append(("request", same_loop))
        protocol.response_str(200, [], "ok")

    def __rsgi_del__(self, loop):
        self.events.append(("del", loop.is_running(), loop is self.init_loop))


def test_rsgi_init_and_del_hooks(server_factory):
    app = HookedApp()
    with server_factory(app) as srv:
        assert httpx.get(srv.url).text == "ok"
        assert app.events == [("init", False), ("request", True)]
    assert app.events == [("init", False), ("request", True), ("del", False, True)]


HOOKS_MODULE = '''
import os

def _log(line):
    with open(os.environ["RSGI_EVENTS"], "a") as f:
        f.write(line + "\\n")

class App:
    def __rsgi_init__(self, loop):
        _log("init running=%s" % loop.is_running())

    async def __rsgi__(self, scope, protocol):
        _log("request")
        protocol.response_str(200, [], "hooked")

    def __rsgi_del__(self, loop):
        _log("del running=%s" % loop.is_running())

app = App()
'''


def test_hooks_through_the_command_line(tmp_path):
    (tmp_path / "hooked_app.py").write_text(HOOKS_MODULE)
    events = tmp_path / "events.txt"
    port = free_port()
    proc = start_cli(
        "--port", str(port), "--app-dir", str(tmp_path), "hooked_app:app",
        env={"RSGI_EVENTS": str(events)},
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "hooked"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert events.read_text().splitlines() == ["init running=False", "request", "del running=False"]


# ---------------------------------------------------------------------------- example


def test_hello_example(server_factory):
    with server_factory("examples.hello_rsgi:app", app_dir=ROOT) as srv:
        r = httpx.get(srv.url)
    assert (r.status_code, r.text) == (200, "Hello, world!")
    assert r.headers["content-type"] == "text/plain"


def test_keep_alive_sequence_on_one_connection(server_factory):
    async def app(scope, protocol):
        body = await protocol()
        protocol.response_bytes(200, [], scope.path.encode() + b":" + body)

    with server_factory(app) as srv, srv.connect() as sock:
        for i in range(3):
            sock.sendall(b"POST /%d HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc" % i)
            assert split(read_response(sock))[2] == b"/%d:abc" % i
