"""The write timeout shared by HTTP/1.1 and WebSocket connections.

A transport stops the application's writes at its high-water mark (``pause_writing``), so what a
client that does not read costs is bounded: the mark plus the last write. What is not bounded
without a clock is how long that client holds its connection, its buffer and the application
waiting on it. :class:`WriteDeadline` closes the connection once the client has taken no byte for
``--timeout-write`` seconds while the transport holds bytes for it. It measures progress, not the
whole transfer: a slow reader that keeps taking bytes is never cut, however long its response.

Progress is counted in the kernel's send queue as well as in the transport's buffer: the kernel
wakes a writer only once a good part of a large send buffer has drained, so a reader taking bytes
steadily can leave the transport's own buffer unchanged for longer than the timeout.

One is made per connection only when its writes first have to wait (or it closes with bytes still
buffered), so the idle connections that make up most of a server's connections carry no timer.
"""

from __future__ import annotations

import struct

try:
    from fcntl import ioctl
    from termios import TIOCOUTQ  # SIOCOUTQ on Linux: bytes the peer has not acknowledged
except ImportError:  # pragma: no cover - not Linux
    ioctl = TIOCOUTQ = None  # type: ignore[assignment,misc]  # checked before use


def watch_writes(deadline, loop, transport, timeout: float, on_expire):
    """Start a connection's write deadline, made on first use; returns it (``None`` while
    ``timeout`` is 0). The one place both protocols arm it, so the rule -- no timer until writes
    first have to wait -- is kept once."""
    if not timeout or transport is None:
        return deadline
    if deadline is None:
        deadline = WriteDeadline(loop, transport, timeout, on_expire)
    deadline.start()
    return deadline


class WriteDeadline:
    """Calls ``on_expire`` when ``transport``'s write buffer has not shrunk for ``timeout`` s."""

    __slots__ = ("_loop", "_transport", "_timeout", "_on_expire", "_handle", "_left")

    def __init__(self, loop, transport, timeout: float, on_expire):
        self._loop = loop
        self._transport = transport
        self._timeout = timeout
        self._on_expire = on_expire
        self._handle = None
        self._left = 0

    def start(self) -> None:
        """The client must take bytes from now on (idempotent while running)."""
        if self._handle is None:
            self._left = self._unsent()
            self._handle = self._loop.call_later(self._timeout, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if not self._transport.get_write_buffer_size():
            return  # all handed to the kernel: the transport holds nothing for this client
        left = self._unsent()
        if left < self._left:  # the client took some: it gets another period
            self._left = left
            self._handle = self._loop.call_later(self._timeout, self._check)
            return
        self._on_expire()

    def _unsent(self) -> int:
        """Bytes not yet taken by the client: the transport's buffer and the kernel's queue."""
        left = self._transport.get_write_buffer_size()
        if ioctl is not None:
            sock = self._transport.get_extra_info("socket")
            try:
                left += struct.unpack("i", ioctl(sock.fileno(), TIOCOUTQ, b"\0\0\0\0"))[0]
            except (AttributeError, OSError, ValueError):
                pass
        return left
