"""WebSocket bytes for tests: client frames (masked, any bits), a frame reader, a raw handshake.

The ``websockets`` library is the well-behaved client; these helpers are for what it would never
send (unmasked frames, reserved opcodes, invalid UTF-8, frames in the same packet as the handshake)
and for reading exactly what the server put on the wire.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import zlib
from collections import deque

KEY = base64.b64encode(b"0123456789abcdef")  # a fixed 16-byte nonce, base64-encoded

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x11\x22\x33\x44",
    length: int | None = None,
) -> bytes:
    """One frame as a client sends it (masked unless ``mask`` is None)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    masked = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([b0, masked | n])
    elif n < 65536:
        head = bytes([b0, masked | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, masked | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def close_frame(code: int | None = 1000, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(CLOSE, payload)


def deflate_message(data: bytes, compressor=None) -> bytes:
    """A permessage-deflate payload (RFC 7692 7.2.1): the sync-flushed stream minus its tail."""
    compressor = compressor or zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def parse_frames(data: bytes) -> tuple:
    """(frames, rest): unmasked server frames as (fin, rsv, opcode, payload)."""
    frames = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        head = 2
        if n == 126:
            if len(data) - pos < 4:
                break
            n = struct.unpack("!H", data[pos + 2 : pos + 4])[0]
            head = 4
        elif n == 127:
            if len(data) - pos < 10:
                break
            n = struct.unpack("!Q", data[pos + 2 : pos + 10])[0]
            head = 10
        assert not b1 & 0x80, "a server frame must not be masked"
        if len(data) - pos < head + n:
            break
        payload = data[pos + head : pos + head + n]
        frames.append((bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload))
        pos += head + n
    return frames, data[pos:]


def handshake_request(
    path: str = "/", headers: list | None = None, *, key: bytes = KEY, version: bytes = b"13"
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: " + version,
    ]
    for name, value in headers or ():
        lines.append(name.encode() + b": " + value.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


class RawClient:
    """A WebSocket client over a plain socket: sends whatever it is told, reads frames exactly."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.timeout = timeout
        self.head = b""
        self.frames: deque = deque()

    def handshake(self, path: str = "/", extra: bytes = b"", headers=None) -> bytes:
        """Send the opening handshake (plus ``extra`` bytes in the same write); return the
        response head."""
        self.sock.sendall(handshake_request(path, headers) + extra)
        self.head = self.read_head()
        return self.head

    def read_head(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("closed")
        self.buffer += data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self, timeout: float | None = None) -> tuple:
        """The next server frame as (fin, rsv, opcode, payload)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.frames:
            frames, self.buffer = parse_frames(self.buffer)
            self.frames.extend(frames)
            if not self.frames:
                self._fill(deadline)
        return self.frames.popleft()

    def read_until_eof(self, timeout: float | None = None) -> bytes:
        """Everything until the server closes (frames stay in the returned bytes)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(deadline)
        except (EOFError, ConnectionResetError):
            pass
        data, self.buffer = self.buffer, b""
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def close_code(payload: bytes):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def connect(srv, path: str = "/", **options):
    """The ``websockets`` sync client on the test server (no proxy, short timeouts)."""
    from websockets.sync.client import connect as ws_connect

    options.setdefault("open_timeout", 5)
    options.setdefault("close_timeout", 5)
    options.setdefault("proxy", None)
    return ws_connect(f"ws://{srv.host}:{srv.port}{path}", **options)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Poll ``predicate`` until it is true (state that another thread changes); fails at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")
