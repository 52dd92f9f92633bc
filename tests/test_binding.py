"""Binding: several addresses, IPv6, a UNIX socket's mode, inherited sockets (``--fd``, systemd
socket activation), the listen backlog and the PID file — through a real ``python -m refserver``
where the command line matters."""

import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
from support import ROOT, free_port, read_until_closed, wait_for_port

from refserver.binding import bind_sockets, systemd_fds
from refserver.config import Config, ConfigError

APP = ("--app-dir", "tests", "cli_apps:slow")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")


def spawn(argv, env=None, pass_fds=()):
    """A child process, stdout and stderr piped, refserver importable from the checkout."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.Popen(argv, cwd=ROOT, env=full_env, pass_fds=pass_fds,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def refserver(*args, env=None, pass_fds=()):
    return spawn([sys.executable, "-m", "refserver", *APP, *args], env=env, pass_fds=pass_fds)


def stop(proc, timeout=10):
    """SIGTERM, then the exit code and stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def get(family, address, proc=None, timeout=10):
    """The response to a GET on ``address``, connecting once it listens."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect(address)
            break
        except OSError:
            sock.close()
            assert time.monotonic() < deadline, f"nothing listening on {address}"
            assert proc is None or proc.poll() is None, "the server exited"
            time.sleep(0.02)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_until_closed(sock)


def listening_socket(family=socket.AF_INET, host="127.0.0.1"):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


# ----------------------------------------------------------------- configuration


def test_host_is_repeatable_a_comma_list_or_a_sequence(monkeypatch):
    assert Config().host == ("127.0.0.1",)
    assert Config(host="::1").host == ("::1",)
    assert Config(host=["127.0.0.1", "::1"]).host == ("127.0.0.1", "::1")
    monkeypatch.setenv("REFSERVER_HOST", "0.0.0.0, ::")
    assert Config().host == ("0.0.0.0", "::")
    with pytest.raises(ConfigError, match="--host needs at least one value"):
        Config(host=" , ")


@pytest.mark.parametrize("given, mode", [("660", 0o660), ("0o600", 0o600), (0o640, 0o640)])
def test_uds_permissions_are_octal(given, mode):
    assert Config(uds_permissions=given).uds_permissions == mode


@pytest.mark.parametrize(
    "options, message",
    [
        ({"uds_permissions": "999"}, "--uds-permissions expects int"),
        ({"uds_permissions": "1777"}, "--uds-permissions must be at most"),
        ({"backlog": 0}, "--backlog must be at least 1"),
        ({"fd": 3, "uds": "/tmp/x.sock"}, "--fd and --uds cannot both be given"),
    ],
)
def test_invalid_binding_options_are_clear_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        Config("x:y", **options)


# ----------------------------------------------------------------- the bind function


def test_the_backlog_reaches_listen(monkeypatch):
    backlogs = []
    real_listen = socket.socket.listen
    monkeypatch.setattr(
        socket.socket, "listen", lambda self, n: (backlogs.append(n), real_listen(self, n))[1]
    )
    sockets = bind_sockets(Config(port=0, backlog=17))
    for sock in sockets:
        sock.close()
    assert backlogs == [17]
    assert Config().backlog == 2048


@needs_ipv6
def test_ipv6_sockets_are_v6_only_so_both_families_share_a_port():
    (v6,) = bind_sockets(Config(host="::1", port=0))
    with v6:
        assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        port = v6.getsockname()[1]
        (v4,) = bind_sockets(Config(host="127.0.0.1", port=port))
        v4.close()


def test_systemd_sockets_are_taken_only_by_the_process_they_name(monkeypatch):
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert systemd_fds() == []
    assert os.environ["LISTEN_FDS"] == "2"  # meant for another process: left alone
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    assert systemd_fds() == [3, 4]
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ


# ----------------------------------------------------------------- a real server


@needs_ipv6
def test_two_binds_are_served_at_once_and_both_are_logged(impl):
    port = free_port()
    proc = refserver("--impl", impl, "--host", "127.0.0.1", "--host", "::1", "--port", str(port))
    try:
        assert get(socket.AF_INET, ("127.0.0.1", port), proc).endswith(b"done")
        assert get(socket.AF_INET6, ("::1", port), proc).endswith(b"done")
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert f"running on http://127.0.0.1:{port}, http://[::1]:{port} (interface asgi" in err
    assert 'INFO:  [::1]:' in err  # the access log brackets an IPv6 client


@needs_ipv6
def test_a_taken_port_on_the_second_bind_is_one_line_and_exit_1(impl):
    with listening_socket(socket.AF_INET6, "::1") as taken:
        port = taken.getsockname()[1]
        proc = refserver("--impl", impl, "--host", "127.0.0.1,::1", "--port", str(port))
        _, err = proc.communicate(timeout=20)  # it exits by itself
    err = err.decode()
    assert proc.returncode == 1, err
    assert err.strip().splitlines() == [f"ERROR:  cannot bind [::1]:{port}: Address already in use"]


def test_uds_permissions_are_set_on_the_socket_file(impl, tmp_path):
    path = str(tmp_path / "app.sock")
    proc = refserver("--impl", impl, "--uds", path, "--uds-permissions", "660")
    try:
        assert get(socket.AF_UNIX, path, proc).endswith(b"done")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert not os.path.exists(path)


def test_uds_permissions_default_to_0o666(tmp_path):
    path = str(tmp_path / "default.sock")
    (sock,) = bind_sockets(Config(uds=path))
    with sock:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666


def test_fd_serves_a_socket_opened_by_the_parent(impl):
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        fd = sock.fileno()
        proc = refserver("--impl", impl, "--fd", str(fd), pass_fds=(fd,))
        try:
            assert get(socket.AF_INET, ("127.0.0.1", port), proc).endswith(b"done")
        finally:
            code, err = stop(proc)
    assert code == 0, err
    assert f"running on http://127.0.0.1:{port} (interface asgi" in err


def test_an_fd_that_is_not_a_socket_is_one_line_and_exit_1(impl, tmp_path):
    with open(tmp_path / "file", "w") as file:
        fd = file.fileno()
        proc = refserver("--impl", impl, "--fd", str(fd), pass_fds=(fd,))
        _, err = proc.communicate(timeout=20)
    err = err.decode()
    assert proc.returncode == 1, err
    assert err.strip().splitlines() == [
        f"ERROR:  --fd {fd}: not a usable socket: Socket operation on non-socket"
    ]


def test_systemd_socket_activation_serves_every_passed_socket(impl):
    with listening_socket() as first, listening_socket() as second:
        ports = [first.getsockname()[1], second.getsockname()[1]]
        # Above 4, so that moving them onto 3 and 4 cannot close one of them.
        a, b = (fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for s in (first, second))
        # As systemd does: the sockets on descriptors 3 and 4, and LISTEN_PID the server's own
        # PID — the wrapper's, kept by exec.
        wrapper = (
            "import os, sys\n"
            f"os.dup2({a}, 3); os.dup2({b}, 4); os.close({a}); os.close({b})\n"
            "os.environ['LISTEN_PID'] = str(os.getpid())\n"
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
        )
        argv = [sys.executable, "-c", wrapper, "-m", "refserver", *APP, "--impl", impl]
        try:
            proc = spawn(argv, env={"LISTEN_FDS": "2"}, pass_fds=(a, b))
        finally:
            os.close(a)
            os.close(b)
        try:
            for port in ports:
                assert get(socket.AF_INET, ("127.0.0.1", port), proc).endswith(b"done")
        finally:
            code, err = stop(proc)
    assert code == 0, err
    shown = ", ".join(f"http://127.0.0.1:{port}" for port in ports)
    assert f"running on {shown} (interface asgi" in err
    assert ":8000" not in err  # no --host/--port socket besides them


def test_pid_file_is_written_once_listening_and_removed_at_shutdown(impl, tmp_path):
    path = tmp_path / "refserver.pid"
    port = free_port()
    proc = refserver("--impl", impl, "--port", str(port), "--pid-file", str(path))
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "no PID file"
            time.sleep(0.02)
        wait_for_port("127.0.0.1", port, proc=proc)  # written once listening
        assert path.read_text() == f"{proc.pid}\n"
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert not path.exists()
