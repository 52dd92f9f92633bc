"""refserver.testing: the in-process client, and strict mode on every misuse it must catch."""

import asyncio

import httpx
import pytest

from refserver.rsgi import ProtocolError
from refserver.testing import AsyncClient, Client, ProtocolViolation

# ---------------------------------------------------------------- applications that behave


async def asgi_echo(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['method']} {scope['path']} {scope['query_string'].decode()} "
    text += f"{scope['state'].get('greeting')} {body.decode()}"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text.encode()})


class RSGIEcho:
    def __init__(self):
        self.hooks = []

    def __rsgi_init__(self, loop):
        self.hooks.append("init")

    def __rsgi_del__(self, loop):
        self.hooks.append("del")

    async def __rsgi__(self, scope, protocol):
        body = await protocol()
        protocol.response_str(200, [("x-path", scope.path)], body.decode() or "empty")


def wsgi_echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode(), b" ", body]


def test_asgi_with_lifespan_and_chunked_body():
    with Client(asgi_echo) as client:
        response = client.post("/a%20b", params={"q": "1"}, body=[b"one ", b"two"])
        assert response.status == 200
        assert response.text == "POST /a b q=1 hello one two"
        assert response.header("content-type") == "text/plain"
        assert response.header("content-length") == str(len(response.body))


def test_rsgi_hooks_and_body():
    app = RSGIEcho()
    with Client(app) as client:
        response = client.put("/x", body=b"data")
        assert (response.status, response.text, response.header("x-path")) == (200, "data", "/x")
        assert client.head("/x").body == b""
    assert app.hooks == ["init", "del"]


def test_wsgi_json_helper():
    with Client(wsgi_echo) as client:
        response = client.post("/j", json={"a": 1})
        assert response.status == 201
        assert response.text == '/j {"a": 1}'


def test_async_client_inside_a_running_loop():
    async def main():
        async with AsyncClient(asgi_echo) as client:
            return await client.get("/async")

    assert asyncio.run(main()).text.startswith("GET /async")


def test_same_answers_as_the_real_server(server_factory):
    """The client and a real socket give the same status, headers and body."""
    with Client(asgi_echo, lifespan="off") as client:
        local = client.get("/same?x=1")
    with server_factory(asgi_echo, lifespan="off", date_header=False,
                        server_header=False) as srv:
        remote = httpx.get(srv.url + "/same?x=1")
    assert local.status == remote.status_code
    assert local.body == remote.content
    assert [(k, v) for k, v in local.headers if k != "connection"] == list(
        remote.headers.multi_items()
    )


# ---------------------------------------------------------------- misuse, one app per rule


async def asgi_second_response(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"one"})
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def asgi_body_after_end(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"one"})
    await send({"type": "http.response.body", "body": b"two"})


async def asgi_str_headers(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [("a", "b")]})
    await send({"type": "http.response.body", "body": b""})


async def asgi_invalid_status(scope, receive, send):
    await send({"type": "http.response.start", "status": "200", "headers": []})


async def asgi_out_of_order(scope, receive, send):
    await send({"type": "http.response.body", "body": b"too early"})


async def rsgi_second_response(scope, protocol):
    protocol.response_str(200, [], "one")
    protocol.response_str(200, [], "two")


async def rsgi_after_stream_end(scope, protocol):
    transport = protocol.response_stream(200, [])
    await transport.send_bytes(b"one")
    protocol.response_bytes(200, [], b"late")


async def rsgi_bytes_headers(scope, protocol):
    protocol.response_str(200, [(b"a", b"b")], "x")


async def rsgi_invalid_status(scope, protocol):
    protocol.response_str(1000, [], "x")


async def rsgi_body_twice(scope, protocol):
    await protocol()
    await protocol()
    protocol.response_empty(200, [])


def wsgi_bytes_headers(environ, start_response):
    start_response("200 OK", [(b"a", b"b")])
    return [b""]


def wsgi_invalid_status(environ, start_response):
    start_response("OK", [])
    return [b""]


def wsgi_second_start(environ, start_response):
    start_response("200 OK", [])
    start_response("200 OK", [])
    return [b""]


@pytest.mark.parametrize(
    "app, clause",
    [
        (asgi_second_response, "ASGI-SEND-4"),
        (asgi_body_after_end, "ASGI-SEND-4"),
        (asgi_str_headers, "ASGI-ERROR-5"),
        (asgi_invalid_status, "ASGI-ERROR-5"),
        (asgi_out_of_order, "ASGI-ERROR-4"),
        (rsgi_second_response, "RSGI-HTTP-ERROR-4"),
        (rsgi_after_stream_end, "RSGI-HTTP-ERROR-4"),
        (rsgi_bytes_headers, "RSGI-HTTP-ERROR-6"),
        (rsgi_invalid_status, "RSGI-HTTP-ERROR-5"),
        (rsgi_body_twice, "RSGI-HTTP-BODY-3"),
        (wsgi_bytes_headers, "WSGI-START-3"),
        (wsgi_invalid_status, "WSGI-START-2"),
        (wsgi_second_start, "WSGI-START-4"),
    ],
)
def test_strict_mode_names_the_clause(app, clause):
    with Client(app, lifespan="off") as client:
        with pytest.raises(ProtocolViolation, match=clause):
            client.post("/", body=b"x")


@pytest.mark.parametrize("app", [asgi_str_headers, rsgi_invalid_status, wsgi_second_start])
def test_lenient_mode_answers_like_the_server(app):
    with Client(app, strict=False, lifespan="off") as client:
        assert client.get("/").status == 500


def test_strict_option_in_the_real_server(server_factory, server_logs):
    """``--strict``: the second RSGI response, which the server otherwise ignores with a warning,
    raises ProtocolError inside the application."""
    seen = []

    async def app(scope, protocol):
        protocol.response_str(200, [], "first")
        try:
            protocol.response_str(200, [], "second")
        except ProtocolError as exc:
            seen.append(str(exc))

    with server_factory(app, strict=True) as srv:
        assert httpx.get(srv.url).text == "first"
    assert seen and "[RSGI-HTTP-ERROR-4]" in seen[0]
    with server_factory(app) as srv:
        assert httpx.get(srv.url).text == "first"
    assert len(seen) == 1
