"""Prometheus metrics (``--metrics``): what each serving process counts, how the counts of
several workers add up, and the socket that serves them.

Counting is plain integer arithmetic in the process that serves the requests: a response that
completes adds to a few list slots and integers (:meth:`Metrics.count`); a request the server
refuses while reading it (:meth:`Metrics.refused`) or whose response is cut short
(:meth:`Metrics.cut`) adds to one slot, off the path of a request served whole. What can be read
off the server's state when a scrape comes — open connections, requests in flight — is read
then, not maintained per request. With ``--metrics`` off, :attr:`ServerState.metrics` is None:
a request pays an identity test in its dispatch batch and one in its protocol
(``benchmarks/inprocess.py`` measures it, and with ``--metrics`` the cost of counting).

Under ``--workers`` the supervisor serves the socket: on each scrape it asks every worker for
its report over the line it already has to it (:mod:`refserver.worker`), waits
:data:`REPORT_TIMEOUT` at most (a worker that does not answer in time counts with its last
report), and sums them (:class:`Aggregate`). A worker sends a last report as it stops, and the
counters of a worker that has gone are kept, so that a total never goes back across a restart.

prometheus_client is not used: its multiprocess mode takes a lock and writes an mmap'd file
on every increment, needs a directory wiped between runs, and drops custom collectors, when
what is counted here is a dozen integers and the text format is a few lines to write.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left

from .binding import bind_listening

#: The upper bounds of the request duration buckets, in seconds.
DURATION_BOUNDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: How long the supervisor waits for a worker's report during a scrape.
REPORT_TIMEOUT = 0.5
#: A scrape's request head must arrive within this many seconds and bytes.
READ_TIMEOUT = 5.0
HEAD_LIMIT = 8192

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

# A request's HTTP version (Request.http_version) -> its row in Metrics.requests, and the name
# the protocol label gives it.
_ROWS = {"1.1": 0, "1.0": 1, "2": 2}
_PROTOCOLS = ("http/1.1", "http/1.0", "h2")


class Metrics:
    """The counters of one serving process. Only integers and floats: a response costs a few
    additions, and nothing here locks (everything runs on the event loop's thread)."""

    __slots__ = (
        "requests",
        "cut_short",
        "durations",
        "duration_sum",
        "body_received",
        "body_sent",
        "websockets",
        "websockets_closed",
    )

    def __init__(self):
        # Responses by protocol row and status class: slot row * 10 + status // 100.
        self.requests = [0] * (len(_PROTOCOLS) * 10)
        self.cut_short = [0] * len(_PROTOCOLS)  # by protocol row
        self.durations = [0] * (len(DURATION_BOUNDS) + 1)  # per bucket; the last is +Inf
        self.duration_sum = 0.0
        self.body_received = 0
        self.body_sent = 0
        self.websockets = 0  # sessions accepted
        self.websockets_closed = 0  # of those, the ones whose connection is gone

    def count(self, stream, received: int) -> None:
        """A response is complete: ``stream`` (with ``started``, ``status``, ``body_sent``)
        and the request body bytes ``received`` so far."""
        elapsed = time.monotonic() - stream.started
        self.requests[_ROWS[stream.request.http_version] * 10 + stream.status // 100] += 1
        self.durations[bisect_left(DURATION_BOUNDS, elapsed)] += 1
        self.duration_sum += elapsed
        self.body_received += received
        self.body_sent += stream.body_sent

    def refused(self, http_version: str, status: int) -> None:
        """The server answered a request itself while reading it (400, 408, 413, 431...),
        before the application or in its place: counted by status class like any response, but
        not timed, since no application ran for it to completion."""
        self.requests[_ROWS[http_version] * 10 + status // 100] += 1

    def cut(self, stream) -> None:
        """``stream``'s exchange ends: counted when its response is incomplete (the client
        left, the application failed after starting it, a write timed out), once per exchange
        (not again once the stream is marked disconnected), and never also in :attr:`requests`.
        Both protocols call it as a stream ends, before they mark it disconnected."""
        if stream.disconnected or stream.response_complete:
            return
        self.cut_short[_ROWS[stream.request.http_version]] += 1

    def report(self, interface: str, accepted: int, open_connections: int, in_flight: int) -> dict:
        """Everything this process has to say, as JSON-able data: ``counters`` only grow and
        add up across processes (and past a process's end); ``gauges`` are this moment's."""
        requests = {}
        for slot, value in enumerate(self.requests):
            if value:
                labels = 'interface="%s",protocol="%s",status_class="%dxx"' % (
                    interface,
                    _PROTOCOLS[slot // 10],
                    slot % 10,
                )
                requests[labels] = value
        cut_short = {
            'interface="%s",protocol="%s"' % (interface, _PROTOCOLS[row]): value
            for row, value in enumerate(self.cut_short)
            if value
        }
        return {
            "counters": {
                "requests": requests,
                "cut_short": cut_short,
                "durations": list(self.durations),
                "duration_sum": self.duration_sum,
                "body_received": self.body_received,
                "body_sent": self.body_sent,
                "connections": accepted,
                "websockets": self.websockets,
            },
            "gauges": {
                "connections": open_connections,
                "in_flight": in_flight,
                "websockets": self.websockets - self.websockets_closed,
            },
        }


def add(into: dict, values: dict) -> dict:
    """Add ``values`` into ``into`` key by key (numbers, lists slot by slot, dicts by key)."""
    for key, value in values.items():
        if isinstance(value, dict):
            add(into.setdefault(key, {}), value)
        elif isinstance(value, list):
            mine = into.setdefault(key, [])
            mine.extend([0] * (len(value) - len(mine)))
            for i, item in enumerate(value):
                mine[i] += item
        else:
            into[key] = into.get(key, 0) + value
    return into


class Aggregate:
    """The supervisor's sum of its workers' reports.

    Each worker's latest report is kept until the worker's line closes; its counters then move
    to :attr:`base`. A worker's counts are thus always in one of the two, and a total never goes
    back, whether a worker is slow to answer, stopping, or gone.
    """

    def __init__(self):
        self.base: dict = {}  # the counters of the workers that have gone
        self.reports: dict = {}  # worker -> its latest report

    def update(self, worker, report: dict) -> None:
        self.reports[worker] = report

    def retire(self, worker) -> None:
        report = self.reports.pop(worker, None)
        if report is not None:
            add(self.base, report["counters"])

    def total(self) -> dict:
        counters = add({}, self.base)
        gauges: dict = {}
        for report in self.reports.values():
            add(counters, report["counters"])
            add(gauges, report["gauges"])
        return {"counters": counters, "gauges": gauges}


def exposition(report: dict, workers: int | None = None) -> bytes:
    """``report`` (one process's, or a sum) in the Prometheus text format 0.0.4."""
    counters = report.get("counters", {})
    gauges = report.get("gauges", {})
    lines: list = []

    def family(name: str, kind: str, help_text: str, samples) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            lines.append(
                f"{name}{suffix}{{{labels}}} {_number(value)}"
                if labels
                else f"{name}{suffix} {_number(value)}"
            )

    family(
        "refserver_requests_total",
        "counter",
        "HTTP requests answered whole, by the application or refused by the server, by "
        "interface, protocol and status class.",
        [("", labels, value) for labels, value in sorted(counters.get("requests", {}).items())],
    )
    family(
        "refserver_requests_cut_short_total",
        "counter",
        "HTTP requests whose response did not complete (the client left, the application "
        "failed after starting it), by interface and protocol.",
        [("", labels, value) for labels, value in sorted(counters.get("cut_short", {}).items())],
    )
    durations = counters.get("durations") or [0] * (len(DURATION_BOUNDS) + 1)
    cumulative, buckets = 0, []
    for bound, value in zip((*map(_number, DURATION_BOUNDS), "+Inf"), durations, strict=False):
        cumulative += value
        buckets.append(("_bucket", f'le="{bound}"', cumulative))
    family(
        "refserver_request_duration_seconds",
        "histogram",
        "Seconds from a request's start in the application to its complete response.",
        [*buckets, ("_sum", "", counters.get("duration_sum", 0.0)), ("_count", "", cumulative)],
    )
    for name, key, help_text in (
        (
            "refserver_request_body_bytes_total",
            "body_received",
            "Request body bytes received, counted as each response completes.",
        ),
        (
            "refserver_response_body_bytes_total",
            "body_sent",
            "Response body bytes the applications sent.",
        ),
        ("refserver_connections_total", "connections", "Connections accepted."),
        ("refserver_websocket_sessions_total", "websockets", "WebSocket sessions accepted."),
    ):
        family(name, "counter", help_text, [("", "", counters.get(key, 0))])
    for name, key, help_text in (
        ("refserver_open_connections", "connections", "Connections open now."),
        (
            "refserver_requests_in_flight",
            "in_flight",
            "Requests started in the application and not finished.",
        ),
        ("refserver_open_websocket_sessions", "websockets", "WebSocket sessions open now."),
    ):
        family(name, "gauge", help_text, [("", "", gauges.get(key, 0))])
    if workers is not None:
        family("refserver_workers", "gauge", "Worker processes serving.", [("", "", workers)])
    return ("\n".join(lines) + "\n").encode()


def _number(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


class MetricsServer:
    """``GET /metrics`` (and ``HEAD``) on a socket of its own, in plain HTTP/1.x: 404 for any
    other path, 405 for another method, 400 for what is not a request line. One response per
    connection. ``collect`` is an async callable returning the text to serve."""

    def __init__(self, sock, collect):
        self.sock = sock
        self._collect = collect
        self._server = None
        self._writers: set = set()

    @classmethod
    def bind(cls, config, collect) -> MetricsServer:
        """Raises :class:`refserver.config.ConfigError` (one line) when the port is taken."""
        return cls(bind_listening(config.metrics_address, config.metrics_port, 64), collect)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self.sock, limit=HEAD_LIMIT)

    def close(self) -> None:
        """Stop listening, and drop the connections still open (a scrape, or a client that
        never sent its request). Closing twice does nothing."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.sock.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader, writer) -> None:
        self._writers.add(writer)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
                return
            status, headers, body = await self._answer(head)
            writer.write(
                b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
                + b"".join(b"%s: %s\r\n" % field for field in headers)
                + b"Connection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, head: bytes):
        """``(status, headers, body)`` for a request head (the body already left out for
        HEAD)."""
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _plain(400, b"Bad Request")
        method, target = parts[0], parts[1]
        if target.split(b"?", 1)[0] != b"/metrics":
            return _plain(404, b"Not Found", method)
        if method not in (b"GET", b"HEAD"):
            status, headers, body = _plain(405, b"Method Not Allowed")
            return status, [*headers, (b"Allow", b"GET, HEAD")], body
        text = await self._collect()
        headers = [(b"Content-Type", CONTENT_TYPE), (b"Content-Length", b"%d" % len(text))]
        return 200, headers, b"" if method == b"HEAD" else text


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _plain(status: int, text: bytes, method: bytes = b"GET"):
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(text)),
    ]
    return status, headers, b"" if method == b"HEAD" else text
