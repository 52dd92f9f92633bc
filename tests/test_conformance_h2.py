"""The conformance suite's HTTP/2 and TLS parts: the raw HTTP/2 client, the case format, skips.

The raw client is checked against a small HTTP/2 server built here on the h2 library (it answers
every request with its path, and ends the connection with GOAWAY on a protocol error, or silently
when told to), so that a runner that misreads frames, or that takes a silent close for a GOAWAY,
fails here. Runs against other servers (hypercorn, uvicorn) happen only where they are installed;
the run against refserver's own HTTP/2 turns on when refserver has it.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import ssl
import sys
import threading

import pytest
from hyperframe import frame as hf

from refserver.conformance.cases import Case, CaseError, load_cases
from refserver.conformance.cli import main, select
from refserver.conformance.h2client import FrameWriter, refusal
from refserver.conformance.runner import CaseRun, Endpoint
from refserver.conformance.transport import Certificate, TLSUnavailable, Transport

pytestmark = pytest.mark.timeout(120)

HAS_H2_SERVER = importlib.util.find_spec("refserver.protocols.h2") is not None


def _refserver_serves_tls() -> bool:
    from refserver.config import OPTIONS

    return any(option.name == "ssl_certfile" for option in OPTIONS)


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class MiniH2Server:
    """HTTP/2 on the h2 library, one thread per connection, on 127.0.0.1.

    Like the probes it answers ``/__probe__/ping`` and ``/__probe__/seen?prefix=``; any other
    path is answered with itself and counted as seen.
    """

    def __init__(self, silent: bool = False, tls: ssl.SSLContext | None = None):
        self.silent = silent
        self.tls = tls
        self.seen: list = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock) -> None:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions

        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    if not self.silent:
                        conn.close_connection(error_code=exc.error_code)
                        sock.sendall(conn.data_to_send())
                    return
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        body = self._answer(dict(event.headers)[b":path"].decode())
                        conn.send_headers(
                            event.stream_id,
                            [(":status", "200"), ("content-length", str(len(body)))],
                        )
                        conn.send_data(event.stream_id, body, end_stream=True)
                sock.sendall(conn.data_to_send())
        except OSError:
            pass
        finally:
            sock.close()

    def _answer(self, path: str) -> bytes:
        if path == "/__probe__/ping":
            return b"pong"
        if path.startswith("/__probe__/seen?prefix="):
            prefix = path.partition("=")[2]
            return json.dumps({"count": sum(p.startswith(prefix) for p in self.seen)}).encode()
        self.seen.append(path)
        return path.encode()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def h2_server():
    server = MiniH2Server()
    yield server
    server.close()


def _case(steps, case_id: str = "h2-test") -> Case:
    return Case({"id": case_id, "title": "t", "clauses": ["H2-PING-1"], "steps": steps},
                {}, "test.json")


def _run(case, port, transport=None):
    endpoint = Endpoint(port, transport) if transport else Endpoint(port)
    return CaseRun(case, "asgi", endpoint, "token").run()


# ------------------------------------------------------------------ the raw client


def test_the_client_gets_a_response_and_a_ping_ack(h2_server):
    case = _case([
        {"h2_connect": {}},
        {"h2_request": {"stream": 1, "path": "/hello"}},
        {"h2_response": {"stream": 1, "status": 200, "body": "/hello"}},
        {"h2_send": {"type": "PING", "data": "12345678"}},
        {"h2_expect": {"type": "PING", "flags": ["ACK"], "data": "12345678"}},
        {"h2_open": True},
    ])
    result = _run(case, h2_server.port)
    assert result.outcome == "pass", result.reason
    kinds = [entry["kind"] for entry in result.transcript]
    assert kinds == ["h2_connect", "h2_response", "h2_expect", "h2_open"]


def test_a_wrong_expectation_fails(h2_server):
    case = _case([
        {"h2_connect": {}},
        {"h2_request": {"stream": 1, "path": "/hello"}},
        {"h2_response": {"stream": 1, "status": 200, "body": "/other"}},
    ])
    result = _run(case, h2_server.port)
    assert result.outcome == "fail" and "body" in result.reason


def test_a_protocol_error_is_seen_as_its_goaway(h2_server):
    case = _case([
        {"h2_connect": {}},
        {"h2_send": {"type": "PING", "stream": 1, "data": "onstream"}},
        {"h2_goaway": {"error": "PROTOCOL_ERROR", "last_stream": 0}},
    ])
    result = _run(case, h2_server.port)
    assert result.outcome == "pass", result.reason
    assert result.transcript[-1] == {"kind": "h2_goaway", "error": "PROTOCOL_ERROR",
                                     "last_stream": 0}


def test_a_silent_close_fails_where_a_goaway_is_required():
    server = MiniH2Server(silent=True)
    try:
        case = _case([
            {"h2_connect": {}},
            {"h2_send": {"type": "PING", "stream": 1, "data": "onstream"}},
            {"h2_goaway": {"error": "PROTOCOL_ERROR"}},
        ])
        result = _run(case, server.port)
    finally:
        server.close()
    assert result.outcome == "fail"
    assert "silent close" in result.reason


def test_a_stream_error_accepts_the_connection_error_of_the_same_code(h2_server):
    """h2 treats an uppercase field name as a connection error, which RFC 9113 5.4.1 allows."""
    case = _case([
        {"h2_connect": {}},
        {"h2_send": {"type": "HEADERS", "stream": 1, "flags": ["END_HEADERS", "END_STREAM"],
                     "headers": [[":method", "GET"], [":scheme", "http"], [":path", "/"],
                                 ["X-Upper", "1"]]}},
        {"h2_reset": {"stream": 1, "error": "PROTOCOL_ERROR"}},
    ])
    result = _run(case, h2_server.port)
    assert result.outcome == "pass", result.reason
    assert result.transcript[-1]["goaway"] == "PROTOCOL_ERROR"


def test_not_reached_asks_the_probe_over_http2(h2_server):
    """A request that reached the application fails the check; one refused does not."""
    served = _case([
        {"h2_connect": {}},
        {"h2_request": {"stream": 1, "path": "/unreached/@NONCE@"}},
        {"h2_response": {"stream": 1, "status": 200}},
        {"not_reached": "/unreached/@NONCE@"},
    ])
    result = _run(served, h2_server.port)
    assert result.outcome == "fail"
    assert "a refused request for /unreached/h2-test-token reached the application" in result.reason
    refused = _case([
        {"h2_connect": {}},
        {"h2_send": {"type": "HEADERS", "stream": 1, "flags": ["END_HEADERS", "END_STREAM"],
                     "headers": [[":method", "GET"], [":scheme", "http"],
                                 [":path", "/unreached/@NONCE@"], ["X-Upper", "1"]]}},
        {"h2_reset": {"stream": 1, "error": "PROTOCOL_ERROR"}},
        {"not_reached": "/unreached/@NONCE@"},
    ], "h2-refused")
    result = _run(refused, h2_server.port)
    assert result.outcome == "pass", result.reason
    assert result.transcript[-1] == {"kind": "not_reached", "count": 0}


def test_concurrency_is_checked_by_the_order_streams_end(h2_server):
    """The mini server answers in order of arrival, so stream 3 cannot end before stream 1."""
    case = _case([
        {"h2_connect": {}},
        {"h2_request": {"stream": 1, "path": "/one"}},
        {"h2_request": {"stream": 3, "path": "/three"}},
        {"h2_response": {"stream": 3, "status": 200, "before": 1}},
    ])
    result = _run(case, h2_server.port)
    assert result.outcome == "fail" and "not served concurrently" in result.reason


def test_refusal_tells_an_http2_server_from_an_http1_one(h2_server):
    assert refusal("127.0.0.1", h2_server.port, 2.0) is None
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        reason = refusal("127.0.0.1", listener.getsockname()[1], 2.0)
    finally:
        listener.close()
    # Said as a person reads it, not as the frame header those bytes would make.
    assert reason == "it answered in HTTP/1.x, not HTTP/2 (b'HTTP/1.1 400 Bad Request')"


def test_frames_built_from_data_parse_as_rfc_9113_frames():
    import hpack

    client = FrameWriter({})
    specs = [
        {"type": "SETTINGS", "settings": [["INITIAL_WINDOW_SIZE", 10], [255, 1]]},
        {"type": "WINDOW_UPDATE", "stream": 3, "increment": 1000},
        {"type": "GOAWAY", "last_stream": 7, "error": "ENHANCE_YOUR_CALM", "debug": "x"},
        {"type": "RST_STREAM", "stream": 5, "error": "CANCEL"},
        {"type": "HEADERS", "stream": 1, "flags": ["END_HEADERS", "PRIORITY", "PADDED"],
         "pad": 3, "depends_on": 0, "weight": 32, "headers": [[":path", "/"]]},
        {"type": "DATA", "stream": 1, "flags": ["END_STREAM"], "data": "abc"},
    ]
    frames = []
    for spec in specs:
        data = client.encode(spec)
        frame, length = hf.Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:]))
        assert length == len(data) - 9
        frames.append(frame)
    settings, update, goaway, rst, headers, body = frames
    assert settings.settings == {4: 10, 255: 1}
    assert (update.stream_id, update.window_increment) == (3, 1000)
    assert (goaway.last_stream_id, goaway.error_code, goaway.additional_data) == (7, 0xB, b"x")
    assert (rst.stream_id, rst.error_code) == (5, 8)
    assert headers.pad_length == 3 and headers.stream_weight == 31
    assert hpack.Decoder().decode(headers.data) == [(":path", "/")]
    assert body.data == b"abc" and "END_STREAM" in body.flags
    # A lying length and an oversized block are what the malformed cases need.
    assert client.encode({"type": "PING", "hex": "00", "length": 8})[:3] == b"\0\0\x08"
    block = client.encode({"type": "HEADERS", "oversize": True, "headers": [[":path", "/"]]})
    assert len(block) - 9 == 16385


# ------------------------------------------------------------------ case data and selection


@pytest.mark.parametrize(
    "step, message",
    [
        ({"h2_send": {"type": "NOPE"}}, "unknown HTTP/2 frame type"),
        ({"h2_send": {"type": "PING", "flag": ["ACK"]}}, "unknown HTTP/2 frame keys"),
        ({"h2_send": {"type": "PING", "flags": ["ACKK"]}}, "unknown HTTP/2 flag"),
        ({"h2_goaway": {"error": "PROTOCOL_ERRR"}}, "unknown HTTP/2 error code"),
        ({"h2_response": {"stauts": 200}}, "unknown h2_response keys"),
        ({"h2_connect": {"settings": [["ENABLE_PUSHES", 1]]}}, "unknown HTTP/2 setting"),
    ],
)
def test_http2_case_format_errors_are_reported(step, message):
    with pytest.raises(CaseError, match=message):
        _case([step])


def test_cases_say_what_they_need_and_selection_follows_the_flags():
    cases = load_cases()
    by_id = {case.id: case for case in cases}
    assert by_id["h2-ping-ack"].needs == {"h2"}
    assert by_id["ws-handshake-accept"].needs == {"h1", "ws"}
    assert by_id["conn-client-half-close-after-request"].needs == {"h1", "cleartext"}
    assert by_id["wsgi-environ-https-on"].needs == {"h1", "tls"}
    plain = {case.id for case in select(cases, ["asgi", "rsgi", "wsgi"], [], [])}
    both = {case.id for case in select(cases, ["asgi", "rsgi", "wsgi"], [], [], True, True)}
    assert "h2-ping-ack" not in plain and "wsgi-environ-https-on" not in plain
    assert {"h2-ping-ack", "wsgi-environ-https-on"} <= both
    h2_cases = [case for case in cases if "h2" in case.needs]
    assert len(h2_cases) >= 70
    assert all(any(c.startswith("H2-") or "-SCOPE-" in c or "-ENVIRON-" in c for c in case.clauses)
               for case in h2_cases)


def test_http2_and_http1_steps_do_not_mix():
    with pytest.raises(CaseError, match="HTTP/2 steps and HTTP/1.1 steps"):
        _case([{"h2_connect": {}}, {"send": {"raw": "GET / HTTP/1.1\r\n\r\n"}}])


# ------------------------------------------------------------------ TLS


def test_tls_without_trustme_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "trustme", None)
    with pytest.raises(TLSUnavailable, match="pip install trustme"):
        Certificate(str(tmp_path))
    assert main(["--tls", "--interface", "asgi", "-k", "asgi-scope-*"]) == 2
    assert "trustme" in capsys.readouterr().err


def test_tls_needs_the_certificate_placeholders(capsys):
    code = main(["--tls", "--interface", "asgi", "--server", "some-server --port {port} {app}"])
    assert code == 2
    assert "{certfile} and {keyfile}" in capsys.readouterr().err


def test_http2_over_tls_negotiates_h2_and_is_verified(tmp_path):
    pytest.importorskip("trustme")
    certificate = Certificate(str(tmp_path))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.certfile, certificate.keyfile)
    server_context.set_alpn_protocols(["h2"])
    server = MiniH2Server(tls=server_context)
    try:
        transport = Transport(tls=True, http2=True, certificate=certificate)
        assert refusal("127.0.0.1", server.port, 2.0, transport.context("h2")) is None
        case = _case([
            {"h2_connect": {}},
            {"h2_request": {"stream": 1, "path": "/over-tls"}},
            {"h2_response": {"stream": 1, "status": 200, "body": "/over-tls"}},
        ])
        result = _run(case, server.port, transport)
        assert result.outcome == "pass", result.reason
        # A client that does not trust the throwaway CA is refused: the runner verifies.
        other = tmp_path / "other"
        other.mkdir()
        stranger = Transport(tls=True, certificate=Certificate(str(other)))
        assert refusal("127.0.0.1", server.port, 2.0, stranger.context("h2")) is not None
    finally:
        server.close()


# ------------------------------------------------------------------ skips


def test_websocket_cases_are_skipped_on_a_server_without_websockets(tmp_path):
    out = tmp_path / "r.json"
    code = main(["--interface", "asgi", "--server", "refserver --no-ws", "-k", "ws-*",
                 "--quiet", "--json", str(out)])
    data = json.loads(out.read_text())
    assert code == 0
    outcomes = {c["outcome"] for c in data["cases"]}
    assert outcomes == {"skip"}
    assert "does not do WebSockets" in data["cases"][0]["reason"]


def test_http2_cases_are_skipped_on_a_server_without_http2(tmp_path):
    out = tmp_path / "r.json"
    code = main(["--interface", "asgi", "--server", "refserver --http 1" if HAS_H2_SERVER
                 else "refserver", "--http2", "-k", "h2-ping-*", "--quiet", "--json", str(out)])
    data = json.loads(out.read_text())
    assert code == 0
    assert {c["outcome"] for c in data["cases"]} == {"skip"}
    assert "does not speak HTTP/2 with prior knowledge" in data["cases"][0]["reason"]


# ------------------------------------------------------------------ real servers


#: Frame-level groups hypercorn 0.18 passes whole; the others record its deviations.
HYPERCORN_PASSES = ["h2-ping-*", "h2-stream-*", "h2-headers-*", "h2-cont-*", "h2-settings-*",
                    "h2-rst-*", "h2-frame-data-*", "h2-frame-unknown-*", "h2-flow-window-*"]


@pytest.mark.skipif(not _has_module("hypercorn"), reason="hypercorn is not installed")
def test_http2_cases_against_hypercorn(tmp_path):
    out = tmp_path / "r.json"
    args = ["--interface", "asgi", "--http2", "--quiet", "--json", str(out),
            "--server", "{python} -m hypercorn --bind 127.0.0.1:{port} {app}"]
    for pattern in HYPERCORN_PASSES:
        args += ["-k", pattern]
    code = main(args)
    data = json.loads(out.read_text())
    failed = [f"{c['case']}: {c['reason']}" for c in data["cases"] if c["outcome"] != "pass"]
    assert not failed, "\n".join(failed)
    assert code == 0 and data["summary"]["pass"] >= 40


@pytest.mark.skipif(
    not (_has_module("uvicorn") and _has_module("trustme")), reason="needs uvicorn and trustme"
)
def test_tls_cases_against_uvicorn(tmp_path):
    out = tmp_path / "r.json"
    code = main(["--interface", "asgi", "--tls", "-k", "asgi-scope-*", "--quiet",
                 "--json", str(out), "--server",
                 ("{python} -m uvicorn --host 127.0.0.1 --port {port} "
                  "--ssl-certfile {certfile} --ssl-keyfile {keyfile} {app}")])
    data = json.loads(out.read_text())
    by_id = {c["case"]: c for c in data["cases"]}
    scheme = by_id["asgi-scope-method-scheme"]
    assert scheme["outcome"] == "pass", scheme["reason"]
    assert "https" in json.dumps(scheme["transcript"])
    assert code in (0, 1)  # uvicorn departs from some ASGI clauses; TLS is what is checked


@pytest.mark.skipif(not HAS_H2_SERVER, reason="refserver does not serve HTTP/2 yet")
@pytest.mark.parametrize("impl", ["pure", "fast"])
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_refserver_passes_every_http2_case(tmp_path, impl, tls):
    if impl == "fast" and not _has_module("refserver._speedups"):
        pytest.skip("refserver._speedups is not built")
    out = tmp_path / "r.json"
    args = ["--http2", "-k", "h2-*", "--quiet", "--json", str(out),
            "--server", f"refserver --impl {impl} --http 2"]
    code = main(args + (["--tls"] if tls else []))
    data = json.loads(out.read_text())
    failed = [f"[{c['interface']}] {c['case']}: {c['reason']}"
              for c in data["cases"] if c["outcome"] != "pass"]
    assert not failed, "\n".join(failed)
    assert code == 0


@pytest.mark.skipif(not (HAS_H2_SERVER and _has_module("refserver._speedups")),
                    reason="needs refserver's HTTP/2 and its fast path")
def test_http2_differential_pure_vs_fast(tmp_path):
    out = tmp_path / "r.json"
    code = main(["--http2", "-k", "h2-*", "--quiet", "--json", str(out),
                 "--server", "refserver --impl pure --loop asyncio",
                 "--compare", "refserver --impl fast --loop uvloop"])
    data = json.loads(out.read_text())
    assert data["differences"] == [], json.dumps(data["differences"][:20], indent=1)
    assert code == 0


@pytest.mark.skipif(not _refserver_serves_tls(), reason="refserver does not serve TLS yet")
@pytest.mark.parametrize("impl", ["pure", "fast"])
def test_refserver_passes_every_case_over_tls(tmp_path, impl):
    """The HTTP/1.1, WebSocket and gateway cases over TLS; only the half-close cases skip."""
    if impl == "fast" and not _has_module("refserver._speedups"):
        pytest.skip("refserver._speedups is not built")
    out = tmp_path / "r.json"
    code = main(["--tls", "--quiet", "--json", str(out), "--server", f"refserver --impl {impl}"])
    data = json.loads(out.read_text())
    failed = [f"[{c['interface']}] {c['case']}: {c['reason']}"
              for c in data["cases"] if c["outcome"] == "fail"]
    assert not failed, "\n".join(failed)
    skipped = {c["case"] for c in data["cases"] if c["outcome"] == "skip"}
    assert skipped == {case.id for case in load_cases() if "cleartext" in case.needs}
    assert code == 0
