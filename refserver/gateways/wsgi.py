"""WSGI (PEP 3333): synchronous applications in a bounded pool of threads, over any :class:`Stream`.

The event loop never runs application code. Each request is handed to a pool thread, which runs the
application and reaches the connection only through the loop (``run_coroutine_threadsafe``): body
reads ask the loop for the next piece of body, body writes go through ``stream.send_body`` and so
wait while the client is slower than the application. The last step of a response (a whole response
known in advance, or the end of a streamed one) is handed back to the loop with the thread's result,
which saves a round trip per request.

Decisions where PEP 3333 and CGI leave room:

* Repeated request headers are joined with ``", "`` (RFC 9110 5.3), except ``Cookie``, joined with
  ``"; "`` (RFC 9113 8.2.3, the only separator cookie parsers accept). For ``Content-Type`` and
  ``Content-Length`` the first field wins: joining them would only produce a value nobody can parse.
* Request headers whose names contain ``_`` are dropped. CGI maps both ``-`` and ``_`` to ``_``, so
  ``X_Forwarded_For`` would be indistinguishable from (or joined into) the ``X-Forwarded-For`` a
  proxy set; nginx and Apache drop such headers for the same reason.
* The response head is sent with the first non-empty piece of body (PEP 3333 "Buffering and
  Streaming"), or with the end of the response for an empty body. A body whose size is known before
  anything is sent (a list or tuple, a regular file in ``wsgi.file_wrapper``) gets a Content-Length.
* A body longer than the application's own Content-Length is cut there (PEP 3333 forbids sending
  more) and logged; a shorter one aborts the connection, since the client could not find its end.
* The reason phrase of the status line is the server's; the application's one is checked but, as in
  ASGI and RSGI, not carried to the wire.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import queue
import re
import stat
import threading
import time

from ..wire.events import ResponseError
from ..wire.fields import BAD_VALUE_STR_RE, TOKEN_STR_RE, remember
from ..wire.response import parse_content_length
from .stream import ClientDisconnected, fail


class WSGIProtocolError(RuntimeError):
    """The application broke a rule of PEP 3333 (raised inside the application where possible)."""


# ------------------------------------------------------------------------------------ environ
# The per-request environ is built by refserver.scopes.wsgi_environ (the implementation's).


def environ_base(config, errors, multiprocess: bool = False) -> dict:
    """The keys that are the same for every request of a server (copied per request).

    ``multiprocess``: the server is a supervised worker. Even one worker has a sibling
    running the same application while it is replaced, so PEP 3333's "may be simultaneously
    invoked by another process" holds for every supervised server."""
    from .. import __version__

    return {
        "SCRIPT_NAME": script_name(config.root_path),
        "SERVER_SOFTWARE": "refserver/" + __version__,
        "wsgi.version": (1, 0),
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        # The input stream ends where the body ends, so applications (Werkzeug, Django) may read a
        # chunked body that has no CONTENT_LENGTH (the mod_wsgi / gunicorn extension).
        "wsgi.input_terminated": True,
    }


def script_name(root_path: str) -> str:
    """``root_path`` in the WSGI form of a path: its UTF-8 bytes as latin-1, no trailing slash."""
    return root_path.rstrip("/").encode("utf-8").decode("latin-1")


# ------------------------------------------------------------------------------------ wsgi.input


async def _next_body(stream) -> bytes:
    data = await stream.receive()
    while not data and not stream.body_complete:
        data = await stream.receive()
    return data


class WSGIInput:
    """``wsgi.input``: the request body as it arrives, never held whole by the server.

    Every fetch is one piece of body from the loop, so an application can start on a large upload
    before the client has finished sending it, and flow control reaches the client: the connection
    stops reading while the application is not. A body that had all arrived when the request was
    dispatched is handed over whole instead (:meth:`preload`). ``read(n)`` returns exactly ``n``
    bytes unless the body ends first, as a buffered file does (multipart parsers rely on it).
    """

    __slots__ = ("_exchange", "_buffer", "_pos", "_eof")

    def __init__(self, exchange):
        self._exchange = exchange
        self._buffer = b""
        self._pos = 0
        self._eof = False

    def preload(self, body: bytes) -> None:
        """The whole body, taken on the loop before the application started: reads then never
        have to cross to the loop (one round trip between threads per read, otherwise)."""
        self._buffer, self._pos, self._eof = body, 0, True

    def _fetch(self) -> bytes:
        if self._eof:
            return b""
        data = self._exchange.call(_next_body(self._exchange.stream))
        if not data:
            self._eof = True
        return data

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        buf, pos = self._buffer, self._pos
        if size is None or size < 0:
            parts = [buf[pos:]] if pos < len(buf) else []
            self._buffer, self._pos = b"", 0
            while True:
                data = self._fetch()
                if not data:
                    return b"".join(parts)
                parts.append(data)
        available = len(buf) - pos
        if available >= size:
            self._pos = pos + size
            return buf[pos : pos + size]
        parts = [buf[pos:]] if available else []
        self._buffer, self._pos = b"", 0
        need = size - available
        while need > 0:
            data = self._fetch()
            if not data:
                break
            if len(data) > need:
                parts.append(data[:need])
                self._buffer, self._pos = data, need
                break
            parts.append(data)
            need -= len(data)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        limit = None if size is None or size < 0 else size
        parts = []
        taken = 0
        while True:
            buf, pos = self._buffer, self._pos
            end = len(buf)
            if limit is not None and end - pos > limit - taken:
                end = pos + limit - taken
            newline = buf.find(b"\n", pos, end)
            if newline >= 0:
                end = newline + 1
            if end > pos:
                parts.append(buf[pos:end])
                taken += end - pos
                self._pos = end
            if newline >= 0 or (limit is not None and taken >= limit):
                break
            data = self._fetch()
            if not data:
                break
            self._buffer, self._pos = data, 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readlines(self, hint: int | None = -1) -> list:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


# ------------------------------------------------------------------------------------ wsgi.errors


class ErrorStream:
    """``wsgi.errors``: what applications write goes to the refserver error log, line by line, so
    it is routed and formatted like the server's own messages. Partial lines are kept per thread,
    so concurrent requests do not splice each other's output."""

    def __init__(self, logger):
        self._logger = logger
        self._local = threading.local()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str (PEP 3333), got {type(text).__name__}")
        pending = getattr(self._local, "pending", "")
        if "\n" not in text:
            self._local.pending = pending + text
            return len(text)
        *lines, rest = (pending + text).split("\n")
        self._local.pending = rest
        for line in lines:
            self._logger.error("%s", line)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            self._logger.error("%s", pending)


# ------------------------------------------------------------------------------------ file wrapper


class FileWrapper:
    """``wsgi.file_wrapper``: a file read in blocks of ``blksize``.

    Returning one lets the gateway recognise a file: a regular file is sent from the loop with
    ``Stream.send_file`` (the kernel copies it on a plain connection) instead of being read here
    block by block, and gets a Content-Length from its size when the application gave none.
    ``close`` exists only when the file has one, and closes it (PEP 3333 "Optional Platform-Specific
    File Handling").
    """

    __slots__ = ("filelike", "blksize", "close")

    def __init__(self, filelike, blksize: int = 8192):
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def region(self):
        """``(descriptor, position, bytes left)`` of a regular file, which the gateway then
        sends whole through ``Stream.send_file`` (by the kernel where it can); None for anything
        else, which is iterated."""
        try:
            fd = self.filelike.fileno()
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            position = self.filelike.tell()
            return fd, position, max(0, info.st_size - position)
        except (AttributeError, OSError, ValueError, TypeError):
            return None


# ------------------------------------------------------------------------------------ one exchange

_STATUS_RE = re.compile(r"([1-9][0-9]{2}) [^\x00-\x08\x0a-\x1f\x7f]*")

#: What a pool thread hands back to the loop as the last step of a response.
_END = "end"  # end the streamed response
_FAIL = "fail"  # 500 if nothing was sent, else abort the connection
# ... or (status, headers, body): the whole response, sent by the loop with end=True;
# ... or None: nothing to do (the client has gone).

#: A list or tuple body up to this size is joined and sent in one write with a Content-Length.
WHOLE_BODY_MAX = 1 << 20


async def _start(stream, status: int, headers: list, data: bytes) -> None:
    stream.start_response(status, headers, data)
    # Wait here too if the first piece filled the socket buffer (backpressure from the first write).
    await stream.send_body(b"")


async def _send_file(stream, status: int, headers: list, fd: int, offset: int, count: int):
    stream.start_response(status, headers)
    await stream.send_file(fd, offset, count, end=False)


class Exchange:
    """One request: the ``start_response`` and ``write`` callables, and the application call.

    Everything here but :meth:`cancel` runs in the pool thread; the stream is only touched on the
    loop, through :meth:`call`.
    """

    __slots__ = (
        "stream",
        "loop",
        "logger",
        "status",
        "headers",
        "remaining",
        "head_sent",
        "cut",
        "cancelled",
        "pending",
    )

    def __init__(self, stream, loop, logger):
        self.stream = stream
        self.loop = loop
        self.logger = logger
        self.status = 0  # 0 until start_response() is called
        self.headers = None
        self.remaining = None  # the body bytes still allowed by the application's Content-Length
        self.head_sent = False
        self.cut = False  # the body reached the application's Content-Length and was cut there
        self.cancelled = False
        self.pending = None

    # ---------------------------------------------------------------- loop access

    def call(self, coro):
        """Run ``coro`` on the loop and wait for its result: the thread's only way to the stream."""
        if self.cancelled:
            coro.close()
            raise ClientDisconnected("the request was cancelled")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed: the server is gone
            coro.close()
            raise ClientDisconnected("the server has stopped") from None
        self.pending = future
        # Set ``pending`` before reading ``cancelled``; cancel() does the reverse, so one of the
        # two sides always sees the other and the wait below cannot outlive a cancellation.
        if self.cancelled:
            future.cancel()
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ClientDisconnected("the request was cancelled") from None
        finally:
            self.pending = None

    def cancel(self) -> None:
        """On the loop, when the request task is cancelled: unblock and stop the thread's I/O."""
        self.cancelled = True
        future = self.pending
        if future is not None:
            future.cancel()

    # ---------------------------------------------------------------- PEP 3333 callables

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    # PEP 3333: too late to change the response; the error goes back up the app.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle
        elif self.status:
            raise WSGIProtocolError(
                "start_response() called a second time without exc_info (PEP 3333) [WSGI-START-4]"
            )
        code, head, length = _check_head(status, headers)
        self.status = code
        self.headers = head
        self.remaining = length
        return self.write

    def write(self, data) -> None:
        """PEP 3333 ``write()``: the data is on its way to the client when this returns."""
        if not isinstance(data, bytes):
            raise WSGIProtocolError(
                f"response body must be bytes (PEP 3333), got {type(data).__name__} [WSGI-RESPONSE-6]"
            )
        if not data:
            return
        remaining = self.remaining
        if remaining is not None:
            if len(data) > remaining:
                self._cut(len(data) - remaining)
                data = data[:remaining]
                if not data:
                    return
            self.remaining = remaining - len(data)
        if self.head_sent:
            self.call(self.stream.send_body(data))
            return
        if not self.status:
            raise WSGIProtocolError(
                "response body before start_response() (PEP 3333) [WSGI-START-6]"
            )
        self.head_sent = True
        try:
            self.call(_start(self.stream, self.status, self.headers, data))
        except ResponseError:
            self.head_sent = False
            raise

    def _cut(self, extra: int) -> None:
        if not self.cut:
            self.cut = True
            self.logger.error(
                "WSGI application sent more body than its Content-Length (%d bytes at least); "
                "the response was cut there",
                extra,
            )

    # ---------------------------------------------------------------- the call

    def run(self, app, environ):
        """The whole application call, in a pool thread; returns the last step for the loop."""
        try:
            result = app(environ, self.start_response)
        except BaseException as exc:  # noqa: BLE001 - an app error must never kill a worker
            return self._failed(exc)
        try:
            return self._respond(result)
        except BaseException as exc:  # noqa: BLE001
            return self._failed(exc)
        finally:
            # PEP 3333: close() is called however the response ended, the client included.
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as exc:  # noqa: BLE001
                    self.logger.error("exception in close() of a WSGI response", exc_info=exc)

    def _respond(self, result):
        if not self.head_sent:
            kind = type(result)
            if kind is list or kind is tuple:
                whole = self._whole(result)
                if whole is not None:
                    return whole
            elif kind is FileWrapper and self.status:
                region = result.region()
                if region is not None:
                    fd, offset, size = region
                    if self.remaining is None:
                        self.headers.append((b"content-length", b"%d" % size))
                    elif self.remaining < size:
                        size = self.remaining  # PEP 3333: never more than the Content-Length
                    self.head_sent = True
                    self.call(_send_file(self.stream, self.status, self.headers, fd, offset, size))
                    return _END
        write = self.write
        for chunk in result:
            write(chunk)
            if self.cut:
                break
        if self.head_sent:
            return _END
        if not self.status:
            raise WSGIProtocolError(
                "the application returned without calling start_response() [WSGI-ERROR-1]"
            )
        return (self.status, self.headers, b"")

    def _whole(self, result):
        """A list or tuple body: everything is known, so the loop sends it in one write."""
        total = 0
        for chunk in result:
            if not isinstance(chunk, bytes):
                raise WSGIProtocolError(
                    f"response body must be bytes (PEP 3333), got {type(chunk).__name__} "
                    "[WSGI-RESPONSE-6]"
                )
            total += len(chunk)
        if total > WHOLE_BODY_MAX:
            return None
        if not self.status:
            raise WSGIProtocolError(
                "the application returned without calling start_response() [WSGI-ERROR-1]"
            )
        body = result[0] if len(result) == 1 else b"".join(result)
        remaining = self.remaining
        if remaining is not None and len(body) > remaining:
            self._cut(len(body) - remaining)
            body = body[:remaining]
        return (self.status, self.headers, body)

    def _failed(self, exc: BaseException):
        if isinstance(exc, ClientDisconnected) or self.cancelled or self.stream.disconnected:
            self.logger.debug("client disconnected during a WSGI response: %s", exc)
            return None
        self.logger.error("exception in WSGI application", exc_info=exc)
        return _FAIL


def _check_head(status, headers):
    """Check the arguments of start_response() now, so the application gets the error (PEP 3333:
    servers should check headers when start_response is called), and encode them for the wire."""
    if not isinstance(status, str):
        raise WSGIProtocolError(
            f"status must be a str like '200 OK' (PEP 3333), got {type(status).__name__} "
            "[WSGI-START-2]"
        )
    if type(status) is str:
        code = _CHECKED_STATUSES.get(status)
        if code is None:
            code = remember(_CHECKED_STATUSES, status, _status_code(status))
    else:  # a str subclass may hash or compare in its own way: checked each time
        code = _status_code(status)
    if type(headers) is not list:
        raise WSGIProtocolError(
            f"response_headers must be a list (PEP 3333), got {type(headers).__name__} "
            "[WSGI-START-3]"
        )
    out = []
    length = None
    checked = _CHECKED_ITEMS
    for item in headers:
        try:
            field = checked.get(item)
        except TypeError:  # unhashable: checked below, and not remembered
            field = _field(item)
        else:
            if field is None:
                field = remember(checked, item, _field(item))
        name = field[0]
        if len(name) == 14 and name.lower() == b"content-length":
            length = parse_content_length(field[1])
            if length < 0:
                raise WSGIProtocolError(f"invalid Content-Length {item[1]!r}")
        out.append(field)
    return code, out, length


def _status_code(status: str) -> int:
    """The code of a start_response() status line, or WSGIProtocolError."""
    match = _STATUS_RE.fullmatch(status)
    if match is None:
        raise WSGIProtocolError(
            f"status must be a 3-digit code, one space and a reason phrase (PEP 3333), "
            f"got {status!r} [WSGI-START-2]"
        )
    code = int(match.group(1))
    if code < 200:
        raise WSGIProtocolError(
            f"status {code}: a WSGI application cannot send informational (1xx) responses "
            "[WSGI-START-2]"
        )
    return code


#: Status lines that passed :func:`_status_code`, with their code.
_CHECKED_STATUSES: dict = {}

#: Response header items that passed :func:`_field`, with their wire form.
_CHECKED_ITEMS: dict = {}


def _field(item) -> tuple:
    """The ``(name, value)`` bytes of one start_response() header item, or WSGIProtocolError."""
    try:
        name, value = item
    except (TypeError, ValueError):
        raise WSGIProtocolError(
            f"each response header must be a (name, value) tuple (PEP 3333), got {item!r} "
            "[WSGI-START-3]"
        ) from None
    if type(name) is not str or type(value) is not str:
        raise WSGIProtocolError(
            f"response header names and values must be str (PEP 3333), got {item!r} [WSGI-START-3]"
        )
    if not TOKEN_STR_RE.fullmatch(name):
        raise WSGIProtocolError(f"invalid response header name {name!r} [WSGI-START-3]")
    if BAD_VALUE_STR_RE.search(value):
        raise WSGIProtocolError(
            f"invalid response header value {value!r} for {name!r} (control characters) "
            "[WSGI-START-3]"
        )
    try:
        raw_value = value.encode("latin-1")
    except UnicodeEncodeError:
        raise WSGIProtocolError(
            f"response header {name!r} has a value that is not latin-1 (PEP 3333) [WSGI-START-3]"
        ) from None
    return (name.encode("ascii"), raw_value)


# ------------------------------------------------------------------------------------ thread pool


def _resolve(future, result, error) -> None:
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class WorkerPool:
    """At most ``size`` daemon threads, started as they are needed.

    Not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined when the interpreter
    exits, so one application that never returns would keep the process alive after shutdown.
    Results come back as asyncio futures resolved with ``call_soon_threadsafe``, with no
    concurrent future in between.
    """

    def __init__(self, size: int, name: str = "refserver-wsgi"):
        self.size = size
        self.name = name
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        # One token per item a thread has finished: that thread is idle, or about to be. A deque,
        # whose append and pop are atomic, where a threading.Semaphore would cost 1.3 µs of
        # interpreted locking per request.
        self._idle: collections.deque = collections.deque()
        self._threads: list = []
        self._closed = False

    def submit(self, loop, fn, *args) -> asyncio.Future:
        """Run ``fn(*args)`` in a thread; call on ``loop``, await the returned future there."""
        if self._closed:
            raise RuntimeError("the WSGI thread pool is closed")
        future = loop.create_future()
        self._work.put((fn, args, loop, future))
        try:
            self._idle.pop()
        except IndexError:  # every thread is busy: start another while the pool may grow
            if len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._worker, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _worker(self) -> None:
        get = self._work.get
        idle = self._idle.append
        while True:
            item = get()
            if item is None:
                return
            fn, args, loop, future = item
            result = error = None
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - reported to the awaiting task
                error = exc
            item = args = None
            idle(None)
            try:
                loop.call_soon_threadsafe(_resolve, future, result, error)
            except RuntimeError:  # the loop is closed; nobody is waiting any more
                pass

    def close(self, timeout: float) -> int:
        """Stop every thread; wait at most ``timeout`` seconds. Returns how many are still busy."""
        self._closed = True
        for _ in self._threads:
            self._work.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in self._threads)


# ------------------------------------------------------------------------------------ the gateway


class WSGIGateway:
    """Runs one WSGI application call per request in the thread pool, and guarantees the request
    gets an answer: the application's, a 500, or a dropped connection when it broke mid-response."""

    #: Seconds :meth:`close` waits for threads still running applications at server shutdown.
    close_timeout = 1.0

    def __init__(self, app, server_state):
        config = server_state.config
        self.app = app
        self.server = server_state
        self.loop = server_state.loop
        self.logger = server_state.logger
        self.errors = ErrorStream(self.logger)
        self.base = environ_base(config, self.errors, server_state.multiprocess)
        self.root = self.base["SCRIPT_NAME"]
        self.build_environ = server_state.impl.wsgi_environ
        self.pool = WorkerPool(config.blocking_threads)
        # Requests wait for a thread here, on the loop, where waiting is cancellable and a client
        # that left while waiting costs no thread at all.
        self.slots = asyncio.Semaphore(config.blocking_threads)

    async def __call__(self, stream) -> None:
        exchange = Exchange(stream, self.loop, self.logger)
        # The input refers to the exchange and not the other way round: a cycle between them
        # would leave every request to the cyclic garbage collector.
        wsgi_input = WSGIInput(exchange)
        body = stream.take_body()
        if body is not None:
            wsgi_input.preload(body)
        environ = self.build_environ(stream, self.base, self.root, wsgi_input)
        # acquire() and release() rather than ``async with``: the context manager adds two
        # coroutines per request around an acquire that almost never waits.
        await self.slots.acquire()
        try:
            if stream.disconnected:
                return
            future = self.pool.submit(self.loop, exchange.run, self.app, environ)
            try:
                final = await future
            except asyncio.CancelledError:
                exchange.cancel()
                if not stream.response_complete:
                    stream.abort()
                raise
            except BaseException as exc:  # noqa: BLE001 - run() catches app errors; this is ours
                self.logger.error("WSGI gateway error", exc_info=exc)
                final = _FAIL
        finally:
            self.slots.release()
        self._finish(stream, final)

    def _finish(self, stream, final) -> None:
        try:
            if final is _END:
                stream.end_response()
            elif type(final) is tuple:
                status, headers, body = final
                stream.start_response(status, headers, body, end=True)
            elif final is _FAIL:
                fail(stream)
            elif not stream.response_complete:
                stream.abort()
        except ClientDisconnected:
            pass
        except ResponseError as exc:
            self.logger.error("invalid WSGI response: %s", exc)
            fail(stream)

    def close(self, timeout: float | None = None) -> None:
        """Stop the pool, waiting at most ``timeout`` (default :attr:`close_timeout`) seconds.

        A thread still inside the application then is left behind: it is a daemon thread, so it
        does not keep the process alive, and nothing it does reaches a client any more (its
        request was cut; the loop is gone).
        """
        busy = self.pool.close(self.close_timeout if timeout is None else timeout)
        if busy:
            self.logger.warning(
                "%d WSGI application call(s) still running at shutdown; not waiting for them",
                busy,
            )


__all__ = [
    "ErrorStream",
    "FileWrapper",
    "WSGIGateway",
    "WSGIInput",
    "WSGIProtocolError",
    "environ_base",
]
