"""ASGI 3 (HTTP scope, spec 2.5): one state machine per request, over any :class:`Stream`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..files import region
from ..logs import error_logger
from ..wire.events import ResponseError
from ..wire.response import TEXT_PLAIN
from .stream import ClientDisconnected, fail

#: The clause of spec/asgi.md broken by each kind of wire-level ResponseError.
CLAUSES = {
    "status": "ASGI-ERROR-5",
    "header": "ASGI-ERROR-5",
    "length": "ASGI-ERROR-6",
    "order": "ASGI-SEND-4",
}


class ASGIProtocolError(RuntimeError):
    """The application sent a message the ASGI HTTP protocol does not allow at that point."""


_START, _BODY, _TRAILERS, _DONE = 0, 1, 2, 3


class HTTPCycle:
    """``receive`` and ``send`` for one request."""

    __slots__ = ("stream", "phase", "_status", "_headers", "_trailers", "_trailer_fields")

    def __init__(self, stream):
        self.stream = stream
        self.phase = _START
        self._status = 0
        self._headers = None
        self._trailers = False  # the start message announced trailers (the extension)
        self._trailer_fields: list = []

    async def receive(self) -> dict:
        stream = self.stream
        if not stream.disconnected and not stream.response_complete and not stream.body_complete:
            body = stream.take_body()
            if body is not None:  # all here: no need to go through stream.receive()
                return {"type": "http.request", "body": body, "more_body": False}
            try:
                body = await stream.receive()
            except ClientDisconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": not stream.body_complete}
        # The body has been delivered: the next event is the end of the exchange.
        await stream.wait_disconnect()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        stream = self.stream
        if stream.disconnected:
            raise ClientDisconnected("the client disconnected")
        kind = message.get("type") if isinstance(message, dict) else None
        phase = self.phase
        if phase == _START:
            if kind == "http.response.early_hint":
                stream.send_informational(103, _links(message.get("links", ())))
                return
            if kind != "http.response.start":
                raise ASGIProtocolError(
                    f"expected 'http.response.start', got {kind!r} (ASGI HTTP: the response "
                    "starts with http.response.start) [ASGI-ERROR-4]"
                )
            status = message.get("status")
            if type(status) is not int:
                raise ASGIProtocolError(f"'status' must be an int, got {status!r} [ASGI-ERROR-5]")
            self._status = status
            self._headers = _header_list(message.get("headers", ()))
            self._trailers = bool(message.get("trailers", False))
            self.phase = _BODY
        elif phase == _BODY:
            if kind == "http.response.pathsend" or kind == "http.response.zerocopysend":
                await self._send_file(message, kind)
                return
            if kind != "http.response.body":
                raise ASGIProtocolError(
                    f"expected 'http.response.body', got {kind!r} [ASGI-ERROR-4]"
                )
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise ASGIProtocolError(
                    f"'body' must be bytes, got {type(body).__name__} [ASGI-ERROR-5]"
                )
            more = bool(message.get("more_body", False))
            end = not more and not self._trailers  # with trailers, they end the response
            if not more:
                self.phase = _TRAILERS if self._trailers else _DONE
            headers = self._headers
            if headers is not None:
                # The start message is held until the first body message, so a single-message
                # response can carry its Content-Length.
                self._headers = None
                stream.start_response(
                    self._status, headers, body if type(body) is bytes else bytes(body), end
                )
            else:
                await stream.send_body(body if type(body) is bytes else bytes(body), end)
        elif phase == _TRAILERS:
            if kind != "http.response.trailers":
                raise ASGIProtocolError(
                    f"expected 'http.response.trailers', got {kind!r} (the start message "
                    "announced trailers) [ASGI-TRAILERS-1]"
                )
            self._trailer_fields += _header_list(message.get("headers", ()))
            if not message.get("more_trailers", False):
                self.phase = _DONE
                await stream.send_trailers(self._trailer_fields)
        else:
            raise ASGIProtocolError(f"{kind!r} sent after the response was complete [ASGI-SEND-4]")

    async def _send_file(self, message: dict, kind: str) -> None:
        """``http.response.pathsend`` (a path the server opens, sends and closes; the end of
        the response) and ``http.response.zerocopysend`` (a region of the application's own open
        file, which it closes; ``more_body`` as in ``http.response.body``), both through
        ``Stream.send_file``. A response whose whole body is the file gets its Content-Length
        when the application gave none."""
        if kind == "http.response.pathsend":
            path = message.get("path")
            if type(path) is not str or not os.path.isabs(path):
                raise ASGIProtocolError(
                    f"'path' must be an absolute path as a str, got {path!r} [ASGI-PATHSEND-2]"
                )
            try:
                fh = open(path, "rb", buffering=0)  # noqa: SIM115 - the response body owns and closes it
            except OSError as exc:
                if self._headers is None:
                    raise  # the head is gone: nothing but a dropped connection can follow
                error_logger.info("cannot open file %r: %s; answering 404", path, exc.strerror)
                self._headers = None
                self.phase = _DONE
                self.stream.start_response(404, [TEXT_PLAIN], b"Not Found", True)
                return
            with fh:
                fd = fh.fileno()
                await self._send_region(fd, 0, os.fstat(fd).st_size, False)
            return
        file: Any = message.get("file")  # whatever the application gave; checked below
        if type(file) is int:
            fd, position = file, None
        else:
            try:
                fd, position = file.fileno(), file.tell()
            except (AttributeError, OSError, ValueError):
                raise ASGIProtocolError(
                    "'file' must be a file object with a descriptor (or a descriptor) "
                    "[ASGI-ZEROCOPY-1]"
                ) from None
        try:
            offset, count = region(
                fd,
                message.get("offset", position),
                message.get("count"),
            )
        except ValueError as exc:
            raise ASGIProtocolError(f"{exc} [ASGI-ZEROCOPY-1]") from None
        await self._send_region(fd, offset, count, bool(message.get("more_body", False)))
        # Where a sendfile(2) of the region would have left it (ASGI-ZEROCOPY-1).
        if type(file) is int:
            os.lseek(fd, offset + count, os.SEEK_SET)
        else:
            file.seek(offset + count)

    async def _send_region(self, fd: int, offset: int, count: int, more: bool) -> None:
        end = not more and not self._trailers
        if not more:
            self.phase = _TRAILERS if self._trailers else _DONE
        headers = self._headers
        if headers is not None:
            self._headers = None
            if end and not any(name.lower() == b"content-length" for name, _ in headers):
                headers.append((b"content-length", b"%d" % count))
            self.stream.start_response(self._status, headers)
        await self.stream.send_file(fd, offset, count, end)


def _links(links) -> list:
    """The ``Link`` fields of an ``http.response.early_hint`` message."""
    if isinstance(links, (bytes, str)) or not all(isinstance(link, bytes) for link in links):
        raise ASGIProtocolError("'links' must be a list of bytes [ASGI-EARLY-HINT-1]")
    return [(b"link", link) for link in links]


def _header_list(headers) -> list:
    out = []
    try:
        for item in headers:
            name, value = item
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                raise ASGIProtocolError(
                    f"response headers must be (bytes, bytes) pairs, got ({name!r}, {value!r}) "
                    "[ASGI-ERROR-5]"
                )
            # The application's own tuple where it is one: the wire's table of checked fields
            # then finds a constant header at its own key, by identity. Lists become tuples.
            out.append(item if type(item) is tuple else (name, value))
    except (TypeError, ValueError):
        raise ASGIProtocolError(
            "response headers must be an iterable of [name, value] bytes pairs [ASGI-ERROR-5]"
        ) from None
    return out


class ASGIGateway:
    """Runs one ASGI application call per request and guarantees the request gets an answer."""

    def __init__(self, app, server_state):
        self.app = app
        self.server = server_state
        self.logger = server_state.logger
        self.root_path = server_state.config.root_path
        self.build_scope = server_state.impl.asgi_scope

    async def __call__(self, stream) -> None:
        scope = self.build_scope(
            "http",
            stream,
            self.root_path,
            self.server.lifespan_state,
            stream.scheme,
            stream.request.method,
        )
        extensions = scope["extensions"]
        extensions["http.response.trailers"] = {}
        extensions["http.response.early_hint"] = {}
        extensions["http.response.pathsend"] = {}
        extensions["http.response.zerocopysend"] = {}
        cycle = HTTPCycle(stream)
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except ClientDisconnected:
            return
        except asyncio.CancelledError:
            if not stream.response_complete:
                stream.abort()
            raise
        except ResponseError as exc:
            self.logger.error("invalid ASGI response: %s [%s]", exc, CLAUSES[exc.rule])
            fail(stream)
        except BaseException as exc:  # noqa: BLE001 - an app error must never kill the server
            if stream.disconnected:
                return
            self.logger.error("exception in ASGI application", exc_info=exc)
            fail(stream)
            if not isinstance(exc, Exception):
                raise
        else:
            if not stream.response_complete and not stream.disconnected:
                started = stream.response_started
                self.logger.error(
                    "ASGI application returned without %s the response [%s]",
                    "completing" if started else "starting",
                    "ASGI-ERROR-3" if started else "ASGI-ERROR-2",
                )
                fail(stream)
