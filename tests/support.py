"""Running a real refserver on 127.0.0.1 for integration tests, and raw-socket helpers."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time

from refserver.config import Config
from refserver.server import Server, new_event_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RunningServer:
    def __init__(self, server: Server, thread: threading.Thread, loop):
        self.server = server
        self.thread = thread
        self.loop = loop
        addr = server.sockets[0].getsockname()
        self.host, self.port = addr[0], addr[1]
        self.url = f"http://{self.host}:{self.port}"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def request(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send raw bytes, read until the server closes the connection."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            return read_until_closed(sock, timeout)

    def call(self, func, *args):
        """Run ``func(*args)`` on the server's loop and wait for its result."""
        done = threading.Event()
        box = {}

        def runner():
            try:
                box["value"] = func(*args)
            except BaseException as exc:  # noqa: BLE001
                box["error"] = exc
            done.set()

        self.loop.call_soon_threadsafe(runner)
        done.wait(5)
        if "error" in box:
            raise box["error"]
        return box.get("value")


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read exactly one response with a Content-Length or chunked body (or none, for HEAD-less
    bodiless statuses), leaving later bytes in the socket.

    Lines are read a byte at a time and bodies by their exact size, so the next pipelined
    response stays in the socket for the next call. The chunked framing is returned as sent.
    """
    sock.settimeout(timeout)
    head = _read_until(sock, b"\r\n\r\n")
    if not head.endswith(b"\r\n\r\n"):
        return head
    headers = {}
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    status = int(head.split(b" ", 2)[1])
    if status in (204, 304) or 100 <= status < 200:
        return head
    if b"content-length" in headers:
        return head + _read_exactly(sock, int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size_line = _read_until(sock, b"\r\n")
            body += size_line
            if not size_line.endswith(b"\r\n"):
                return head + body
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return head + body + _read_until(sock, b"\r\n\r\n", start=b"\r\n")
            body += _read_exactly(sock, size + 2)
    return head + read_until_closed(sock, timeout)


def _read_until(sock: socket.socket, marker: bytes, start: bytes = b"") -> bytes:
    """Bytes up to and including ``marker`` (or up to EOF), one recv(1) at a time; ``start`` is
    a prefix that already counts toward the marker (used for an empty trailer section)."""
    buf = start
    while not buf.endswith(marker):
        data = sock.recv(1)
        if not data:
            break
        buf += data
    return buf[len(start):]


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        data = sock.recv(min(left, 1 << 20))
        if not data:
            break
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


@contextlib.contextmanager
def serve(app, *, loop: str = "asyncio", **options):
    """Run ``app`` on a free port of 127.0.0.1 in a background thread for the ``with`` body."""
    options.setdefault("port", 0)
    options.setdefault("host", "127.0.0.1")
    options.setdefault("access_log", False)
    options.setdefault("log_level", "warning")
    options.setdefault("timeout_graceful_shutdown", 5)
    config = Config(app, **options)
    server = Server(config)
    server.load()
    ready = threading.Event()
    failure = {}
    event_loop = new_event_loop(loop)

    def target():
        asyncio.set_event_loop(event_loop)
        server.rsgi_hook("__rsgi_init__", event_loop)

        async def main():
            task = asyncio.ensure_future(server.serve())
            while not (server.started and server.started.is_set()) and not task.done():
                await asyncio.sleep(0.005)
            if task.done():
                await task  # a startup failure: recorded below before `ready` wakes the caller
            ready.set()
            await task

        try:
            event_loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001
            failure["error"] = exc
            ready.set()
        finally:
            server.rsgi_hook("__rsgi_del__", event_loop)
            event_loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in failure:
        raise failure["error"]
    running = RunningServer(server, thread, event_loop)
    try:
        yield running
    finally:
        if not event_loop.is_closed():
            event_loop.call_soon_threadsafe(server.request_shutdown)
        thread.join(15)
        assert not thread.is_alive(), "server thread did not stop"


def http_get(port: int, path: str = "/") -> tuple:
    """``(status, body)`` of one GET to 127.0.0.1:``port`` (a server started as a process)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port}")


def start_cli(*args: str, env: dict | None = None, cwd: str = ROOT) -> subprocess.Popen:
    """``python -m refserver ARGS`` as a child process, stdout and stderr piped."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "refserver", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
