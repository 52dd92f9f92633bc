"""The conformance suite against refserver itself, through the runner a user would run.

The runner starts refserver as a subprocess on 127.0.0.1 with the bundled probe applications, so
these tests exercise exactly ``python -m refserver.conformance``. A whole run of every case on
the three interfaces takes a few seconds; the differential runs take twice that.

Also here: the runner's own parts (response parsing, predicates, reports), and proof that a
failing server and a differing pair of servers are reported as such, since a runner that passes
everything would pass these tests too.
"""

from __future__ import annotations

import importlib
import json
import socket
import threading
import xml.etree.ElementTree as ET

import pytest

from refserver.conformance import client as wire
from refserver.conformance.cases import load_cases
from refserver.conformance.cli import main
from refserver.conformance.expect import check_predicate, check_response, lookup

pytestmark = pytest.mark.timeout(120)


def run(tmp_path, *args) -> tuple:
    """Run the CLI in-process; returns (exit code, the JSON it wrote)."""
    out = tmp_path / "result.json"
    code = main([*args, "--quiet", "--json", str(out)])
    return code, json.loads(out.read_text())


def failures(data) -> list:
    return [
        f"[{c['interface']}] {c['case']}: {c['reason']}"
        for c in data["cases"]
        if c["outcome"] != "pass"
    ]


def expected_total() -> int:
    """Case runs of a default run: the HTTP/2 and TLS-only cases need --http2 and --tls."""
    return sum(len(c.interfaces) for c in load_cases() if not c.needs & {"h2", "tls"})


def _fast_available() -> bool:
    """Whether refserver's compiled fast path imports here (it is optional)."""
    try:
        importlib.import_module("refserver._speedups")
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_pure_path_passes_every_case(tmp_path, loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    code, data = run(tmp_path, "--server", f"refserver --impl pure --loop {loop}")
    assert not failures(data), "\n".join(failures(data))
    assert code == 0
    assert data["summary"]["total"] == expected_total()
    assert data["summary"]["skip"] == 0


def test_differential_asyncio_vs_uvloop(tmp_path):
    pytest.importorskip("uvloop")
    code, data = run(
        tmp_path,
        "--server", "refserver --impl pure --loop asyncio",
        "--compare", "refserver --impl pure --loop uvloop",
    )
    assert data["differences"] == []
    assert code == 0


@pytest.mark.skipif(not _fast_available(), reason="refserver._speedups is not built")
def test_differential_pure_vs_fast(tmp_path):
    code, data = run(
        tmp_path,
        "--server", "refserver --impl pure --loop asyncio",
        "--compare", "refserver --impl fast --loop uvloop",
    )
    assert data["differences"] == [], json.dumps(data["differences"][:20], indent=1)
    assert not failures(data["b"]), "\n".join(failures(data["b"]))
    assert code == 0


# ------------------------------------------------------------------ the runner detects problems


def test_a_failing_server_fails_the_run(tmp_path):
    """Without its Date header refserver breaks H1-RESPONSE-7: exit 1, the clause FAILs."""
    junit = tmp_path / "junit.xml"
    code, data = run(
        tmp_path,
        "--interface", "asgi", "--clause", "H1-RESPONSE-7",
        "--server", "refserver --no-date-header",
        "--junit", str(junit),
    )
    assert code == 1
    assert [c["case"] for c in data["cases"] if c["outcome"] == "fail"] == ["resp-date-header"]
    rows = {row["clause"]: row["outcome"] for row in data["clauses"]}
    assert rows == {"H1-RESPONSE-7": "fail"}
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "1" and suite.get("tests") == "3"
    failed = [tc.get("name") for tc in suite if tc.find("failure") is not None]
    assert failed == ["resp-date-header"]


def test_the_html_report_of_a_failing_run_shows_the_exchange_and_links_the_clause(tmp_path):
    """--html: the clause table links each clause to its anchor in the documentation site, and a
    failure shows the bytes the runner sent and those it received."""
    page = tmp_path / "report.html"
    code, data = run(
        tmp_path,
        "--interface", "asgi", "--clause", "H1-RESPONSE-7",
        "--server", "refserver --no-date-header",
        "--html", str(page), "--docs-url", "https://docs.example/refserver",
    )
    assert code == 1
    text = page.read_text()
    link = "https://docs.example/refserver/spec/http1/#h1-response-7"
    assert f'<a href="{link}">H1-RESPONSE-7</a>' in text
    assert [row["url"] for row in data["clauses"]] == [link]
    failure = text[text.index('id="fail-asgi-resp-date-header"'):]
    assert "Sent on connection 1" in failure and "Received on connection 1" in failure
    assert "<pre>GET /r/resp?body=d HTTP/1.1\\r\\n\nHost: 127.0.0.1:" in failure
    assert "HTTP/1.1 200 OK\\r\\n" in failure  # CR and LF shown, not sent to the page
    # The passing cases of the clause carry no wire record.
    passed = [c for c in data["cases"] if c["outcome"] == "pass"]
    assert passed and all("wire" not in c for c in passed)


def test_the_html_report_escapes_everything_from_the_wire():
    from refserver.conformance.report import to_html
    from refserver.conformance.runner import CaseResult

    port = _serve_bytes(
        b"HTTP/1.1 200 OK\r\nX-Evil: <script>alert('x')</script>\r\nContent-Length: 0\r\n\r\n"
    )
    conn = wire.Connection("127.0.0.1", port, 2.0)
    try:
        conn.send(b"GET /<img src=x onerror=alert(1)> HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.read_response()
    finally:
        conn.close()
    case = next(c for c in load_cases() if c.id == "resp-date-header")
    result = CaseResult(case, "asgi", "fail", "header <b>X-Evil</b> & more", [{"kind": "x",
                        "value": "</pre><script>"}], 0.1, [conn.wire_record()])
    page = to_html([result], {}, ["<target>"], ["<note>"])
    body = page[page.index("</style>"):]
    assert "<script>" not in body and "<img" not in body and "<b>" not in body
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    assert "GET /&lt;img src=x onerror=alert(1)&gt;" in body
    assert "header &lt;b&gt;X-Evil&lt;/b&gt; &amp; more" in body
    assert "&lt;target&gt;" in body and "&lt;note&gt;" in body
    assert "&lt;/pre&gt;&lt;script&gt;" in body


def test_the_wire_record_keeps_the_first_bytes_of_each_direction():
    payload = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"\x00" * 10000
    conn, response = _exchange(payload)
    conn.close()
    record = conn.wire_record()
    assert record["received_bytes"] == len(payload)
    assert record["received"].startswith("HTTP/1.1 200 OK\\r\\n\nContent-Length: 10000")
    assert record["received"].count("\\x00") == wire.WIRE_RECORD_LIMIT - len(payload[:-10000])
    assert record["sent"] == "GET / HTTP/1.1\\r\\n\nHost: x\\r\\n\n\\r\\n\n"
    assert record["sent_bytes"] == 27


def test_the_differential_mode_reports_differences(tmp_path):
    code, data = run(
        tmp_path,
        "--interface", "rsgi", "--case", "resp-status-line",
        "--server", "refserver",
        "--compare", "refserver --no-server-header",
    )
    assert code == 1
    fields = {(d["case"], d["field"]) for d in data["differences"]}
    assert ("resp-status-line", "headers") in fields


def test_connect_mode_runs_against_a_running_server(tmp_path):
    """--connect uses a server the user started; cases that must restart it are skipped."""
    from support import serve

    from refserver.conformance.probes.asgi_probe import app

    with serve(app, lifespan="on") as srv:
        code, data = run(
            tmp_path, "--interface", "asgi", "--connect", str(srv.port),
            "--case", "asgi-lifespan-*", "--case", "framing-cl-body",
        )
    outcomes = {c["case"]: c["outcome"] for c in data["cases"]}
    assert outcomes["framing-cl-body"] == "pass"
    assert outcomes["asgi-lifespan-scope"] == "pass"
    assert outcomes["asgi-lifespan-shutdown"] == "skip"
    assert outcomes["asgi-lifespan-startup-failed"] == "skip"
    assert code == 0
    assert data["targets"] == [f"127.0.0.1:{srv.port} (--connect)"]


def test_connect_mode_waits_for_a_server_started_in_the_background(tmp_path):
    """`server & python -m refserver.conformance --connect PORT`, as a CI step writes it: the
    runner's first try finds nothing serving yet, and it waits instead of skipping every case."""
    from support import serve

    from refserver.conformance.probes.asgi_probe import app

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    result = {}
    runner = threading.Thread(
        target=lambda: result.update(
            zip(("code", "data"), run(tmp_path, "--interface", "asgi", "--connect", str(port),
                                      "--case", "framing-cl-body"))
        )
    )
    runner.start()
    try:
        # Nothing serves the port until the runner has tried it once.
        listener.settimeout(30)
        conn, _ = listener.accept()
        conn.close()
    finally:
        listener.close()
    with serve(app, port=port):
        runner.join(60)
    assert not runner.is_alive()
    assert {c["case"]: c["outcome"] for c in result["data"]["cases"]} == {
        "framing-cl-body": "pass"
    }
    assert result["code"] == 0


def test_connect_mode_with_nothing_answering_is_an_error(tmp_path, capsys):
    """A run that checked nothing must not pass: exit 2, naming the port."""
    with socket.socket() as sock:  # a port with no server on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        code = main(["--interface", "rsgi", "--connect", str(port), "--startup-timeout", "1",
                     "--case", "framing-cl-body", "--quiet"])
    assert code == 2
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


# ------------------------------------------------------------------ the runner's parts


def _serve_bytes(payload: bytes):
    """A one-shot server on 127.0.0.1 that sends ``payload`` and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(payload)
        conn.close()
        listener.close()

    threading.Thread(target=answer, daemon=True).start()
    return listener.getsockname()[1]


def _exchange(payload: bytes, head: bool = False):
    port = _serve_bytes(payload)
    conn = wire.Connection("127.0.0.1", port, 2.0)
    try:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return conn, conn.read_response(head_request=head)
    except Exception:
        conn.close()
        raise


def test_client_parses_pipelined_chunked_and_interim_responses():
    payload = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
    )
    conn, first = _exchange(payload)
    second = conn.read_response()
    assert conn.wait_closed(2.0) == b""
    conn.close()
    assert [r.status for r in first.interim] == [100]
    assert (first.status, first.body, first.chunk_sizes) == (200, b"abcde", [3, 2])
    assert first.header_all("x-a") == ["1", "2"] and first.trailers == [("T", "v")]
    assert (second.status, second.reason, second.body) == (404, "Not Found", b"no")


def test_client_reports_a_body_cut_short():
    with pytest.raises(wire.Closed) as info:
        _exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
    assert info.value.head.status == 200 and info.value.partial == b"12345"


def test_client_rejects_a_malformed_status_line():
    with pytest.raises(wire.Malformed):
        _exchange(b"HTTP/1.1 2000 Nope\r\nContent-Length: 0\r\n\r\n")


def test_client_reads_a_close_delimited_body():
    conn, response = _exchange(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
    conn.close()
    assert response.close_delimited and response.body == b"until the end"


@pytest.mark.parametrize(
    "value, predicate, ok",
    [
        ("abc", "abc", True),
        ("abc", {"$regex": "a.c"}, True),
        ([["a", "1"], ["b", "2"]], {"$contains": ["b", "2"]}, True),
        ([["a", "1"]], {"$not_contains": ["a", "1"]}, False),
        (3, {"$gte": 4}, False),
        (None, {"$type": "null"}, True),
        (True, {"$type": "int"}, False),
        ("x", {"$in": ["x", "y"]}, True),
        ([1, 2], {"$all": [{"$len": 2}, {"$contains": 2}]}, True),
        ("x", {"$any": [{"$eq": "y"}, {"$startswith": "x"}]}, True),
    ],
)
def test_predicates(value, predicate, ok):
    assert (check_predicate(value, predicate) is None) is ok


def test_lookup_paths_and_absent_values():
    data = {"a": [{"b": 1}, {"b": 2}], "c": None}
    assert lookup(data, "a.1.b") == 2
    assert lookup(data, "a.-1.b") == 2
    assert check_predicate(lookup(data, "a.5.b"), {"$absent": True}) is None
    assert check_predicate(lookup(data, "c"), {"$absent": True}) is not None


def test_expectations_on_a_response():
    response = wire.Response("HTTP/1.1", 200, "OK", [("Content-Length", "2"), ("X", "1")], b"")
    response.body = b'{"k": [1, 2]}'
    expect = {"status": 200, "headers": {"x": "1"}, "observe": {"k.1": 2}}
    assert check_response(response, expect) == []
    found = check_response(response, {"status": 201, "headers_absent": ["x"], "observe": {"k": []}})
    assert len(found) == 3


def test_the_differential_mode_ignores_a_send_cut_short_by_the_close():
    """Two runs of a flood: one finished writing before the server's GOAWAY came, the other was
    cut short; the servers did the same, so there is no difference. A different GOAWAY is one."""
    from types import SimpleNamespace

    from refserver.conformance.differential import compare

    def result(transcript):
        return SimpleNamespace(interface="asgi", case=SimpleNamespace(id="h2-cont-flood"),
                               outcome="pass", reason="", transcript=transcript)

    connect = {"kind": "h2_connect", "settings": {}}
    goaway = {"kind": "h2_goaway", "error": "ENHANCE_YOUR_CALM", "last_stream": 0}
    cut = {"kind": "h2_send", "delivered": False}
    assert compare([result([connect, cut, goaway])], [result([connect, goaway])]) == []
    other = dict(goaway, error="PROTOCOL_ERROR")
    differences = compare([result([connect, cut, goaway])], [result([connect, other])])
    assert [(d["field"], d["a"], d["b"]) for d in differences] == [
        ("error", "ENHANCE_YOUR_CALM", "PROTOCOL_ERROR")]
