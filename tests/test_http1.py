"""HTTP/1.1 on real sockets: keep-alive, pipelining, framing, 100-continue, limits, timeouts,
flow control in both directions. Each test runs on every implementation and event loop."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time

import httpx
import pytest
from h1_helpers import (
    assert_closed,
    assert_no_traceback,
    echo,
    get,
    parse,
    read_body,
    read_head,
    read_response_bytes,
    respond,
    wait_for,
    wait_thread_event,
)
from support import read_response

# ------------------------------------------------------------------------- keep-alive, framing


def test_keep_alive_serves_several_requests_on_one_connection(server_factory):
    with server_factory(echo, lifespan="off") as srv, srv.connect() as sock:
        ports = set()
        for i in range(3):
            sock.sendall(get(f"/r{i}"))
            status, headers, body = parse(read_response(sock))
            assert (status, body) == (200, f"GET /r{i} 1:".encode())
            assert "connection" not in headers
            ports.add(headers["x-client-port"])
        assert ports == {str(sock.getsockname()[1])}


def test_keep_alive_with_httpx_client(server_factory):
    with server_factory(echo, lifespan="off") as srv, httpx.Client(base_url=srv.url) as client:
        ports = {client.post("/", content=b"x" * i).headers["x-client-port"] for i in range(5)}
        assert len(ports) == 1


def test_pipelined_responses_stay_in_order_when_the_first_is_slowest(server_factory):
    started = []

    async def app(scope, receive, send):
        started.append(scope["path"])
        await read_body(receive)
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)  # slower than the others: order must not depend on it
        await respond(send, body=scope["path"].encode())

    requests = (
        get("/slow")
        + b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        + b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
        + get("/fast")
    )
    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(requests)
        bodies = [parse(read_response(sock))[2] for _ in range(4)]
        assert bodies == [b"/slow", b"/post", b"/chunked", b"/fast"]
        assert started == ["/slow", "/post", "/chunked", "/fast"]
        sock.sendall(get("/after"))
        assert parse(read_response(sock))[2] == b"/after"


def test_pipelined_requests_split_across_sends(server_factory):
    data = get("/a") + b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody" + get("/c")
    with server_factory(echo, lifespan="off") as srv, srv.connect() as sock:
        for cut in (5, len(get("/a")) + 10, len(data) - 3):
            sock.sendall(data[:cut])
            time.sleep(0.01)  # not a lock: only makes separate reads likely
            sock.sendall(data[cut:])
            bodies = [parse(read_response(sock))[2] for _ in range(3)]
            assert bodies == [b"GET /a 1:", b"POST /b 1:body", b"GET /c 1:"]


def test_http10_without_keep_alive_closes(server_factory):
    with server_factory(echo, lifespan="off") as srv:
        raw = srv.request(get("/", version=b"1.0") + get("/ignored"))
        status, headers, body = parse(raw)
        assert (status, body) == (200, b"GET / 1:")
        assert headers["connection"] == "close"
        assert raw.count(b"HTTP/1.1 ") == 1  # the pipelined request is not served


def test_http10_keep_alive(server_factory):
    with server_factory(echo, lifespan="off") as srv, srv.connect() as sock:
        for path in ("/1", "/2"):
            sock.sendall(get(path, b"Connection: keep-alive\r\n", version=b"1.0"))
            status, headers, body = parse(read_response(sock))
            assert (status, body) == (200, b"GET %s 1:" % path.encode())
            assert headers["connection"] == "keep-alive"
        sock.sendall(get("/3", version=b"1.0"))
        status, headers, _ = parse(read_response(sock))
        assert headers["connection"] == "close"
        assert_closed(sock)


def test_http10_streaming_response_is_close_delimited(server_factory):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    with server_factory(app, lifespan="off") as srv:
        raw = srv.request(get("/", b"Connection: keep-alive\r\n", version=b"1.0"))
        status, headers, body = parse(raw)
        assert (status, body) == (200, b"ab")
        assert headers["connection"] == "close"
        assert "transfer-encoding" not in headers and "content-length" not in headers


@pytest.mark.parametrize("who", ["client", "app"])
def test_connection_close(server_factory, who):
    async def app(scope, receive, send):
        headers = [(b"connection", b"close")] if who == "app" else []
        await respond(send, body=b"bye", headers=headers)

    extra = b"Connection: close\r\n" if who == "client" else b""
    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(get("/", extra) + get("/never"))
        status, headers, body = parse(read_response(sock))
        assert (status, headers["connection"], body) == (200, "close", b"bye")
        assert assert_closed(sock) == b""


def test_chunked_request_body(server_factory):
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append((message["body"], message["more_body"]))
            if not message["more_body"]:
                break
        await respond(send, body=b"".join(body for body, _ in seen))

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"5\r\nhello\r\n", b"1;ext=x\r\n \r\n", b"5\r\nworld\r\n"):
            sock.sendall(piece)
            wait_for(lambda: sum(len(b) for b, _ in seen) > 0, what="a body message")
        sock.sendall(b"0\r\nTrailer: x\r\n\r\n")
        status, _, body = parse(read_response(sock))
        assert (status, body) == (200, b"hello world")
        assert len(seen) >= 2 and seen[-1][1] is False
        assert all(more for _, more in seen[:-1])


def test_a_body_in_the_heads_packet_is_there_at_the_first_receive(server_factory):
    first = []

    async def app(scope, receive, send):
        message = await receive()
        first.append(message["more_body"])
        await respond(send, body=message["body"])

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        assert parse(read_response(sock))[2] == b"hello"
    assert first == [False]


def test_a_request_refused_in_its_first_packet_never_reaches_the_app(server_factory):
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await respond(send)

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(b"POST /broken HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhelloXX0\r\n\r\n")
        assert parse(assert_closed(sock))[0] == 400
    assert calls == []


def test_chunked_response_without_content_length(server_factory):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with server_factory(app, lifespan="off") as srv:
        with srv.connect() as sock:
            sock.sendall(get())
            raw = read_response(sock)
            assert raw.endswith(b"\r\n\r\n4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")
            assert parse(raw)[1]["transfer-encoding"] == "chunked"
        response = httpx.get(srv.url)
        assert response.text == "one,two,three"
        assert "content-length" not in response.headers


def test_single_message_response_gets_content_length(server_factory):
    async def app(scope, receive, send):
        await respond(send, body=b"hello", headers=[(b"transfer-encoding", b"gzip")])

    with server_factory(app, lifespan="off") as srv:
        response = httpx.get(srv.url)
        assert response.headers["content-length"] == "5"
        assert "transfer-encoding" not in response.headers
        assert response.content == b"hello"


def test_head_keeps_headers_and_sends_no_body(server_factory):
    with server_factory(echo, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n" + get("/next"))
        head = read_head(sock)
        status, headers, body = parse(head)
        assert (status, headers["content-length"], body) == (200, str(len(b"HEAD /h 1:")), b"")
        # Had a body been sent, it would now be read as the next response's status line.
        assert parse(read_response(sock))[2] == b"GET /next 1:"


def test_responses_without_body(server_factory):
    async def app(scope, receive, send):
        status = int(scope["path"][1:])
        await respond(send, status=status, body=b"ignored",
                      headers=[(b"content-length", b"7")])

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(get("/204") + get("/304") + get("/200"))
        status, headers, _ = parse(read_response(sock))
        assert status == 204 and "content-length" not in headers
        raw304 = read_response(sock)
        assert raw304.endswith(b"\r\n\r\n") and parse(raw304)[0] == 304
        assert parse(read_response(sock))[2] == b"ignored"


# ------------------------------------------------------------------------------- 100-continue


def test_expect_100_continue_is_sent_when_the_app_reads(server_factory):
    may_read = threading.Event()

    async def app(scope, receive, send):
        await wait_thread_event(may_read)
        body, _ = await read_body(receive)
        await respond(send, body=body)

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.settimeout(0.2)
        with pytest.raises(socket.timeout):  # nothing while the app has not asked for the body
            sock.recv(100)
        sock.settimeout(5)
        may_read.set()
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        status, headers, body = parse(read_response(sock))
        assert (status, body) == (200, b"data")
        sock.sendall(get())  # still keep-alive
        assert parse(read_response(sock))[2] == b""


def test_expect_100_continue_not_sent_when_the_app_answers_first(server_factory):
    async def app(scope, receive, send):
        await respond(send, status=401, body=b"no")

    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        raw = read_response(sock)
        assert raw.startswith(b"HTTP/1.1 401 ")
        status, headers, body = parse(raw)
        assert headers["connection"] == "close" and body == b"no"
        assert assert_closed(sock) == b""


def test_body_left_unread_is_discarded_and_the_connection_reused(server_factory):
    async def app(scope, receive, send):
        await respond(send, body=scope["path"].encode())  # never reads the body

    size = 4 * 1024 * 1024
    with server_factory(app, lifespan="off") as srv, srv.connect(timeout=10) as sock:
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        assert parse(read_response(sock))[2] == b"/big"
        sock.sendall(b"x" * size)  # blocks (then times out) if the server stopped reading
        sock.sendall(get("/next"))
        status, headers, body = parse(read_response(sock))
        assert (status, body) == (200, b"/next")


# ------------------------------------------------------------------------------- Date, Server


@pytest.mark.parametrize(
    "options, server, date",
    [({}, True, True), ({"server_header": False}, False, True),
     ({"date_header": False}, True, False)],
)
def test_date_and_server_headers(server_factory, options, server, date):
    with server_factory(echo, lifespan="off", **options) as srv:
        response = httpx.get(srv.url)
        assert ("server" in response.headers) is server
        assert ("date" in response.headers) is date
        if server:
            assert response.headers["server"] == "refserver"
        if date:
            parsed = time.strptime(response.headers["date"], "%a, %d %b %Y %H:%M:%S GMT")
            assert abs(time.mktime(parsed) - time.mktime(time.gmtime())) < 5


def test_app_date_and_server_headers_win(server_factory):
    async def app(scope, receive, send):
        await respond(send, headers=[(b"server", b"mine"), (b"date", b"yesterday")])

    with server_factory(app, lifespan="off") as srv:
        response = httpx.get(srv.url)
        assert response.headers.get_list("server") == ["mine"]
        assert response.headers.get_list("date") == ["yesterday"]


def test_curl_smoke(server_factory):
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is required for this smoke check")
    with server_factory(echo, lifespan="off") as srv:
        out = subprocess.run(
            [curl, "-sS", "-i", "--data-binary", "payload", srv.url + "/curl"],
            capture_output=True, timeout=10, check=True,
        ).stdout
        status, headers, body = parse(out)
        assert (status, body) == (200, b"POST /curl 1:payload")


# ------------------------------------------------------------------------------- flow control


def test_unread_body_stops_the_server_reading(server_factory):
    go = threading.Event()
    received = {}

    async def app(scope, receive, send):
        await wait_thread_event(go, timeout=20)
        body_size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body_size += len(message["body"])
            if not message["more_body"]:
                break
        received["size"] = body_size
        await respond(send, body=b"%d" % body_size)

    total = 32 * 1024 * 1024
    chunk = b"x" * 65536
    with server_factory(app, lifespan="off") as srv, srv.connect(timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        sock.setblocking(False)
        sent, last_progress = 0, time.monotonic()
        deadline = last_progress + 5
        while time.monotonic() < deadline and time.monotonic() - last_progress < 0.3:
            try:
                sent += sock.send(chunk)
                last_progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.005)
        # The kernel buffers hold a few MB; the rest waits for the application.
        assert sent < total // 2, f"{sent} bytes accepted while the app read nothing"
        go.set()
        sock.settimeout(10)
        while sent < total:
            sent += sock.send(chunk[: total - sent])
        status, _, body = parse(read_response(sock, timeout=10))
        assert (status, body) == (200, b"%d" % total)


def test_a_client_that_does_not_read_makes_send_wait(server_factory):
    progress = {"sent": 0, "done": False}
    total = 64 * 1024 * 1024
    chunk = b"y" * 65536

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % total)]})
        while progress["sent"] < total:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            progress["sent"] += len(chunk)
        await send({"type": "http.response.body", "body": b""})
        progress["done"] = True

    with server_factory(app, lifespan="off") as srv, srv.connect(timeout=10) as sock:
        sock.sendall(get())
        last, last_change = -1, time.monotonic()
        deadline = last_change + 10
        while time.monotonic() - last_change < 0.3:
            assert time.monotonic() < deadline, "send() never waited"
            if progress["sent"] != last:
                last, last_change = progress["sent"], time.monotonic()
            time.sleep(0.01)
        assert 0 < progress["sent"] < total // 2
        assert not progress["done"]
        received = len(read_response(sock, timeout=10).partition(b"\r\n\r\n")[2])
        assert received == total
        wait_for(lambda: progress["done"], what="the app to finish")


# ---------------------------------------------------------------------------- bad requests

BAD_REQUESTS = {
    "missing Host": (b"GET / HTTP/1.1\r\n\r\n", {}, 400),
    "lower-case method": (b"get / HTTP/1.1\r\nHost: t\r\n\r\n", {}, 501),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", {}, 400),
    "Content-Length and Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n", {}, 400,
    ),
    "bad chunk": (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", {},
                  400),
    "body over limit (Content-Length)": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
        {"limit_request_body": 10}, 413,
    ),
    "body over limit (chunked)": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
        {"limit_request_body": 10}, 413,
    ),
    "request line too long": (get("/" + "a" * 300), {"limit_request_line": 100}, 414),
    "head too large": (get("/", b"X-Big: " + b"b" * 3000 + b"\r\n"), {"limit_request_head": 2048},
                       431),
    "too many fields": (get("/", b"X: 1\r\n" * 10), {"limit_request_fields": 5}, 431),
    "unknown Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", {}, 501,
    ),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", {}, 505),
}


@pytest.mark.parametrize("data, options, status", BAD_REQUESTS.values(), ids=list(BAD_REQUESTS))
def test_bad_requests_get_a_precise_status_and_close(server_factory, server_logs, data, options,
                                                     status):
    with server_factory(echo, lifespan="off", **options) as srv:
        raw = srv.request(data + get("/never"))
        assert raw.count(b"HTTP/1.1 ") == 1, raw
        got, headers, _ = parse(raw)
        assert got == status
        assert headers["connection"] == "close"
        wait_for(lambda: any(f" {status} " in r.getMessage() for r in server_logs),
                 what="the log line")
    assert_no_traceback(server_logs)


def test_bad_request_after_a_good_one(server_factory, server_logs):
    with server_factory(echo, lifespan="off") as srv:
        raw = srv.request(get("/ok") + b"BAD\r\n\r\n")
        first = read_response_bytes(raw)
        assert parse(first)[0] == 200
        assert parse(raw[len(first):])[0] == 400
    assert_no_traceback(server_logs)


def test_server_survives_client_disconnects(server_factory, server_logs):
    with server_factory(echo, lifespan="off") as srv:
        for data in (b"GET / HT", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab"):
            with srv.connect() as sock:
                sock.sendall(data)
        assert httpx.get(srv.url).status_code == 200
    assert_no_traceback(server_logs)


# ------------------------------------------------------------------------------------ timeouts


def test_slow_head_gets_408(server_factory, server_logs):
    with server_factory(echo, lifespan="off", http1_header_read_timeout=0.3) as srv:
        with srv.connect() as sock:
            start = time.monotonic()
            sock.sendall(b"GET / HTTP/1.1\r\nHost:")
            raw = assert_closed(sock)
            assert time.monotonic() - start >= 0.25
            status, headers, _ = parse(raw)
            assert status == 408 and headers["connection"] == "close"
        with srv.connect() as sock:  # says nothing: closed without a response
            assert assert_closed(sock) == b""
        with srv.connect() as sock:  # a prompt client is served
            sock.sendall(get())
            assert parse(read_response(sock))[0] == 200
    assert_no_traceback(server_logs)


def test_head_deadline_applies_to_each_request(server_factory):
    with server_factory(echo, lifespan="off", http1_header_read_timeout=0.3,
                        timeout_keep_alive=5) as srv, srv.connect() as sock:
        sock.sendall(get())
        assert parse(read_response(sock))[0] == 200
        sock.sendall(b"GET /second HTTP/1.1\r\n")  # then stalls
        status, _, _ = parse(assert_closed(sock))
        assert status == 408


def test_keep_alive_idle_timeout(server_factory):
    with server_factory(echo, lifespan="off", timeout_keep_alive=0.3) as srv, \
            srv.connect() as sock:
        sock.sendall(get())
        assert parse(read_response(sock))[0] == 200
        start = time.monotonic()
        assert assert_closed(sock) == b""
        assert time.monotonic() - start >= 0.25


def test_idle_timeout_counts_from_the_last_response(server_factory):
    # Requests keep coming before the first idle deadline would have passed: the connection
    # lives on, and closes one idle period after the last response.
    with server_factory(echo, lifespan="off", timeout_keep_alive=0.4) as srv, \
            srv.connect() as sock:
        for _ in range(4):
            sock.sendall(get())
            assert parse(read_response(sock))[0] == 200
            time.sleep(0.25)
        start = time.monotonic()
        assert assert_closed(sock) == b""
        assert time.monotonic() - start >= 0.1


def test_head_deadline_is_not_extended_by_the_idle_timer(server_factory):
    # The idle deadline (long) was armed last; a stalled head still gets its (short) deadline.
    with server_factory(echo, lifespan="off", http1_header_read_timeout=0.3,
                        timeout_keep_alive=30) as srv, srv.connect() as sock:
        sock.sendall(get())
        assert parse(read_response(sock))[0] == 200
        start = time.monotonic()
        sock.sendall(b"GET /next HTTP/1.1\r\n")
        status, _, _ = parse(assert_closed(sock))
        assert status == 408 and time.monotonic() - start < 5


def test_a_slow_app_is_not_cut_by_the_timeouts(server_factory):
    async def app(scope, receive, send):
        await asyncio.sleep(0.5)
        await respond(send, body=b"late")

    with server_factory(app, lifespan="off", timeout_keep_alive=0.1,
                        http1_header_read_timeout=0.1) as srv, srv.connect() as sock:
        sock.sendall(get())
        assert parse(read_response(sock))[2] == b"late"


# ------------------------------------------------------------------------------- concurrency


def test_limit_concurrency_answers_503(server_factory):
    inside, release = threading.Event(), threading.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/block":
            inside.set()
            await wait_thread_event(release)
        await respond(send, body=b"ok")

    with server_factory(app, lifespan="off", limit_concurrency=1) as srv:
        with srv.connect() as blocked:
            blocked.sendall(get("/block"))
            assert inside.wait(5)
            raw = srv.request(get("/other"))
            status, headers, _ = parse(raw)
            assert status == 503 and headers["connection"] == "close"
            release.set()
            assert parse(read_response(blocked))[2] == b"ok"
        assert httpx.get(srv.url).status_code == 200


def test_limit_concurrency_counts_requests_read_in_the_same_batch(server_factory):
    """Requests read in one pass of the loop are started together after it: the limit must
    count the ones not started yet, or the whole batch would pass it."""

    async def app(scope, receive, send):
        if scope["path"] == "/stall":
            # Once this request is over, the loop is blocked while the next two arrive.
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        else:
            await asyncio.sleep(0.2)
        await respond(send, body=b"ok")

    with server_factory(app, lifespan="off", limit_concurrency=1) as srv:
        with srv.connect() as stall, srv.connect() as first, srv.connect() as second:
            stall.sendall(get("/stall"))
            assert parse(read_response(stall))[0] == 200
            time.sleep(0.1)
            first.sendall(get("/a"))
            second.sendall(get("/b"))
            statuses = sorted(parse(read_response(sock))[0] for sock in (first, second))
            assert statuses == [200, 503]


def test_each_request_has_its_own_task_and_context(server_factory):
    """Requests that finish without waiting still run as asyncio tasks (anyio and
    asyncio.timeout need current_task()), each in its own copy of the context."""
    import contextvars

    var = contextvars.ContextVar("request_var")
    seen = []

    async def app(scope, receive, send):
        seen.append((asyncio.current_task(), var.get(None)))
        var.set(scope["path"])
        await respond(send, body=b"ok")

    count = 16
    with server_factory(app, lifespan="off") as srv:
        socks = [srv.connect() for _ in range(count)]
        try:
            for sock in socks:  # sent together, so that several are read in one pass
                sock.sendall(get("/x"))
            for sock in socks:
                assert parse(read_response(sock))[2] == b"ok"
        finally:
            for sock in socks:
                sock.close()
    tasks = [task for task, _ in seen]
    assert all(isinstance(task, asyncio.Task) for task in tasks)
    assert len({id(task) for task in tasks}) == count
    assert [value for _, value in seen] == [None] * count


def test_a_task_factory_set_on_the_loop_creates_the_request_tasks(server_factory):
    created, request_tasks = [], []

    def factory(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        created.append(task)
        return task

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            asyncio.get_running_loop().set_task_factory(factory)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        request_tasks.append(asyncio.current_task())
        await respond(send, body=b"ok")

    with server_factory(app) as srv:
        assert httpx.get(srv.url).text == "ok"
    assert request_tasks and request_tasks[0] in created


class _RecordingTransport(asyncio.Transport):
    """Records what the protocol hands over; keeps asyncio's own writelines, which joins."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data):
        self.calls.append(("write", data))

    def is_closing(self):
        return False

    def close(self):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


class _GatheringTransport(_RecordingTransport):
    """A transport with a writelines of its own (uvloop's; asyncio's from 3.12)."""

    def writelines(self, pieces):
        self.calls.append(("writelines", tuple(pieces)))


def test_only_transports_with_a_sound_writelines_get_gathered_writes():
    from asyncio.selector_events import _SelectorSocketTransport

    from refserver.protocols.h1 import gathers_writes

    class Derived(_SelectorSocketTransport):
        pass

    assert not gathers_writes(_SelectorSocketTransport)  # no flow control in 3.12, 3.13
    assert not gathers_writes(Derived)  # the method decides, not the class that inherits it
    assert not gathers_writes(_RecordingTransport)  # asyncio's default: joins the pieces
    assert gathers_writes(_GatheringTransport)
    uvloop = pytest.importorskip("uvloop")
    assert gathers_writes(uvloop.loop.TCPTransport)


@pytest.mark.parametrize("transport_cls", [_RecordingTransport, _GatheringTransport])
def test_a_large_body_follows_its_head_uncopied(impl, transport_cls):
    """A body too large to join to its head reaches the transport as the application's own
    object: gathered with the head in one call where the transport can, else in a second write."""
    from refserver.config import Config
    from refserver.impl import select
    from refserver.server import ServerState, make_gateway
    from refserver.wire.h1 import JOIN_LIMIT

    big = b"x" * (JOIN_LIMIT + 1)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": big})

    async def exchange():
        chosen, _ = select(impl)
        config = Config(app, interface="asgi", impl=impl, access_log=False, lifespan="off")
        state = ServerState(config, asyncio.get_running_loop(), chosen)
        state.handler = make_gateway("asgi", app, state)
        transport = transport_cls()
        protocol = chosen.h1_protocol(state, chosen)
        protocol.connection_made(transport)
        protocol.data_received(get("/"))
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport.calls

    calls = asyncio.run(exchange())
    if transport_cls is _GatheringTransport:
        assert [kind for kind, _ in calls] == ["writelines"]
        head, body = calls[0][1]
    else:
        assert [kind for kind, _ in calls] == ["write", "write"]
        head, body = calls[0][1], calls[1][1]
    assert body is big
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert b"\r\ncontent-length: %d\r\n" % len(big) in head


def test_many_pipelined_requests_in_one_send(server_factory):
    count = 300
    data = b"".join(get(f"/{i}") for i in range(count))
    with server_factory(echo, lifespan="off") as srv, srv.connect(timeout=10) as sock:
        sock.sendall(data)
        bodies = [parse(read_response(sock))[2] for _ in range(count)]
        assert bodies == [b"GET /%d 1:" % i for i in range(count)]


@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_upgrade_requests_are_served_as_plain_http(server_factory, upgrade):
    """With no protocol switch on offer (h2c is not served; WebSockets are off with ``ws=False``),
    the request is answered as HTTP and the connection stays usable."""
    with server_factory(echo, lifespan="off", ws=False) as srv, srv.connect() as sock:
        sock.sendall(get("/up", b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade) + get("/2"))
        assert parse(read_response(sock))[2] == b"GET /up 1:"
        assert parse(read_response(sock))[2] == b"GET /2 1:"
