"""The HTTP/2 and HTTPS benchmarks' pieces work (nothing here is timed): the h2 floor server,
started as its README says (``python benchmarks/h2_floor.py --port N``), answers HTTP/2 requests
over cleartext with prior knowledge, to httpx and to the runner's own readiness probe; the runner
reads h2load's report; the HTTPS runner's certificate serves TLS to its client.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading

import httpx
import pytest
from support import ROOT, free_port, wait_for_port

from benchmarks import http2, https, run

H2LOAD_REPORT = """\
starting benchmark...
spawning thread #0: 32 total client(s). 320 total requests
Application protocol: h2c

finished in 3.00s, 14042.33 req/s, 463.55KB/s
requests: 42127 total, 42447 started, 42127 done, 42120 succeeded, 5 failed, 2 errored, 0 timeout
status codes: 42120 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.36MB (1424025) total, 41.14KB (42127) headers (space savings 95.24%), 547.65KB data
                     min         max         mean         sd        +/- sd
time for request:      912us     78.12ms     22.64ms      5.13ms    81.25%
time for connect:      183us      4.01ms      1.86ms      1.02ms    59.38%
time to 1st byte:     2.44ms     13.23ms      6.96ms      2.62ms    65.63%
req/s           :     433.72      446.24      438.77        3.12    68.75%
"""


@pytest.fixture(scope="module")
def floor_port():
    pytest.importorskip("uvloop")  # the floor runs on uvloop (CPython, not Windows)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, os.path.join("benchmarks", "h2_floor.py"), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=15, proc=proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_floor_answers_http2_with_prior_knowledge(floor_port):
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        responses = [client.get(f"http://127.0.0.1:{floor_port}/{i}") for i in range(3)]
    for response in responses:  # three streams on one connection
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert response.content == b"Hello, world!"
        assert response.headers["content-type"] == "text/plain"
        assert response.headers["content-length"] == "13"


def test_runner_probe_reads_the_floor(floor_port):
    assert http2.h2_get(floor_port, "/", timeout=10) == (200, b"Hello, world!")
    http2.check_answer(floor_port)  # raises when the answer is wrong


def test_runner_probe_fails_on_a_server_without_http2():
    """An HTTP/1.1-only answer to the connection preface is an OSError, which the readiness poll
    treats as "not answering" (and the cell as failed once its deadline passes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_http1():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer_http1, daemon=True)
    thread.start()
    try:
        with pytest.raises(OSError):
            http2.h2_get(port, "/", timeout=5)
    finally:
        thread.join(5)
        listener.close()


def test_h2load_report_parsing():
    summary = http2.parse_h2load(H2LOAD_REPORT)
    assert summary["protocol"] == "h2c"
    assert summary["duration_s"] == 3.0
    assert summary["status_2xx"] == 42120
    assert summary["errors"] == {"failed": 5, "errored": 2, "timeout": 0,
                                 "status_3xx": 0, "status_4xx": 0, "status_5xx": 0}
    assert summary["latency_ms"] == pytest.approx(
        {"min": 0.912, "max": 78.12, "mean": 22.64, "sd": 5.13}
    )
    with pytest.raises(RuntimeError):  # a failed cell, not a crash of the run
        http2.parse_h2load("starting benchmark...\n")


def test_https_certificate_serves_tls(tmp_path):
    """The certificate and key https.py gives both servers load into a server context, and the
    runner's client completes a handshake against it (for 127.0.0.1, the chain leaf first)."""
    certfile, keyfile = https.make_certificate(str(tmp_path))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certfile, keyfile)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    served = []

    def serve_one():
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            served.append(tls.recv(5))

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with run.unverified_tls().wrap_socket(raw) as tls:
                tls.sendall(b"hello")
                assert tls.getpeercert(binary_form=True)  # the server presented a certificate
        thread.join(5)
    finally:
        listener.close()
    assert served == [b"hello"]
