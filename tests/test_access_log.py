"""--access-log-format and --access-log-file (spec/server.md, SERVER-LOG-2 and SERVER-LOG-3).

Formats are checked where they are parsed (one-line errors), then on real sockets on both paths
over HTTP/1.1 and HTTP/2 (every atom, the counted body size, the duration, hostile values), and
the file through a real ``python -m refserver``, rotated under it.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import socket

import pytest

pytest.register_assert_rewrite("h2_helpers")
from h2_helpers import httpx_client
from support import free_port, http_get, serve, start_cli, wait_for_port
from ws_helpers import wait_for

from refserver.config import Config, ConfigError

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ("h2_helpers",)

EVERY_ATOM = (
    "{client} {client_host} {method} {path} {query} {target} {protocol} {scheme} {host} "
    "{status} {size} {duration} {duration_ms} {pid} {time} "
    "ua={request_header:user-agent} ct={response_header:Content-Type} "
    "none={request_header:x-absent} {{braces}} 100%"
)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.2)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"Content-Type", b"text/plain"), (b"x-echo", b"a\x9bb")]})
    await send({"type": "http.response.body", "body": b"hel", "more_body": True})
    await send({"type": "http.response.body", "body": b"lo"})


def access_lines(records):
    return [r.getMessage() for r in records if r.name == "refserver.access"]


@pytest.mark.parametrize(
    "text, error",
    [
        ("{nope}", "unknown atom {nope}"),
        ("{status:x}", "unknown atom {status:x}"),
        ("{request_header}", "needs a field name"),
        ("{status!r}", "'!r' is not supported"),
        ("{status", "--access-log-format"),
        ("status}", "--access-log-format"),
    ],
)
def test_an_invalid_format_is_one_config_error(text, error):
    with pytest.raises(ConfigError) as info:
        Config(None, access_log_format=text)
    assert error in str(info.value) and "\n" not in str(info.value)


def test_the_default_format_is_the_classic_line(impl, server_logs):
    with serve(app, impl=impl, interface="asgi", access_log=True) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/a/b?x=1")
        conn.getresponse().read()
        local = conn.sock.getsockname()[1]
        conn.close()
        wait_for(lambda: access_lines(server_logs))
    assert access_lines(server_logs) == [f'127.0.0.1:{local} - "GET /a/b?x=1 HTTP/1.1" 200']


def test_every_atom_over_http1(impl, server_logs):
    with serve(app, impl=impl, interface="asgi", access_log=True,
               access_log_format=EVERY_ATOM) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/slow?q=2", headers={"User-Agent": "tester/1"})
        assert conn.getresponse().read() == b"hello"
        local = conn.sock.getsockname()[1]
        conn.request("HEAD", "/")
        conn.getresponse().read()
        conn.close()
        wait_for(lambda: len(access_lines(server_logs)) == 2)
    line, head = access_lines(server_logs)
    fields = line.split(" ")
    assert fields[:10] == [
        f"127.0.0.1:{local}", "127.0.0.1", "GET", "/slow", "q=2", "/slow?q=2", "HTTP/1.1",
        "http", f"127.0.0.1:{srv.port}", "200",
    ]
    assert fields[10] == "5"  # the body's bytes, not the chunked framing
    duration, duration_ms = float(fields[11]), float(fields[12])
    assert 0.2 <= duration < 5 and abs(duration_ms - duration * 1000) < 1
    assert fields[13] == str(os.getpid())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", fields[14])
    assert fields[15:] == ["ua=tester/1", "ct=text/plain", "none=-", "{braces}", "100%"]
    assert head.split(" ")[9:11] == ["200", "0"]  # a HEAD response has no body


def test_every_atom_over_http2(h2_serve, server_logs):
    with h2_serve(app, interface="asgi", access_log=True, access_log_format=EVERY_ATOM) as srv, \
            httpx_client(srv) as client:
        response = client.get(srv.url + "/p?z", headers={"user-agent": "h2-tester"})
        assert response.http_version == "HTTP/2" and response.content == b"hello"
        wait_for(lambda: access_lines(server_logs))
    fields = access_lines(server_logs)[0].split(" ")
    assert fields[2:11] == ["GET", "/p", "z", "/p?z", "HTTP/2", "http", f"127.0.0.1:{srv.port}",
                            "200", "5"]
    assert fields[15:17] == ["ua=h2-tester", "ct=text/plain"]


def test_request_data_cannot_inject_escapes_quotes_or_lines(impl, server_logs):
    """A path and a header chosen by the client: quotes and backslashes (which the request
    target may hold), C1 controls (bytes 0x80-0x9f pass in field values as obs-text) come out
    escaped, so the line stays one line with the fields the format made."""
    fmt = '"{path}" "{request_header:user-agent}" "{response_header:x-echo}" {status}'
    with serve(app, impl=impl, interface="asgi", access_log=True, access_log_format=fmt) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b'GET /p"q\\x1b HTTP/1.1\r\nHost: a\r\n'
                         b'User-Agent: x" 200\x85INFO: fake \\x22\x9b31m\r\n'
                         b"Connection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        wait_for(lambda: access_lines(server_logs))
    (line,) = access_lines(server_logs)
    assert line == (
        '"/p\\x22q\\x5cx1b" "x\\x22 200\\x85INFO: fake \\x5cx22\\x9b31m" '
        '"a\\x9bb" 200'
    )
    assert line.isprintable() and line.count('"') == 6


def test_the_access_log_file_is_appended_and_reopened_after_rotation(impl, tmp_path):
    log_file = tmp_path / "access.log"
    log_file.write_text("an earlier line\n")
    (tmp_path / "file_app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 204, 'headers': []})\n"
        "    await send({'type': 'http.response.body'})\n"
    )
    port = free_port()
    proc = start_cli("--app-dir", str(tmp_path), "file_app:app", "--impl", impl, "--port",
                     str(port), "--access-log-file", str(log_file), "--access-log-format",
                     "{method} {path} {status}")
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        assert http_get(port, "/one")[0] == 204
        wait_for(lambda: "GET /one 204" in log_file.read_text())
        os.rename(log_file, tmp_path / "access.log.1")  # what logrotate does
        assert http_get(port, "/two")[0] == 204
        wait_for(lambda: log_file.exists() and "GET /two 204" in log_file.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert (tmp_path / "access.log.1").read_text() == "an earlier line\nGET /one 204\n"
    assert log_file.read_text() == "GET /two 204\n"
    assert b"GET /" not in err  # the lines went to the file, not to stderr


def test_an_access_log_file_that_cannot_be_opened_is_one_line_and_exit_1(tmp_path):
    proc = start_cli("examples.hello_asgi:app", "--port", str(free_port()),
                     "--access-log-file", str(tmp_path / "missing" / "access.log"))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "--access-log-file" in lines[0], lines


def test_an_embedded_server_closes_its_access_file_at_shutdown(impl, tmp_path, server_logs):
    import logging

    path = tmp_path / "access.log"
    with serve(app, impl=impl, interface="asgi", access_log=True, access_log_file=str(path),
               access_log_format="{method} {path}") as srv:
        assert http_get(srv.port, "/in-file")[0] == 200
        wait_for(lambda: "GET /in-file" in path.read_text())
    access = logging.getLogger("refserver.access")
    assert access.propagate and not [h for h in access.handlers
                                     if getattr(h, "_refserver_access", False)]
    assert access_lines(server_logs) == []  # the line went to the file only
    assert path.read_text() == "GET /in-file\n"


def test_the_size_of_a_file_body_sent_by_the_kernel(impl, server_logs, tmp_path):
    path = tmp_path / "body.bin"
    path.write_bytes(b"x" * 300_000)

    async def file_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(path)})

    with serve(file_app, impl=impl, interface="asgi", access_log=True,
               access_log_format="{status} {size}") as srv:
        status, body = http_get(srv.port)
        assert (status, len(body)) == (200, 300_000)
        wait_for(lambda: access_lines(server_logs))
    assert access_lines(server_logs) == ["200 300000"]
