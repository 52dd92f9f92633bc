"""pytest fixtures that serve an application with refserver, for a framework's own test suite.

Installed with refserver and loaded by pytest through the ``pytest11`` entry point (``-p
no:refserver`` turns it off). It gives:

``refserver_serve``
    a factory: ``srv = refserver_serve(app, **options)`` serves ``app`` (an object, or a
    ``"module:attr"`` string) on a free port of 127.0.0.1 in a background thread, and stops it at
    the end of the test, or at the end of ``with refserver_serve(app) as srv:``. ``srv.url``,
    ``srv.port``, ``srv.ws_url``, ``srv.ssl_context`` (for the client, over TLS),
    ``srv.httpx_client()`` and ``srv.websocket(path)`` reach it, over the HTTP version
    ``srv.http_version`` says. The keywords ``impl``, ``loop``, ``http``, ``tls`` and ``strict``
    override the cell's choice; the others are refserver's options.
``refserver_cell``
    the path, loop, HTTP version and TLS choice of this test: one cell of a
    ``@pytest.mark.refserver_matrix(...)`` grid, or the default cell (pure path, asyncio,
    HTTP/1.1 and HTTP/2, no TLS). ``refserver_serve`` uses it; a module- or class-scoped fixture
    passes it to :func:`serve` to share one server among the tests of a cell.
``refserver_client``
    a factory of the in-process :class:`refserver.testing.Client` (no socket, no thread), closed
    at the end of the test.

``srv.websocket(path, subprotocols=..., headers=...)`` opens a blocking :class:`WebSocket` over
the cell's HTTP version: an HTTP/1.1 Upgrade, or over HTTP/2 an extended CONNECT on a stream (RFC
8441), which the usual client libraries do not speak; so one WebSocket test runs in every cell.
``ws.send(str | bytes)``, ``ws.recv()``, ``ws.close(code)``; ``recv()`` raises
:class:`WebSocketClosed` (``.code``, ``.reason``) once the server closed, and a refused handshake
raises :class:`WebSocketRejected` (``.status``, ``.headers``, ``.body``).

A thread, not a subprocess: the application under test is an object the test built (with its
routes, its fixtures, its state), and the test can look into it after a request.

Strict mode (``strict=True``, the default): the server runs with ``--strict``, and every protocol
misuse it logs for the application, naming a clause of refserver's spec, fails the test during
which it happened with :class:`refserver.testing.ProtocolViolation`, whose message has the clause
id. The check runs at the end of each test's call, once the requests the server is still running
have finished (at most :data:`SETTLE_TIMEOUT` seconds), so a violation found in the server's thread
after the client had its response still fails the test that sent the request; one logged while a
server stops (an ASGI lifespan shutdown) fails the teardown of the fixture that stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import re
import ssl
import tempfile
import threading
from dataclasses import dataclass, replace
from importlib import resources

import pytest

from .config import Config
from .server import Server, new_event_loop
from .testing import Client, ProtocolViolation
from .ws_client import WebSocket, WebSocketClosed, WebSocketRejected, open_websocket

__all__ = ["Cell", "ServedApp", "WebSocket", "WebSocketClosed", "WebSocketRejected", "serve"]

#: Seconds the end-of-test check waits for the requests a server is still running.
SETTLE_TIMEOUT = 2.0
#: Seconds a server has to start, and to stop at teardown.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_CLAUSE = re.compile(r"\[([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+)\]")


@dataclass(frozen=True)
class Cell:
    """One combination of the server's implementation, loop, HTTP version and TLS."""

    impl: str = "pure"  # "pure" or "fast"
    loop: str = "asyncio"  # "asyncio" or "uvloop"
    http: str = "auto"  # "1", "2" or "auto" (both; ALPN over TLS)
    tls: bool = False

    @property
    def id(self) -> str:
        http = {"1": "h1", "2": "h2", "auto": "h1+h2"}[self.http]
        return f"{self.impl}-{self.loop}-{http}" + ("-tls" if self.tls else "")

    def options(self) -> dict:
        return {"impl": self.impl, "loop": self.loop, "http": self.http, "tls": self.tls}


# ------------------------------------------------------------------------------------ violations


@functools.lru_cache(maxsize=1)
def _clause_ids() -> frozenset:
    text = resources.files("refserver.conformance").joinpath("clauses.json").read_text("utf-8")
    return frozenset(clause["id"] for clause in json.loads(text)["clauses"])


def violation_text(record: logging.LogRecord) -> str | None:
    """The record's message (and its exception's) when it names a clause of the spec, else None.

    An application error that breaks no rule (a view that raises, answered with a 500) is the
    application's business and the test sees its 500; a record naming a clause is refserver
    refusing or correcting what the application did."""
    parts = [record.getMessage()]
    exc = record.exc_info[1] if record.exc_info else None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    text = ": ".join(dict.fromkeys(parts))
    known = _clause_ids()
    clauses = [match for match in dict.fromkeys(_CLAUSE.findall(text)) if match in known]
    if clauses:
        return f"{', '.join(clauses)}: {text}"
    return None


class _Collector(logging.Handler):
    """Keeps the violations logged from the threads of the strict servers being served."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.servers: list = []
        self.found: list = []
        self.sessions = 0
        self._found_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        for served in list(self.servers):
            if record.thread in served.threads():
                text = violation_text(record)
                if text is not None:
                    with self._found_lock:
                        self.found.append(f"{text} (server {served.cell.id} at {served.url})")
                return

    def take(self) -> list:
        with self._found_lock:
            found, self.found = self.found, []
        return found


_collector = _Collector()


def _raise_found() -> None:
    __tracebackhide__ = True
    found = _collector.take()
    if found:
        raise ProtocolViolation("refserver --strict: " + "\n".join(found))


# ---------------------------------------------------------------------------------- the server


class ServedApp:
    """An application served in a background thread: where to reach it, and how to stop it."""

    def __init__(self, server: Server, thread: threading.Thread, loop, cell: Cell, ca=None):
        self.server = server
        self.thread = thread
        self.loop = loop
        self.cell = cell
        self.interface = server.interface
        self.host, self.port = server.sockets[0].getsockname()[:2]
        scheme = "https" if cell.tls else "http"
        self.url = f"{scheme}://{self.host}:{self.port}"
        self.ws_url = f"{'wss' if cell.tls else 'ws'}://{self.host}:{self.port}"
        self._ca = ca
        self._stop = None  # set by the refserver_serve fixture

    def __enter__(self) -> ServedApp:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop(exc_info)

    def stop(self, exc_info=(None, None, None)) -> None:
        """Stop the server now (``refserver_serve``'s servers; otherwise its ``serve()`` block
        ends): ``with refserver_serve(app) as srv:`` checks what follows the shutdown."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop(*exc_info)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting the server's certificate (None in cleartext); ALPN offers
        what the cell serves."""
        if self._ca is None:
            return None
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        alpn = {"1": ["http/1.1"], "2": ["h2"]}.get(self.cell.http, ["h2", "http/1.1"])
        ctx.set_alpn_protocols(alpn)
        return ctx

    @property
    def http_version(self) -> str:
        """What :meth:`httpx_client` and :meth:`websocket` speak to this cell: ``"2"`` where it
        serves only HTTP/2, or offers it by ALPN over TLS; ``"1.1"`` otherwise (in cleartext
        with ``http="auto"``, clients start with HTTP/1.1)."""
        if self.cell.http == "2" or (self.cell.tls and self.cell.http == "auto"):
            return "2"
        return "1.1"

    def httpx_client(self, **options):
        """An ``httpx.Client`` for this server: HTTP/2 where the cell serves it (prior knowledge
        in cleartext when it serves only HTTP/2), trusting its certificate over TLS."""
        import httpx

        options.setdefault("base_url", self.url)
        options.setdefault("timeout", 10)
        if self.cell.tls:
            options.setdefault("verify", self.ssl_context)
            options.setdefault("http2", self.http_version == "2")
        elif self.http_version == "2":
            options.setdefault("http1", False)
            options.setdefault("http2", True)
        return httpx.Client(**options)

    def websocket(
        self,
        path: str = "/",
        *,
        subprotocols=(),
        headers=(),
        http: str | None = None,
        timeout: float = 10.0,
    ) -> WebSocket:
        """Open a :class:`WebSocket` to ``path`` on a new connection, over the cell's
        :attr:`http_version` (or ``http="1"``/``"2"``): an HTTP/1.1 Upgrade, or over HTTP/2 an
        extended CONNECT on a stream (RFC 8441), which few client libraries speak.
        :class:`WebSocketRejected` when the server answers the handshake with a response."""
        return open_websocket(
            self.host,
            self.port,
            path,
            http=self.http_version if http is None else http,
            ssl_context=self.ssl_context,
            subprotocols=subprotocols,
            headers=headers,
            timeout=timeout,
        )

    def threads(self) -> set:
        """The identities of the threads that run this server: its loop, its WSGI pool."""
        idents = {self.thread.ident}
        pool = getattr(self.server.state and self.server.state.handler, "pool", None)
        idents.update(t.ident for t in getattr(pool, "_threads", ()))
        return idents

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait (bounded) until the server runs no request: what it logs for them is logged."""
        state = self.server.state
        if state is None or self.loop.is_closed() or not self.thread.is_alive():
            return

        async def idle():
            deadline = self.loop.time() + timeout
            while (state.tasks or state._pending) and self.loop.time() < deadline:
                await asyncio.sleep(0.005)

        try:
            asyncio.run_coroutine_threadsafe(idle(), self.loop).result(timeout + 1)
        except (RuntimeError, TimeoutError, asyncio.TimeoutError):
            pass  # the loop is closing: nothing more will run there

    def __repr__(self) -> str:
        return f"<ServedApp {self.interface} {self.cell.id} {self.url}>"


def _skip_or_fail(config, message: str):
    """A cell this machine cannot serve is skipped, or failed under ``refserver_require_all``."""
    if config is not None and config.getini("refserver_require_all"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _check_cell(cell: Cell, config) -> None:
    from .impl import ImplementationUnavailable, select

    if cell.impl == "fast":
        try:
            select("fast")
        except ImplementationUnavailable as exc:
            _skip_or_fail(config, f"refserver's fast path is not built here: {exc}")
    if cell.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            _skip_or_fail(config, "uvloop is not installed")
    if cell.tls:
        try:
            import trustme  # noqa: F401
        except ImportError:
            _skip_or_fail(config, "TLS cells need trustme (pip install trustme)")


@functools.lru_cache(maxsize=1)
def _certificates():
    """One throwaway CA and a certificate for 127.0.0.1 and localhost, for the whole run."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tempfile.mkdtemp(prefix="refserver-pytest-")
    cert_file, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(cert_file, append=i > 0)
    cert.private_key_pem.write_to_path(key_file)
    return ca, cert_file, key_file


@contextlib.contextmanager
def serve(app, *, cell: Cell | None = None, strict: bool = True, pytest_config=None, **options):
    """Serve ``app`` on a free port of 127.0.0.1 in a background thread for the ``with`` body.

    ``cell`` (or the ``impl``, ``loop``, ``http``, ``tls`` keywords, which override it) chooses the
    path, the loop, the protocols and TLS; other keywords are refserver's options (``interface``,
    ``root_path``, ``lifespan``...). Yields a :class:`ServedApp`; the server is stopped (a
    graceful shutdown, bounded) when the block ends."""
    cell = replace(
        cell or Cell(),
        **{k: options.pop(k) for k in ("impl", "loop", "http", "tls") if k in options},
    )
    _check_cell(cell, pytest_config)
    ca = None
    if cell.tls:
        ca, cert_file, key_file = _certificates()
        options.update(ssl_certfile=cert_file, ssl_keyfile=key_file)
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    options.setdefault("access_log", False)
    options.setdefault("timeout_graceful_shutdown", 3)
    config = Config(app, impl=cell.impl, loop=cell.loop, http=cell.http, strict=strict, **options)
    server = Server(config)
    server.load()
    loop = new_event_loop(cell.loop)
    ready = threading.Event()
    failure: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server.rsgi_hook("__rsgi_init__", loop)

            async def main():
                task = asyncio.ensure_future(server.serve())
                while not (server.started and server.started.is_set()) and not task.done():
                    await asyncio.sleep(0.005)
                ready.set()
                await task

            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            failure["error"] = exc
        finally:
            ready.set()
            try:
                server.rsgi_hook("__rsgi_del__", loop)
            finally:
                loop.close()

    thread = threading.Thread(target=run, name=f"refserver-{cell.id}", daemon=True)
    served: _Pending | ServedApp | None = None
    try:
        if strict:
            # Registered before the thread starts: startup (lifespan, __rsgi_init__) is watched too.
            served = _Pending(thread, cell)
            _collector.servers.append(served)
        thread.start()
        if not ready.wait(START_TIMEOUT):
            server.request_shutdown()
            raise RuntimeError(f"refserver did not start in {START_TIMEOUT} s")
        if "error" in failure:
            raise failure["error"]
        running = ServedApp(server, thread, loop, cell, ca)
        if strict:
            _collector.servers[_collector.servers.index(served)] = running
            served = running
        yield running
        running.settle()
    finally:
        if not loop.is_closed() and thread.is_alive():
            try:
                loop.call_soon_threadsafe(server.request_shutdown)
            except RuntimeError:
                pass
        thread.join(STOP_TIMEOUT)
        if served is not None:
            _collector.servers.remove(served)
        if thread.is_alive():
            raise RuntimeError(f"refserver ({cell.id}) did not stop in {STOP_TIMEOUT} s")
    if strict:
        _raise_found()  # logged while the server stopped (an ASGI lifespan shutdown)


class _Pending:
    """Stands for a strict server between its thread's start and its readiness."""

    def __init__(self, thread: threading.Thread, cell: Cell):
        self.thread, self.cell, self.url = thread, cell, "(starting)"

    def threads(self) -> set:
        return {self.thread.ident}

    def settle(self) -> None:
        pass


# ----------------------------------------------------------------------------------- pytest


def pytest_addoption(parser) -> None:
    parser.addini(
        "refserver_require_all",
        "Fail, instead of skipping, a refserver_matrix cell this machine cannot serve (the fast "
        "path not built, uvloop or trustme missing).",
        type="bool",
        default=False,
    )


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "refserver_matrix(*cells, impl=..., loop=..., http=..., tls=...): run the test once per "
        "cell: each positional argument is one cell (a dict of those keys), the keywords are "
        "lists whose product are the cells.",
    )
    # Counted: pytester runs sessions inside a session, and the inner one ends first.
    _collector.sessions += 1
    logging.getLogger("refserver.error").addHandler(_collector)


def pytest_unconfigure(config) -> None:
    _collector.sessions -= 1
    if _collector.sessions == 0:
        logging.getLogger("refserver.error").removeHandler(_collector)


def _cells(marker) -> list:
    if marker.args:
        return [Cell(**spec) for spec in marker.args]
    axes = {
        "impl": marker.kwargs.get("impl", ["pure", "fast"]),
        "loop": marker.kwargs.get("loop", ["asyncio"]),
        "http": marker.kwargs.get("http", ["auto"]),
        "tls": marker.kwargs.get("tls", [False]),
    }
    names = list(axes)
    return [
        Cell(**dict(zip(names, values, strict=True)))
        for values in itertools.product(*axes.values())
    ]


def pytest_generate_tests(metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("refserver_matrix")
    if marker is None or "refserver_cell" not in metafunc.fixturenames:
        return
    cells = _cells(marker)
    metafunc.parametrize("refserver_cell", cells, ids=[c.id for c in cells], indirect=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Fails the test whose requests made a strict server log a violation (see the module's
    docstring); a test that failed already gets them as a report section."""
    __tracebackhide__ = True
    try:
        result = yield
    except BaseException:
        _settle_all()
        found = _collector.take()
        if found:
            item.add_report_section("call", "refserver violations", "\n".join(found))
        raise
    _settle_all()
    _raise_found()
    return result


def _settle_all() -> None:
    for served in list(_collector.servers):
        served.settle()


@pytest.fixture(scope="module")
def refserver_cell(request) -> Cell:
    """This test's cell of its ``refserver_matrix`` marker; the default cell without one."""
    return getattr(request, "param", Cell())


@pytest.fixture
def refserver_serve(refserver_cell, request):
    """``refserver_serve(app, **options)``: serve ``app`` on this test's cell until its end."""
    stack = contextlib.ExitStack()

    def factory(app, **options) -> ServedApp:
        options.setdefault("cell", refserver_cell)
        options.setdefault("pytest_config", request.config)
        context = serve(app, **options)
        served = context.__enter__()
        served._stop = context.__exit__
        stack.callback(served.stop)
        return served

    with stack:
        yield factory


@pytest.fixture
def refserver_client():
    """``refserver_client(app, **options)``: a started in-process :class:`refserver.testing.Client`
    (strict unless ``strict=False``), closed at the end of the test."""
    clients: list = []

    def factory(app, **options) -> Client:
        client = Client(app, **options)
        clients.append(client)
        return client.__enter__()

    yield factory
    for client in clients:
        client.close()
