"""File bodies: the kernel's ``sendfile(2)`` on a plain socket, bounded reads everywhere else.

Every stream sends a file region through ``Stream.send_file(fd, offset, count, end)``
(gateways/stream.py). HTTP/1.1 on a plain socket hands the region to the kernel, which copies it
from the page cache to the socket without it ever entering the process; TLS (the bytes must be
encrypted here) and HTTP/2 (the bytes must be framed and flow-controlled per stream) read it in
blocks of :data:`FILE_BLOCK`, each written with back-pressure, so a file larger than memory costs
one block of it.

Reads are positional (``os.pread``, ``sendfile`` with an offset): the stream never depends on the
file object's own position, which a buffered file object keeps apart from its descriptor's.

Neither asyncio's ``loop.sendfile`` nor uvloop (which has no ``sendfile``) fits a connection whose
transport stays in use around the file: asyncio's needs the transport taken off the loop's
registry, and its fallback writes through the transport whatever failed first. So
:class:`KernelSend` runs its own loop: ``os.sendfile`` on a duplicate of the socket's descriptor,
woken by the loop's writer callback on that duplicate (libuv allows one watcher per descriptor,
and the transport holds the original).
"""

from __future__ import annotations

import errno
import os

from .wire.events import ResponseError

#: Block size of the read-and-write fallback (the size Granian reads files in).
FILE_BLOCK = 131072

#: At most this much per ``sendfile`` call: a fast client on loopback could otherwise keep one
#: call going through a whole large file while every other connection waits for the loop.
SENDFILE_STEP = 1 << 22

#: The errors of a ``sendfile`` call that mean the client has gone.
CONNECTION_GONE = frozenset(
    (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ESHUTDOWN)
)

#: The system call, looked up at each use so that a test can observe it.
_sendfile = getattr(os, "sendfile", None)


class FileShrunk(ResponseError):
    """The file ended before the region the response promised: the exchange was reset (a
    keep-alive client would otherwise take the short body, or the next response, as this one)."""

    def __init__(self, missing: int):
        super().__init__("the file ended %d bytes before the end of its region" % missing, "length")
        self.missing = missing


class SendTimeout(OSError):
    """The client took no byte of a file for the write timeout."""


def kernel_sends(transport) -> bool:
    """Whether ``transport`` is a plain socket that ``sendfile(2)`` can write to."""
    if _sendfile is None or transport.get_extra_info("sslcontext") is not None:
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and hasattr(sock, "fileno")


async def copy_blocks(fd: int, offset: int, count: int, send) -> int:
    """Read ``count`` bytes of ``fd`` from ``offset`` in blocks and ``await send(block)`` each;
    returns how many were sent, fewer than ``count`` when the file ended first."""
    sent = 0
    while sent < count:
        left = count - sent
        data = os.pread(fd, FILE_BLOCK if left > FILE_BLOCK else left, offset + sent)
        if not data:
            break
        sent += len(data)
        await send(data)
    return sent


def check_whole(stream, sent: int, count: int) -> None:
    """After a file region was sent: one that came short resets the exchange (FileShrunk)."""
    if sent < count:
        stream.abort()
        raise FileShrunk(count - sent)


def region(fd: int, offset, count):
    """``(offset, count)`` of a region of the file ``fd``: ``offset`` None is the descriptor's
    position, ``count`` None runs to the end of the file (as it is now). ValueError for a
    negative value."""
    if offset is None:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    if count is None:
        count = max(0, os.fstat(fd).st_size - offset)
    if type(offset) is not int or type(count) is not int or offset < 0 or count < 0:
        raise ValueError(f"invalid file region: offset {offset!r}, count {count!r}")
    return offset, count


class KernelSend:
    """One ``sendfile`` transfer of ``count`` bytes of ``in_fd`` from ``offset`` to the socket
    ``out_fd`` (a duplicate, owned and closed here), driven by the loop's writer callback.

    ``await wait()`` returns the bytes sent, fewer than ``count`` when the file ended early.
    It raises :class:`SendTimeout` when no byte was taken for ``timeout`` seconds (0: never),
    the ``OSError`` of a failed call (the client reset the connection), or the exception given
    to :meth:`stop`.
    """

    __slots__ = (
        "_loop",
        "_out",
        "_in",
        "_offset",
        "_count",
        "_sent",
        "_future",
        "_timer",
        "_timeout",
        "_checked",
        "_watching",
    )

    def __init__(self, loop, out_fd: int, in_fd: int, offset: int, count: int, timeout: float):
        self._loop = loop
        self._out = out_fd
        self._in = in_fd
        self._offset = offset
        self._count = count
        self._sent = 0
        self._future = loop.create_future()
        self._timeout = timeout
        self._timer = None
        self._checked = 0
        self._watching = False

    async def wait(self) -> int:
        self._step()
        if not self._future.done():
            self._loop.add_writer(self._out, self._step)
            self._watching = True
            if self._timeout:
                self._timer = self._loop.call_later(self._timeout, self._check)
        try:
            return await self._future
        finally:
            self._release()

    def stop(self, exc: BaseException) -> None:
        """End the transfer now with ``exc`` (the connection went away)."""
        if not self._future.done():
            self._future.set_exception(exc)

    def _step(self) -> None:
        if self._future.done():
            return
        left = self._count - self._sent
        try:
            n = _sendfile(  # type: ignore[misc]  # KernelSend is made only where it is not None
                self._out,
                self._in,
                self._offset + self._sent,
                SENDFILE_STEP if left > SENDFILE_STEP else left,
            )
        except (BlockingIOError, InterruptedError):
            return  # the socket is full: the writer callback comes back when it has room
        except OSError as exc:
            self._future.set_exception(exc)
            return
        if n == 0:  # the end of the file, before the end of the region
            self._future.set_result(self._sent)
            return
        self._sent += n
        if self._sent >= self._count:
            self._future.set_result(self._sent)

    def _check(self) -> None:
        self._timer = None
        if self._future.done():
            return
        if self._sent == self._checked:
            self._future.set_exception(
                SendTimeout("the client took no byte of the file for %gs" % self._timeout)
            )
            return
        self._checked = self._sent
        self._timer = self._loop.call_later(self._timeout, self._check)

    def _release(self) -> None:
        """Stop watching, then close the duplicate: a descriptor closed while still watched
        would leave the poller reporting events for a number that may be reused."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watching:
            self._watching = False
            self._loop.remove_writer(self._out)
        if self._out >= 0:
            os.close(self._out)
            self._out = -1
