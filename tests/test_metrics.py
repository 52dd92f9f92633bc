"""--metrics: the counters match the requests made, on every interface and protocol, in one
process and summed over workers (across a rolling restart, and with a worker that is stuck).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from support import ROOT, free_port, read_response, serve
from websockets.sync.client import connect as ws_connect

from refserver.config import Config, ConfigError
from refserver.metrics import DURATION_BOUNDS, Aggregate, Metrics, MetricsServer, exposition

import metrics_apps
from test_workers import Supervised, get

# ------------------------------------------------------------------------- helpers


def scrape(port: int, timeout: float = 10.0) -> dict:
    """``{series: value}`` of ``GET /metrics``, a series being its name and its labels."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 200, text
        assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    finally:
        conn.close()
    return parse(text)


def parse(text: str) -> dict:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def requests_series(interface: str, protocol: str, status_class: str) -> str:
    return (f'refserver_requests_total{{interface="{interface}",protocol="{protocol}",'
            f'status_class="{status_class}"}}')


def cut_series(interface: str, protocol: str) -> str:
    return f'refserver_requests_cut_short_total{{interface="{interface}",protocol="{protocol}"}}'


def delta(after: dict, before: dict, series: str) -> float:
    return after.get(series, 0) - before.get(series, 0)


def poll(port: int, predicate, timeout: float = 10.0) -> dict:
    """Scrape until ``predicate(values)`` holds (a gauge following a close); the last values."""
    deadline = time.monotonic() + timeout
    while True:
        values = scrape(port)
        if predicate(values) or time.monotonic() > deadline:
            return values
        time.sleep(0.02)


APPS = {"asgi": metrics_apps.asgi, "rsgi": metrics_apps.rsgi, "wsgi": metrics_apps.wsgi}


# ------------------------------------------------------------------------- one process


@pytest.mark.parametrize("interface", ["asgi", "rsgi", "wsgi"])
def test_counters_match_the_requests_made(server_factory, interface):
    metrics_port = free_port()
    with server_factory(APPS[interface], interface=interface, metrics=True,
                        metrics_port=metrics_port) as srv:
        before = scrape(metrics_port)
        # HTTP/1.1 on one connection; /fail last, since its 500 closes the connection.
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            h1 = [client.get("/"), client.get("/missing"), client.post("/echo", content=b"a" * 100),
                  client.get("/slow?s=0.3"), client.get("/fail")]
        # HTTP/2 by prior knowledge, on one connection.
        with httpx.Client(base_url=srv.url, http1=False, http2=True, timeout=10) as client:
            h2 = [client.get("/"), client.get("/missing"), client.post("/echo", content=b"b" * 50),
                  client.get("/fail")]
        assert [r.http_version for r in h1] == ["HTTP/1.1"] * 5
        assert [r.http_version for r in h2] == ["HTTP/2"] * 4
        assert [r.status_code for r in h1 + h2] == [200, 404, 200, 200, 500, 200, 404, 200, 500]
        websockets = 0
        if interface != "wsgi":
            with ws_connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
                ws.send("hello")
                assert ws.recv(timeout=5) == "hello"
                during = scrape(metrics_port)
                assert during["refserver_open_websocket_sessions"] == 1
                assert during["refserver_open_connections"] == 1
            websockets = 1
        # Every connection is closed: the gauges come back to zero.
        after = poll(
            metrics_port,
            lambda v: v["refserver_open_connections"] == 0
            and v["refserver_open_websocket_sessions"] == 0,
        )

    def counted(protocol, status_class):
        return delta(after, before, requests_series(interface, protocol, status_class))

    assert counted("http/1.1", "2xx") == 3
    assert counted("http/1.1", "4xx") == 1
    assert counted("http/1.1", "5xx") == 1
    assert counted("h2", "2xx") == 2
    assert counted("h2", "4xx") == 1
    assert counted("h2", "5xx") == 1
    assert delta(after, before, "refserver_request_duration_seconds_count") == 9
    # The slow request took 0.3 s: it is past the 0.25 s bucket, and in the sum.
    assert delta(after, before, "refserver_request_duration_seconds_sum") >= 0.3
    below = delta(after, before, 'refserver_request_duration_seconds_bucket{le="0.25"}')
    assert below <= 8
    assert delta(after, before, 'refserver_request_duration_seconds_bucket{le="+Inf"}') == 9
    assert delta(after, before, "refserver_request_body_bytes_total") == 100 + 50
    sent = sum(len(r.content) for r in h1 + h2)
    assert delta(after, before, "refserver_response_body_bytes_total") == sent
    # One connection per client (the HTTP/1.1 one closed by the 500 at its end), and the
    # WebSocket's.
    assert delta(after, before, "refserver_connections_total") == 2 + websockets
    assert delta(after, before, "refserver_websocket_sessions_total") == websockets
    assert after["refserver_open_connections"] == 0
    assert after["refserver_open_websocket_sessions"] == 0
    assert after["refserver_requests_in_flight"] == 0
    assert "refserver_workers" not in after  # one process: no supervisor


def _requests(values: dict) -> dict:
    """The ``refserver_requests_total`` series that are not zero."""
    return {k: v for k, v in values.items() if k.startswith("refserver_requests_total") and v}


def test_requests_the_server_refuses_while_reading_count_by_status_class(impl):
    """400, 408, 413, 414, 431, 501 and 505 answered by the server itself, over HTTP/1.1 and
    HTTP/2, each counted once in refserver_requests_total and nowhere else."""
    from h2_helpers import H2Client, StreamRecord

    metrics_port = free_port()
    limits = dict(limit_request_line=200, limit_request_fields=5, limit_request_body=100,
                  http1_header_read_timeout=0.3, http1_body_read_timeout=0.3)
    with serve(metrics_apps.rsgi, impl=impl, interface="rsgi", metrics=True,
               metrics_port=metrics_port, **limits) as srv:
        fields = b"".join(b"X-%d: y\r\n" % i for i in range(10))
        for request, status in [
            (b"NONSENSE\r\n\r\n", 400),
            (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n", 431),
            (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 413),
            (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHost", 408),  # the head stalls
            # The application reads a body that stalls: the server answers in its place.
            (b"POST /echo HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc", 408),
        ]:
            with srv.connect() as sock:
                sock.sendall(request)
                assert read_response(sock).startswith(b"HTTP/1.1 %d " % status), request
        srv.tls = False
        with H2Client(srv) as client:
            client.wait(lambda: client.remote_settings_seen)
            sid = client.headers("/", extra=[(f"x-{i}", "y") for i in range(10)])
            assert client.response(sid).status == 431
            # A CONNECT, plain (refused by the wire core) and extended with a protocol that is
            # not served (refused by the protocol).
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", b"x:443")])
            client.streams[sid] = StreamRecord()
            client.flush()
            assert client.response(sid).status == 501
            sid = client.headers("/", "CONNECT", extra=[(":protocol", "tunnel")], end=False)
            assert client.response(sid).status == 501
            # The application reads a body past --limit-request-body.
            sid = client.request("/echo", method="POST", body=b"z" * 200)
            assert client.response(sid).status == 413
        values = poll(metrics_port, lambda v: v["refserver_open_connections"] == 0)
    assert _requests(values) == {
        requests_series("rsgi", "http/1.1", "4xx"): 5,
        requests_series("rsgi", "http/1.0", "4xx"): 1,
        requests_series("rsgi", "http/1.1", "5xx"): 1,
        requests_series("rsgi", "h2", "4xx"): 2,
        requests_series("rsgi", "h2", "5xx"): 2,
    }
    # Refused, not cut short; and not timed, since no application completed them.
    assert not any(k.startswith("refserver_requests_cut_short_total") for k in values)
    assert values["refserver_request_duration_seconds_count"] == 0
    assert values["refserver_connections_total"] == 8


@pytest.mark.parametrize("interface", ["asgi", "rsgi", "wsgi"])
def test_responses_cut_short_are_counted_apart(impl, interface):
    """A client that leaves before its response, and an application that fails after starting
    one, over HTTP/1.1 and HTTP/2: each counted once in refserver_requests_cut_short_total,
    never in refserver_requests_total."""
    from h2_helpers import H2Client

    metrics_port = free_port()
    with serve(APPS[interface], impl=impl, interface=interface, metrics=True,
               metrics_port=metrics_port) as srv:
        with srv.connect() as sock:
            sock.sendall(b"GET /slow?s=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
            poll(metrics_port, lambda v: v["refserver_requests_in_flight"] == 1)
        first = poll(metrics_port, lambda v: v.get(cut_series(interface, "http/1.1")) == 1)
        assert first.get(cut_series(interface, "http/1.1")) == 1
        # The application is done with the request before the next one is made, so that each
        # wait for one request in flight sees the one meant.
        poll(metrics_port, lambda v: v["refserver_requests_in_flight"] == 0)
        with srv.connect() as sock:
            sock.sendall(b"GET /partial HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            assert received.startswith(b"HTTP/1.1 200 ") and not received.endswith(b"0\r\n\r\n")
        srv.tls = False
        with H2Client(srv) as client:
            sid = client.request("/slow?s=0.5")
            poll(metrics_port, lambda v: v["refserver_requests_in_flight"] == 1)
            client.reset(sid)
            sid = client.request("/partial")
            client.wait(lambda: client.streams[sid].reset is not None)
            assert client.streams[sid].status == 200 and bytes(client.streams[sid].data) == b"part"
        values = poll(
            metrics_port,
            lambda v: v["refserver_open_connections"] == 0
            and v["refserver_requests_in_flight"] == 0,
        )
    assert values[cut_series(interface, "http/1.1")] == 2
    assert values[cut_series(interface, "h2")] == 2
    assert _requests(values) == {}
    assert values["refserver_request_duration_seconds_count"] == 0


def test_a_request_in_flight_and_its_connection_are_gauged(impl):
    metrics_port = free_port()
    with serve(metrics_apps.asgi, impl=impl, metrics=True, metrics_port=metrics_port) as srv:
        sock = srv.connect()
        with sock:
            sock.sendall(b"GET /slow?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            during = poll(metrics_port, lambda v: v["refserver_requests_in_flight"] == 1)
            assert during["refserver_requests_in_flight"] == 1
            assert during["refserver_open_connections"] == 1
        after = poll(metrics_port, lambda v: v["refserver_open_connections"] == 0)
        assert after["refserver_open_connections"] == 0


def test_the_metrics_socket_serves_get_and_head_of_metrics_only(impl):
    metrics_port = free_port()
    with serve(metrics_apps.asgi, impl=impl, metrics=True, metrics_port=metrics_port):

        def raw(request: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as sock:
                sock.sendall(request)
                chunks = []
                try:
                    while chunk := sock.recv(65536):
                        chunks.append(chunk)
                except ConnectionResetError:  # closed with what we sent unread
                    pass
                return b"".join(chunks)

        got = raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: %d\r\n" % len(body) in head + b"\r\n"
        assert b"# TYPE refserver_requests_total counter" in body
        got = raw(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b""
        assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 100
        assert raw(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        assert raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404 ")
        assert raw(b"GET /metricsx HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
        got = raw(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD\r\n" in got
        assert raw(b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert raw(b"x" * 9000) == b""  # a head past 8 KiB: closed, nothing served


def test_without_metrics_nothing_is_counted_or_served(impl):
    with serve(metrics_apps.asgi, impl=impl) as srv:
        assert srv.server.state.metrics is None
        assert srv.server.metrics_server is None
        with httpx.Client(base_url=srv.url) as client:
            assert client.get("/").status_code == 200


def _run(*args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("WEB_CONCURRENCY", None)
    return subprocess.run(
        [sys.executable, "-m", "refserver", "--app-dir", "tests", "metrics_apps:asgi", *args],
        cwd=ROOT, env=env, capture_output=True, timeout=timeout,
    )


@pytest.mark.parametrize("workers", [None, "2"])
def test_a_metrics_port_in_use_is_one_line_and_exit_1(impl, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        extra = ("--workers", workers) if workers else ()
        done = _run("--impl", impl, "--port", str(free_port()), "--metrics",
                    "--metrics-port", str(port), *extra)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.decode().splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, done.stderr
    assert errors[0].endswith(f" cannot bind 127.0.0.1:{port}: Address already in use")


def test_metrics_options_need_metrics():
    with pytest.raises(ConfigError, match="--metrics-port given without --metrics"):
        Config("a:b", metrics_port=9100)
    with pytest.raises(ConfigError, match="--metrics-address given without --metrics"):
        Config("a:b", metrics_address="0.0.0.0")
    with pytest.raises(ConfigError, match="--metrics-port must be between 0 and 65535"):
        Config("a:b", metrics=True, metrics_port=70000)
    config = Config("a:b", metrics=True)
    assert (config.metrics_address, config.metrics_port) == ("127.0.0.1", 9090)


# ------------------------------------------------------------------------- sums, without sockets


class _Stream:
    class request:
        http_version = "1.1"

    disconnected = response_complete = False  # an exchange in progress

    def __init__(self, status, started, sent):
        self.status, self.started, self.body_sent = status, started, sent


def test_a_response_is_counted_in_its_slots():
    metrics = Metrics()
    now = time.monotonic()
    metrics.count(_Stream(204, now, 0), 10)
    metrics.count(_Stream(503, now - 0.2, 7), 0)
    metrics.refused("1.1", 431)
    metrics.refused("2", 413)
    metrics.refused("1.0", 505)
    metrics.cut(_Stream(200, now, 3))
    report = metrics.report("rsgi", accepted=3, open_connections=1, in_flight=0)
    counters = report["counters"]
    assert counters["requests"] == {
        'interface="rsgi",protocol="http/1.1",status_class="2xx"': 1,
        'interface="rsgi",protocol="http/1.1",status_class="4xx"': 1,
        'interface="rsgi",protocol="http/1.1",status_class="5xx"': 1,
        'interface="rsgi",protocol="http/1.0",status_class="5xx"': 1,
        'interface="rsgi",protocol="h2",status_class="4xx"': 1,
    }
    assert counters["cut_short"] == {'interface="rsgi",protocol="http/1.1"': 1}
    text = exposition(report).decode()
    assert 'refserver_requests_cut_short_total{interface="rsgi",protocol="http/1.1"} 1' in text
    assert "# TYPE refserver_requests_cut_short_total counter" in text
    # Neither a refused request nor a cut one is timed, or adds body bytes.
    assert sum(counters["durations"]) == 2
    assert counters["durations"][DURATION_BOUNDS.index(0.25)] == 1  # 0.2 s: in (0.1, 0.25]
    assert (counters["body_received"], counters["body_sent"], counters["connections"]) == (10, 7, 3)
    assert report["gauges"] == {"connections": 1, "in_flight": 0, "websockets": 0}


def test_the_sum_never_goes_back_when_workers_go():
    total = Aggregate()
    one = Metrics()
    one.count(_Stream(200, time.monotonic(), 5), 0)
    total.update("w1", one.report("asgi", 1, 1, 0))
    total.update("w2", one.report("asgi", 2, 0, 0))
    first = total.total()
    assert first["counters"]["connections"] == 3
    ok = 'interface="asgi",protocol="http/1.1",status_class="2xx"'
    assert first["counters"]["requests"][ok] == 2
    assert first["gauges"]["connections"] == 1
    total.retire("w1")  # its counters stay; its gauges go
    second = total.total()
    assert second["counters"] == first["counters"]
    assert second["gauges"]["connections"] == 0
    total.retire("w1")  # a second retirement adds nothing
    assert total.total()["counters"] == first["counters"]
    text = exposition(second, workers=1).decode()
    values = parse(text)
    assert values["refserver_workers"] == 1
    assert values['refserver_request_duration_seconds_bucket{le="+Inf"}'] == 2
    assert values["refserver_request_duration_seconds_count"] == 2
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:]
            assert name.startswith("refserver_")
            assert kind != "counter" or name.endswith("_total")


def test_closing_a_metrics_server_that_never_started_closes_its_socket():
    server = MetricsServer.bind(Config("a:b", metrics=True, metrics_port=0), None)
    server.close()
    server.close()
    assert server.sock.fileno() == -1


# ------------------------------------------------------------------------- workers

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="signals of Linux")


@pytest.fixture
def supervised(impl):
    started = []

    def start(*args, **kwargs):
        server = Supervised(impl, *args, app="metrics_apps:asgi", **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill_all()


@linux_only
def test_workers_counts_are_summed_and_survive_a_rolling_restart(supervised):
    metrics_port = free_port()
    server = supervised("--workers", "2", "--metrics", "--metrics-port", str(metrics_port))
    pids = set(server.ready_pids())
    server.wait_for(rf"metrics on http://127\.0\.0\.1:{metrics_port}/metrics")
    # Requests on new connections until both workers have served some (the kernel decides).
    served, made = set(), 0
    while served != pids and made < 200:
        status, body = get(server.port)
        assert status == 200
        served.add(int(body.split()[1]))
        made += 1
    assert served == pids
    assert get(server.port, "/missing")[0] == 404
    ok, missing = (requests_series("asgi", "http/1.1", c) for c in ("2xx", "4xx"))
    values = scrape(metrics_port)
    assert values[ok] == made and values[missing] == 1
    assert values["refserver_connections_total"] == made + 1
    assert values["refserver_workers"] == 2
    assert values["refserver_request_duration_seconds_count"] == made + 1

    server.signal(signal.SIGHUP)
    for pid in pids:
        server.wait_for(rf"worker {pid} stopped \(exit code 0\)")
    after = scrape(metrics_port)
    # The old workers are gone; what they counted is not.
    assert after[ok] == made and after[missing] == 1
    assert after["refserver_connections_total"] == made + 1
    assert after["refserver_workers"] == 2
    assert get(server.port)[0] == 200
    last = scrape(metrics_port)
    assert last[ok] == made + 1
    assert server.stop() == 0


@linux_only
def test_a_stuck_worker_does_not_hold_the_scrape(supervised):
    metrics_port = free_port()
    server = supervised("--workers", "2", "--metrics", "--metrics-port", str(metrics_port))
    server.ready_pids()
    ok = requests_series("asgi", "http/1.1", "2xx")
    assert get(server.port)[0] == 200
    assert scrape(metrics_port)[ok] == 1
    # One worker holds its event loop for 3 s; the scrape answers in about REPORT_TIMEOUT (0.5 s),
    # with that worker's last report.
    blocked = threading.Thread(target=get, args=(server.port, "/block?s=3"))
    blocked.start()
    try:
        server.wait_for(r"blocking \d+")
        started = time.monotonic()
        during = scrape(metrics_port)
        assert time.monotonic() - started < 2.0
        assert during[ok] == 1
    finally:
        blocked.join(15)
    after = poll(metrics_port, lambda v: v[ok] == 2)
    assert after[ok] == 2
    assert server.stop() == 0
