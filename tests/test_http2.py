"""HTTP/2 end to end: every interface over real sockets on 127.0.0.1, in cleartext (prior
knowledge) and over TLS (ALPN), with httpx, curl, h2load and a frame-level h2 client.

The sans-IO core has its own unit tests; these check that the glue, the connection factory and
the gateways give applications and clients what spec/http2.md says, on both paths.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
import types

import h2.errors
import h2.settings
import httpx
import pytest

pytest.register_assert_rewrite("h2_helpers")  # before its import, as it is a plugin below
from h2_apps import APPS, State
from h2_helpers import H2Client, StreamRecord, buffered, httpx_client, wide_open
from support import free_port, start_cli, wait_for_port
from ws_helpers import wait_for

pytestmark = pytest.mark.timeout(60)
#: the fixtures certs, tls_mode and h2_serve
pytest_plugins = ("h2_helpers",)

INTERFACES = ["asgi", "rsgi", "wsgi"]


@pytest.fixture(params=INTERFACES)
def interface(request):
    return request.param


def served(h2_serve, interface, tls=False, **options):
    state = State()
    ctx = h2_serve(APPS[interface](state), tls=tls, interface=interface, **options)
    return state, ctx


def require(tool: str) -> str:
    """The path of a smoke-check client; a missing one fails the test (CI installs them)."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is required for this check (apt-get install curl nghttp2-client)")
    return path


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require("curl"), "-sS", "--max-time", "10", *args],
                          capture_output=True, timeout=20, check=False)


# ---------------------------------------------------------------------------- interfaces


def test_request_facts_bodies_and_bodiless_responses(h2_serve, interface, tls_mode):
    tls = tls_mode == "tls"
    state, ctx = served(h2_serve, interface, tls)
    with ctx as srv, httpx_client(srv) as client:
        response = client.get(srv.url + "/scope?a=1")
        assert response.http_version == "HTTP/2"
        facts = response.json()
        authority = f"127.0.0.1:{srv.port}"
        scheme = "https" if tls else "http"
        assert facts["method"] == "GET" and facts["path"] == "/scope"
        assert facts["query_string"] == "a=1"
        assert facts["scheme"] == scheme
        if interface == "asgi":
            assert facts["http_version"] == "2"
            assert facts["host"] == [authority]
            if tls:  # the ASGI tls extension, over HTTP/2 as over HTTP/1.1
                assert facts["tls"]["tls_version"] in (0x0303, 0x0304)
                assert "BEGIN CERTIFICATE" in facts["tls"]["server_cert"]
            else:
                assert facts["tls"] is None
        elif interface == "rsgi":
            assert facts["http_version"] == "2"
            assert facts["authority"] == authority
            assert facts["host"] == [authority]
        else:
            assert facts["http_version"] == "HTTP/2"
            assert facts["host"] == authority
            assert facts["https"] == ("on" if tls else None)

        # A body of several MiB, larger than every initial window, streamed in and echoed.
        body = os.urandom(3 * 1024 * 1024 + 17)

        def upload():
            for i in range(0, len(body), 100_000):
                yield body[i : i + 100_000]

        response = client.post(srv.url + "/echo", content=upload())
        assert response.status_code == 200
        assert response.content == body

        response = client.get(srv.url + "/stream?40")
        assert response.content == b"".join(b"%03d" % i + b"x" * 997 for i in range(40))

        response = client.head(srv.url + "/big?5000")
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-length"] == "5000"

        for status in (204, 304):
            response = client.get(srv.url + f"/{status}")
            assert response.status_code == status and response.content == b""
            assert "content-length" not in response.headers or status == 304

        response = client.get(srv.url + "/keepalive")
        assert response.status_code == 200 and response.text == "ok"
        assert response.headers["x-kept"] == "yes"
        assert "connection" not in response.headers  # HTTP/2 forbids it: stripped, not sent


def test_the_authority_replaces_a_host_field(h2_serve, interface):
    """A request with both ``:authority`` and ``host``: the application sees the authority, as
    with an absolute-form target in HTTP/1.1 (H2-REQUEST-2)."""
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv, validate=False) as client:  # h2 would not send them both
        record = client.response(client.request("/scope", extra=[("host", "other.example")]))
        facts = json.loads(record.data)
        authority = f"127.0.0.1:{srv.port}"
        assert facts["host"] == (authority if interface == "wsgi" else [authority])
        if interface == "rsgi":
            assert facts["authority"] == authority


def test_an_application_error_is_500_on_its_stream_only(h2_serve, interface):
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        ok_before = client.request("/stream?3")
        failing = client.request("/error")
        failing_late = client.request("/late-error")
        ok_after = client.request("/echo", "POST", b"after the failure")
        assert client.response(failing).status == 500
        late = client.response(failing_late)  # too late for a 500: the stream is reset
        assert late.status == 200 and late.reset == h2.errors.ErrorCodes.INTERNAL_ERROR
        assert not late.ended
        first, last = client.response(ok_before), client.response(ok_after)
        assert first.status == 200 and len(first.data) == 3000
        assert last.status == 200 and bytes(last.data) == b"after the failure"
        assert client.goaway is None and not client.closed
        # the connection goes on after the failure
        assert client.response(client.request("/204")).status == 204


# ---------------------------------------------------------------------------- multiplexing


def test_many_concurrent_streams_on_one_connection(h2_serve, interface, loop_name, tls_mode):
    state, ctx = served(h2_serve, interface, tls=tls_mode == "tls", loop=loop_name)
    with ctx as srv, H2Client(srv) as client:
        bodies = {}
        for i in range(60):
            if i % 3 == 0:
                sid = client.request(f"/stream?{i % 7 + 1}")
                bodies[sid] = b"".join(b"%03d" % k + b"x" * 997 for k in range(i % 7 + 1))
            else:
                body = os.urandom(1000 * i)
                sid = client.request("/echo", "POST", body)
                bodies[sid] = body
        for sid, body in bodies.items():
            record = client.response(sid)
            assert record.status == 200 and bytes(record.data) == body, sid
        assert len(state.entered) == 60 and client.goaway is None


def test_a_stream_whose_application_never_reads_does_not_block_others(h2_serve, interface):
    """Twenty streams each send a full stream window (65535) to an application that never reads:
    more than the connection window (1 MiB), so the server must give the connection window back
    as the data arrives for another stream's upload to get through."""
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        try:
            held = []
            for _ in range(20):
                sid = client.headers("/hold", "POST", end=False)
                # the connection window comes back as the data arrives, unread or not
                client.wait(lambda: client.conn.outbound_flow_control_window >= 65_535)
                assert client.send_available(sid, b"h" * 70_000) == 65_535
                held.append(sid)
            body = os.urandom(400_000)
            sid = client.headers("/echo", "POST", end=False)
            client.send_body(sid, body)
            record = client.response(sid)
            assert record.status == 200 and bytes(record.data) == body
            assert not any(client.streams[h].done for h in held)
        finally:
            state.release.set()
        for sid in held:  # answered without reading: the rest of each body is not wanted
            record = client.response(sid)
            assert record.status == 200 and bytes(record.data) == b"held"


def test_a_slow_reading_client_stream_does_not_block_others(h2_serve, interface):
    """The client keeps stream 1's window shut (it reopens only the connection's): the server
    sends what that window allows, and a large response on another stream still completes."""
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        slow = client.conn.get_next_available_stream_id()
        client.hold.add(slow)
        client.request("/big?1048576")
        fast = client.request("/big?600000")
        record = client.response(fast)
        assert record.status == 200 and len(record.data) == 600_000
        stalled = client.streams[slow]
        assert not stalled.done and len(stalled.data) <= 65_535
        client.hold.discard(slow)
        client.conn.acknowledge_received_data(len(stalled.data), slow)
        client.flush()
        assert len(client.response(slow).data) == 1 << 20


def test_the_client_window_and_frame_size_are_respected(h2_serve, interface):
    """A client window of 1000 bytes per stream: every response goes out in pieces as the client
    reopens it (h2 on the client side fails the connection on any excess)."""
    state, ctx = served(h2_serve, interface)
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}
    with ctx as srv, H2Client(srv, settings=settings) as client:
        sids = [client.request("/big?300000") for _ in range(3)] + [client.request("/stream?50")]
        for sid in sids:
            record = client.response(sid)
            assert record.status == 200 and record.reset is None
        assert [len(client.streams[sid].data) for sid in sids] == [300_000] * 3 + [50_000]
        assert client.goaway is None


def test_a_larger_initial_window_from_the_client_resumes_blocked_streams(h2_serve, interface):
    """A client that opens with a stream window of 0 gets response heads but no DATA until its
    SETTINGS raise the window (RFC 9113 6.9.2): then the responses go on by themselves."""
    state, ctx = served(h2_serve, interface)
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with ctx as srv, H2Client(srv, settings=settings) as client:
        client.wait(lambda: client.remote_settings_seen)
        sids = [client.request("/big?100000"), client.request("/stream?30")]
        client.wait(lambda: all(client.streams[sid].status for sid in sids))
        until = time.monotonic() + 0.2
        while time.monotonic() < until:
            client.pump(0.05)
        assert not any(client.streams[sid].data for sid in sids)
        client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
        client.flush()
        assert [len(client.response(sid).data) for sid in sids] == [100_000, 30_000]


def test_a_streaming_application_waits_for_a_client_with_wide_windows(h2_serve, interface):
    """Windows never stop a response to this client, which reads nothing: the transport's
    high-water mark must, so the application waits with little buffered, and the event loop
    stays free for other connections."""
    state, ctx = served(h2_serve, interface, timeout_write=0)
    with ctx as srv, wide_open(srv) as client:
        sid = client.request("/stream?20000")  # 20 MB in 1000-byte sends
        client.wait(lambda: client.streams[sid].status == 200)
        wait_for(lambda: any(paused for paused, _ in srv.call(buffered, srv)))
        [(_, size)] = srv.call(buffered, srv)
        assert size < 1 << 20, f"{size} bytes buffered for a client that reads nothing"


def test_a_client_that_takes_no_bytes_is_cut_after_the_write_timeout(h2_serve):
    """Windows wide open and a 20 MB response the client never reads: the transport's buffer
    fills, and the connection is closed --timeout-write after the client last took a byte."""
    state, ctx = served(h2_serve, "asgi", timeout_write=0.3)
    with ctx as srv, wide_open(srv) as client:
        sid = client.request("/big?20000000")
        client.wait(lambda: client.streams[sid].status == 200)
        wait_for(lambda: not srv.call(lambda: srv.server.state.connections), timeout=10)
        received = b""
        client.sock.settimeout(5)
        try:
            while chunk := client.sock.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            pass
        assert len(received) < 20_000_000


def test_a_response_field_larger_than_a_frame_goes_in_continuation_frames(h2_serve, interface):
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        record = client.response(client.request("/bigheader?20000"))
        assert record.status == 200 and record.header(b"x-big") == b"h" * 20_000


def test_expect_100_continue_is_answered_when_the_application_reads(h2_serve, interface):
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        sid = client.headers("/upload", "POST", extra=[("expect", "100-continue")], end=False)
        client.wait(lambda: client.streams[sid].informational)
        assert client.streams[sid].informational == [100]
        client.send_body(sid, b"c" * 100_000)
        record = client.response(sid)
        assert record.status == 200 and bytes(record.data) == b"100000"


def test_a_body_over_the_limit_is_413_and_the_connection_goes_on(h2_serve):
    state, ctx = served(h2_serve, "asgi", limit_request_body=100_000)
    with ctx as srv, H2Client(srv) as client:
        sid = client.headers("/wait", "POST", end=False)
        client.send_body(sid, b"x" * 200_000)
        assert client.response(sid).status == 413
        assert client.response(client.request("/204")).status == 204


# ---------------------------------------------------------------------------- reset


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_a_client_reset_disconnects_the_application_and_spares_the_others(h2_serve, interface):
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        waiting = client.request("/wait")
        wait_for(lambda: "/wait" in state.entered)
        other = client.request("/stream?50")
        client.reset(waiting)
        record = client.response(other)
        assert record.status == 200 and len(record.data) == 50_000
        wait_for(lambda: state.disconnects == ["/wait"])
        assert client.streams[waiting].status is None
        assert client.response(client.request("/204")).status == 204


def test_a_reset_in_the_middle_of_a_response_spares_the_connection(h2_serve, interface):
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        endless = client.request("/stream?100000")
        client.hold.add(endless)  # the server stops at the stream window, mid-response
        client.wait(lambda: len(client.streams[endless].data) >= 60_000)
        client.reset(endless)
        other = client.request("/stream?20")
        assert len(client.response(other).data) == 20_000
        assert client.response(client.request("/204")).status == 204
        assert client.goaway is None


# ---------------------------------------------------------------------------- shutdown


def test_graceful_shutdown_finishes_the_stream_in_flight_and_refuses_new_ones(
    h2_serve, interface, loop_name
):
    state, ctx = served(h2_serve, interface, loop=loop_name)
    with ctx as srv, H2Client(srv) as client:
        try:
            assert client.response(client.request("/204")).status == 204
            in_flight = client.request("/hold")
            wait_for(lambda: "/hold" in state.entered)
            srv.loop.call_soon_threadsafe(srv.server.request_shutdown)
            client.wait(lambda: client.goaway is not None)
            assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
            assert client.goaway.last_stream_id == in_flight
            late = client.request("/204")
            client.wait(lambda: client.streams[late].done)
            assert client.streams[late].reset == h2.errors.ErrorCodes.REFUSED_STREAM
            assert not client.streams[in_flight].done
        finally:
            state.release.set()
        record = client.response(in_flight)
        assert record.status == 200 and bytes(record.data) == b"held"
        client.wait_closed()
        srv.thread.join(5)
        assert not srv.thread.is_alive()
    assert state.entered == ["/204", "/hold"]


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_a_stream_still_running_when_the_grace_ends_is_cut_and_the_server_exits(
    h2_serve, interface
):
    state, ctx = served(h2_serve, interface, timeout_graceful_shutdown=0.3)
    with ctx as srv, H2Client(srv) as client:
        try:
            sid = client.request("/hold")
            wait_for(lambda: "/hold" in state.entered)
            started = time.monotonic()
            srv.loop.call_soon_threadsafe(srv.server.request_shutdown)
            client.wait_closed()
            assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
            assert client.goaway.last_stream_id == sid
            assert not client.streams[sid].ended  # never answered: cut with the connection
            srv.thread.join(5)
            assert not srv.thread.is_alive()
            assert time.monotonic() - started < 3
        finally:
            state.release.set()


def test_sigint_over_http2_finishes_the_stream_in_flight_and_exits(impl):
    port = free_port()
    proc = start_cli("--app-dir", "tests", "--port", str(port), "--impl", impl, "cli_apps:slow")
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        address = types.SimpleNamespace(host="127.0.0.1", port=port, tls=False)
        with H2Client(address) as client, H2Client(address) as idle:
            sid = client.request("/?0.5")
            while not proc.stdout.readline().startswith(b"request in flight"):
                pass
            idle.wait(lambda: idle.remote_settings_seen)
            proc.send_signal(signal.SIGINT)
            client.wait(lambda: client.goaway is not None)
            assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
            assert client.goaway.last_stream_id == sid
            record = client.response(sid)
            assert record.status == 200 and bytes(record.data) == b"done"
            client.wait_closed()
            idle.wait_closed()  # the idle connection is told too, and closed
            assert idle.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_client_goaway_lets_its_streams_finish(h2_serve):
    state, ctx = served(h2_serve, "asgi")
    with ctx as srv, H2Client(srv) as client:
        try:
            sid = client.request("/hold")
            wait_for(lambda: "/hold" in state.entered)
            client.conn.close_connection(h2.errors.ErrorCodes.NO_ERROR)
            client.flush()
        finally:
            state.release.set()
        record = client.response(sid)
        assert record.status == 200 and bytes(record.data) == b"held"
        client.wait_closed()


def test_an_idle_connection_is_closed_with_goaway_after_the_keep_alive_timeout(h2_serve):
    state, ctx = served(h2_serve, "asgi", timeout_keep_alive=0.2)
    with ctx as srv, H2Client(srv) as client:
        try:
            sid = client.request("/hold")
            until = time.monotonic() + 0.4  # a stream in flight: not idle
            while time.monotonic() < until:
                client.pump(0.05)
            assert client.goaway is None and not client.closed
        finally:
            state.release.set()
        assert client.response(sid).status == 200
        client.wait_closed()
        assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR


# ---------------------------------------------------------------------------- selection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def frames(raw: bytes) -> list:
    """(type, payload) of each whole HTTP/2 frame in ``raw``."""
    out, pos = [], 0
    while len(raw) - pos >= 9:
        length = int.from_bytes(raw[pos : pos + 3], "big")
        out.append((raw[pos + 3], raw[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return out


def test_http_1_answers_the_preface_in_http_1_1(h2_serve):
    state, ctx = served(h2_serve, "asgi", http="1")
    with ctx as srv:
        raw = srv.request(PREFACE + EMPTY_SETTINGS)
        assert raw.startswith(b"HTTP/1.1 505 "), raw[:60]
        with httpx.Client() as client:
            assert client.get(srv.url + "/204").http_version == "HTTP/1.1"
        done = curl("--http2", "-w", "%{http_version}", srv.url + "/204")  # no h2c upgrade
        assert done.returncode == 0 and done.stdout == b"1.1", done.stderr
    assert state.entered[0] == "/204"


def test_http_2_answers_prior_knowledge_and_refuses_http_1_1(h2_serve):
    state, ctx = served(h2_serve, "asgi", http="2")
    with ctx as srv:
        with H2Client(srv) as client:
            assert client.response(client.request("/204")).status == 204
        raw = srv.request(b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\n")
        # the server's SETTINGS, then GOAWAY(PROTOCOL_ERROR): no HTTP/1.1 answer
        kinds = [kind for kind, _ in frames(raw)]
        assert kinds[0] == 4 and kinds[-1] == 7, kinds
        goaway = frames(raw)[-1][1]
        assert int.from_bytes(goaway[4:8], "big") == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert state.entered == ["/204"]


def queued(sock, which=termios.FIONREAD) -> int:
    """Bytes in a socket's kernel queue (Linux): not read yet (FIONREAD), or sent and not yet
    acknowledged by the peer (TIOCOUTQ, the SIOCOUTQ of sockets)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), which, b"\0" * 4))[0]


def server_unread(srv) -> list:
    """Bytes each connection of ``srv`` has not read yet (run on its loop)."""
    return [queued(conn.transport.get_extra_info("socket"))
            for conn in srv.server.state.connections]


@pytest.mark.parametrize("http", ["2", "auto"])
def test_a_preface_split_after_two_bytes_is_still_http2(h2_serve, http):
    """The first read of a connection holds only ``PR``: in cleartext ``--http auto`` it cannot
    tell HTTP/2 from HTTP/1.1 yet, and must wait for more before it decides (RFC 9113 3.3)."""
    state, ctx = served(h2_serve, "asgi", http=http)
    with ctx as srv, H2Client(srv, connect=False) as client:
        client.conn.initiate_connection()
        preface = client.conn.data_to_send()
        wait_for(lambda: len(srv.call(server_unread, srv)) == 1)
        client.send_raw(preface[:2])
        # the two bytes reached the server's kernel, then its protocol read them on their own
        wait_for(lambda: queued(client.sock, termios.TIOCOUTQ) == 0)
        wait_for(lambda: srv.call(server_unread, srv) == [0])
        client.send_raw(preface[2:])
        client.sock.settimeout(5)
        first = client.sock.recv(9, socket.MSG_WAITALL)
        assert first[3:4] == b"\x04", first  # the server's SETTINGS, not an HTTP/1.1 answer
        client.feed(first)
        assert client.response(client.request("/204")).status == 204


@pytest.mark.parametrize("http", ["auto", "1", "2"])
def test_alpn_picks_the_protocol_over_tls(h2_serve, http, loop_name):
    state, ctx = served(h2_serve, "asgi", tls=True, http=http, loop=loop_name)
    with ctx as srv:
        chosen = {}
        for offer in (("h2", "http/1.1"), ("http/1.1",)):
            ctx_ = srv.certs.client_context(alpn=offer)
            with ctx_.wrap_socket(socket.create_connection((srv.host, srv.port), timeout=5),
                                  server_hostname="127.0.0.1") as sock:
                chosen[offer] = sock.selected_alpn_protocol()
        expected_h2 = {"auto": "h2", "1": "http/1.1", "2": "h2"}[http]
        assert chosen[("h2", "http/1.1")] == expected_h2
        if http != "2":
            assert chosen[("http/1.1",)] == "http/1.1"
            with httpx.Client(verify=srv.certs.client_context(), timeout=10) as client:
                response = client.get(srv.url + "/scope")
            assert response.http_version == "HTTP/1.1"
            assert response.json()["http_version"] == "1.1"
            assert response.json()["scheme"] == "https"
        with httpx_client(srv) as client:
            response = client.get(srv.url + "/scope")
        assert response.http_version == ("HTTP/1.1" if http == "1" else "HTTP/2")


def test_curl_prior_knowledge_h2c_upgrade_and_tls(h2_serve, interface, tmp_path):
    state, ctx = served(h2_serve, interface)
    with ctx as srv:
        done = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", srv.url + "/stream?2")
        assert done.returncode == 0, done.stderr
        body, version = done.stdout.rsplit(b"\n", 1)
        assert version == b"2" and body == b"000" + b"x" * 997 + b"001" + b"x" * 997

        # curl --http2 in cleartext asks for Upgrade: h2c; the answer is 101 then stream 1
        done = curl("-v", "--http2", "-w", "\n%{http_version}", srv.url + "/scope?up")
        assert done.returncode == 0, done.stderr
        body, version = done.stdout.rsplit(b"\n", 1)
        assert b"< HTTP/1.1 101 Switching Protocols" in done.stderr
        assert version == b"2"
        facts = json.loads(body)
        assert facts["query_string"] == "up"
        assert facts["http_version"] in ("2", "HTTP/2")

        # an upgrade whose request has a body is served over HTTP/1.1 instead (RFC 9110 7.8)
        upload = tmp_path / "upload"
        upload.write_bytes(os.urandom(100_000))
        done = curl("--http2", "--data-binary", f"@{upload}", "-w", "%{http_version}",
                    srv.url + "/echo")
        assert done.returncode == 0, done.stderr
        assert done.stdout == upload.read_bytes() + b"1.1"

    state, ctx = served(h2_serve, interface, tls=True)
    with ctx as srv:
        done = curl("--http2", "--cacert", srv.certs.ca_file, "-w", "\n%{http_version}",
                    f"https://localhost:{srv.port}/scope")
        assert done.returncode == 0, done.stderr
        body, version = done.stdout.rsplit(b"\n", 1)
        assert version == b"2"
        assert json.loads(body)["scheme"] == "https"


def test_an_h2c_upgrade_answers_101_then_stream_1_and_goes_on_in_http2(h2_serve, loop_name):
    state, ctx = served(h2_serve, "asgi", loop=loop_name)
    with ctx as srv, H2Client(srv, connect=False) as client:
        settings = client.conn.initiate_upgrade_connection()
        client.send_raw(
            b"GET /stream?2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.sock.recv(65536)
            assert data, head
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: h2c" in head.lower()
        client.streams[1] = StreamRecord()
        client.feed(rest)  # and the client preface goes out
        record = client.response(1)
        assert record.status == 200 and len(record.data) == 2000
        record = client.response(client.request("/scope"))
        assert json.loads(record.data)["http_version"] == "2"


def test_h2load_smoke(h2_serve, tls_mode):
    """A short, bounded load: 4 connections, 10 streams each at a time, 400 requests."""
    state, ctx = served(h2_serve, "asgi", tls=tls_mode == "tls")
    with ctx as srv:
        done = subprocess.run(
            [require("h2load"), "-n", "400", "-c", "4", "-m", "10", "-T", "10", "-N", "10",
             srv.url + "/stream?3"],
            capture_output=True, timeout=30, check=False, text=True,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "400 succeeded, 0 failed, 0 errored" in done.stdout, done.stdout
    assert "status codes: 400 2xx" in done.stdout
    if tls_mode == "tls":
        assert "Application protocol: h2" in done.stdout


# ---------------------------------------------------------------------------- limits and logs


def test_the_http2_options_are_the_server_settings(h2_serve):
    state, ctx = served(
        h2_serve, "asgi", http2_max_concurrent_streams=7, http2_initial_stream_window=200_000,
        http2_initial_connection_window=3_000_000, http2_max_frame_size=32_768,
        http2_max_header_list_size=20_000,
    )
    with ctx as srv, H2Client(srv) as client:
        client.wait(lambda: client.remote_settings_seen)
        codes = h2.settings.SettingCodes
        settings = client.server_settings
        assert settings[codes.MAX_CONCURRENT_STREAMS] == 7
        assert settings[codes.INITIAL_WINDOW_SIZE] == 200_000
        assert settings[codes.MAX_FRAME_SIZE] == 32_768
        assert settings[codes.MAX_HEADER_LIST_SIZE] == 20_000
        assert settings[codes.ENABLE_CONNECT_PROTOCOL] == 1
        client.wait(lambda: client.conn.outbound_flow_control_window == 3_000_000)
        # a stream may send its whole window before its application reads, in large frames
        sid = client.headers("/upload", "POST", end=False)
        assert client.send_available(sid, b"u" * 300_000) == 200_000
        client.send_body(sid, b"u" * 100_000)
        assert bytes(client.response(sid).data) == b"300000"
        refused = client.request("/scope", extra=[("x-big", "v" * 25_000)])
        assert client.response(refused).status == 431


def test_streams_over_the_concurrency_option_are_refused(h2_serve):
    state, ctx = served(h2_serve, "asgi", http2_max_concurrent_streams=2)
    with ctx as srv, H2Client(srv) as client:
        try:
            # opened before the server's SETTINGS are read, as a client may (h2 would keep to
            # the limit once it knows it)
            held = [client.request("/hold") for _ in range(2)]
            over = client.request("/hold")
            client.wait(lambda: client.streams[over].done)
            assert client.server_settings.max_concurrent_streams == 2
            assert client.streams[over].reset == h2.errors.ErrorCodes.REFUSED_STREAM
        finally:
            state.release.set()
        assert [client.response(sid).status for sid in held] == [200, 200]
    assert state.entered == ["/hold", "/hold"]


def test_limit_concurrency_is_503_on_the_stream_and_the_connection_goes_on(h2_serve):
    state, ctx = served(h2_serve, "asgi", limit_concurrency=1)
    with ctx as srv, H2Client(srv) as client:
        try:
            held = client.request("/hold")
            wait_for(lambda: "/hold" in state.entered)
            busy = client.response(client.request("/204"))
            assert busy.status == 503 and bytes(busy.data) == b"Service Unavailable"
            assert client.goaway is None and not client.closed
        finally:
            state.release.set()
        assert client.response(held).status == 200
        assert client.response(client.request("/204")).status == 204


def test_the_access_log_names_http2(h2_serve, server_logs):
    state, ctx = served(h2_serve, "asgi", access_log=True, log_level="info")
    with ctx as srv, H2Client(srv) as client:
        for path in ("/204", "/stream?3"):
            client.response(client.request(path))
        wait_for(lambda: len([r for r in server_logs if r.name == "refserver.access"]) == 2)
    lines = [r.getMessage() for r in server_logs if r.name == "refserver.access"]
    assert '"GET /204 HTTP/2" 204' in lines[0] and '"GET /stream?3 HTTP/2" 200' in lines[1]


# ---------------------------------------------------------------------------- defences


def test_rapid_reset_ends_the_connection_and_spares_the_others(h2_serve):
    """CVE-2023-44487: streams opened and reset before their answer, 150 of them in one burst,
    draw on an allowance of 100; the connection ends with ENHANCE_YOUR_CALM while another
    connection goes on being served."""
    state, ctx = served(h2_serve, "asgi")
    with ctx as srv, H2Client(srv) as attacker, H2Client(srv) as neighbour:
        assert neighbour.response(neighbour.request("/204")).status == 204
        attacker.wait(lambda: attacker.remote_settings_seen)
        for _ in range(150):
            sid = attacker.conn.get_next_available_stream_id()
            attacker.conn.send_headers(sid, [
                (b":method", b"GET"), (b":scheme", b"http"),
                (b":authority", attacker.authority.encode()), (b":path", b"/wait"),
            ], end_stream=True)
            attacker.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
        attacker.flush()
        attacker.wait(lambda: attacker.goaway is not None)
        assert attacker.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        attacker.wait_closed()
        for _ in range(3):
            record = neighbour.response(neighbour.request("/stream?2"))
            assert record.status == 200 and len(record.data) == 2000
        assert neighbour.goaway is None


def test_a_ping_flood_ends_the_connection(h2_serve):
    state, ctx = served(h2_serve, "asgi")
    with ctx as srv, H2Client(srv) as client:
        for i in range(1100):
            client.conn.ping(i.to_bytes(8, "big"))
        client.flush()
        client.wait(lambda: client.goaway is not None)
        assert client.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        assert 0 < len(client.ping_acks) < 1100
        client.wait_closed()


def test_an_oversized_header_list_is_431_and_a_far_larger_one_ends_the_connection(h2_serve):
    """Up to twice SETTINGS_MAX_HEADER_LIST_SIZE (65536 by default) the request is answered 431
    and the connection goes on; beyond, it ends with ENHANCE_YOUR_CALM (spec H2-HPACK-2)."""
    state, ctx = served(h2_serve, "asgi")
    with ctx as srv, H2Client(srv) as client:
        refused = client.request("/scope", extra=[("x-big", "v" * 70_000)])
        assert client.response(refused).status == 431
        assert client.response(client.request("/204")).status == 204
        client.request("/scope", extra=[("x-big", "v" * 140_000)])
        client.wait(lambda: client.goaway is not None)
        assert client.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        client.wait_closed()
    assert state.entered == ["/204"]


# ---------------------------------------------------------------------------- keep-alive PING

KEEP_ALIVE = {"http2_keep_alive_interval": 0.1, "http2_keep_alive_timeout": 0.2}


def test_keep_alive_pings_answered_keep_the_connection(h2_serve):
    state, ctx = served(h2_serve, "asgi", **KEEP_ALIVE)
    with ctx as srv, H2Client(srv) as client:
        client.wait(lambda: len(client.pings) >= 3)  # each acknowledged, so the next one comes
        assert len(set(client.pings)) == len(client.pings)
        assert client.goaway is None and not client.closed
        assert client.response(client.request("/204")).status == 204


def test_an_unanswered_keep_alive_ping_closes_the_connection(h2_serve):
    state, ctx = served(h2_serve, "asgi", **KEEP_ALIVE)
    with ctx as srv, H2Client(srv) as client:
        client.wait(lambda: client.pings, send=False)
        pinged = time.monotonic()
        client.wait_closed(timeout=5, send=False)
        elapsed = time.monotonic() - pinged
        assert len(client.pings) == 1  # no second PING while the first is unanswered
        assert 0.1 < elapsed < 3, elapsed
        assert client.goaway is not None and client.goaway.error_code == 0  # told why
