"""One worker process of the supervisor (``--workers``): the server of :mod:`refserver.server`,
serving sockets it was handed, with a line to the supervisor.

A worker is a fresh interpreter (``sys.executable -c ...``), not a fork: it imports the
application itself, so a rolling restart (SIGHUP) serves the code on disk, and the supervisor
never holds the application, its threads or its connections. It gets its configuration and
the descriptors of the listening sockets through a socket pair, so nothing of them (a TLS key
password) shows in the process list.

The line carries two messages upward, ``ready`` (every socket is served and the application
has started) and ``retire`` (``--limit-max-requests`` is reached: start my successor, then
stop me); its end-of-file tells the worker that the supervisor is gone. With ``--metrics``, the
supervisor sends ``metrics`` down when it is scraped, and the worker answers ``metrics`` and its
report as one line of JSON (:mod:`refserver.metrics`); it sends one last report as it stops.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import logs
from .binding import bind_reuse_port
from .config import Config, ConfigError

_LENGTH = struct.Struct("!I")

READY = b"ready\n"
RETIRE = b"retire\n"
METRICS = b"metrics\n"  # down: a request; up, followed by a space and the JSON report


@dataclass
class Handoff:
    """What a worker is given: its configuration and where to serve."""

    config: Config
    fds: list  # descriptors of the supervisor's listening sockets (inherited by the process)
    addresses: list | None = None  # with --reuse-port: the (host, port) pairs to bind instead


def command(control_fd: int) -> list:
    """The command line of a worker whose end of the line is ``control_fd``.

    SIGINT is ignored first thing: a Ctrl+C reaches every process of the terminal's group, and
    only the supervisor answers it. The package's own directory goes on ``sys.path`` so that a
    refserver run from a source tree starts workers of the same refserver.
    """
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        f"sys.path.insert(0, {package_root!r}); "
        "from refserver.worker import main; main()"
    )
    return [sys.executable, "-c", code, str(control_fd)]


def send_handoff(sock: socket.socket, handoff: Handoff) -> None:
    data = pickle.dumps(handoff)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive_handoff(sock: socket.socket) -> Handoff:
    header = _receive_exactly(sock, _LENGTH.size)
    return pickle.loads(_receive_exactly(sock, _LENGTH.unpack(header)[0]))


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the supervisor closed the line before the handoff")
        data += chunk
    return data


def _nothing() -> None:
    pass


class SupervisorLink:
    """The worker's end of the line (see the module docstring)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        # Set by ready(), which comes before every other use.
        self._loop: Any = None
        self._on_lost: Callable[[], None] = _nothing
        self._report: Callable[[], dict] | None = None
        self._received = b""
        self._unsent = b""

    def ready(self, loop, on_lost, report=None) -> None:
        """Tell the supervisor this worker serves; call ``on_lost()`` if the supervisor goes.
        ``report()``: this worker's metrics, when the supervisor asks for them."""
        self._loop = loop
        self._on_lost = on_lost
        self._report = report
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._readable)
        self._send(READY)

    def retire(self) -> None:
        self._send(RETIRE)

    def last_report(self) -> None:
        """The counters as this worker stops, sent before it exits: the supervisor adds them
        to its totals for good. Waits a second at most for room on the line."""
        if self._report is None or self._loop is None:
            return
        message = self._unsent + self._report_line()
        self._unsent = b""
        self._report = None
        self._loop.remove_writer(self.sock.fileno())
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(message)
        except OSError:
            pass

    def _report_line(self) -> bytes:
        report = self._report
        assert report is not None  # asked for only when ready() was given one
        return METRICS[:-1] + b" " + json.dumps(report()).encode() + b"\n"

    def _send(self, message: bytes) -> None:
        if self._unsent:
            self._unsent += message  # behind what is waiting, in order
            return
        try:
            sent = self.sock.send(message)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the supervisor is gone: end-of-file on the line reports it
        if sent < len(message):
            # A full line (a supervisor that does not read): the rest goes when there is room.
            self._unsent = message[sent:]
            self._loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._unsent)
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._unsent)
        self._unsent = self._unsent[sent:]
        if not self._unsent:
            self._loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(self.sock.fileno())
            self._on_lost()
            return
        lines = (self._received + data).split(b"\n")
        self._received = lines.pop()
        for line in lines:
            if line + b"\n" == METRICS and self._report is not None:
                self._send(self._report_line())


def main() -> None:
    """The entry point of :func:`command`."""
    from .server import EXIT_CONFIG, serve_in_process

    control = socket.socket(fileno=int(sys.argv[1]))
    handoff = _receive_handoff(control)
    config = handoff.config
    logs.configure(config.log_level)
    try:
        if config.log_config is not None:
            logs.apply_config_file(config.log_config)
        if handoff.addresses is not None:
            sockets = bind_reuse_port(handoff.addresses, config.backlog)
        else:
            sockets = [socket.socket(fileno=fd) for fd in handoff.fds]
    except ConfigError as exc:
        logs.error_logger.error("%s", exc)
        sys.exit(EXIT_CONFIG)
    # The supervisor's signal handlers do not carry over an exec; SIGHUP, SIGTTIN and SIGTTOU
    # are the supervisor's, and a worker that receives one by accident (a process group kill)
    # keeps serving.
    for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(serve_in_process(config, sockets, SupervisorLink(control)))
