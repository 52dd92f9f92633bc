"""RSGI 1.6, HTTP: one protocol object per request, over any :class:`~.stream.Stream`.

The RSGI response calls are synchronous while writing to a slow client is not, so the split is:
the response head (and a whole ``bytes``/``str`` body) is written inside the call; a file body is
sent by a task started by the call; a streamed body is written by the transport's ``send_*``
coroutines, which wait for the client (backpressure Granian does not have).

Where Granian 2.8 misbehaves, refserver differs on purpose (and says so below): an invalid status
or header is a ``ProtocolError`` and a 500, never a dead worker or a silently dropped field; a
second response is logged instead of vanishing without a trace.
"""

from __future__ import annotations

import asyncio
import logging
import os

from ..files import FileShrunk
from ..rsgi import ProtocolClosed, ProtocolError
from ..wire.events import ResponseError
from ..wire.fields import remember
from ..wire.response import TEXT_PLAIN
from .stream import ClientDisconnected

# Response states of one request.
_NONE = 0  # nothing sent yet
_DONE = 1  # a complete response was written (or dropped because the client had gone)
_FILE = 2  # head written; a task is sending the file
_STREAM = 3  # head written; the application is streaming the body

_NOT_FOUND_HEADERS = [TEXT_PLAIN]
_EMPTY_500_HEADERS = [(b"content-length", b"0")]


#: The clause of spec/rsgi.md broken by each kind of wire-level ResponseError.
CLAUSES = {
    "status": "RSGI-HTTP-ERROR-5",
    "header": "RSGI-HTTP-ERROR-6",
    "length": "RSGI-HTTP-ERROR-7",
    "order": "RSGI-HTTP-ERROR-4",
}


def _encode_headers(headers) -> list:
    """``[(str, str), ...]`` in any case → the wire's ``(bytes, bytes)`` pairs.

    Names and values are encoded as latin-1 (one byte per character, what HTTP fields carry);
    the wire core then checks them against the HTTP grammar. Anything else is the application's
    bug, reported as a :class:`ProtocolError` naming the offending item.
    """
    if type(headers) is not list and not isinstance(headers, (list, tuple)):
        raise ProtocolError(
            f"response headers must be a list of (str, str) tuples, got {type(headers).__name__} "
            "[RSGI-HTTP-ERROR-6]"
        )
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    encoded = _ENCODED
    for item in headers:
        # Only a pair of plain str is looked up: its hash and equality are str's own, so the
        # remembered encoding is exactly what encoding it again would give.
        if type(item) is tuple and len(item) == 2 and type(item[0]) is str and type(item[1]) is str:
            field = encoded.get(item)
            if field is None:
                field = remember(encoded, item, _encode_field(item))
        elif type(item) is tuple or type(item) is list:
            field = _encode_field(item)
        else:
            raise ProtocolError(
                f"response header {item!r} is not a (name, value) tuple [RSGI-HTTP-ERROR-6]"
            )
        append(field)
    return out


def _encode_field(item) -> tuple:
    """One header item as the wire's ``(bytes, bytes)`` pair, or ProtocolError naming it."""
    try:
        name, value = item
        return (name.encode("latin-1"), value.encode("latin-1"))
    except UnicodeEncodeError:
        raise ProtocolError(
            f"response header {item!r} has characters outside latin-1; HTTP fields carry "
            "bytes, encode the value first (e.g. percent- or RFC 8187-encoding) [RSGI-HTTP-ERROR-6]"
        ) from None
    except (AttributeError, ValueError, TypeError):
        raise ProtocolError(
            f"response header {item!r} must be a (str, str) tuple [RSGI-HTTP-ERROR-6]"
        ) from None


#: ``(str, str)`` header items with their encoded pair: the wire core then finds the very same
#: pair in its table of checked fields.
_ENCODED: dict = {}


def _status(status) -> int:
    """Accept ints and int subclasses such as ``HTTPStatus``; the range is checked by the wire."""
    if type(status) is int:
        return status
    if isinstance(status, int) and not isinstance(status, bool):
        return int(status)
    raise ProtocolError(f"response status must be an int, got {status!r} [RSGI-HTTP-ERROR-5]")


class HTTPProtocol:
    """The ``protocol`` argument of an RSGI HTTP call.

    Decisions where RSGI leaves room:

    * The body can be read once, either way (``await protocol()`` or ``async for``); a second read
      raises :class:`ProtocolError`.
    * ``async for chunk in protocol`` ends with one empty ``b""`` chunk, as Granian's does (an
      empty body yields just ``b""``). Apps written against Granian may treat ``b""`` as the end
      marker, and an app that simply concatenates is unaffected, so matching it costs nothing.
    * A second response call is ignored and logged (a warning the first time each kind of call
      does it, debug after that); a second ``response_stream`` raises :class:`ProtocolError`,
      since there is no transport to give back. This is Granian's behaviour plus the log line.
      Raising on every second call would be stricter, but real frameworks depend on the
      tolerance: Emmett's ``@stream``/``@sse`` routes call ``response_str`` after their stream
      has been sent, and an exception there would unwind the app mid-response and turn a
      complete stream into a dropped connection. The log still names the bug.
    * A response call made after the client has gone is accepted and discarded, as there is nobody
      to answer; writes on a stream after that raise :class:`ProtocolClosed`.
    * ``client_disconnect()`` resolves when the client goes away, and also once the response is
      complete: after that the connection belongs to the next request, and an app awaiting it
      should not hang (Granian may never resolve it on a kept-alive connection).
    """

    __slots__ = (
        "_stream",
        "_gateway",
        "_body_taken",
        "_state",
        "_file_task",
        "_transport",
        "_rejected",
    )

    def __init__(self, stream, gateway: RSGIGateway):
        self._stream = stream
        self._gateway = gateway
        self._body_taken = False
        self._state = _NONE
        self._file_task: asyncio.Task | None = None  # with _FILE
        self._transport: HTTPStreamTransport | None = None  # with _STREAM
        # Why the last response call was refused, for the 500's log line.
        self._rejected: str | None = None

    # ------------------------------------------------------------------ request body

    def __call__(self):
        self._take_body()
        return self._read_all()

    async def _read_all(self) -> bytes:
        body = self._stream.take_body()
        if body is not None:  # all here: no need to go through stream.receive()
            return body
        receive = self._stream.receive
        parts = []
        try:
            while True:
                data = await receive()
                if not data:
                    break
                parts.append(data)
        except ClientDisconnected:
            raise ProtocolClosed("the client disconnected before sending the whole body") from None
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def __aiter__(self):
        self._take_body()
        return BodyChunks(self._stream)

    def _take_body(self) -> None:
        if self._body_taken:
            raise ProtocolError(
                "the request body was already read: RSGI lets it be consumed once, with "
                "`await protocol()` or `async for chunk in protocol` [RSGI-HTTP-BODY-3]"
            )
        self._body_taken = True

    async def client_disconnect(self) -> None:
        await self._stream.wait_disconnect()

    # ------------------------------------------------------------------ responses

    def response_empty(self, status=200, headers=()) -> None:
        self._respond(status, headers, b"", "response_empty")

    def response_str(self, status=200, headers=(), body="") -> None:
        if type(body) is not str:
            raise self._reject(
                f"response_str body must be str, got {type(body).__name__} [RSGI-HTTP-ERROR-6]"
            )
        self._respond(status, headers, body.encode("utf-8"), "response_str")

    def response_bytes(self, status=200, headers=(), body=b"") -> None:
        if type(body) is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise self._reject(
                    f"response_bytes body must be bytes, got {type(body).__name__} "
                    "[RSGI-HTTP-ERROR-6]"
                )
            body = bytes(body)
        self._respond(status, headers, body, "response_bytes")

    def response_file(self, status, headers, file) -> None:
        self._respond_file(status, headers, file, 0, None, "response_file")

    def response_file_range(self, status, headers, file, start, end) -> None:
        """Bytes ``[start, end)`` of ``file``. ``start >= end`` (or a negative start) is a
        ``ValueError``, as in Granian; the app writes Content-Range and Content-Length itself."""
        if type(start) is not int or type(end) is not int:
            raise self._reject(
                f"response_file_range start and end must be ints, got {start!r} and {end!r}"
            )
        if start < 0 or start >= end:
            raise ValueError(f"invalid file range [{start}, {end}) [RSGI-HTTP-FILE-3]")
        self._respond_file(status, headers, file, start, end, "response_file_range")

    def response_stream(self, status=200, headers=()) -> HTTPStreamTransport:
        if self._state != _NONE:
            raise ProtocolError(
                "response_stream called after the response was sent; RSGI allows one response "
                "per request [RSGI-HTTP-ERROR-4]"
            )
        stream = self._stream
        try:
            status = _status(status)
            raw = _encode_headers(headers)
            transport = HTTPStreamTransport(stream)
            if stream.disconnected:
                transport._open = False
                self._state = _DONE
                return transport
            stream.start_response(status, raw)
        except ResponseError as exc:
            raise self._reject(f"invalid response: {exc} [{CLAUSES[exc.rule]}]") from None
        except ProtocolError as exc:
            self._rejected = str(exc)
            raise
        self._state = _STREAM
        self._transport = transport
        return transport

    def _ignore_second(self, call: str) -> None:
        """Granian ignores a second response, and Emmett's stream routes rely on it; ``--strict``
        (and the strict test client) makes it the error it is."""
        gateway = self._gateway
        if gateway.strict:
            raise ProtocolError(
                f"{call} called after the response was sent; RSGI allows one response per "
                "request [RSGI-HTTP-ERROR-4]"
            )
        stream = self._stream
        first = call not in gateway.warned
        gateway.warned.add(call)
        gateway.logger.log(
            logging.WARNING if first else logging.DEBUG,
            "RSGI application called %s after its response was sent (%s %s); ignored, as RSGI "
            "allows one response per request [RSGI-HTTP-ERROR-4]%s",
            call,
            stream.request.method,
            stream.request.raw_path.decode("latin-1"),
            " (further ones are logged at debug level)" if first else "",
        )

    def _reject(self, message: str) -> ProtocolError:
        self._rejected = message
        return ProtocolError(message)

    def _respond(self, status, headers, body: bytes, call: str) -> None:
        if self._state != _NONE:
            self._ignore_second(call)
            return
        stream = self._stream
        try:
            status = _status(status)
            raw = _encode_headers(headers)
            if not stream.disconnected:
                stream.start_response(status, raw, body, True)
        except ResponseError as exc:
            raise self._reject(f"invalid response: {exc} [{CLAUSES[exc.rule]}]") from None
        except ProtocolError as exc:
            self._rejected = str(exc)
            raise
        self._state = _DONE

    def _respond_file(self, status, headers, file, start: int, end, call: str) -> None:
        """Open now, so a missing file is a 404 decided before any head is written (as Granian
        does); send the body from a task, so the app may keep running (or await
        ``client_disconnect()``) meanwhile without stalling its own response."""
        if self._state != _NONE:
            self._ignore_second(call)
            return
        try:
            status = _status(status)
            raw = _encode_headers(headers)
        except ProtocolError as exc:
            self._rejected = str(exc)
            raise
        try:
            path = os.fspath(file)
        except TypeError:
            raise self._reject(f"response file must be a path, got {type(file).__name__}") from None
        stream = self._stream
        if stream.disconnected:
            self._state = _DONE
            return
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - the response body owns and closes it
        except OSError as exc:
            self._gateway.logger.info("cannot open file %r: %s; answering 404", path, exc.strerror)
            stream.start_response(404, _NOT_FOUND_HEADERS, b"Not Found", True)
            self._state = _DONE
            return
        try:
            size = os.fstat(fh.fileno()).st_size
            count = max(0, (size if end is None else end) - start)
            stream.start_response(status, raw)
        except ResponseError as exc:
            fh.close()
            raise self._reject(f"invalid response: {exc} [{CLAUSES[exc.rule]}]") from None
        except BaseException:
            fh.close()
            raise
        if stream.request.method == "HEAD":
            fh.close()
            stream.end_response()
            self._state = _DONE
            return
        self._state = _FILE
        self._file_task = self._gateway.loop.create_task(
            _send_file(stream, fh, start, count, self._gateway.logger)
        )


async def _send_file(stream, fh, offset: int, count: int, logger) -> None:
    """Send ``count`` bytes of an open file from ``offset`` and end the response
    (``Stream.send_file``: by the kernel where it can), then close the file, however it ended.
    ``count`` is what the file held when it was opened, or the range asked for; a file that
    turns out shorter resets the exchange."""
    try:
        with fh:
            await stream.send_file(fh.fileno(), offset, count)
    except ClientDisconnected:
        pass
    except FileShrunk as exc:
        logger.error(
            "file %r ended %d bytes before the requested range; the response was reset",
            fh.name,
            exc.missing,
        )
    except (ResponseError, OSError) as exc:
        logger.error("cannot complete the file response: %s", exc)
        if not stream.disconnected:
            stream.abort()


class BodyChunks:
    """The request body as an async iterator; ends with one ``b""`` (see :class:`HTTPProtocol`)."""

    __slots__ = ("_stream", "_done")

    def __init__(self, stream):
        self._stream = stream
        self._done = False

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            data = await self._stream.receive()
        except ClientDisconnected:
            self._done = True
            raise ProtocolClosed("the client disconnected before sending the whole body") from None
        if not data:
            self._done = True
        return data


class HTTPStreamTransport:
    """What ``response_stream`` returns. Each send waits while the client is slower than the
    application, so a streaming app cannot fill the server's memory; once the client has gone or
    the application has returned, sends raise :class:`ProtocolClosed`."""

    __slots__ = ("_stream", "_open")

    def __init__(self, stream):
        self._stream = stream
        self._open = True

    async def send_bytes(self, data) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ProtocolError(f"send_bytes takes bytes, got {type(data).__name__}")
            data = bytes(data)
        await self._send(data)

    async def send_str(self, data) -> None:
        if type(data) is not str:
            raise ProtocolError(f"send_str takes str, got {type(data).__name__}")
        await self._send(data.encode("utf-8"))

    async def _send(self, data: bytes) -> None:
        if not self._open:
            raise ProtocolClosed("the response stream is closed")
        try:
            await self._stream.send_body(data)
        except ClientDisconnected:
            self._open = False
            raise ProtocolClosed("the client disconnected") from None
        except ResponseError as exc:
            raise ProtocolError(f"invalid response body: {exc} [{CLAUSES[exc.rule]}]") from None


class RSGIGateway:
    """Runs one RSGI application call per HTTP request and guarantees the request an answer:
    the app's response, a 500 with an empty body when it failed before responding, or a dropped
    connection when it failed halfway through a response (nothing else tells the client that the
    body it got is incomplete)."""

    def __init__(self, app, server_state):
        # An object that is both ASGI and RSGI (Emmett) is called through __rsgi__.
        rsgi = getattr(app, "__rsgi__", None)
        self.app = rsgi if rsgi is not None else app
        self.server = server_state
        self.loop = server_state.loop
        self.logger = server_state.logger
        self.warned: set = set()  # kinds of second-response call already warned about
        self.strict = server_state.config.strict
        self.build_scope = server_state.impl.rsgi_scope

    async def __call__(self, stream) -> None:
        protocol = HTTPProtocol(stream, self)
        error = None
        try:
            await self.app(self.build_scope(stream), protocol)
        except asyncio.CancelledError:
            _cancel(stream, protocol)
            raise
        except BaseException as exc:  # noqa: BLE001 - an app error must never kill the server
            error = exc
        state = protocol._state
        if state == _FILE:
            assert protocol._file_task is not None
            try:
                await protocol._file_task
            except asyncio.CancelledError:
                _cancel(stream, protocol)
                raise
        if error is not None:
            # Giving up on a client that has gone is the expected way to stop, not a bug.
            gone = stream.disconnected and isinstance(error, (ProtocolClosed, ClientDisconnected))
            if not gone:
                self.logger.error("exception in RSGI application", exc_info=error)
        elif state == _NONE and not stream.disconnected:
            if protocol._rejected is None:
                self.logger.error(
                    "RSGI application returned without responding [RSGI-HTTP-ERROR-1]"
                )
            else:
                self.logger.error(
                    "RSGI application returned without responding (its response was refused: %s) "
                    "[RSGI-HTTP-ERROR-1]",
                    protocol._rejected,
                )

        if state == _STREAM:
            assert protocol._transport is not None
            protocol._transport._open = False
            if stream.disconnected:
                pass
            elif error is not None:
                stream.abort()
            else:
                try:
                    stream.end_response()
                except ResponseError as exc:
                    self.logger.error("invalid RSGI response stream: %s", exc)
                    stream.abort()
                except ClientDisconnected:
                    pass
        elif state == _NONE and not stream.disconnected:
            try:
                stream.start_response(500, _EMPTY_500_HEADERS, b"", True)
            except (ResponseError, ClientDisconnected):
                stream.abort()
        if error is not None and not isinstance(error, Exception):
            raise error


def _cancel(stream, protocol: HTTPProtocol) -> None:
    """The request task is being cancelled (server shutdown): stop the file task and drop an
    unfinished response rather than leave the client waiting for bytes that will not come."""
    task = protocol._file_task
    if task is not None and not task.done():
        task.cancel()
    if protocol._transport is not None:
        protocol._transport._open = False
    if not stream.response_complete and not stream.disconnected:
        stream.abort()
