"""--reload: the supervisor restarts its worker when a watched file changes, and waits through a
broken save. The watcher itself is tested in tests/test_reload_watch.py."""

import http.client
import sys
import time

import pytest
from test_workers import Supervised

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc of Linux")

APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": {body!r}}})
'''


def write_app(path, body: bytes, broken: bool = False):
    text = APP.format(body=body)
    if broken:
        text += "\ndef oops(:\n"  # a syntax error
    path.write_text(text)


def answer(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    finally:
        conn.close()


def wait_for_answer(port, expected: bytes, timeout: float = 20.0):
    """Poll until the server answers ``expected``; connections made during a restart wait in
    the supervisor's listen queue, so every attempt gets an answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = answer(port)
        if last == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"still answering {last!r}, not {expected!r}")


@pytest.fixture
def reloading(impl, tmp_path):
    servers = []

    def start(*args):
        server = Supervised(impl, "--reload", "--reload-dir", str(tmp_path), "--app-dir",
                            str(tmp_path), *args, app="reloaded:app")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill_all()


def test_an_edited_module_is_served_after_the_restart(reloading, tmp_path):
    module = tmp_path / "reloaded.py"
    write_app(module, b"first")
    server = reloading()
    server.ready_pids()
    server.wait_for(r"watching for changes in .* \((watchfiles|polling)\)")
    assert answer(server.port) == b"first"
    write_app(module, b"second")
    wait_for_answer(server.port, b"second")
    server.wait_for(r"changed: .*reloaded\.py; restarting")
    (tmp_path / "notes.txt").write_text("not a watched file")
    write_app(module, b"third")
    wait_for_answer(server.port, b"third")
    assert "notes.txt" not in server.output()
    assert server.stop() == 0


def test_a_syntax_error_is_reported_and_the_next_save_is_served(reloading, tmp_path):
    module = tmp_path / "reloaded.py"
    write_app(module, b"good")
    server = reloading()
    server.ready_pids()
    write_app(module, b"bad", broken=True)
    server.wait_for(r"SyntaxError")
    server.wait_for(r"failed its startup \(exit code 1\); waiting for a change to restart")
    assert server.proc.poll() is None  # still running, waiting
    write_app(module, b"fixed")
    wait_for_answer(server.port, b"fixed")
    assert server.stop() == 0


def test_an_app_broken_at_start_waits_for_a_fix(reloading, tmp_path):
    module = tmp_path / "reloaded.py"
    write_app(module, b"bad", broken=True)
    server = reloading()
    server.wait_for(r"waiting for a change to restart")
    write_app(module, b"fixed")
    wait_for_answer(server.port, b"fixed")
    assert server.stop() == 0
