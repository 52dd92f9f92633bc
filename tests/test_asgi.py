"""The ASGI gateway over real HTTP/1.1 connections: the http scope key by key, the receive/send
messages, disconnects, and what the server does when an application misbehaves."""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import time

import httpx
import pytest
from h1_helpers import (
    assert_closed,
    get,
    parse,
    read_body,
    respond,
)
from support import read_response, read_until_closed

# --------------------------------------------------------------------------------- the scope


def capture_scopes():
    scopes: list = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            scope["state"]["shared"] = {"created": "at startup"}
            scope["state"]["counter"] = 1
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        scopes.append(scope)
        # Mutating the request's state must not leak into the next request's.
        scope["state"]["counter"] = scope["state"].get("counter", 0) + 1
        scope["state"]["added"] = True
        await read_body(receive)
        await respond(send, body=b"ok")

    return app, scopes


def test_http_scope(server_factory):
    app, scopes = capture_scopes()
    with server_factory(app) as srv, srv.connect() as sock:
        sock.sendall(
            b"GET /a%2Fb/caf%C3%A9/%E2%82%AC?x=1&y=%20%2F HTTP/1.1\r\nHost: example.org\r\n"
            b"X-Dup: 1\r\nUser-Agent: t\r\nx-dup: 2\r\n\r\n"
        )
        assert parse(read_response(sock))[0] == 200
        client_port = sock.getsockname()[1]
    scope = scopes[0]
    assert set(scope) == {
        "type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
        "root_path", "headers", "client", "server", "state", "extensions",
    }
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a/b/café/€"
    assert type(scope["raw_path"]) is bytes
    assert scope["raw_path"] == b"/a%2Fb/caf%C3%A9/%E2%82%AC"
    assert scope["query_string"] == b"x=1&y=%20%2F"
    assert scope["root_path"] == ""
    assert [list(pair) for pair in scope["headers"]] == [
        [b"host", b"example.org"], [b"x-dup", b"1"], [b"user-agent", b"t"], [b"x-dup", b"2"],
    ]
    assert all(type(n) is bytes and type(v) is bytes for n, v in scope["headers"])
    assert list(scope["client"]) == ["127.0.0.1", client_port]
    assert list(scope["server"]) == ["127.0.0.1", srv.port]
    assert isinstance(scope["extensions"], dict)


@pytest.mark.parametrize(
    "target, path, raw_path, query",
    [
        (b"/", "/", b"/", b""),
        (b"/plain/path?", "/plain/path", b"/plain/path", b""),
        (b"/sp%20ace?a=%41", "/sp ace", b"/sp%20ace", b"a=%41"),
        (b"/bad%FFutf8", "/bad\ufffdutf8", b"/bad%FFutf8", b""),
        (b"/q?x=?y", "/q", b"/q", b"x=?y"),
        (b"http://example.org/abs?z=1", "/abs", b"/abs", b"z=1"),
    ],
)
def test_path_and_query(server_factory, target, path, raw_path, query):
    app, scopes = capture_scopes()
    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
        assert parse(read_response(sock))[0] == 200
    assert (scopes[0]["path"], scopes[0]["raw_path"], scopes[0]["query_string"]) == (
        path, raw_path, query,
    )


def test_root_path_prefixes_path_and_raw_path(server_factory):
    app, scopes = capture_scopes()
    with server_factory(app, lifespan="off", root_path="/mount") as srv:
        httpx.get(srv.url + "/x%2Fy?q")
    scope = scopes[0]
    assert scope["root_path"] == "/mount"
    assert scope["path"] == "/mount/x/y"
    assert scope["raw_path"] == b"/mount/x%2Fy"
    assert scope["query_string"] == b"q"


def test_http_version_and_method(server_factory):
    app, scopes = capture_scopes()
    with server_factory(app, lifespan="off") as srv:
        srv.request(b"GET / HTTP/1.0\r\n\r\n")
        srv.request(b"DELETE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        srv.request(b"M-SEARCH * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert [(s["http_version"], s["method"]) for s in scopes] == [
        ("1.0", "GET"), ("1.1", "DELETE"), ("1.1", "M-SEARCH"),
    ]
    assert scopes[2]["path"] == "*"


def test_state_is_a_shallow_copy_of_the_lifespan_state(server_factory):
    app, scopes = capture_scopes()
    with server_factory(app, lifespan="on") as srv:
        for _ in range(2):
            assert httpx.get(srv.url).status_code == 200
    first, second = (s["state"] for s in scopes)
    assert first is not second
    assert second["counter"] == 2  # 1 from startup, +1 by this request; not 3
    assert first["shared"] is second["shared"]  # shallow: the values are the same objects
    assert second["added"] is True


# ------------------------------------------------------------------------------ receive()


def recording_app(messages: queue.Queue, then=None):
    """Records every message it receives until the body is complete, then calls ``then``."""

    async def app(scope, receive, send):
        while True:
            message = await receive()
            messages.put(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        if then is not None:
            await then(scope, receive, send)
        else:
            await respond(send, body=b"ok")

    return app


def drain_queue(q: queue.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_body_messages(server_factory):
    messages: queue.Queue = queue.Queue()
    with server_factory(recording_app(messages), lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(get())
        read_response(sock)
        assert drain_queue(messages) == [{"type": "http.request", "body": b"", "more_body": False}]
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        read_response(sock)
        assert drain_queue(messages) == [
            {"type": "http.request", "body": b"hello", "more_body": False}
        ]


def test_chunked_upload_gives_more_body(server_factory):
    messages: queue.Queue = queue.Queue()
    with server_factory(recording_app(messages), lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        assert messages.get(timeout=5) == {"type": "http.request", "body": b"abc",
                                           "more_body": True}
        sock.sendall(b"2\r\nde\r\n")
        assert messages.get(timeout=5) == {"type": "http.request", "body": b"de",
                                           "more_body": True}
        sock.sendall(b"0\r\n\r\n")
        assert messages.get(timeout=5) == {"type": "http.request", "body": b"",
                                           "more_body": False}
        assert parse(read_response(sock))[2] == b"ok"


def test_disconnect_while_waiting_after_the_body(server_factory):
    messages: queue.Queue = queue.Queue()

    async def then(scope, receive, send):
        messages.put(await receive())  # blocks until the client goes away
        try:
            await respond(send, body=b"too late")
        except OSError as exc:
            messages.put(exc)

    with server_factory(recording_app(messages, then), lifespan="off") as srv:
        with srv.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
            assert messages.get(timeout=5)["body"] == b"hi"
            time.sleep(0.05)
            assert messages.empty()  # receive() is still waiting
        assert messages.get(timeout=5) == {"type": "http.disconnect"}
        exc = messages.get(timeout=5)
        assert isinstance(exc, OSError)  # ASGI 2.4: send() after a disconnect


def test_disconnect_before_the_body_is_complete(server_factory):
    messages: queue.Queue = queue.Queue()
    with server_factory(recording_app(messages), lifespan="off") as srv:
        with srv.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            assert messages.get(timeout=5) == {"type": "http.request", "body": b"abc",
                                               "more_body": True}
        assert messages.get(timeout=5) == {"type": "http.disconnect"}


def test_disconnect_during_a_streaming_response(server_factory, server_logs):
    events: queue.Queue = queue.Queue()

    async def app(scope, receive, send):
        async def watch():
            events.put(await receive())  # the body
            events.put(await receive())  # then, at the end, the disconnect

        watcher = asyncio.ensure_future(watch())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(2000):
                await send({"type": "http.response.body", "body": b"x" * 1024,
                            "more_body": True})
                await asyncio.sleep(0.002)
        except OSError as exc:
            events.put(exc)
        await asyncio.wait_for(watcher, 5)

    with server_factory(app, lifespan="off") as srv:
        with srv.connect() as sock:
            sock.sendall(get())
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK\r\n")
        assert events.get(timeout=5)["type"] == "http.request"
        # The watcher's disconnect and the sender's OSError come in either order.
        later = [events.get(timeout=5), events.get(timeout=5)]
        assert {"type": "http.disconnect"} in later
        assert any(isinstance(item, OSError) for item in later)
    assert not [r for r in server_logs if r.levelno >= logging.ERROR]


def test_receive_after_the_response_gives_disconnect(server_factory):
    messages: queue.Queue = queue.Queue()

    async def app(scope, receive, send):
        await receive()
        await respond(send, body=b"done")
        messages.put(await asyncio.wait_for(receive(), 5))

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(get())
        assert parse(read_response(sock))[2] == b"done"
        assert messages.get(timeout=5) == {"type": "http.disconnect"}


# ------------------------------------------------------------------------ misbehaving apps


def misbehaving(*messages, raise_after=None):
    async def app(scope, receive, send):
        if scope["path"] == "/ok":
            await respond(send, body=b"ok")
            return
        for message in messages:
            await send(message)
        if raise_after is not None:
            raise raise_after

    return app


START = {"type": "http.response.start", "status": 200, "headers": []}

BEFORE_ANYTHING_WAS_SENT = {
    "body first": [{"type": "http.response.body", "body": b"x"}],
    "unknown type": [{"type": "http.response.bogus"}],
    "not a dict": [["http.response.start"]],
    "start twice": [START, START],
    "unknown after start": [START, {"type": "http.response.bogus"}],
    "status not an int": [{"type": "http.response.start", "status": "200", "headers": []},
                          {"type": "http.response.body"}],
    "status out of range": [{"type": "http.response.start", "status": 99, "headers": []},
                            {"type": "http.response.body"}],
    "str header": [{"type": "http.response.start", "status": 200, "headers": [("a", "b")]},
                   {"type": "http.response.body"}],
    "bad header value": [
        {"type": "http.response.start", "status": 200, "headers": [(b"a", b"b\r\nc: d")]},
        {"type": "http.response.body"},
    ],
    "str body": [START, {"type": "http.response.body", "body": "text"}],
    "body longer than content-length": [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]},
        {"type": "http.response.body", "body": b"too long"},
    ],
    "returns without a response": [],
    "returns after start": [START],
}


@pytest.mark.parametrize("messages", BEFORE_ANYTHING_WAS_SENT.values(),
                         ids=list(BEFORE_ANYTHING_WAS_SENT))
def test_invalid_response_before_anything_was_sent_gives_500(server_factory, server_logs,
                                                              messages):
    with server_factory(misbehaving(*messages), lifespan="off") as srv:
        raw = srv.request(get())
        status, headers, body = parse(raw)
        assert status == 500 and headers["connection"] == "close"
        assert body == b"Internal Server Error"
        assert httpx.get(srv.url + "/ok").status_code == 200  # and it keeps serving
    assert [r for r in server_logs if r.levelno >= logging.ERROR]


def test_app_exception_gives_500_and_the_server_keeps_serving(server_factory, server_logs):
    async def app(scope, receive, send):
        if scope["path"] == "/boom":
            raise ValueError("boom")
        await respond(send, body=b"fine")

    with server_factory(app, lifespan="off") as srv:
        assert httpx.get(srv.url + "/boom").status_code == 500
        assert httpx.get(srv.url + "/").text == "fine"
    errors = [r for r in server_logs if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info[0] is ValueError


AFTER_THE_RESPONSE_STARTED = {
    "unknown message": ([START, {"type": "http.response.body", "body": b"part",
                                 "more_body": True}, {"type": "bogus"}], None),
    "exception": ([START, {"type": "http.response.body", "body": b"part", "more_body": True}],
                  RuntimeError("late")),
    "returns mid-body": ([START, {"type": "http.response.body", "body": b"part",
                                  "more_body": True}], None),
    "body shorter than content-length": (
        [{"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]},
         {"type": "http.response.body", "body": b"part", "more_body": True},
         {"type": "http.response.body", "body": b""}],
        None,
    ),
}


@pytest.mark.parametrize("messages, error", AFTER_THE_RESPONSE_STARTED.values(),
                         ids=list(AFTER_THE_RESPONSE_STARTED))
def test_invalid_response_after_it_started_closes_the_connection(server_factory, server_logs,
                                                                 messages, error):
    with server_factory(misbehaving(*messages, raise_after=error), lifespan="off") as srv:
        with srv.connect() as sock:
            sock.sendall(get() + get("/never"))
            raw = read_until_closed(sock)
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
        assert raw.count(b"HTTP/1.1") == 1
        assert b"part" in raw and not raw.endswith(b"0\r\n\r\n")
        assert httpx.get(srv.url + "/ok").status_code == 200
    assert [r for r in server_logs if r.levelno >= logging.ERROR]


def test_send_after_the_response_is_complete_is_an_error(server_factory, server_logs):
    errors: queue.Queue = queue.Queue()

    async def app(scope, receive, send):
        await respond(send, body=b"one")
        try:
            await send({"type": "http.response.body", "body": b"two"})
        except Exception as exc:  # noqa: BLE001
            errors.put(exc)

    with server_factory(app, lifespan="off") as srv:
        assert httpx.get(srv.url).text == "one"
        exc = errors.get(timeout=5)
        assert isinstance(exc, RuntimeError) and not isinstance(exc, OSError)


def test_client_gone_is_not_logged_as_an_error(server_factory, server_logs):
    gone: queue.Queue = queue.Queue()

    async def app(scope, receive, send):
        if scope["path"] == "/ok":
            await respond(send, body=b"ok")
            return
        await receive()
        gone.put(await receive())
        await respond(send, body=b"nobody listens")  # raises; the server stays quiet

    with server_factory(app, lifespan="off") as srv:
        sock = srv.connect()
        sock.sendall(get())
        sock.close()
        assert gone.get(timeout=5) == {"type": "http.disconnect"}
        assert httpx.get(srv.url + "/ok").status_code == 200
    assert not [r for r in server_logs if r.levelno >= logging.ERROR]


def test_cancelled_app_drops_the_connection(server_factory):
    async def app(scope, receive, send):
        if scope["path"] == "/ok":
            await respond(send, body=b"ok")
            return
        raise asyncio.CancelledError()

    with server_factory(app, lifespan="off") as srv:
        with srv.connect() as sock:
            sock.sendall(get())
            assert assert_closed(sock) == b""
        assert httpx.get(srv.url + "/ok").status_code == 200


def test_trailers_and_unknown_keys_are_tolerated(server_factory):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [],
                    "trailers": False, "x-extra": 1})
        await send({"type": "http.response.body", "body": bytearray(b"ba"), "more_body": True})
        await send({"type": "http.response.body", "body": memoryview(b"yes")})

    with server_factory(app, lifespan="off") as srv:
        assert httpx.get(srv.url).text == "bayes"


def test_socket_stays_clean_after_many_requests(server_factory):
    """Several requests on one connection with a mix of bodies; the byte stream stays in sync."""

    async def app(scope, receive, send):
        body, _ = await read_body(receive)
        await respond(send, body=body[::-1])

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(20):
            payload = b"%d-" % i * i
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(payload), payload))
            assert parse(read_response(sock))[2] == payload[::-1]


def test_concurrent_receive_calls_all_get_answers(server_factory):
    """Frameworks call receive() from two tasks at once (a disconnect listener beside the body
    reader); every caller must be woken, none may hang."""
    results: queue.Queue = queue.Queue()

    async def app(scope, receive, send):
        async def reader(name):
            message = await receive()
            results.put((name, message["type"]))

        tasks = [asyncio.ensure_future(reader(n)) for n in ("a", "b")]
        done, pending = await asyncio.wait(tasks, timeout=5)
        await respond(send, body=b"%d" % len(done))

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"3\r\nabc\r\n")
        first = results.get(timeout=5)
        sock.sendall(b"0\r\n\r\n")
        second = results.get(timeout=5)
        assert {first[0], second[0]} == {"a", "b"}
        assert parse(read_response(sock))[2] == b"2"
