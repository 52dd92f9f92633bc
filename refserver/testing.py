"""In-process clients for RSGI, ASGI and WSGI applications, for framework authors' test suites.

The client runs the server's own HTTP/1.1 protocol and gateways over an in-memory transport: no
socket, no thread for the server, but every rule the real server applies (framing, HEAD, status and
header validation, the protocol checks of each interface) applies here too, from the same code.

In strict mode (the default) every protocol misuse the server would log — a second response,
sending after the response ended, headers of the wrong type, an invalid status, reading the body
twice, ASGI messages out of order — is raised from the request call as :class:`ProtocolViolation`,
whose message names the rule and its spec clause.

::

    from refserver.testing import Client

    def test_hello():
        with Client(app) as client:            # runs lifespan / __rsgi_init__ and their ends
            response = client.get("/hello", headers={"accept": "text/plain"})
            assert response.status == 200
            assert response.text == "Hello, world!"
"""

from __future__ import annotations

import asyncio
import json as _json
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import h11

from .config import Config
from .impl import select
from .loader import detect_interface, load_app
from .server import ServerState, make_gateway

if TYPE_CHECKING:
    from .gateways.lifespan import Lifespan

__all__ = ["AsyncClient", "Client", "ProtocolViolation", "Response"]


class ProtocolViolation(AssertionError):
    """The application broke its interface's protocol (strict mode). ``str()`` names the rule."""


class Response:
    """A response as a client on the wire would see it."""

    def __init__(self, status: int, headers: list, body: bytes, closed_early: bool):
        self.status = status
        #: ``(name, value)`` str pairs, names lower-case, in order, duplicates kept.
        self.headers = headers
        self.body = body
        #: True when the server dropped the connection before the response was complete.
        self.closed_early = closed_early

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class _MemoryTransport(asyncio.Transport):
    """Collects what the protocol writes; closing it ends the exchange."""

    def __init__(self, loop, protocol):
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self.data = bytearray()
        self.closed = loop.create_future()
        self._closing = False

    def get_extra_info(self, name, default=None):
        return {
            "peername": ("127.0.0.1", 50000),
            "sockname": ("127.0.0.1", 8000),
        }.get(name, default)

    def write(self, data) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._loop.call_soon(self._lost)

    abort = close

    def _lost(self) -> None:
        self._protocol.connection_lost(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list = []

    def emit(self, record) -> None:
        self.records.append(record)


class AsyncClient:
    """The client for code that already runs in an event loop: ``async with AsyncClient(app)``."""

    def __init__(
        self,
        app,
        *,
        interface: str = "auto",
        strict: bool = True,
        root_path: str = "",
        lifespan: str = "auto",
        **options,
    ):
        self.strict = strict
        self._config = Config(
            app,
            interface=interface,
            root_path=root_path,
            lifespan=lifespan,
            impl="pure",
            access_log=False,
            date_header=False,
            server_header=False,
            strict=strict,
            **options,
        )
        app = load_app(app)
        self.app = app
        self.interface = interface if interface != "auto" else detect_interface(app)
        self._state: ServerState | None = None
        self._lifespan: Lifespan | None = None
        self._recorder = _Recorder()
        self._logger = logging.getLogger(f"refserver.testing.{id(self)}")
        self._logger.propagate = False
        self._logger.addHandler(self._recorder)

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        impl, _ = select("pure")
        state = ServerState(self._config, loop, impl)
        state.logger = self._logger
        state.handler = make_gateway(self.interface, self.app, state)
        self._state = state
        if self.interface == "asgi" and self._config.lifespan != "off":
            from .gateways.lifespan import Lifespan

            self._lifespan = lifespan = Lifespan(self.app, state, self._config.lifespan)
            await lifespan.startup()
        self._raise_recorded()

    async def stop(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        handler = self._state.handler if self._state else None
        if handler is not None and hasattr(handler, "close"):
            handler.close()
        self._raise_recorded()

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers=None,
        body: bytes | list = b"",
        json=None,
        params: dict | None = None,
        http_version: str = "1.1",
    ) -> Response:
        """Send one request on a new connection. ``body`` may be a list of chunks, which are sent
        with chunked transfer coding; ``json`` encodes a body and sets its content type."""
        if self._state is None:
            await self.start()
        header_list = list(headers.items() if isinstance(headers, dict) else headers or [])
        if json is not None:
            body = _json.dumps(json).encode()
            header_list.append(("content-type", "application/json"))
        target = path + ("?" + urlencode(params) if params else "")
        names = {name.lower() for name, _ in header_list}
        if "host" not in names:
            header_list.insert(0, ("host", "testserver"))
        header_list.append(("connection", "close"))
        if isinstance(body, (list, tuple)):
            header_list.append(("transfer-encoding", "chunked"))
            payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in body if c) + b"0\r\n\r\n"
        else:
            if body or method.upper() in ("POST", "PUT", "PATCH"):
                header_list.append(("content-length", str(len(body))))
            payload = body
        head = f"{method} {target} HTTP/{http_version}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in header_list
        )
        raw = head.encode("latin-1") + b"\r\n" + payload
        return await self._exchange(raw, method)

    async def _exchange(self, raw: bytes, method: str) -> Response:
        state = self._state
        assert state is not None, "request() starts the client first"
        protocol = state.impl.h1_protocol(state, state.impl)
        transport = _MemoryTransport(state.loop, protocol)
        protocol.connection_made(transport)
        protocol.data_received(raw)
        await transport.closed
        for task in list(state.tasks):
            await asyncio.wait([task])
        self._raise_recorded()
        return _parse_response(bytes(transport.data), method)

    def _raise_recorded(self) -> None:
        records = self._recorder.records
        if not records:
            return
        self._recorder.records = []
        if not self.strict:
            return
        record = next((r for r in records if r.levelno >= logging.ERROR), records[0])
        message = record.getMessage()
        cause = record.exc_info[1] if record.exc_info else None
        if cause is not None and str(cause) not in message:
            message = f"{message}: {type(cause).__name__}: {cause}"
        raise ProtocolViolation(message) from cause


def _parse_response(data: bytes, method: str) -> Response:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    status, headers, body, complete = 0, [], bytearray(), False
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                complete = True
                break
            else:
                break
    except h11.RemoteProtocolError:
        pass
    return Response(status, headers, bytes(body), closed_early=not complete)


class Client:
    """The synchronous client: ``with Client(app) as client: client.get("/")``.

    It owns an event loop for its lifetime, so it is for plain (non-async) tests.
    """

    def __init__(self, app, **options):
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(app, **options)
        self._started = False

    def __enter__(self) -> Client:
        self._run(self._async.start())
        self._started = True
        if self._async.interface == "rsgi":
            hook = getattr(self._async.app, "__rsgi_init__", None)
            if hook is not None:
                hook(self._loop)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self._started:
                self._run(self._async.stop())
                if self._async.interface == "rsgi":
                    hook = getattr(self._async.app, "__rsgi_del__", None)
                    if hook is not None:
                        hook(self._loop)
        finally:
            self._loop.close()

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    def request(self, method: str, path: str, **kwargs) -> Response:
        if not self._started:
            self.__enter__()
        return self._run(self._async.request(method, path, **kwargs))


def _add_verbs() -> None:
    """``client.get(path, **kwargs)`` and friends: ``request()`` with the method filled in."""
    for verb in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):

        async def async_call(self, path: str, _verb=verb, **kwargs) -> Response:
            return await self.request(_verb, path, **kwargs)

        def sync_call(self, path: str, _verb=verb, **kwargs) -> Response:
            return self.request(_verb, path, **kwargs)

        for cls, call in ((AsyncClient, async_call), (Client, sync_call)):
            call.__name__ = verb.lower()
            setattr(cls, verb.lower(), call)


_add_verbs()
