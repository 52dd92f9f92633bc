"""Accepting connections, the same on asyncio and uvloop, including when file descriptors run out.

The loops' own servers part ways exactly when a process reaches its descriptor limit (EMFILE):
asyncio's logs a traceback through the loop's exception handler for every failed ``accept()``
and schedules one retry per failure, so a full backlog gives hundreds of log lines a second;
libuv, under uvloop, accepts the waiting connections with a descriptor it keeps in reserve and
closes them at once, so those clients are dropped, with no log at all. :class:`Acceptor` does one
thing on both: it stops accepting, logs one line saying why, and tries again every
:data:`RETRY_DELAY` seconds, so waiting clients stay in the kernel's backlog and are served once
descriptors are free. The transports are still the loop's own (``connect_accepted_socket``).
"""

from __future__ import annotations

import errno
import resource
import socket
import sys

#: How often accepting is tried again after it failed for want of a resource.
RETRY_DELAY = 0.5
#: Connections accepted per readiness event before the loop runs other callbacks.
BATCH = 64
#: The same for a worker sharing its listening socket with others (``--workers``). Every
#: worker is woken by a new connection and the first to call accept() takes it; taking 64 at
#: once let one worker take a whole burst of connections while the other had none
#: (benchmarks/workers.py: 64/0 of wrk's 64). One per wake-up gives the others their turn.
SHARED_BATCH = 1

_SKIP = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)  # one connection failed; go on


def _ssl_options(loop, context, timeout: float | None) -> dict:
    """``connect_accepted_socket``'s TLS arguments: the handshake timeout bounds the closing
    exchange too. Closing, the loops send close_notify and wait for the client's; a client that
    keeps its socket open without answering would otherwise hold the connection for the loops'
    default of 30 s after every close (a keep-alive timeout included). asyncio takes that
    timeout from 3.11, uvloop always."""
    options = {"ssl": context, "ssl_handshake_timeout": timeout}
    if sys.version_info >= (3, 11) or not type(loop).__module__.startswith("asyncio"):
        options["ssl_shutdown_timeout"] = timeout
    return options


class Acceptor:
    """Accepts on one listening socket and hands each connection to a protocol from
    ``factory``. Shaped like the ``asyncio.Server`` it replaces where the server uses one
    (:meth:`close`, :meth:`wait_closed`)."""

    def __init__(
        self,
        loop,
        sock: socket.socket,
        factory,
        logger,
        ssl=None,
        ssl_handshake_timeout: float | None = None,
        batch: int = BATCH,
    ):
        self._loop = loop
        self._batch = batch
        self._ssl = ssl
        self._ssl_options = _ssl_options(loop, ssl, ssl_handshake_timeout) if ssl else {}
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = factory
        self._logger = logger
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._retry = None
        self._paused = False  # accepting failed for want of a resource; logged once
        self._closed = False
        self._tasks: set = set()
        self.accepted = 0  # connections accepted (for the metrics)
        sock.setblocking(False)

    def start(self) -> None:
        self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        sock = self._sock
        for _ in range(self._batch):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                if self._paused:
                    # The backlog is empty: caught up. (Not at the first accept that succeeds:
                    # descriptors freed one at a time would make a line each.)
                    self._paused = False
                    self._logger.info("accepting connections again")
                return
            except OSError as exc:
                if exc.errno in _SKIP:
                    continue
                self._pause(exc)
                return
            self._connect(conn)
        if self._paused:
            # The batch ended on a connection: look again, or an emptied backlog would wake
            # nothing and the line that says accepting resumed would wait for the next client.
            self._loop.call_soon(self._on_readable)

    def _connect(self, conn: socket.socket) -> None:
        self.accepted += 1
        conn.setblocking(False)
        if self._tcp:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(self._factory, conn, **self._ssl_options)
        )
        self._tasks.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A failed or timed-out TLS handshake ends here: the client's problem, not the
            # server's, so not above debug level.
            self._logger.debug("a connection failed before it started: %s", task.exception())

    def _pause(self, exc: OSError) -> None:
        """Out of descriptors (or another resource): stop accepting for a while; waiting clients
        stay in the backlog. Logged once per episode, not once per retry."""
        self._loop.remove_reader(self._fd)
        if not self._paused:
            self._paused = True
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self._logger.warning(
                "cannot accept connections: %s (file descriptor limit %d); new connections "
                "wait until descriptors are free",
                exc.strerror or exc,
                limit,
            )
        self._retry = self._loop.call_later(RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if not self._closed:
            self._loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        else:
            self._loop.remove_reader(self._fd)
        self._sock.close()
        if self._ssl is not None:
            # Connections still in their TLS handshake have sent no request: like idle ones,
            # they are closed at once rather than left to finish it after the shutdown.
            for task in self._tasks:
                task.cancel()

    @property
    def setting_up(self) -> list:
        """The tasks of connections accepted whose protocol is not made yet."""
        return list(self._tasks)

    async def wait_closed(self) -> None:
        """Closed as soon as :meth:`close` returns (connections are the server's to close)."""
