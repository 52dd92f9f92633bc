"""The command line, the environment and exit codes, through a real ``python -m refserver``."""

import importlib.util
import signal
import socket
import time

import pytest
from conftest import PURE_ONLY
from support import free_port, http_get, start_cli, wait_for_port

from refserver.cli import build_parser
from refserver.config import OPTIONS, Config, ConfigError


def finish(proc, timeout=10):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def connect_uds(path, proc, timeout=10):
    """A socket connected to the server at ``path`` once it listens (it may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)


def test_every_option_is_on_the_command_line_and_in_config():
    parser = build_parser()
    flags = {a.dest for a in parser._actions}
    for option in OPTIONS:
        assert option.name in flags
        assert hasattr(Config(), option.name)


def test_environment_variables_fill_options(monkeypatch):
    monkeypatch.setenv("REFSERVER_PORT", "9123")
    monkeypatch.setenv("REFSERVER_ACCESS_LOG", "false")
    config = Config("x:y")
    assert config.port == 9123 and config.access_log is False
    # An explicit argument wins over the environment.
    assert Config("x:y", port=9000).port == 9000


@pytest.mark.parametrize(
    "options, message",
    [
        ({"port": "eighty"}, "--port expects int"),
        ({"port": 70000}, "--port must be between"),
        ({"interface": "cgi"}, "--interface must be one of"),
        ({"nonsense": 1}, "unknown option"),
        ({"timeout_keep_alive": -1}, "must not be negative"),
        ({"limit_concurrency": 0}, "--limit-concurrency must be at least 1"),
        ({"backpressure": 0}, "--backpressure must be at least 1"),
        ({"blocking_threads": 0}, "--blocking-threads must be at least 1"),
    ],
)
def test_invalid_configuration_is_a_clear_error(options, message):
    with pytest.raises(ConfigError, match=message):
        Config("x:y", **options)


def test_serves_and_logs_startup_line():
    port = free_port()
    proc = start_cli("--app-dir", "tests", "cli_apps:slow", "--port", str(port))
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        assert http_get(port) == (200, b"done")
    finally:
        proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 0
    # --impl auto / --loop auto: the fast path on uvloop wherever it is built (CI builds it).
    fast = importlib.util.find_spec("refserver._speedups") is not None or not PURE_ONLY
    path = "impl fast, loop uvloop" if fast else "impl pure, loop asyncio"
    protocols = "http/1.1 h2c websocket"
    assert (
        f"running on http://127.0.0.1:{port} (interface asgi, {path}, {protocols}; "
        f"pid {proc.pid})" in err
    )
    assert "lifespan startup" in out and "lifespan shutdown" in out


def test_port_from_environment():
    port = free_port()
    proc = start_cli("--app-dir", "tests", "cli_apps:factory", "--factory",
                     env={"REFSERVER_PORT": str(port)})
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        assert http_get(port) == (200, b"done")
    finally:
        proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["cli_apps:missing"], "attribute 'missing' not found in module 'cli_apps'"),
        (["no_such_module:app"], "could not import module 'no_such_module'"),
        (["cli_apps:not_an_app"], "must be callable"),
        (["cli_apps"], 'APP must be given as "module:attribute"'),
        (["cli_apps:slow", "--port", "x"], "--port expects int"),
        (["cli_apps:slow", "--static-path-expires", "1x"], "--static-path-expires expects seconds"),
        (["cli_apps:slow", "--interface", "cgi"], "invalid choice"),
        (["cli_apps:slow", "--impl", "turbo"], "invalid choice"),
    ],
)
def test_startup_errors_exit_1_with_one_line(args, message):
    proc = start_cli("--app-dir", "tests", "--port", str(free_port()), *args)
    code, out, err = finish(proc)
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_import_error_inside_app_module_is_one_line_unless_debug():
    port = str(free_port())
    crash = {"CLI_APPS_CRASH_ON_IMPORT": "1"}
    code, _, err = finish(start_cli("--app-dir", "tests", "cli_apps:slow", "--port", port,
                                    env=crash))
    assert code == 1 and "boom at import" in err and "Traceback" not in err
    code, _, err = finish(start_cli("--app-dir", "tests", "cli_apps:slow", "--port", port,
                                    "--log-level", "debug", env=crash))
    assert code == 1 and "Traceback" in err


def test_lifespan_startup_failure_exits_3():
    proc = start_cli("--app-dir", "tests", "cli_apps:failing_startup", "--port", str(free_port()))
    code, _, err = finish(proc)
    assert code == 3
    assert "database unreachable" in err
    assert "Traceback" not in err


def test_uds(tmp_path):
    path = str(tmp_path / "refserver.sock")
    proc = start_cli("--app-dir", "tests", "cli_apps:slow", "--uds", path)
    try:
        sock = connect_uds(path, proc)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"done")
    finally:
        proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 0 and f"unix:{path}" in err


def test_a_taken_port_is_one_line_and_the_started_app_is_shut_down():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, out, err = finish(start_cli("--app-dir", "tests", "cli_apps:slow", "--port", port))
    assert code == 1
    assert f"cannot bind 127.0.0.1:{port}" in err
    assert len(err.strip().splitlines()) == 1, err
    assert out.split() == ["lifespan", "startup", "lifespan", "shutdown"]


def test_uds_errors_are_one_line_and_never_remove_a_file(tmp_path):
    regular = tmp_path / "not-a-socket"
    regular.write_text("keep me")
    for path, message in [
        (tmp_path / "missing-dir" / "app.sock", "No such file or directory"),
        (regular, "it exists and is not a socket"),
    ]:
        code, _, err = finish(start_cli("--app-dir", "tests", "cli_apps:slow", "--uds", str(path)))
        assert code == 1 and f"cannot bind unix:{path}: {message}" in err
        assert len(err.strip().splitlines()) == 1, err
    assert regular.read_text() == "keep me"


def test_uds_replaces_a_stale_socket(tmp_path):
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(path)  # closed without unlinking, as after a crash
    proc = start_cli("--app-dir", "tests", "cli_apps:slow", "--uds", path)
    try:
        connect_uds(path, proc).close()
    finally:
        proc.send_signal(signal.SIGINT)
    assert finish(proc)[0] == 0
