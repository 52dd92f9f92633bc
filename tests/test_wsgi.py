"""The WSGI gateway (PEP 3333) through a real server: environ, wsgi.input, start_response, write(),
close(), file_wrapper, the thread pool, errors and disconnects."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import sys
import threading
import time

import httpx
import pytest
from support import read_response, read_until_closed

from refserver.gateways.wsgi import WSGIProtocolError

DEADLINE = 10.0


def wait_until(predicate, timeout: float = DEADLINE) -> bool:
    """Poll a condition the server side sets; a deadline, never a lock."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list = []

    def emit(self, record):
        self.records.append(record)

    def errors(self) -> list:
        return [r for r in self.records if r.levelno >= logging.ERROR]

    def text(self) -> str:
        out = []
        for record in self.records:
            out.append(record.getMessage())
            if record.exc_info:
                out.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(out)


@pytest.fixture
def error_log():
    """Records of ``refserver.error`` (a handler of its own: ``logs.configure`` may have turned
    propagation to the root logger off)."""
    logger = logging.getLogger("refserver.error")
    handler = ListHandler()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def split_response(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    return status, headers, body


def recv_until(sock, marker: bytes, received: bytes = b"") -> bytes:
    """Read until ``marker`` has arrived (the server's progress, seen from the client)."""
    sock.settimeout(DEADLINE)
    parts = [received]
    tail = received
    while marker not in tail:
        data = sock.recv(1 << 20)
        assert data, f"connection closed before {marker!r} arrived"
        parts.append(data)
        tail = tail[-len(marker) :] + data
    return b"".join(parts)


def dechunk(body: bytes) -> bytes:
    out = []
    at = 0
    while True:
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[line_end + 2 : line_end + 2 + size])
        at = line_end + 2 + size + 2


# ------------------------------------------------------------------------------------ environ

CGI_KEYS = {
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "RAW_URI",
    "REQUEST_URI",
}
WSGI_KEYS = {
    "wsgi.version",
    "wsgi.url_scheme",
    "wsgi.input",
    "wsgi.errors",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "wsgi.file_wrapper",
    "wsgi.input_terminated",
}


def test_environ_is_complete(server_factory, error_log):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].read()
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.writelines(["line\n", "tail"])
        errors.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(
                b"POST /a%20b/caf%C3%A9/x%2Fy?q=1&r=%20s HTTP/1.1\r\n"
                b"Host: example.test:8080\r\n"
                b"Content-Type: text/plain\r\n"
                b"Content-Length: 5\r\n"
                b"User-Agent: probe/1\r\n"
                b"X-Dup: a\r\n"
                b"X-Dup: b\r\n"
                b"Cookie: a=1\r\n"
                b"Cookie: b=2\r\n"
                b"X-Forwarded-For: 10.0.0.1\r\n"
                b"X_Forwarded_For: 6.6.6.6\r\n"
                b"X_Other: dropped\r\n"
                b"Connection: close\r\n"
                b"\r\n"
                b"hello"
            )
            client_port = sock.getsockname()[1]
            raw = read_until_closed(sock)
    status, _, body = split_response(raw)
    assert (status, body) == (200, b"ok")

    http_keys = {
        "HTTP_HOST",
        "HTTP_USER_AGENT",
        "HTTP_X_DUP",
        "HTTP_COOKIE",
        "HTTP_X_FORWARDED_FOR",
        "HTTP_CONNECTION",
    }
    assert set(seen) == CGI_KEYS | WSGI_KEYS | http_keys | {"body"}
    for key in CGI_KEYS | http_keys:
        assert type(seen[key]) is str, key  # PEP 3333: native strings

    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["SCRIPT_NAME"] == ""
    # Percent-decoded, then the bytes as latin-1 (PEP 3333 "Unicode Issues").
    assert seen["PATH_INFO"] == "/a b/caf\xc3\xa9/x/y"
    assert seen["PATH_INFO"].encode("latin-1").decode("utf-8") == "/a b/café/x/y"
    assert seen["QUERY_STRING"] == "q=1&r=%20s"
    assert seen["RAW_URI"] == seen["REQUEST_URI"] == "/a%20b/caf%C3%A9/x%2Fy?q=1&r=%20s"
    assert seen["CONTENT_TYPE"] == "text/plain"
    assert seen["CONTENT_LENGTH"] == "5"
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == str(srv.port)
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["SERVER_SOFTWARE"].startswith("refserver/")
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["REMOTE_PORT"] == str(client_port)
    assert seen["HTTP_HOST"] == "example.test:8080"
    assert seen["HTTP_USER_AGENT"] == "probe/1"
    assert seen["HTTP_X_DUP"] == "a, b"
    assert seen["HTTP_COOKIE"] == "a=1; b=2"
    # A header spelled with underscores cannot pose as (or join) the dashed one.
    assert seen["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert seen["HTTP_CONNECTION"] == "close"

    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.multithread"] is True
    assert seen["wsgi.multiprocess"] is False
    assert seen["wsgi.run_once"] is False
    assert seen["wsgi.input_terminated"] is True
    assert callable(seen["wsgi.file_wrapper"])
    for method in ("read", "readline", "readlines", "__iter__"):
        assert hasattr(seen["wsgi.input"], method)
    assert seen["body"] == b"hello"

    messages = [r.getMessage() for r in error_log.records if r.name == "refserver.error"]
    assert ["first line", "second line", "tail"] == [
        m for m in messages if m in ("first line", "second line", "tail")
    ]


def test_environ_without_body_headers_and_http10(server_factory):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    with server_factory(app) as srv:
        raw = srv.request(b"GET / HTTP/1.0\r\n\r\n")
    assert split_response(raw)[0] == 200
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert seen["PATH_INFO"] == "/"
    assert seen["QUERY_STRING"] == ""
    assert seen["RAW_URI"] == "/"
    assert "CONTENT_TYPE" not in seen and "CONTENT_LENGTH" not in seen
    assert "HTTP_HOST" not in seen


def test_absolute_form_target_sets_host(server_factory):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return []

    with server_factory(app) as srv:
        raw = srv.request(
            b"GET http://proxy.example:81/p?x=1 HTTP/1.1\r\n"
            b"Host: ignored\r\nConnection: close\r\n\r\n"
        )
    assert split_response(raw)[0] == 200
    assert seen["HTTP_HOST"] == "proxy.example:81"
    assert (seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/p", "x=1")


@pytest.mark.parametrize("root_path", ["/app", "/app/"])
def test_script_name_and_path_info_with_root_path(server_factory, root_path):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([environ["SCRIPT_NAME"], environ["PATH_INFO"]]).encode()]

    with server_factory(app, root_path=root_path) as srv:
        with httpx.Client(base_url=srv.url) as client:

            def get(path):
                return client.get(path).json()

            assert get("/app/users/1") == ["/app", "/users/1"]
            assert get("/app/a%20b") == ["/app", "/a b"]
            assert get("/app") == ["/app", ""]
            assert get("/app/") == ["/app", "/"]
            # Not under the mount point at a segment boundary: the path stays whole (a proxy
            # that strips the prefix itself sends such paths).
            assert get("/application") == ["/app", "/application"]
            assert get("/users/2") == ["/app", "/users/2"]


# ------------------------------------------------------------------------------------ wsgi.input


def test_streamed_chunked_upload_is_read_while_it_arrives(server_factory):
    half = 1 << 20
    piece = 64 * 1024
    payload = os.urandom(2 * half)
    app_has_first_half = threading.Event()
    client_waited = {}

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        digest = hashlib.sha256()
        got = 0
        while got < half:
            data = stream.read(min(piece, half - got))
            assert data, "body ended early"
            digest.update(data)
            got += len(data)
        app_has_first_half.set()
        rest = stream.read()
        digest.update(rest)
        got += len(rest)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"size": got, "sha256": digest.hexdigest()}).encode()]

    def body():
        for i in range(0, half, piece):
            yield payload[i : i + piece]
        # The second half is sent only once the application has consumed the first half.
        client_waited["ok"] = app_has_first_half.wait(DEADLINE)
        for i in range(half, 2 * half, piece):
            yield payload[i : i + piece]

    with server_factory(app) as srv:
        response = httpx.post(srv.url + "/upload", content=body(), timeout=DEADLINE)
    assert client_waited["ok"] is True
    assert response.status_code == 200
    assert response.json() == {"size": 2 * half, "sha256": hashlib.sha256(payload).hexdigest()}


def test_readline_and_friends_across_body_pieces(server_factory):
    first_line_read = threading.Event()
    results = {}

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        results["line1"] = stream.readline()
        first_line_read.set()
        # What follows spans pieces of body that arrive after this point.
        results["line2"] = stream.readline()
        results["limited"] = stream.readline(3)
        results["rest_of_line"] = stream.readline(100)
        results["zero"] = stream.read(0)
        results["read2"] = stream.read(2)
        results["iterated"] = list(stream)
        results["eof_read"] = stream.read()
        results["eof_line"] = stream.readline()
        start_response("200 OK", [])
        return [b"done"]

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunk(b"line1\nli")
            )
            assert first_line_read.wait(DEADLINE)
            sock.sendall(chunk(b"ne2\nabcdef\nxy"))
            sock.sendall(chunk(b"z\nlast-no-newline") + b"0\r\n\r\n")
            raw = read_response(sock)
    status, _, body = split_response(raw)
    assert status == 200
    assert results == {
        "line1": b"line1\n",
        "line2": b"line2\n",
        "limited": b"abc",
        "rest_of_line": b"def\n",
        "zero": b"",
        "read2": b"xy",
        "iterated": [b"z\n", b"last-no-newline"],
        "eof_read": b"",
        "eof_line": b"",
    }


def test_readlines_and_read_sizes(server_factory):
    def app(environ, start_response):
        stream = environ["wsgi.input"]
        head = stream.read(3)
        lines = stream.readlines()
        start_response("200 OK", [])
        return [json.dumps([head.decode(), [x.decode() for x in lines]]).encode()]

    with server_factory(app) as srv:
        response = httpx.post(srv.url, content=b"abcd\ne\nf")
    assert response.json() == ["abc", ["d\n", "e\n", "f"]]


def _count_loop_trips(monkeypatch) -> list:
    """Records every crossing of a pool thread to the loop (Exchange.call)."""
    from refserver.gateways import wsgi

    trips = []
    call = wsgi.Exchange.call

    def counted(self, coro):
        trips.append(getattr(coro, "__name__", "?"))
        return call(self, coro)

    monkeypatch.setattr(wsgi.Exchange, "call", counted)
    return trips


def test_a_body_that_came_with_its_head_is_read_without_a_trip_to_the_loop(
    server_factory, monkeypatch
):
    """The body is already whole when the request is dispatched: wsgi.input hands it over
    without asking the loop for each piece."""
    trips = _count_loop_trips(monkeypatch)

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        data = stream.read(3) + stream.readline() + stream.read()
        start_response("200 OK", [])
        return [data]

    body = b"abcdef\nghi" * 400
    with server_factory(app) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        status, _, received = split_response(read_response(sock))
    assert (status, received) == (200, body)
    assert "_next_body" not in trips


def test_a_body_still_arriving_is_read_as_it_comes(server_factory, monkeypatch):
    """A body that is not all here when the application starts is fetched from the loop piece
    by piece, so the application can work on it before the client has finished sending."""
    trips = _count_loop_trips(monkeypatch)
    first_piece = threading.Event()

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        head = stream.read(5)
        first_piece.set()
        rest = stream.read()
        start_response("200 OK", [])
        return [head + b"|" + rest]

    with server_factory(app) as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        assert first_piece.wait(5)
        sock.sendall(b"world")
        status, _, received = split_response(read_response(sock))
    assert (status, received) == (200, b"hello|world")
    assert "_next_body" in trips


def test_a_request_leaves_no_cyclic_garbage(server_factory):
    """Each request's objects are freed by reference counting: a cycle among them would leave
    every request to the cyclic collector, whose pauses showed in the p99 latency."""
    import gc

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    with server_factory(app) as srv, httpx.Client(base_url=srv.url) as client:
        for _ in range(5):
            client.post("/", content=b"body")
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(20):
                assert client.post("/", content=b"body").text == "ok"
            gc.collect()
            kinds = {type(o).__name__ for o in gc.garbage}
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert not kinds & {"Exchange", "WSGIInput", "H1Stream"}, kinds


def test_expect_100_continue_is_sent_by_the_first_read(server_factory):
    def app(environ, start_response):
        data = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"got " + data]

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            interim = recv_until(sock, b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hello")
            status, _, body = split_response(read_response(sock))
    assert (status, body) == (200, b"got hello")


# ------------------------------------------------------------------------------------ responses


def test_response_framing(server_factory):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/list":
            start_response("200 OK", [])
            return [b"one"]
        if path == "/tuple":
            start_response("200 OK", [])
            return (b"a", b"", b"b")
        if path == "/empty":
            start_response("204 No Content", [])
            return []

        def gen():
            # start_response may wait until the first iteration (PEP 3333).
            start_response("200 OK", [("X-Lazy", "yes")])
            yield b""
            yield b"x"
            yield b"y"

        if path == "/gen":
            return gen()

        def empty_gen():
            start_response("200 OK", [])
            yield b""

        return empty_gen()

    with server_factory(app) as srv:
        with httpx.Client(base_url=srv.url) as client:
            r = client.get("/list")
            assert (r.text, r.headers["content-length"]) == ("one", "3")
            r = client.get("/tuple")
            assert (r.text, r.headers["content-length"]) == ("ab", "2")
            r = client.get("/empty")
            assert r.status_code == 204 and "content-length" not in r.headers
            r = client.get("/gen")
            assert r.text == "xy" and r.headers["transfer-encoding"] == "chunked"
            assert r.headers["x-lazy"] == "yes"
            r = client.get("/empty-gen")
            assert (r.text, r.headers["content-length"]) == ("", "0")
            r = client.head("/list")
            assert (r.content, r.headers["content-length"]) == (b"", "3")


def test_head_is_sent_with_the_first_nonempty_chunk(server_factory):
    may_continue = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        yield b"first"
        # The client has the head and the first chunk before the application goes on.
        assert may_continue.wait(DEADLINE)
        yield b"second"

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            received = recv_until(sock, b"first")
            assert b"second" not in received
            may_continue.set()
            received = recv_until(sock, b"0\r\n\r\n", received)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    _, headers, body = split_response(received)
    assert headers["transfer-encoding"] == "chunked"
    assert dechunk(body) == b"firstsecond"


def test_backpressure_holds_the_app_while_the_client_does_not_read(server_factory):
    size = 64 * 1024
    total = 512  # 32 MiB: far more than the socket buffers of both ends can hold
    produced = []

    def app(environ, start_response):
        start_response("200 OK", [])
        for i in range(total):
            produced.append(i)
            yield b"x" * size

    with server_factory(app) as srv:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.connect((srv.host, srv.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            # The application stops producing while nobody reads (progress, not a clock, decides).
            assert wait_for_stall(lambda: len(produced))
            assert len(produced) < total
            received = recv_until(sock, b"\r\n0\r\n\r\n")
    _, headers, body = split_response(received)
    assert len(dechunk(body)) == total * size


def wait_for_stall(value, quiet: float = 0.3, timeout: float = DEADLINE) -> bool:
    """True once ``value()`` has not changed for ``quiet`` seconds."""
    end = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.02)
        current = value()
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def test_write_callable_sends_immediately(server_factory):
    client_saw_first = threading.Event()

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"Hello, ")
        assert client_saw_first.wait(DEADLINE)
        write(b"world")
        return [b"!"]

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            received = recv_until(sock, b"Hello, ")
            client_saw_first.set()
            received += read_until_closed(sock)
    status, headers, body = split_response(received)
    assert status == 200
    assert dechunk(body) == b"Hello, world!"


def test_start_response_exc_info_before_head_replaces_it(server_factory, error_log):
    second_call = {}

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            start_response("201 Created", [])
        except WSGIProtocolError as exc:
            second_call["error"] = str(exc)
        try:
            raise ValueError("handled by the app")
        except ValueError:
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"custom error page"]

    with server_factory(app) as srv:
        response = httpx.get(srv.url)
        assert response.status_code == 503
        assert response.text == "custom error page"
        assert "x-first" not in response.headers
    assert "without exc_info" in second_call["error"]
    assert not error_log.errors()


def test_start_response_exc_info_after_head_reraises_and_aborts(server_factory, error_log):
    reraised = {}

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        if environ["PATH_INFO"] == "/ok":
            return
        try:
            raise ValueError("late failure")
        except ValueError as exc:
            original = exc
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except ValueError as again:
                reraised["same"] = again is original
                raise

    with server_factory(app) as srv:
        raw = srv.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"first" in raw
        assert not raw.endswith(b"0\r\n\r\n")  # the response was cut off, not completed
        assert httpx.get(srv.url + "/ok").text == "first"  # the server goes on
    assert reraised["same"] is True
    assert "late failure" in error_log.text()


class Tracked:
    """A response iterable that records close() and how far iteration went."""

    def __init__(self, chunks, fail_at=None, endless=False):
        self.chunks = list(chunks)
        self.fail_at = fail_at
        self.endless = endless
        self.closed = threading.Event()
        self.produced = 0
        self.next_after_close = False

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed.is_set():
            self.next_after_close = True
        if self.fail_at is not None and self.produced == self.fail_at:
            raise RuntimeError("iteration failed")
        if self.endless:
            self.produced += 1
            return b"x" * 16384
        if self.produced >= len(self.chunks):
            raise StopIteration
        self.produced += 1
        return self.chunks[self.produced - 1]

    def close(self):
        self.closed.set()


def test_close_is_called_at_normal_end(server_factory):
    tracked = Tracked([b"a", b"b"])

    def app(environ, start_response):
        start_response("200 OK", [])
        return tracked

    with server_factory(app) as srv:
        assert httpx.get(srv.url).text == "ab"
        assert tracked.closed.wait(DEADLINE)


@pytest.mark.parametrize("fail_at", [0, 1])
def test_close_is_called_after_app_exception(server_factory, error_log, fail_at):
    tracked = Tracked([b"a", b"b"], fail_at=fail_at)

    def app(environ, start_response):
        start_response("200 OK", [])
        return tracked if environ["PATH_INFO"] == "/" else [b"fine"]

    with server_factory(app) as srv:
        raw = srv.request(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = split_response(raw)
        if fail_at == 0:  # nothing sent yet: a 500
            assert (status, body) == (500, b"Internal Server Error")
        else:  # the head is out: the connection is dropped
            assert status == 200 and not raw.endswith(b"0\r\n\r\n")
        assert tracked.closed.wait(DEADLINE)
        assert httpx.get(srv.url + "/other").text == "fine"
    assert "iteration failed" in error_log.text()


def test_close_is_called_when_the_client_disconnects(server_factory, error_log):
    tracked = Tracked([], endless=True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return tracked if environ["PATH_INFO"] == "/" else [b"fine"]

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        assert tracked.closed.wait(DEADLINE)
        assert not tracked.next_after_close
        assert httpx.get(srv.url + "/other").text == "fine"  # others are served as usual
    assert not error_log.errors(), error_log.text()


def test_close_is_called_when_the_client_disconnects_during_a_read(server_factory, error_log):
    reading = threading.Event()
    outcome = {}
    closed = threading.Event()

    class Body:
        def __iter__(self):
            return iter([b"never sent"])

        def close(self):
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [])
        reading.set()
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            outcome["error"] = type(exc).__name__
            raise
        return Body()

    with server_factory(app) as srv:
        with srv.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial")
            assert reading.wait(DEADLINE)
        assert wait_until(lambda: "error" in outcome)
        assert httpx.get(srv.url).status_code == 200
    assert outcome["error"] == "ClientDisconnected"
    assert not error_log.errors(), error_log.text()


def test_file_wrapper_sends_a_regular_file_with_its_length(server_factory, tmp_path):
    content = os.urandom(200_000)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    opened = []

    def app(environ, start_response):
        f = open(path, "rb")
        f.seek(1000)
        opened.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 8192)

    with server_factory(app) as srv:
        response = httpx.get(srv.url)
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(content) - 1000)
        assert response.content == content[1000:]
        assert wait_until(lambda: opened[0].closed)


def test_file_wrapper_streams_any_file_like_and_forwards_close(server_factory):
    closed = threading.Event()
    reads = []

    class Source(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

        def close(self):
            closed.set()
            super().close()

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](Source(b"0123456789" * 10), 32)

    with server_factory(app) as srv:
        response = httpx.get(srv.url)
        assert response.text == "0123456789" * 10
        assert response.headers["transfer-encoding"] == "chunked"
        assert closed.wait(DEADLINE)
    assert reads and set(reads) == {32}


def test_body_longer_than_content_length_is_cut(server_factory, error_log):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/list":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"hello world"]
        start_response("200 OK", [("Content-Length", "5")])
        return iter([b"hel", b"lo wor", b"ld"])

    with server_factory(app) as srv:
        with httpx.Client(base_url=srv.url) as client:
            for path in ("/list", "/gen"):
                response = client.get(path)
                assert (response.status_code, response.text) == (200, "hello")
            # The connection stayed usable: the responses were framed correctly.
            assert client.get("/list").text == "hello"
    assert "more body than its Content-Length" in error_log.text()


def test_body_shorter_than_content_length(server_factory, error_log):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        if environ["PATH_INFO"] == "/list":
            return [b"short"]
        return iter([b"sh", b"ort"])

    with server_factory(app) as srv:
        # Known before anything is sent: the response is replaced by a 500.
        status, _, body = split_response(srv.request(b"GET /list HTTP/1.1\r\nHost: t\r\n\r\n"))
        assert (status, body) == (500, b"Internal Server Error")
        # Streamed: the head is out, so the connection is closed short of the announced length.
        raw = srv.request(b"GET /gen HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = split_response(raw)
        assert (status, headers["content-length"], body) == (200, "10", b"short")
    logged = [r.getMessage() for r in error_log.errors()]
    assert len(logged) == 2
    assert all(m.startswith("invalid WSGI response") and "Content-Length" in m for m in logged)


# ------------------------------------------------------------------------------------ the pool


def test_two_apps_meet_at_a_barrier(server_factory):
    barrier = threading.Barrier(2, timeout=DEADLINE)

    def app(environ, start_response):
        barrier.wait()
        start_response("200 OK", [])
        return [threading.current_thread().name.encode()]

    results = []

    with server_factory(app, blocking_threads=2) as srv:

        def get():
            results.append(httpx.get(srv.url, timeout=DEADLINE))

        threads = [threading.Thread(target=get) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE + 5)
    assert [r.status_code for r in results] == [200, 200]
    names = {r.text for r in results}
    assert len(names) == 2 and all(n.startswith("refserver-wsgi") for n in names)


def test_slow_app_does_not_block_another_request(server_factory):
    slow_entered = threading.Event()
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            slow_entered.set()
            release.wait(DEADLINE)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    slow = {}
    with server_factory(app, blocking_threads=2) as srv:
        thread = threading.Thread(
            target=lambda: slow.update(r=httpx.get(srv.url + "/slow", timeout=DEADLINE))
        )
        thread.start()
        try:
            assert slow_entered.wait(DEADLINE)
            fast = httpx.get(srv.url + "/fast", timeout=DEADLINE)
            assert fast.text == "/fast"
            assert "r" not in slow  # the slow one really was still running
        finally:
            release.set()
            thread.join(DEADLINE)
    assert slow["r"].text == "/slow"


def test_an_idle_thread_is_reused_before_the_pool_grows(server_factory):
    """One request after another needs one thread, however large the pool may grow."""

    def app(environ, start_response):
        start_response("200 OK", [])
        return [threading.current_thread().name.encode()]

    with server_factory(app, blocking_threads=8) as srv, httpx.Client() as client:
        names = {client.get(srv.url, timeout=DEADLINE).text for _ in range(10)}
    assert len(names) == 1 and names.pop().startswith("refserver-wsgi")


def test_pool_runs_at_most_blocking_threads_apps(server_factory):
    entered = []
    release = threading.Event()

    def app(environ, start_response):
        entered.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/first":
            release.wait(DEADLINE)
        start_response("200 OK", [])
        return [b"ok"]

    results = {}
    with server_factory(app, blocking_threads=1) as srv:

        def get(path):
            results[path] = httpx.get(srv.url + path, timeout=DEADLINE).status_code

        first = threading.Thread(target=get, args=("/first",))
        first.start()
        assert wait_until(lambda: entered == ["/first"])
        second = threading.Thread(target=get, args=("/second",))
        second.start()
        try:
            # Both requests are in the server, but the only thread is busy with the first.
            assert wait_until(lambda: srv.call(lambda: len(srv.server.state.tasks)) == 2)
            assert entered == ["/first"]
        finally:
            release.set()
            first.join(DEADLINE)
            second.join(DEADLINE)
    assert entered == ["/first", "/second"]
    assert results == {"/first": 200, "/second": 200}


def test_shutdown_does_not_wait_forever_for_a_stuck_app(server_factory, error_log, monkeypatch):
    from refserver.gateways.wsgi import WSGIGateway

    monkeypatch.setattr(WSGIGateway, "close_timeout", 0.3)
    entered = threading.Event()
    release = threading.Event()

    def app(environ, start_response):
        entered.set()
        release.wait(60)
        start_response("200 OK", [])
        return [b"late"]

    outcome = {}
    try:
        with server_factory(app, timeout_graceful_shutdown=0.2) as srv:

            def get():
                try:
                    outcome["status"] = httpx.get(srv.url, timeout=DEADLINE).status_code
                except httpx.HTTPError as exc:
                    outcome["error"] = type(exc).__name__

            client = threading.Thread(target=get)
            client.start()
            assert entered.wait(DEADLINE)
            started = time.monotonic()
        elapsed = time.monotonic() - started
        client.join(DEADLINE)
    finally:
        release.set()
    assert elapsed < 3
    assert "error" in outcome  # the request was dropped, not answered
    assert "still running at shutdown" in error_log.text()


# ------------------------------------------------------------------------------------ errors


def test_app_exception_gives_500_and_the_server_keeps_serving(server_factory, error_log):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom in app")
        start_response("200 OK", [])
        return [b"fine"]

    with server_factory(app) as srv:
        with httpx.Client(base_url=srv.url) as client:
            response = client.get("/boom")
            assert response.status_code == 500
            assert response.text == "Internal Server Error"
            assert client.get("/ok").text == "fine"
    text = error_log.text()
    assert "exception in WSGI application" in text
    assert "Traceback" in text and "boom in app" in text


@pytest.mark.parametrize(
    "path, message",
    [
        ("/no-start", "without calling start_response"),
        ("/str-body", "must be bytes"),
        ("/str-body-gen", "must be bytes"),
    ],
)
def test_protocol_misuse_gives_500_naming_the_rule(server_factory, error_log, path, message):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/no-start":
            return [b"x"]
        start_response("200 OK", [])
        if path == "/str-body":
            return ["text"]
        return iter(["text"])

    with server_factory(app) as srv:
        assert httpx.get(srv.url + path).status_code == 500
    assert message in error_log.text()


def test_a_status_line_is_checked_on_every_response(server_factory):
    """Valid status lines are remembered; an invalid one is refused however often it is sent."""
    refused = []

    def app(environ, start_response):
        try:
            start_response("100 Continue", [])
        except WSGIProtocolError:
            refused.append(environ["PATH_INFO"])
        start_response("201 Made", [])
        return [b"made"]

    with server_factory(app) as srv, httpx.Client() as client:
        for i in range(3):
            r = client.get(f"{srv.url}/{i}")
            assert (r.status_code, r.text) == (201, "made")
    assert refused == ["/0", "/1", "/2"]


@pytest.mark.parametrize(
    "status, headers, message",
    [
        ("200", [], "3-digit code"),
        (b"200 OK", [], "must be a str"),
        ("OK 200", [], "3-digit code"),
        ("200 OK\r\nX: y", [], "3-digit code"),
        ("099 Low", [], "3-digit code"),
        ("100 Continue", [], "informational"),
        ("200 OK", (("A", "b"),), "must be a list"),
        ("200 OK", [("A", "b", "c")], "(name, value) tuple"),
        ("200 OK", [(b"A", b"b")], "must be str"),
        ("200 OK", [("Bad Name", "b")], "invalid response header name"),
        ("200 OK", [("A", "b\r\nInjected: 1")], "control characters"),
        ("200 OK", [("A", "snow \u2603")], "latin-1"),
        ("200 OK", [("Content-Length", "ten")], "invalid Content-Length"),
        ("200 OK", [("Content-Length", "\xa010")], "invalid Content-Length"),  # not OWS
        ("200 OK", [["A", "b"], ("Bad Name", "b")], "invalid response header name"),
    ],
)
def test_start_response_checks_its_arguments(server_factory, status, headers, message):
    caught = {}

    def app(environ, start_response):
        try:
            start_response(status, headers)
        except WSGIProtocolError as exc:
            caught["message"] = str(exc)
        # The rejected call set nothing, so this one is the first that counts.
        start_response("200 OK", [])
        return [b"checked"]

    with server_factory(app) as srv:
        assert httpx.get(srv.url).text == "checked"
    assert message in caught["message"]


def test_response_headers_are_sent_alike_on_every_response(server_factory):
    """Header items are remembered once checked: the tenth response carries what the first did,
    items given as lists (unhashable, never remembered) included."""

    def app(environ, start_response):
        start_response("200 OK", [("X-Kind", "same"), ["X-List", "item"],
                                  ("Content-Length", "2")])
        return [b"ok"]

    with server_factory(app) as srv, httpx.Client(base_url=srv.url) as client:
        for _ in range(10):
            response = client.get("/")
            assert response.text == "ok"
            assert response.headers["x-kind"] == "same"
            assert response.headers["x-list"] == "item"
            assert response.headers["content-length"] == "2"


def test_non_latin1_path_bytes_round_trip(server_factory):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [environ["PATH_INFO"].encode("latin-1")]

    with server_factory(app) as srv:
        response = httpx.get(srv.url + "/%E2%98%83/%FF")
    assert response.content == "/\u2603/".encode() + b"\xff"


def test_hello_example(server_factory):
    from examples.hello_wsgi import app

    with server_factory(app) as srv:
        response = httpx.get(srv.url)
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["content-type"] == "text/plain"


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
