"""The gateways over the in-memory Stream: the Stream contract is all they need.

Each interface answers a request, reads a body, streams a response and meets a disconnect and a
failure over tests/memory_stream.py, with no protocol under it, on each path's scope builders.
"""

from __future__ import annotations

import asyncio

import pytest
from memory_stream import MemoryStream

from refserver.config import Config
from refserver.impl import select
from refserver.server import ServerState, make_gateway


def _run(interface: str, impl: str, app, stream: MemoryStream, during=None):
    """Serve ``stream`` with ``app`` through the gateway of ``interface``; ``during(stream)`` runs
    once the application has started (a disconnect, say)."""

    async def main():
        state = ServerState(Config(app, access_log=False), asyncio.get_running_loop(), select(impl)[0])
        gateway = make_gateway(interface, app, state)
        try:
            task = asyncio.ensure_future(gateway(stream))
            if during is not None:
                await asyncio.sleep(0.01)
                during(stream)
            await asyncio.wait_for(task, 5)
        finally:
            if hasattr(gateway, "close"):
                gateway.close(1)

    asyncio.run(main())


async def asgi_echo(scope, receive, send):
    assert scope["http_version"] == "2" and scope["scheme"] == "https"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"x-path", scope["path"].encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"!"})


class RSGIEcho:
    async def __rsgi__(self, scope, protocol):
        assert scope.http_version == "2" and scope.scheme == "https"
        body = await protocol()
        transport = protocol.response_stream(201, [("x-path", scope.path)])
        await transport.send_bytes(body)
        await transport.send_bytes(b"!")


def wsgi_echo(environ, start_response):
    assert environ["SERVER_PROTOCOL"] == "HTTP/2" and environ["HTTPS"] == "on"
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("x-path", environ["PATH_INFO"])])
    return [body, b"!"]


@pytest.mark.parametrize("interface, app", [
    ("asgi", asgi_echo), ("rsgi", RSGIEcho()), ("wsgi", wsgi_echo),
])
def test_each_gateway_serves_a_request_over_the_contract_alone(impl, interface, app):
    stream = MemoryStream("POST", b"/echo", http_version="2", body=[b"ab", b"cd"], scheme="https")
    _run(interface, impl, app, stream)
    assert stream.status == 201
    assert (b"x-path", b"/echo") in stream.fields
    assert bytes(stream.sent) == b"abcd!"
    assert stream.response_complete and not stream.aborted and not stream.close_requested


async def asgi_waits_for_disconnect(scope, receive, send):
    await receive()  # the (empty) body
    message = await receive()
    assert message == {"type": "http.disconnect"}
    asgi_waits_for_disconnect.seen = True


class RSGIWaitsForDisconnect:
    seen = False

    async def __rsgi__(self, scope, protocol):
        await protocol.client_disconnect()
        self.seen = True


@pytest.mark.parametrize("interface, app", [
    ("asgi", asgi_waits_for_disconnect), ("rsgi", RSGIWaitsForDisconnect()),
])
def test_a_reset_exchange_reaches_the_application_as_a_disconnect(impl, interface, app):
    app.seen = False
    stream = MemoryStream()
    _run(interface, impl, app, stream, during=MemoryStream.disconnect)
    assert app.seen
    assert not stream.response_started


async def asgi_fails_midway(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": b"12345", "more_body": True})
    raise RuntimeError("boom")


async def asgi_fails_first(scope, receive, send):
    raise RuntimeError("boom")


def test_a_failure_before_the_response_is_a_500_that_asks_to_close(impl):
    stream = MemoryStream()
    _run("asgi", impl, asgi_fails_first, stream)
    assert stream.status == 500 and stream.close_requested
    assert all(name != b"connection" for name, _ in stream.fields)  # HTTP/2 forbids the field


def test_a_failure_after_the_response_started_resets_the_exchange(impl):
    stream = MemoryStream()
    _run("asgi", impl, asgi_fails_midway, stream)
    assert stream.aborted and not stream.response_complete
    assert bytes(stream.sent) == b"12345"
