"""The server: sockets, the event loop, application start-up and shut-down, connections.

:class:`Server` is embeddable (``await Server(config).serve()`` inside a running loop);
:func:`run` and the command line own the loop and the signals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import time
from asyncio import Task
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import logs
from .accept import BATCH, SHARED_BATCH, Acceptor
from .binding import (
    bind_sockets,
    describe_address,
    remove_pid_file,
    remove_socket_file,
    write_pid_file,
)
from .config import Config, ConfigError, load_env_file
from .impl import ImplementationUnavailable, select
from .loader import detect_interface, load_app
from .metrics import Metrics, MetricsServer, exposition
from .protocols.connection import protocol_factory
from .proxy import Forwarding
from .server_errors import StartupFailed
from .static import StaticFiles
from .tls import ServerContext, make_context
from .wire.h1 import Limits
from .wire.response import TEXT_PLAIN

if TYPE_CHECKING:
    from .gateways.lifespan import Lifespan
    from .watchdog import LoopWatchdog

logger = logs.error_logger

# asyncio can run a task's first step at once (Task(eager_start=True)) from 3.12.
EAGER_START = sys.version_info >= (3, 12)

#: Seconds cancelled requests have, after the graceful timeout, to run their cleanup.
CANCEL_GRACE = 1.0

#: Seconds a connection accepted before a shutdown has to deliver its first request. Its
#: client is sending it already (a request follows the handshake at once), so this is
#: about a round trip; an idle connection (a browser's pre-connect) holds the stop this long.
ARRIVING_REQUEST_GRACE = 1.0

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_STARTUP_FAILED = 3


class ServerState:
    """What every connection and gateway of one server shares."""

    def __init__(self, config: Config, loop, impl, multiprocess: bool = False):
        self.config = config
        self.loop = loop
        self.impl = impl
        self.multiprocess = multiprocess  # a supervised worker (wsgi.multiprocess)
        self.limits = Limits(
            config.limit_request_line,
            config.limit_request_head,
            config.limit_request_fields,
            config.limit_request_body,
        )
        self.connections: set = set()
        # The request (or WebSocket) tasks in flight: {task: (stream or session, start time by
        # time.monotonic())}, so that what is cut at shutdown or blocks the loop can be named,
        # with its age.
        self.tasks: dict = {}
        self._pending: list = []
        self.lifespan_state: dict = {}
        self.handler: Any = None  # async callable(stream), set once the app is loaded
        self.ws_handler = None  # async callable(websocket session); None: WebSockets are off
        self.logger = logger
        # --access-log-file: opened here, in the process that serves (a worker, too), and
        # closed by the server's shutdown.
        self.access_file = None
        if config.access_log and config.access_log_file is not None:
            self.access_file = logs.send_access_to_file(config.access_log_file)
        self.access_log = config.access_log and logs.access_logger.isEnabledFor(logging.INFO)
        self.access_format: logs.AccessFormat | None = None
        if self.access_log:
            self.access_format = logs.AccessFormat(config.access_log_format)
        # The start time of each request is recorded only for a format that shows a duration.
        self.access_timed = self.access_format is not None and self.access_format.timed
        # --proxy-headers: None when off, so that a connection pays one identity test.
        self.forwarding = Forwarding(config.forwarded_allow_ips) if config.proxy_headers else None
        self._semaphore = asyncio.Semaphore(config.backpressure) if config.backpressure else None
        # --metrics: None when off, so that a response pays one identity test.
        self.metrics = Metrics() if config.metrics else None
        # --limit-max-requests: requests (and WebSockets) left before ``on_limit`` is called.
        self.requests_left: int | None = None
        self.on_limit: Callable[[], None] = _nothing
        # Served before the application (refserver.static); None without --static-path-route.
        self.static = StaticFiles.from_config(config, self.logger)

    def count_request(self) -> None:
        left = cast(int, self.requests_left) - 1  # called only while it is an int
        self.requests_left = left
        if left == 0:
            self.on_limit()

    def dispatch(self, stream) -> None:
        """Start the gateway for one request; answers 503 past ``--limit-concurrency``."""
        if self.requests_left is not None:
            self.count_request()
        limit = self.config.limit_concurrency
        if limit is not None and len(self.tasks) + len(self._pending) >= limit:
            if self.metrics is not None:
                stream.started = time.monotonic()
            stream.start_response(
                503,
                [TEXT_PLAIN],
                b"Service Unavailable",
                end=True,
                close=True,
            )
            return
        # Started in one batch after the loop's read callbacks, not from inside each of them:
        # responses then leave together, and the client is woken once per batch rather than once
        # per response (starting each request in its own read callback measured 30 % slower on
        # GET / with uvloop: sock_def_readable went from 6 % to 15 % of server CPU).
        pending = self._pending
        pending.append(stream)
        if len(pending) == 1:
            self.loop.call_soon(self.start_pending)

    def start_pending(self) -> None:
        """Start the request tasks dispatched since the last batch.

        Each task takes its first step at once (3.12+): an application that answers without
        waiting is done before the next one starts, without a second trip through the loop's
        queue for its step and its done-callback, and without entering the in-flight set.
        That is 10 % of refserver's CPU per GET / in process (benchmarks/inprocess.py). A task
        factory set on the loop is honoured instead.
        """
        pending = self._pending
        if not pending:
            return
        self._pending = []
        loop = self.loop
        tasks = self.tasks
        held = self._semaphore is not None
        eager = EAGER_START and loop.get_task_factory() is None
        now = time.monotonic()  # not loop.time(): uvloop's stands still while the loop is blocked
        timed = self.access_timed or self.metrics is not None
        static = self.static
        for stream in pending:
            if timed:
                stream.started = now
            if static is not None and stream.request.raw_path.startswith(static.prefixes):
                coro = static.serve(stream, self._held if held else self.handler)
            else:
                coro = self._held(stream) if held else self.handler(stream)
            if eager:
                task = Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]  # 3.12+
            else:
                task = loop.create_task(coro)
            if not task.done():
                tasks[task] = (stream, now)
                task.add_done_callback(tasks.pop)

    def dispatch_ws(self, session):
        """Start the gateway for one WebSocket; denied with 503 past ``--limit-concurrency``.

        The task lasts until the closing handshake is over (bounded by the session), so a
        graceful shutdown waits for the close frames, not only for the application.
        """
        if self.requests_left is not None:
            self.count_request()
        limit = self.config.limit_concurrency
        if limit is not None and len(self.tasks) >= limit:
            session.deny(503, [TEXT_PLAIN], b"Service Unavailable")
            return None
        task = self.loop.create_task(self._run_ws(session))
        self.tasks[task] = (session, time.monotonic())
        task.add_done_callback(self.tasks.pop)
        return task

    def in_flight(self) -> int:
        """Requests started and not finished (WebSocket sessions, which have a handshake, apart):
        read when metrics are scraped, never counted per request."""
        tasks = sum(1 for entry, _ in self.tasks.values() if not hasattr(entry, "handshake"))
        return len(self._pending) + tasks

    async def _run_ws(self, session):
        await self.ws_handler(session)
        await session.wait_finished()

    async def _held(self, stream):
        async with self._semaphore:
            await self.handler(stream)

    def log_access(self, stream) -> None:
        access_format = self.access_format  # set exactly when the access log is on
        if access_format is not None:
            # The line is the message, without arguments: it is escaped already, and a % in a
            # value must not be read as a format.
            logs.access_logger.info(access_format.render(stream))

    def describe_task(self, task) -> str:
        """The request ``task`` serves, for a log line; called from the loop watchdog's thread."""
        if task is None:
            return "a callback outside any task (not an application request)"
        entry = self.tasks.get(task)
        if entry is not None:
            request, started = entry
            return describe_request(request, time.monotonic() - started)
        coro = task.get_coro()
        # A task blocking in its first, eager step is not in ``tasks`` yet (it is added once
        # that step returns): its request is then the argument of its coroutine, the gateway's
        # ``__call__(stream)``. Read from the frame here, on this rare path, rather than recorded
        # for every request.
        frame = getattr(coro, "cr_frame", None)
        if frame is not None and getattr(coro, "__qualname__", "") in _REQUEST_COROUTINES:
            request = frame.f_locals.get("stream")
            if request is not None:
                return describe_request(request, None)
        name = getattr(coro, "__qualname__", None) or type(coro).__name__
        return f"task {task.get_name()} running {logs.printable(name)} (not a request)"


#: The coroutines a request task starts with, whose argument ``stream`` is the request.
_REQUEST_COROUTINES = frozenset(
    ("ASGIGateway.__call__", "RSGIGateway.__call__", "WSGIGateway.__call__", "ServerState._held")
)


def _client(client) -> str:
    return logs.client_text(client)


def _target(request) -> str:
    """The request target as received, made safe to log (CVE-2020-7694)."""
    return logs.printable(logs.target_text(request))


def describe_request(stream, age: float | None) -> str:
    """``GET /path?q from 127.0.0.1:51234, started 1.25 s ago``: a request (a stream or a
    WebSocket session) in a log line."""
    method = logs.printable(stream.request.method)
    text = "%s %s from %s" % (method, _target(stream.request), _client(stream.client))
    return text if age is None else "%s, started %.2f s ago" % (text, age)


def make_ws_gateway(interface: str, app, state: ServerState):
    """The per-WebSocket handler for ``interface``, or None where the interface has none (WSGI).

    The gateway is built at the first WebSocket: its modules bring wsproto, h11 and hashlib's
    OpenSSL, about 3 MiB of RSS that an application serving only HTTP should not carry.
    """
    if interface not in ("asgi", "rsgi"):
        return None

    def first_websocket(session):
        state.ws_handler = gateway = _ws_gateway(interface, app, state)
        return gateway(session)

    return first_websocket


def _ws_gateway(interface: str, app, state: ServerState):
    if interface == "asgi":
        from .gateways.asgi_ws import ASGIWebSocketGateway

        return ASGIWebSocketGateway(app, state)
    from .gateways.rsgi_ws import RSGIWebSocketGateway

    return RSGIWebSocketGateway(app, state)


def make_gateway(interface: str, app, state: ServerState):
    """The per-request handler for ``interface``: ``await gateway(stream)``."""
    if interface == "asgi":
        from .gateways.asgi import ASGIGateway

        return ASGIGateway(app, state)
    if interface == "rsgi":
        from .gateways.rsgi import RSGIGateway

        return RSGIGateway(app, state)
    from .gateways.wsgi import WSGIGateway

    return WSGIGateway(app, state)


class Server:
    """One listening server on one event loop.

    ``link``: the connection to the supervisor when this server is one of its workers
    (:class:`refserver.worker.SupervisorLink`): told when the server is ready and when
    ``--limit-max-requests`` is reached; its loss stops the server.
    """

    def __init__(self, config: Config, link=None):
        self.config = config
        self.link = link
        self.app: Any = None
        self.interface = ""  # asgi, rsgi or wsgi, once loaded
        self.state: ServerState | None = None
        self.started = asyncio.Event() if _has_loop() else None
        self.should_exit = False
        self.force_exit = False
        self.sockets: list = []
        self._servers: list = []
        self._accepted = 0  # connections accepted by the listening sockets already closed
        # --metrics, when this process serves them (no supervisor)
        self.metrics_server: MetricsServer | None = None
        self._exit_event: asyncio.Event | None = None
        self._lifespan: Lifespan | None = None
        self._watchdog: LoopWatchdog | None = None
        self.ssl_context: ServerContext | None = None
        self._pid_file_written = False
        self._bound_uds: str | None = (
            None  # the UNIX socket path this server created, removed at shutdown
        )

    # ---------------------------------------------------------------- loading

    def load(self) -> None:
        """Import the app and detect its interface (raises ConfigError subclasses)."""
        if self.app is not None:
            return
        config = self.config
        app = load_app(config.app, factory=config.factory, app_dir=config.app_dir)
        interface = config.interface
        if interface == "auto":
            interface = detect_interface(app)
        self.app = app
        self.interface = interface

    def rsgi_hook(self, name: str, loop) -> None:
        hook = getattr(self.app, name, None) if self.interface == "rsgi" else None
        if hook is not None:
            hook(loop)

    # ---------------------------------------------------------------- serving

    async def serve(self, sockets: list | None = None) -> None:
        """Serve until :meth:`request_shutdown`; raises StartupFailed if the app fails to start."""
        await self.startup(sockets)
        assert self._exit_event is not None  # made by startup()
        try:
            await self._exit_event.wait()
        finally:
            await self.shutdown()

    async def startup(self, sockets: list | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self.started is None:
            self.started = asyncio.Event()
        self._exit_event = asyncio.Event()
        if self.should_exit:
            self._exit_event.set()
        self.load()
        # Before the application starts and before binding: a certificate that cannot be used
        # is a configuration error of one line.
        self.ssl_context = make_context(self.config)
        impl, note = select(self.config.impl)
        if note:
            logger.info(note)
        state = ServerState(self.config, loop, impl, multiprocess=self.link is not None)
        self.state = state
        if self.config.limit_max_requests is not None:
            jitter = self.config.limit_max_requests_jitter
            state.requests_left = self.config.limit_max_requests + random.randint(0, jitter)
            state.on_limit = self._limit_reached
        state.handler = make_gateway(self.interface, self.app, state)
        if self.config.ws:
            state.ws_handler = make_ws_gateway(self.interface, self.app, state)
        if self.interface == "asgi" and self.config.lifespan != "off":
            from .gateways.lifespan import Lifespan

            self._lifespan = Lifespan(self.app, state, self.config.lifespan)
            await self._lifespan.startup()  # raises StartupFailed

        try:
            await self._listen(state, impl, sockets)
            self._write_pid_file()
        except BaseException:
            # The application has started (and opened whatever it opens): it is told to stop
            # before the error is reported, not abandoned mid-lifespan.
            for server in self._servers:
                server.close()
            self._servers.clear()
            if self.metrics_server is not None:
                self.metrics_server.close()
                self.metrics_server = None
            if self._lifespan is not None:
                await self._lifespan.shutdown()
            raise
        logger.info(
            "refserver running on %s (interface %s, impl %s, loop %s, %s; pid %d)",
            ", ".join(describe_address(s, tls=self.ssl_context is not None) for s in self.sockets),
            self.interface,
            impl.name,
            _loop_name(loop),
            self.protocols(),
            os.getpid(),
        )
        if self.metrics_server is not None:
            address = describe_address(self.metrics_server.sock)
            logger.info("metrics on %s/metrics", address)
        if self.config.warn_blocked_loop:
            from .watchdog import LoopWatchdog

            self._watchdog = LoopWatchdog(
                loop, self.config.warn_blocked_loop, state.describe_task, logger
            )
            self._watchdog.start()
        if self.link is not None:
            report = self.metrics_report if state.metrics is not None else None
            self.link.ready(loop, on_lost=self._supervisor_lost, report=report)
        self.started.set()

    def protocols(self) -> str:
        """What a client can speak to this server, for the startup line."""
        tls = self.ssl_context is not None
        names = {"1": ["http/1.1"], "2": ["h2" if tls else "h2c"]}.get(
            self.config.http, ["http/1.1", "h2" if tls else "h2c"]
        )
        if self.config.ws and self.interface in ("asgi", "rsgi"):
            names.append("websocket")
        return " ".join(names)

    def _limit_reached(self) -> None:
        limit = self.config.limit_max_requests
        if self.link is not None:
            logger.info("served %d requests (--limit-max-requests); to be replaced", limit)
            self.link.retire()
        else:
            logger.info("served %d requests (--limit-max-requests); stopping", limit)
            self.request_shutdown()

    def _supervisor_lost(self) -> None:
        if not self.should_exit:
            logger.warning("the supervisor has gone; stopping")
            self.request_shutdown()

    async def _listen(self, state, impl, sockets) -> None:
        """Bind (unless given sockets) and start accepting connections."""
        loop = state.loop

        factory = protocol_factory(state, impl, tls=self.ssl_context is not None)

        if state.metrics is not None and self.link is None:
            # A supervised worker reports to its supervisor, which serves the socket.
            self.metrics_server = MetricsServer.bind(self.config, self._metrics_text)
        if sockets is None:
            sockets = bind_sockets(self.config)
            if self.config.uds and self.config.fd is None:
                self._bound_uds = self.config.uds
        self.sockets = sockets
        for sock in sockets:
            # Not the loop's create_server: out of file descriptors, asyncio's logs every retry
            # and uvloop's drops the waiting clients; the Acceptor pauses, on both (accept.py).
            sock.listen(self.config.backlog)
            acceptor = Acceptor(
                loop,
                sock,
                factory,
                logger,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.config.ssl_handshake_timeout,
                batch=SHARED_BATCH
                if self.link is not None and not self.config.reuse_port
                else BATCH,
            )
            acceptor.start()
            self._servers.append(acceptor)
        if self.metrics_server is not None:
            await self.metrics_server.start()

    def metrics_report(self) -> dict:
        """This process's metrics (:meth:`refserver.metrics.Metrics.report`)."""
        state = self.state
        assert state is not None and state.metrics is not None  # served once started, --metrics
        accepted = self._accepted + sum(server.accepted for server in self._servers)
        return state.metrics.report(
            self.interface, accepted, len(state.connections), state.in_flight()
        )

    async def _metrics_text(self) -> bytes:
        return exposition(self.metrics_report())

    def _write_pid_file(self) -> None:
        if self.config.pid_file is not None:
            write_pid_file(self.config.pid_file)
            self._pid_file_written = True

    def _remove_pid_file(self) -> None:
        path = self.config.pid_file
        if self._pid_file_written and path is not None:
            self._pid_file_written = False
            remove_pid_file(path)

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown; a second call while shutting down closes everything now."""
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        if self._exit_event is not None:
            self._exit_event.set()

    async def shutdown(self) -> None:
        """The graceful shutdown of spec/server.md: stop accepting, answer every request already
        read, close idle connections at once, and cut (logging each) what still runs at
        ``--timeout-graceful-shutdown``."""
        state = self.state
        logger.info("shutting down")
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown
        for server in self._servers:
            server.close()  # the listening sockets: a new connection is refused from here on
        # A connection accepted just before the close may not have been made yet: the loop
        # sets it up in a task (connect_accepted_socket), which may take more than one pass
        # through the loop; its protocol must exist before the connections are told to stop.
        setting_up = [task for server in self._servers for task in server.setting_up]
        if setting_up:
            await asyncio.wait(setting_up, timeout=ARRIVING_REQUEST_GRACE)
        await asyncio.sleep(0)
        if state is not None:
            # Connections whose request is still arriving are held open (protocols/h1.py).
            held = [conn for conn in list(state.connections) if conn.shutdown()]
            state.start_pending()  # requests read before the shutdown are answered
            arriving_until = min(deadline, time.monotonic() + ARRIVING_REQUEST_GRACE)
            while not self.force_exit and time.monotonic() < deadline:
                if not state.tasks:
                    held = [conn for conn in held if conn.awaiting_request]
                    if not held or time.monotonic() >= arriving_until:
                        break
                    await asyncio.sleep(0.01)
                    continue
                await asyncio.wait(
                    list(state.tasks), timeout=min(0.1, max(0.0, deadline - time.monotonic()))
                )
            if state.tasks:
                self._log_cut(state)
            for conn in list(state.connections):
                conn.close(abort=True)
            for task in list(state.tasks):
                task.cancel()
            if state.tasks:
                # Time for the applications' cleanup (``finally`` blocks, rollbacks); an
                # application that ignores the cancellation is left behind.
                await asyncio.wait(list(state.tasks), timeout=CANCEL_GRACE)
        # Python 3.12+ wait_closed() waits for every connection; all are closed by now.
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=5)
            except asyncio.TimeoutError:
                logger.warning("listening socket did not close in time")
            self._accepted += server.accepted
        self._servers.clear()
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        handler = state.handler if state is not None else None
        if handler is not None and hasattr(handler, "close"):
            # Threads still running a WSGI application were cut with their requests: no reason
            # to wait the whole close timeout for them once the deadline has passed.
            handler.close(min(handler.close_timeout, max(0.1, deadline - time.monotonic())))
        self._remove_pid_file()
        if self._bound_uds is not None:
            remove_socket_file(self._bound_uds)
            self._bound_uds = None
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if state is not None and state.access_file is not None:
            logs.stop_access_file(state.access_file)
        if self.metrics_server is not None:
            self.metrics_server.close()  # served until now: a scrape sees the drain
            self.metrics_server = None
        if self.link is not None and state is not None and state.metrics is not None:
            self.link.last_report()

    def _log_cut(self, state) -> None:
        """One warning for the cut, then one line per request cut, naming it and its age."""
        logger.warning(
            "%d request(s) still running %s; cutting them",
            len(state.tasks),
            "at a second signal"
            if self.force_exit
            else "after the graceful timeout (--timeout-graceful-shutdown %g)"
            % self.config.timeout_graceful_shutdown,
        )
        now = time.monotonic()
        for request, started in list(state.tasks.values()):
            logger.warning("cut at shutdown: %s", describe_request(request, now - started))


def _nothing() -> None:
    pass


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _loop_name(loop) -> str:
    module = type(loop).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def new_event_loop(name: str):
    """``uvloop``, ``asyncio``, or ``auto``: uvloop where it is installed, else asyncio."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(app, **options) -> int:
    """Serve ``app`` (an object or ``"module:attr"``) until SIGINT or SIGTERM; returns the exit code."""
    return run_from_config(Config(app, **options))


def run_from_config(config: Config) -> int:
    logs.configure(config.log_level)
    try:
        if config.env_file is not None:
            load_env_file(config.env_file)
        if config.log_config is not None:
            logs.apply_config_file(config.log_config)
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG
    if config.workers is not None or config.reload:
        from .supervisor import Supervisor

        return Supervisor(config).run()
    return serve_in_process(config)


def serve_in_process(config: Config, sockets: list | None = None, link=None) -> int:
    """Run one server in this process until it is stopped; returns the exit code.

    A supervised worker (``link`` given) serves the supervisor's ``sockets`` and stops on
    SIGTERM only: a Ctrl+C in a terminal reaches the whole process group, and the supervisor,
    not each worker, decides what it means.
    """
    debug = config.log_level in ("debug", "trace")
    server = Server(config, link=link)
    try:
        server.load()
        # --loop auto: uvloop (when installed) on the fast path, asyncio (the reference loop) on
        # the pure one. The implementation is selected (and its fallback logged) at startup.
        loop_name = config.loop
        if loop_name == "auto":
            try:
                fast = select(config.impl)[0].name == "fast"
            except ImplementationUnavailable:
                fast = False  # reported by startup
            loop_name = "auto" if fast else "asyncio"
        loop = new_event_loop(loop_name)
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG
    except Exception as exc:
        logger.error(
            "could not load the application %r: %s: %s",
            config.app,
            type(exc).__name__,
            exc,
            exc_info=debug,
        )
        return EXIT_CONFIG
    asyncio.set_event_loop(loop)
    stop_signals = (signal.SIGTERM,) if link is not None else (signal.SIGINT, signal.SIGTERM)
    try:
        try:
            server.rsgi_hook("__rsgi_init__", loop)
        except Exception as exc:
            logger.error("__rsgi_init__ failed: %s: %s", type(exc).__name__, exc, exc_info=debug)
            return EXIT_STARTUP_FAILED
        for signum in stop_signals:
            loop.add_signal_handler(signum, server.request_shutdown)
        try:
            loop.run_until_complete(server.serve(sockets))
        except StartupFailed as exc:
            logger.error("application startup failed: %s", exc)
            return EXIT_STARTUP_FAILED
        except (ConfigError, ImplementationUnavailable) as exc:
            logger.error("%s", exc)
            return EXIT_CONFIG
        finally:
            for signum in stop_signals:
                loop.remove_signal_handler(signum)
        server.rsgi_hook("__rsgi_del__", loop)
        return EXIT_OK
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
