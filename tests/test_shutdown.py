"""SIGINT/SIGTERM: stop accepting, finish in-flight requests, close idle connections, exit 0.

These run a real ``python -m refserver`` so that signals, the event loop's shutdown and
``asyncio.Server.wait_closed()`` (which waits for connections on Python 3.12+) are all exercised.
"""

import asyncio
import os
import http.client
import signal
import socket
import threading
import time

import httpx
import pytest
from support import free_port, read_until_closed, start_cli, wait_for_port

from refserver import Config, Server


def launch(*args):
    port = free_port()
    proc = start_cli("--app-dir", "tests", "--port", str(port), *args)
    wait_for_port("127.0.0.1", port, proc=proc)
    return proc, port


def finish(proc, timeout=15):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def slow_get_in_thread(port, delay):
    result = {}

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", f"/?{delay}")
            response = conn.getresponse()
            result["status"] = response.status
            result["body"] = response.read()
            result["connection"] = response.getheader("connection")
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def wait_in_flight(proc):
    """Block until the app reports that a slow request is inside it; returns the lines read."""
    lines = []
    while True:
        line = proc.stdout.readline().decode()
        assert line, "the server exited before the request reached the app"
        lines.append(line)
        if line.startswith("request in flight"):
            return "".join(lines)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_in_flight_request_completes(signum):
    proc, port = launch("cli_apps:slow")
    thread, result = slow_get_in_thread(port, 1.0)
    before = wait_in_flight(proc)
    started = time.monotonic()
    proc.send_signal(signum)
    thread.join(10)
    code, out, err = finish(proc)
    out = before + out
    assert result.get("status") == 200 and result["body"] == b"done", result
    assert result["connection"] == "close"
    assert code == 0, err
    assert out.index("lifespan startup") < out.index("lifespan shutdown")
    assert time.monotonic() - started < 5


def test_stops_accepting_while_draining():
    proc, port = launch("cli_apps:slow")
    thread, result = slow_get_in_thread(port, 1.5)
    wait_in_flight(proc)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            time.sleep(0.02)
        except OSError:
            refused = True
    thread.join(10)
    assert refused
    assert result.get("status") == 200
    assert finish(proc)[0] == 0


def test_idle_keep_alive_connections_close_at_once():
    proc, port = launch("cli_apps:slow", "--timeout-keep-alive", "60")
    client = httpx.Client()
    assert client.get(f"http://127.0.0.1:{port}/").text == "done"  # connection stays open
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    client.close()
    assert code == 0, err
    assert time.monotonic() - started < 3


def _server_holds(pid, client: socket.socket) -> bool:
    """Whether process ``pid`` has accepted ``client``'s connection: the server side of it (the
    TCP socket whose remote port is the client's port, in /proc/net/tcp) is one of its fds."""
    port = client.getsockname()[1]
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    inodes = {row[9] for row in rows if int(row[2].split(":")[1], 16) == port}
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return any(f"socket:[{inode}]" in held for inode in inodes)


def test_a_connection_accepted_before_the_signal_gets_its_request_answered(impl):
    proc, port = launch("cli_apps:slow", "--impl", impl)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    deadline = time.monotonic() + 5
    while not _server_holds(proc.pid, sock):
        assert time.monotonic() < deadline, "the connection was not accepted"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    while b"shutting down" not in proc.stderr.readline():
        pass
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    response = read_until_closed(sock)
    sock.close()
    assert response.startswith(b"HTTP/1.1 200 "), response
    assert b"connection: close" in response.lower()
    assert response.endswith(b"done")
    code, _, err = finish(proc)
    assert code == 0, err


def test_graceful_timeout_bounds_the_wait():
    proc, port = launch("cli_apps:slow", "--timeout-graceful-shutdown", "0.5")
    thread, result = slow_get_in_thread(port, 30)
    wait_in_flight(proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    thread.join(10)
    assert code == 0, err
    assert time.monotonic() - started < 4
    assert "error" in result  # the request was cut off
    assert "still running after the graceful timeout" in err


def test_second_signal_forces_exit():
    proc, port = launch("cli_apps:slow", "--timeout-graceful-shutdown", "30")
    thread, result = slow_get_in_thread(port, 30)
    wait_in_flight(proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    while "shutting down" not in proc.stderr.readline().decode():
        pass
    proc.send_signal(signal.SIGINT)
    code, _, _ = finish(proc)
    thread.join(10)
    assert code == 0
    assert time.monotonic() - started < 4


def test_rsgi_hooks_run_around_serving_with_the_loop_stopped():
    proc, port = launch("cli_apps:rsgi_hooks")
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "ok"
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 0, err
    assert out.split() == "init running=False request del running=False".split()


def test_embedded_server_in_a_running_loop():
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"embedded"})

    async def main():
        server = Server(Config(app, port=0, lifespan="off", log_level="warning"))
        task = asyncio.create_task(server.serve())
        await server.started.wait()
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
        server.request_shutdown()
        await asyncio.wait_for(task, 5)
        return response.text

    assert asyncio.run(main()) == "embedded"
