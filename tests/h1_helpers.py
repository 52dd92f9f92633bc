"""Helpers shared by the HTTP/1.1 and ASGI integration tests: response parsing, small ASGI
building blocks, and a fixture that collects the server's log records."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from support import read_until_closed


def parse(raw: bytes) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, de-chunked body) of one response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: dict = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower().decode(), []).append(value.strip().decode())
    headers = {k: v[0] if len(v) == 1 else v for k, v in headers.items()}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    return int(lines[0].split(b" ")[1]), headers, body


def read_response_bytes(raw: bytes) -> bytes:
    """The first response (with a Content-Length) of ``raw``."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    length = int(parse(head + b"\r\n\r\n")[1]["content-length"])
    return head + b"\r\n\r\n" + rest[:length]


def read_head(sock: socket.socket) -> bytes:
    """Exactly one response head (for HEAD responses, whose Content-Length has no body)."""
    sock.settimeout(5)
    buf = b""
    while not buf.endswith(b"\r\n\r\n"):
        data = sock.recv(1)
        assert data, buf
        buf += data
    return buf


def get(path: str = "/", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    host = b"Host: t\r\n" if version == b"1.1" else b""
    return b"GET %s HTTP/%s\r\n%s%s\r\n" % (path.encode(), version, host, extra)


def assert_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """The server closes the connection within ``timeout``; returns what it sent before."""
    start = time.monotonic()
    rest = read_until_closed(sock, timeout)
    assert time.monotonic() - start < timeout, "the connection was not closed"
    return rest


def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


async def wait_thread_event(event: threading.Event, timeout: float = 10.0) -> bool:
    """Wait, inside the server's loop, for a flag the test thread sets."""
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def read_body(receive) -> tuple[bytes, int]:
    body, messages = b"", 0
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        body += message.get("body", b"")
        messages += 1
        if not message.get("more_body", False):
            return body, messages


async def respond(send, status=200, body=b"", headers=()):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def echo(scope, receive, send):
    """Answers with method, path and the whole request body."""
    body, messages = await read_body(receive)
    await respond(
        send,
        body=b"%s %s %d:%s" % (scope["method"].encode(), scope["path"].encode(), messages, body),
        headers=[(b"x-client-port", str(scope["client"][1]).encode())],
    )


def assert_no_traceback(records) -> None:
    for record in records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()
