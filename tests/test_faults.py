"""Application faults, for ASGI, RSGI and WSGI on both paths: each gives its client a defined
outcome (spec/asgi.md, spec/rsgi.md, spec/wsgi.md, spec/server.md), frees what it held, and the
server keeps serving everyone else. With the advisories they answer: uvicorn CVE-2020-7695 (CR/LF
in a response header from the application) and CVE-2020-7694 (escape sequences in the logs).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import socket
import threading
import time

import pytest
from h1_helpers import get, parse, wait_for
from memory_stream import MemoryStream
from support import (
    free_port,
    read_response,
    read_until_closed,
    serve,
    start_cli,
    wait_for_port,
)

from refserver import logs
from refserver.config import Config
from refserver.server import ServerState

INTERFACES = ["asgi", "rsgi", "wsgi"]

# ------------------------------------------------------------------------- one app per interface
#
# The same paths on each interface:
#   /ok              200 "ok"
#   /raise-before    raises before anything of the response was sent
#   /raise-mid       sends the head and 5 bytes of a 10-byte body, then raises
#   /raise-mid-unframed  the same without a Content-Length
#   /header-crlf     a response header value holding CR LF and a second field (CVE-2020-7695)
#   /header-lf       ... a bare LF
#   /header-nul      ... a NUL
#   /block           blocks the event loop (ASGI, RSGI) or its thread (WSGI) for 0.6 s, then "ok"
#   /block-later     the same after one await (ASGI, RSGI)
#   /never           sends the head and a piece of body, then waits for ever (until released)

INJECTED = {
    "/header-crlf": "a\r\nX-Injected: yes",
    "/header-lf": "a\nX-Injected: yes",
    "/header-nul": "a\x00X-Injected: yes",
}
BLOCK = 0.6


class Release:
    """What the test sets to let a never-ending application end, so that nothing outlives it."""

    def __init__(self):
        self.event = threading.Event()
        self.entered = threading.Event()
        self.ended = threading.Event()

    async def wait_async(self):
        self.entered.set()
        try:
            while not self.event.is_set():
                await asyncio.sleep(0.01)
        finally:
            self.ended.set()

    def wait_thread(self):
        self.entered.set()
        try:
            self.event.wait(30)
        finally:
            self.ended.set()


def asgi_app(release: Release):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/raise-before":
            raise RuntimeError("failed before the response")
        if path in INJECTED:
            value = INJECTED[path].encode("latin-1")
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", value)]})
            await send({"type": "http.response.body", "body": b"should not be sent"})
            return
        if path == "/block-later":
            await asyncio.sleep(0)
        if path in ("/block", "/block-later"):
            time.sleep(BLOCK)
        headers = [(b"content-length", b"10")] if path == "/raise-mid" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if path in ("/raise-mid", "/raise-mid-unframed"):
            await send({"type": "http.response.body", "body": b"12345", "more_body": True})
            raise RuntimeError("failed in the middle of the body")
        if path == "/never":
            await send({"type": "http.response.body", "body": b"first piece", "more_body": True})
            await release.wait_async()
            return
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def rsgi_app(release: Release):
    async def app(scope, protocol):
        path = scope.path
        if path == "/raise-before":
            raise RuntimeError("failed before the response")
        if path in INJECTED:
            protocol.response_str(200, [("x-a", INJECTED[path])], "should not be sent")
            return
        if path == "/block-later":
            await asyncio.sleep(0)
        if path in ("/block", "/block-later"):
            time.sleep(BLOCK)
        if path in ("/raise-mid", "/raise-mid-unframed"):
            headers = [("content-length", "10")] if path == "/raise-mid" else []
            transport = protocol.response_stream(200, headers)
            await transport.send_bytes(b"12345")
            raise RuntimeError("failed in the middle of the body")
        if path == "/never":
            transport = protocol.response_stream(200, [])
            await transport.send_bytes(b"first piece")
            await release.wait_async()
            return
        protocol.response_str(200, [], "ok")

    return app


def wsgi_app(release: Release):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/raise-before":
            raise RuntimeError("failed before the response")
        if path in INJECTED:
            start_response("200 OK", [("X-A", INJECTED[path])])
            return [b"should not be sent"]
        if path == "/block":
            time.sleep(BLOCK)
        if path in ("/raise-mid", "/raise-mid-unframed"):
            headers = [("Content-Length", "10")] if path == "/raise-mid" else []
            start_response("200 OK", headers)
            return _raise_mid()
        if path == "/never":
            start_response("200 OK", [])
            return _never(release)
        start_response("200 OK", [])
        return [b"ok"]

    return app


def _raise_mid():
    yield b"12345"
    raise RuntimeError("failed in the middle of the body")


def _never(release):
    yield b"first piece"
    release.wait_thread()


APPS = {"asgi": asgi_app, "rsgi": rsgi_app, "wsgi": wsgi_app}


def request(srv, path: str, timeout: float = 5.0) -> bytes:
    """One request on its own connection; everything the server sent until it closed."""
    with srv.connect(timeout) as sock:
        sock.sendall(get(path, b"Connection: close\r\n"))
        return read_until_closed(sock, timeout)


def ok(srv) -> bool:
    response = request(srv, "/ok")
    return parse(response)[0] == 200 and parse(response)[2] == b"ok"


def in_flight(srv) -> int:
    return srv.call(lambda: len(srv.server.state.tasks))


def connections(srv) -> int:
    return srv.call(lambda: len(srv.server.state.connections))


def errors(records) -> list:
    return [r for r in records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------- raising, before and after


@pytest.mark.parametrize("interface", INTERFACES)
def test_exception_before_the_response_is_a_500_and_the_server_keeps_serving(
    interface, server_factory, server_logs
):
    with server_factory(APPS[interface](Release()), interface=interface) as srv:
        status, headers, body = parse(request(srv, "/raise-before"))
        assert status == 500
        assert b"failed" not in body  # the exception stays in the log
        assert any("failed before the response" in str(r.exc_info and r.exc_info[1])
                   for r in errors(server_logs))
        assert ok(srv)
        wait_for(lambda: in_flight(srv) == 0 and connections(srv) == 0, what="resources freed")


@pytest.mark.parametrize("interface", INTERFACES)
def test_exception_after_the_response_started_truncates_it_never_completes_it(
    interface, server_factory, server_logs
):
    with server_factory(APPS[interface](Release()), interface=interface) as srv:
        with srv.connect() as sock:
            sock.sendall(get("/raise-mid"))  # keep-alive: only the close can end it
            raw = read_until_closed(sock, 5)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 10" in head.lower()
        assert body == b"12345"  # 5 of the 10 bytes announced, then the connection ended
        assert errors(server_logs)
        assert ok(srv)
        wait_for(lambda: in_flight(srv) == 0 and connections(srv) == 0, what="resources freed")


@pytest.mark.parametrize("interface", INTERFACES)
def test_a_cut_response_delimited_by_the_close_is_reset_not_ended(interface, server_factory):
    """HTTP/1.0 without a Content-Length: the end of the connection is the end of the body, so a
    plain close would make the 5 bytes sent look like a complete response. A TCP reset says it is
    not one."""
    with server_factory(APPS[interface](Release()), interface=interface) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET /raise-mid-unframed HTTP/1.0\r\n\r\n")
            received = b""
            with pytest.raises(ConnectionResetError):
                while True:
                    data = sock.recv(65536)
                    assert data, f"the connection ended normally after {received!r}"
                    received += data
        assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\n12345")
        assert b"content-length" not in received.lower()
        assert ok(srv)


# ------------------------------------------------------------------------- CVE-2020-7695


@pytest.mark.parametrize("path", sorted(INJECTED))
@pytest.mark.parametrize("interface", INTERFACES)
def test_cve_2020_7695_cr_lf_or_nul_in_a_response_header_never_reaches_the_wire(
    interface, path, server_factory, server_logs
):
    """uvicorn CVE-2020-7695: an application that puts CR/LF (or NUL) in a header value must not
    be able to add fields or split the response. Nothing of that response is sent: 500."""
    with server_factory(APPS[interface](Release()), interface=interface) as srv:
        raw = request(srv, path)
        status, headers, body = parse(raw)
        assert status == 500
        assert b"X-Injected" not in raw and b"\x00" not in raw
        assert "x-a" not in headers and b"should not be sent" not in raw
        assert errors(server_logs)
        assert ok(srv)


# ------------------------------------------------------------------------- a blocked event loop


def blocked_loop_warnings(records) -> list:
    return [r.getMessage() for r in records
            if r.levelno == logging.WARNING and "event loop" in r.getMessage()]


@pytest.mark.parametrize("path", ["/block", "/block-later"])
@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_a_blocked_event_loop_is_reported_naming_the_request_and_how_long(
    interface, path, server_factory, server_logs
):
    """/block blocks in the task's first step (an eager step on Python 3.12+, where the age of
    the request is not known yet), /block-later after an await: both are named."""
    with server_factory(APPS[interface](Release()), interface=interface,
                        warn_blocked_loop=0.2) as srv:
        assert ok(srv)
        assert blocked_loop_warnings(server_logs) == []  # nothing for requests that do not block
        with srv.connect() as sock:
            sock.sendall(get(path))
            assert parse(read_response(sock))[0] == 200
            client = "127.0.0.1:%d" % sock.getsockname()[1]
        wait_for(lambda: len(blocked_loop_warnings(server_logs)) == 2, what="the two warnings")
        during, after = blocked_loop_warnings(server_logs)
        assert re.search(r"has been blocked for 0\.[2-9]\d s \(--warn-blocked-loop 0\.2\) by "
                         rf"GET {path} from {client}(, started 0\.\d\d s ago)?$", during), during
        match = re.search(rf"was blocked for ([\d.]+) s by GET {path} from {client}", after)
        assert match, after
        # The heartbeat measures to within its period (0.05 s here).
        assert BLOCK - 0.1 <= float(match.group(1)) <= BLOCK + 0.5, after


def test_a_blocking_wsgi_application_does_not_block_the_loop(server_factory, server_logs):
    """A WSGI application runs in a pool thread: it may block, the others are served meanwhile."""
    with server_factory(APPS["wsgi"](Release()), interface="wsgi", warn_blocked_loop=0.2) as srv:
        with srv.connect() as sock:
            sock.sendall(get("/block"))
            started = time.monotonic()
            assert ok(srv)
            assert time.monotonic() - started < BLOCK
            assert parse(read_response(sock))[0] == 200
        assert blocked_loop_warnings(server_logs) == []


def test_the_watchdog_is_off_at_zero_and_stops_with_the_server(server_factory):
    def watchdogs():
        return [t for t in threading.enumerate() if t.name == "refserver-loop-watchdog"]

    before = len(watchdogs())
    with server_factory(APPS["asgi"](Release()), interface="asgi", warn_blocked_loop=0):
        assert len(watchdogs()) == before
    with server_factory(APPS["asgi"](Release()), interface="asgi", warn_blocked_loop=0.5):
        assert len(watchdogs()) == before + 1
    wait_for(lambda: len(watchdogs()) == before, what="the watchdog thread to end")


# ------------------------------------------------------------------- a response that never ends


@pytest.mark.parametrize("interface", INTERFACES)
def test_a_response_that_never_finishes_holds_only_its_own_connection(
    interface, server_factory, server_logs
):
    """No time limit applies to a response (streams and long polls are legitimate): the client
    has what was sent so far, everyone else is served, the connection is freed when the client
    leaves, and the request is cut, and logged, at the graceful timeout of a shutdown."""
    release = Release()
    try:
        with server_factory(APPS[interface](release), interface=interface,
                            timeout_graceful_shutdown=0.3) as srv:
            with srv.connect() as sock:
                sock.sendall(get("/never"))
                assert release.entered.wait(5)
                sock.settimeout(5)
                received = b""
                while b"first piece" not in received:
                    received += sock.recv(4096)
                assert received.startswith(b"HTTP/1.1 200")
                for _ in range(3):
                    assert ok(srv)
                client = "127.0.0.1:%d" % sock.getsockname()[1]
            # The client left: its connection is freed; the application is its own to end.
            wait_for(lambda: connections(srv) == 0, what="the connection to be freed")
            assert ok(srv)
            assert in_flight(srv) == 1
            shutdown_started = time.monotonic()
        assert time.monotonic() - shutdown_started < 0.3 + 1.5 + 0.5
    finally:
        release.event.set()
    # The application never looked at its client, so it was still running: cut, and named.
    cut = [r.getMessage() for r in server_logs if "cut at shutdown" in r.getMessage()]
    assert len(cut) == 1 and f"GET /never from {client}" in cut[0], cut


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_an_async_response_that_never_finishes_is_cut_at_shutdown(
    interface, server_factory, server_logs
):
    release = Release()
    try:
        with server_factory(APPS[interface](release), interface=interface,
                            timeout_graceful_shutdown=0.3) as srv:
            sock = srv.connect()
            sock.sendall(get("/never"))
            assert release.entered.wait(5)
            srv.loop.call_soon_threadsafe(srv.server.request_shutdown)
            # Cut at the timeout: the connection is dropped, never ended as if complete.
            raw = read_until_closed(sock, 5)
            sock.close()
            assert raw.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in raw
            assert raw.endswith(b"\r\n\r\nb\r\nfirst piece\r\n")  # no last chunk
            assert release.ended.wait(5)  # cancelled: its finally blocks ran
    finally:
        release.event.set()
    cut = [r.getMessage() for r in server_logs if "cut at shutdown" in r.getMessage()]
    assert len(cut) == 1 and "GET /never from 127.0.0.1:" in cut[0], cut


# ------------------------------------------------------------------- a WSGI thread that hangs


def test_a_hung_wsgi_thread_leaves_the_other_threads_serving_and_does_not_hold_shutdown(
    server_factory, server_logs
):
    release = Release()
    try:
        with server_factory(APPS["wsgi"](release), interface="wsgi", blocking_threads=2,
                            timeout_graceful_shutdown=0.3) as srv:
            sock = srv.connect()
            sock.sendall(get("/never"))
            assert release.entered.wait(5)
            for _ in range(5):
                assert ok(srv)  # the other thread
            sock.close()  # the client gives up; the thread does not notice (it never writes again)
            for _ in range(5):
                assert ok(srv)
            shutdown_started = time.monotonic()
        # The serve() thread has ended (server_factory checks it) with the application thread
        # still inside the application: it is a daemon thread, left behind.
        assert time.monotonic() - shutdown_started < 0.3 + 1.0 + 1.0
        assert not release.ended.is_set()
    finally:
        release.event.set()
    messages = [r.getMessage() for r in server_logs]
    assert any("cut at shutdown: GET /never" in m for m in messages), messages
    assert any("1 WSGI application call(s) still running at shutdown" in m for m in messages)
    assert release.ended.wait(5)


# ------------------------------------------------------------------------- CVE-2020-7694

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every control character but LF

HOSTILE = [
    b"GET /a\x1b[31mred HTTP/1.1\r\nHost: t\r\n\r\n",  # ESC: colours, cursor moves, erasing
    b"GET /a\x9b31mred HTTP/1.1\r\nHost: t\r\n\r\n",  # CSI as one (C1) byte
    b"GET /a\rINFO:  fake HTTP/1.1\r\nHost: t\r\n\r\n",  # a bare CR to overwrite the line
    b"GET /a\nINFO:  fake HTTP/1.1\r\nHost: t\r\n\r\n",  # a bare LF to start a line
    b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\x1b]0;title\x07b\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: t\r\nX\x1b[2J: b\r\n\r\n",
    b"\x1b[2J\x1b[H\r\nINFO:  fake\r\n\r\n",
    # Percent-encoded: served, and logged as it was received.
    b"GET /%1b%5b2J%0d%0aINFO:%20%20fake HTTP/1.1\r\nHost: t\r\n\r\n",
]


def test_cve_2020_7694_request_data_cannot_inject_escapes_or_lines_into_the_logs(impl):
    """uvicorn CVE-2020-7694: a client's bytes (target, fields, garbage) must not put terminal
    escape sequences or line breaks in the access or error log, a real server's stderr."""
    port = free_port()
    proc = start_cli("--app-dir", "tests", "cli_apps:slow", "--port", str(port), "--impl", impl,
                     "--access-log")
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        for data in HOSTILE:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(data)
                assert read_until_closed(sock, 1) or True  # served or refused; the log matters
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = err.decode("latin-1")
    assert not CONTROL.search(text), CONTROL.findall(text)
    lines = text.splitlines()
    # One line per hostile request at least (a 400 or an access line), none of them faked.
    assert len(lines) >= len(HOSTILE)
    assert all(re.match(r"(INFO|WARNING|ERROR):  ", line) for line in lines), lines
    assert not [line for line in lines if line.startswith("INFO:  fake")]
    assert any('"GET /%1b%5b2J%0d%0aINFO:%20%20fake HTTP/1.1" 200' in line for line in lines)


def _Request():
    """A request as a gateway sees it, with what a wire core might let through in a target."""
    stream = MemoryStream("GET", b"/a\x1b[2J\r\nINFO:  fake \x9b\xad", b"q=\x07")
    stream.status = 200
    return stream


def test_cve_2020_7694_the_access_line_escapes_the_target_itself(server_logs):
    """Escaped where it is logged, not only by refserver's own handler: an application's logging
    configuration (JSON lines, syslog) gets the same safe text."""
    state = ServerState(Config("x:y"), asyncio.new_event_loop(), None)
    try:
        state.log_access(_Request())
    finally:
        state.loop.close()
    (line,) = [r.getMessage() for r in server_logs if r.name == "refserver.access"]
    assert line == ('127.0.0.1:5000 - "GET /a\\x1b[2J\\x0d\\x0aINFO:  fake \\x9b\\xad?q=\\x07 '
                    'HTTP/1.1" 200')


def test_cve_2020_7694_the_server_handler_escapes_every_message():
    record = logging.LogRecord("refserver.error", logging.INFO, __file__, 1,
                               "%s: %s", ("peer", "a\x1b[31m\r\nINFO: fake\u2028x"), None)
    formatter = logs.PrintableFormatter("%(levelname)s:  %(message)s")
    assert formatter.format(record) == "INFO:  peer: a\\x1b[31m\\x0d\\x0aINFO: fake\\u2028x"
    assert logs.printable("/plain/path?x=1") == "/plain/path?x=1"


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_an_application_that_ignores_its_cancellation_does_not_hold_the_shutdown(
    interface, impl, server_logs
):
    """Cut at the graceful timeout, an application that swallows the cancellation and carries on
    gets one second for its cleanup, then is left behind: the shutdown ends all the same."""
    entered = threading.Event()

    async def stubborn():
        entered.set()
        never = asyncio.Event()  # no timer: nothing of the closed loop keeps this task alive
        for _ in range(100):
            try:
                await never.wait()
            except asyncio.CancelledError:
                pass  # carries on regardless

    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            await stubborn()

    async def rsgi(scope, protocol):
        await stubborn()

    app = asgi if interface == "asgi" else rsgi
    # Each path on its usual loop: the second of grace is the same on both loops.
    loop = "uvloop" if impl == "fast" else "asyncio"
    with serve(app, impl=impl, loop=loop, interface=interface, timeout_graceful_shutdown=0.3) as srv:
        sock = srv.connect()
        sock.sendall(get("/stubborn"))
        assert entered.wait(5)
        started = time.monotonic()
        srv.loop.call_soon_threadsafe(srv.server.request_shutdown)
        assert read_until_closed(sock, 5) == b""  # cut: no response at all
        sock.close()
    assert time.monotonic() - started < 0.3 + 1.0 + 1.0
    # What the end of the process would do to the task left behind, done here: finalised later
    # by the garbage collector, in the middle of some other test, it could disturb that test.
    leftover = list(srv.server.state.tasks)
    assert len(leftover) == 1
    leftover[0].get_coro().close()
    srv.server.state.tasks.clear()
    del leftover, srv
    gc.collect()
    cut = [r.getMessage() for r in server_logs if "cut at shutdown" in r.getMessage()]
    assert len(cut) == 1 and "GET /stubborn from 127.0.0.1:" in cut[0], cut


def test_when_every_wsgi_thread_hangs_new_requests_wait_and_one_given_up_never_runs(
    server_factory,
):
    release = Release()
    called = []

    def app(environ, start_response):
        called.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/hang":
            release.wait_thread()
        start_response("200 OK", [])
        return [b"ok"]

    try:
        with server_factory(app, interface="wsgi", blocking_threads=1) as srv:
            hung = srv.connect()
            hung.sendall(get("/hang"))
            assert release.entered.wait(5)
            waiting = srv.connect()
            waiting.sendall(get("/given-up"))
            queued = srv.connect()
            queued.sendall(get("/queued"))
            wait_for(lambda: in_flight(srv) == 3, what="three requests in flight")
            waiting.close()  # gives up while no thread is free
            wait_for(lambda: connections(srv) == 2, what="its connection to be released")
            release.event.set()
            assert parse(read_response(hung))[0] == 200
            assert parse(read_response(queued))[0] == 200
            hung.close()
            queued.close()
    finally:
        release.event.set()
    assert called == ["/hang", "/queued"]
