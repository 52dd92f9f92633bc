"""What the benchmark and reliability scripts share: a server process on 127.0.0.1, what it costs
(/proc), and the raw-socket client side of driving it.

Loopback only, by construction: every address here is :data:`HOST`.
"""

from __future__ import annotations

import resource
import selectors
import signal
import socket
import subprocess
import time

HOST = "127.0.0.1"  # never anything else


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE toward ``wanted`` (up to the hard limit); returns the
    limit now in force. Children started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request_all(socks, request: bytes, body_end: bytes, deadline: float) -> int:
    """Send ``request`` on every (non-blocking) socket and read each response until it ends with
    ``body_end``; returns how many were answered 200 by ``deadline``."""
    selector = selectors.DefaultSelector()
    pending = {}
    for sock in socks:
        sock.sendall(request)
        pending[sock] = b""
        selector.register(sock, selectors.EVENT_READ)
    answered = 0
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            pending[sock] += data
            if data and not pending[sock].endswith(body_end):
                continue
            if data and pending[sock].startswith(b"HTTP/1.1 200 "):
                answered += 1
            selector.unregister(sock)
            del pending[sock]
    selector.close()
    return answered


def trickle(port: int, count: int, head: bytes, interval: float, until: float,
            on_connected=None) -> tuple:
    """``count`` connections each sending one more byte of ``head`` every ``interval`` seconds,
    until the server closes it or ``until`` (a monotonic time). ``on_connected()`` is called once
    all are open. Returns ({connection index: (seconds from its connect to its close, bytes
    received)}, [bytes of ``head`` each one sent])."""
    selector = selectors.DefaultSelector()
    conns = []
    for i in range(count):
        sock = socket.create_connection((HOST, port))
        sock.setblocking(False)
        conns.append([sock, time.monotonic(), 0, b""])
        selector.register(sock, selectors.EVENT_READ, i)
    if on_connected is not None:
        on_connected()
    closed: dict = {}
    next_send = time.monotonic()
    while len(closed) < count and time.monotonic() < until:
        now = time.monotonic()
        if now >= next_send:
            for i, conn in enumerate(conns):
                if i not in closed and conn[2] < len(head):
                    try:
                        conn[0].send(head[conn[2] : conn[2] + 1])
                        conn[2] += 1
                    except OSError:
                        pass
            next_send = now + interval
        for key, _ in selector.select(timeout=max(0.0, min(0.05, next_send - now))):
            i = key.data
            try:
                data = conns[i][0].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                conns[i][3] += data
                continue
            closed[i] = (time.monotonic() - conns[i][1], conns[i][3])
            selector.unregister(conns[i][0])
            conns[i][0].close()
    for i, conn in enumerate(conns):
        if i not in closed:
            selector.unregister(conn[0])
            conn[0].close()
    selector.close()
    return closed, [conn[2] for conn in conns]
