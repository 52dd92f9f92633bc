"""HTTP/1.1 over an asyncio transport.

Thin on purpose: bytes go to :class:`refserver.wire.h1.H1Connection`, requests go to the gateway as
:class:`H1Stream` objects, and this module adds only what needs a clock or a socket: timeouts,
flow control in both directions, and the connection's lifetime.

The fast path runs this same source compiled by Cython (``refserver.protocols._compiled_h1``,
declared in ``_compiled_h1.pxd``), with the connection core of the implementation it is given,
so that the two paths share every rule while the fast one avoids the interpreter on the
per-request path.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

from ..files import (
    CONNECTION_GONE,
    KernelSend,
    SendTimeout,
    check_whole,
    copy_blocks,
    kernel_sends,
)
from ..gateways.stream import ClientDisconnected
from ..wire.events import (
    NEED_DATA,
    PAUSED,
    Body,
    EndOfMessage,
    HTTPError,
    RequestHead,
    RequestTimeout,
)
from ..wire.fields import upgrade_tokens
from .flow import watch_writes

# Stop reading from the socket while this much request body waits for the application.
BODY_HIGH_WATER = 65536

# Why reading is paused: bits of H1Protocol._read_paused (an int: an empty set would cost each
# connection 216 bytes).
PAUSED_FOR_BODY = 1  # the application has not taken the body already buffered
PAUSED_FOR_PIPELINE = 2  # a complete request waits for the one before it to be answered


class H1Stream:
    """One request/response exchange on an HTTP/1.1 connection (see gateways.stream.Stream)."""

    __slots__ = (
        "_proto",
        "request",
        "scheme",
        "client",
        "server",
        "tls",
        "body_complete",
        "response_started",
        "response_complete",
        "disconnected",
        "status",
        "body_sent",
        "started",
        "response_headers",
        "_chunks",
        "_buffered",
        "_body_waiters",
        "_done_waiter",
        "_end_received",
        "_sending",
    )

    def __init__(self, proto: H1Protocol, request):
        self._proto = proto
        self.request = request
        self.scheme = proto.scheme
        self.client = proto.client
        self.server = proto.server
        self.tls = proto.tls
        self.body_complete = False
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.status = 0
        # For the access log and the metrics: response body bytes handed to the connection, the time the
        # application was started (set only when a duration is logged or measured), the fields.
        self.body_sent = 0
        self.started = 0.0
        self.response_headers = None
        self._chunks: list = []  # appended, then taken whole: no need for a deque
        self._buffered = 0
        self._body_waiters: list = []  # one future per concurrent receive() call
        self._done_waiter: asyncio.Future | None = None
        # The wire has delivered the end of the body; ``body_complete`` turns true only once the
        # application has been given every byte (the Stream contract).
        self._end_received = False
        self._sending: KernelSend | None = None  # a file in progress

    # -------------------------------------------------------------- fed by the protocol

    def _feed(self, data: bytes) -> None:
        if self.response_complete:
            return  # the application is done: the rest of the body is read and dropped
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > BODY_HIGH_WATER:
            self._proto.pause_reading_for_body()
        self._wake_body()

    def _feed_end(self) -> None:
        self._end_received = True
        self._wake_body()

    def _drop_body(self) -> None:
        """The response is complete before the body was read: forget what is buffered."""
        self._chunks.clear()
        self._buffered = 0

    def _wake_body(self) -> None:
        waiters = self._body_waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()

    def _finish(self, disconnected: bool) -> None:
        if disconnected:
            metrics = self._proto._metrics
            if metrics is not None:
                metrics.cut(self)  # before ``disconnected`` is set: counted once
            self.disconnected = True
            if self._sending is not None:
                self._sending.stop(ClientDisconnected("the client disconnected"))
        self._wake_body()
        waiter = self._done_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -------------------------------------------------------------- used by gateways

    async def receive(self) -> bytes:
        while True:
            if self._chunks:
                data = self._take_chunks()
                if self._end_received:
                    self.body_complete = True
                else:
                    self._proto.resume_reading_for_body()
                return data
            if self._end_received:
                self.body_complete = True
                return b""
            if self.disconnected:
                raise ClientDisconnected("the client disconnected before sending the whole body")
            self._proto.body_wanted()
            # Each caller waits on its own future: apps (Starlette's disconnect listener, for
            # one) call receive() from two tasks at once, and cancelling one must not wake or
            # cancel the other.
            waiter = self._proto.loop.create_future()
            self._body_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._body_waiters:
                    self._body_waiters.remove(waiter)

    def take_body(self):
        if not self._end_received or self.body_complete or self._body_waiters:
            return None
        self.body_complete = True
        return self._take_chunks()

    def _take_chunks(self) -> bytes:
        """Everything buffered, as one bytes object, and the buffer emptied."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        chunks.clear()
        self._buffered = 0
        return data

    async def wait_disconnect(self) -> None:
        if self.disconnected or self.response_complete:
            return
        if self._done_waiter is None:
            self._done_waiter = self._proto.loop.create_future()
        await asyncio.shield(self._done_waiter)

    def start_response(self, status, headers, body=b"", end=False, close=False) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        conn = self._proto.conn
        if close:
            conn.keep_alive = False
        head, rest = conn.response_start(status, headers, body, end)
        self.response_started = True
        self.status = status
        self.response_headers = headers
        self.body_sent = len(body)
        if rest:
            self._proto.write_pair(head, rest)
        else:
            self._proto.write(head)
        if end:
            self._complete()

    async def send_body(self, data: bytes, end: bool = False) -> None:
        proto = self._proto
        if self.disconnected or proto._closing or proto.transport.is_closing():
            # A failed write closes the transport at once but reports connection_lost only on a
            # later loop iteration; an app writing in a loop that never has to wait for drain
            # would otherwise spin on the dead transport forever without yielding.
            self._finish(disconnected=True)
            raise ClientDisconnected("the client disconnected")
        out = b""
        if data:
            out = proto.conn.response_body(data)
            self.body_sent += len(data)
        if end:
            out += proto.conn.response_end()
        if out:
            proto.write(out)
        if end:
            self._complete()
        elif proto.write_paused:
            await proto.drain()

    async def send_file(self, fd: int, offset: int, count: int, end: bool = True) -> None:
        """A file region as body: copied by the kernel on a plain socket, read in blocks over
        TLS. A file that ends before ``count`` resets the connection (FileShrunk)."""
        proto = self._proto
        if self.disconnected or proto._closing or proto.transport.is_closing():
            self._finish(disconnected=True)
            raise ClientDisconnected("the client disconnected")
        frame = proto.conn.response_file(count)
        if frame is not None and count:
            before, after = frame
            if before:
                proto.write(before)
            if kernel_sends(proto.transport):
                sent = await self._send_by_kernel(fd, offset, count)
            else:
                sent = await copy_blocks(fd, offset, count, proto.write_body)
            self.body_sent += sent
            check_whole(self, sent, count)
            if after:
                proto.write(after)
        if end:
            self.end_response()
        elif proto.write_paused:
            await proto.drain()

    async def _send_by_kernel(self, fd: int, offset: int, count: int) -> int:
        """Copy a file region to the socket with ``sendfile(2)``; returns the bytes sent.

        What the transport holds goes first, so the file follows what was written before it;
        then the transport keeps reading, and nothing else writes until this returns. The
        write timeout applies to the transfer as to any write.
        """
        proto = self._proto
        await proto.flush()
        if proto._closing or self.disconnected or proto.transport.is_closing():
            self._finish(disconnected=True)
            raise ClientDisconnected("the client disconnected")
        sending = KernelSend(
            proto.loop,
            os.dup(proto.transport.get_extra_info("socket").fileno()),
            fd,
            offset,
            count,
            proto._write_timeout,
        )
        self._sending = sending
        try:
            return await sending.wait()
        except SendTimeout:
            proto._on_write_timeout()
            raise ClientDisconnected("the client took no response bytes in time") from None
        except ClientDisconnected:
            raise
        except OSError as exc:
            if exc.errno not in CONNECTION_GONE:
                raise  # the file's fault (one sendfile cannot read): the caller's to report
            self._finish(disconnected=True)
            raise ClientDisconnected(str(exc)) from None
        finally:
            self._sending = None

    def end_response(self) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        data = self._proto.conn.response_end()
        if data:
            self._proto.write(data)
        self._complete()

    async def send_trailers(self, headers: list) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        data = self._proto.conn.response_trailers(headers)
        if data:
            self._proto.write(data)
        self._complete()

    def send_informational(self, status: int, headers: list) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        data = self._proto.conn.informational(status, headers)
        if data:
            self._proto.write(data)

    def abort(self) -> None:
        self._proto.close(abort=True)

    def _complete(self) -> None:
        self.response_complete = True
        waiter = self._done_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._proto.response_done(self)


class H1Protocol:
    """One HTTP/1.1 connection: feeds the wire core, dispatches requests, enforces timeouts.

    An asyncio protocol by its methods rather than by subclassing ``asyncio.Protocol``: the
    compiled copy is an extension type, which cannot derive from a Python class.
    """

    def __init__(self, server_state, impl):
        self.state = server_state
        self.loop = server_state.loop
        self._metrics = server_state.metrics  # None unless --metrics
        config = server_state.config
        self.conn = impl.h1_connection(
            impl.make_parser(config.limit_request_head),
            server_state.limits,
            date_header=config.date_header,
            server_header=b"refserver" if config.server_header else None,
            head_writer=impl.head_writer,
            rules=impl.response_rules,
            view=impl.request_view,
        )
        self.transport = None
        self.scheme = "http"
        self.tls = None  # the ASGI ``tls`` extension of a TLS connection (refserver.tls)
        self.client = None
        self.server = None
        self._forwarding = None  # refserver.proxy.Forwarding when the peer is a trusted proxy
        self.stream: H1Stream | None = None
        self.write_paused = False
        self._drain_waiters: list = []
        self._read_paused = 0  # PAUSED_FOR_* bits; reading is paused while any is set
        self._timer = None  # the loop's timer handle, due at _timer_at
        self._timer_at = 0.0
        # "head" (header-read deadline), "body" (body-read timeout), "idle" (keep-alive), or None
        self._timer_kind = None
        self._deadline = 0.0
        self._head_timeout = config.http1_header_read_timeout
        self._body_timeout = config.http1_body_read_timeout
        self._idle_timeout = config.timeout_keep_alive
        self._write_timeout = config.timeout_write
        self._write_deadline = None  # a WriteDeadline, made when writes first have to wait
        self._closing = False
        self._gathers = False  # the transport writes several buffers in one call (write_pair)
        self._processing = False  # inside _process: a finished cycle must not re-enter it
        self._waiting = None  # a request whose application has not been started yet
        self._shutting_down = False
        self._requested = False  # a request has begun on this connection
        self._upgrade = None  # a switch (WebSocket, h2c) waiting for the end of its request
        # Upgrade fields are worth reading: WebSockets are served, or h2c is (below).
        self._upgrades = server_state.ws_handler is not None
        # Cleartext --http auto: HTTP/2 by prior knowledge or by h2c upgrade (connection.py).
        self.h2c = False
        self._fresh = False  # no byte read yet: the first read may be an HTTP/2 preface
        self._early = b""  # a first read too short to tell

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._gathers = gathers_writes(type(transport))
        self.client = _address(transport.get_extra_info("peername"))
        self.server = _address(transport.get_extra_info("sockname"))
        forwarding = self.state.forwarding
        if forwarding is not None and forwarding.trusts_peer(self.client):
            self._forwarding = forwarding  # the peer is a proxy: its requests are rewritten
        if transport.get_extra_info("sslcontext"):
            self.scheme = "https"
            self.tls = tls_extension(transport)
        elif self.state.config.http == "auto":
            self.h2c = self._fresh = self._upgrades = True
        self.state.connections.add(self)
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._closing = True
        self._drop_timer()
        if self._write_deadline is not None:
            self._write_deadline.stop()
        self.state.connections.discard(self)
        stream = self.stream
        if stream is not None:
            stream._finish(disconnected=True)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def data_received(self, data: bytes) -> None:
        if self._fresh:
            # RFC 9113 3.3, prior knowledge: the preface starts with "PRI ", which no HTTP/1.1
            # request does. A first read shorter than that is held until it can be told apart.
            data = self._early + data
            if len(data) < 4 and b"PRI "[: len(data)] == data:
                self._early = data
                return
            self._fresh = False
            self._early = b""
            if data[:4] == b"PRI ":
                switch_to_h2(self, data)
                return
        try:
            self.conn.receive_data(data)
        except HTTPError as exc:
            self._reject(exc)
            return
        self._process()
        if (
            self._timer_kind != "head"
            and self.stream is None
            and not self._closing
            and self.conn.has_partial_head
        ):
            # Part of a new request's head: the idle keep-alive timer gives way to the head
            # deadline. (Armed only now: a head that came whole is answered without a timer.)
            self._arm_head_timer()

    def eof_received(self):
        # A client that shuts down its side has gone, as far as the application is concerned
        # (as in uvicorn and Granian): the transport closes and the stream sees a disconnect.
        if self.stream is not None:
            self.stream._finish(disconnected=True)
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        self._watch_writes()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._write_deadline is not None and not self._closing:
            self._write_deadline.stop()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # ---------------------------------------------------------------- parsing

    def _process(self) -> None:
        """Parse what has been received, and start the application for a new request once the
        bytes at hand are parsed: a body that came with its head is then already buffered when
        the application first asks for it."""
        if self._processing:
            return  # called from inside the loop below (a response finished there): it goes on
        self._processing = True
        try:
            self._process_events()
        finally:
            self._processing = False
        self._dispatch_waiting()

    def _process_events(self) -> None:
        conn = self.conn
        while not self._closing:
            try:
                event = conn.next_event()
            except HTTPError as exc:
                self._reject(exc)
                return
            kind = type(event)
            if kind is Body:
                if self.stream is not None:
                    self.stream._feed(event.data)
            elif kind is RequestHead:
                self._cancel_timer()
                self._start_request(conn.request)
            elif kind is EndOfMessage:
                if self._upgrade is not None:
                    self._upgrade.switch()  # the transport now belongs to the WebSocket
                    return
                stream = self.stream
                if stream is not None:
                    stream._feed_end()
                    if stream is self._waiting:
                        self._dispatch_waiting()  # a 503 past the limit ends the cycle here
                    elif stream.response_complete:
                        self._next_cycle()  # this loop goes on with a pipelined request
            elif event is NEED_DATA:
                if self.stream is not None:
                    self._time_body()  # every read moves the deadline
                return
            elif event is PAUSED:
                self._pause_reading(PAUSED_FOR_PIPELINE)
                return
            else:  # the peer closed its side
                if self.stream is None or self.stream.response_complete:
                    self.close()
                elif not conn.request_complete:
                    self.stream._finish(disconnected=True)
                return

    def _start_request(self, request) -> None:
        if self._upgrades and upgrade_tokens(request.headers):
            # A bad WebSocket handshake is answered here; a good one, or h2c, is switched at the
            # end of the request; anything else is served as an ordinary request.
            upgrade = start_upgrade(self, request)
            if upgrade is not None or self._closing:
                self._upgrade = upgrade
                return
        stream = H1Stream(self, request)
        if self._forwarding is not None:
            self._forwarding.apply(stream)
        self.stream = stream
        self._requested = True
        if self._shutting_down:
            self.conn.keep_alive = False
        self._waiting = stream  # dispatched at the end of its body or of the bytes at hand

    def _dispatch_waiting(self) -> None:
        stream = self._waiting
        if stream is not None:
            self._waiting = None
            if not stream.disconnected:  # a request refused while parsing never reaches the app
                self.state.dispatch(stream)

    def _reject(self, exc: HTTPError) -> None:
        self.state.logger.info("%s: %d %s", _peer(self.client), exc.status, exc.detail)
        stream = self.stream
        if stream is None or not stream.response_started:
            if stream is not None:
                stream.response_started = True
            try:
                self.write(self.conn.error_response(exc.status))
            except Exception:  # a response head was already written by the app
                pass
            else:
                if not self._closing:  # written: the server's answer is the whole response
                    if stream is not None:
                        stream.response_complete = True
                    if self._metrics is not None:
                        # A request refused before its head was accepted counts as HTTP/1.1.
                        version = stream.request.http_version if stream is not None else "1.1"
                        self._metrics.refused(version, exc.status)
        if stream is not None:
            stream._finish(disconnected=True)
        self.close()

    # ---------------------------------------------------------------- cycles

    def response_done(self, stream: H1Stream) -> None:
        if self.state.access_log:
            self.state.log_access(stream)
        if self._metrics is not None:
            self._metrics.count(stream, self.conn.body_received)
        if self.conn.request_complete or not self.conn.keep_alive:
            self._next_cycle()
        else:
            # The rest of the body is read and dropped; EndOfMessage finishes the cycle. Reading
            # may have been paused for a body nobody will consume now.
            stream._drop_body()
            self._resume_reading(PAUSED_FOR_BODY)

    def _next_cycle(self) -> None:
        stream = self.stream
        if stream is not None:
            stream._finish(disconnected=False)
        self.stream = None
        if not self.conn.keep_alive or self._shutting_down:
            self.close()
            return
        try:
            pipelined = self.conn.start_next_cycle()
        except HTTPError as exc:
            self._reject(exc)
            return
        self._resume_reading(PAUSED_FOR_PIPELINE)
        self._resume_reading(PAUSED_FOR_BODY)
        if self.conn.has_partial_head:
            self._arm_head_timer()  # a pipelined request has begun: its deadline runs
        else:
            self._arm_timer("idle")
        if pipelined:
            self._process()

    # ---------------------------------------------------------------- flow control

    def body_wanted(self) -> None:
        """The application waits for body: send 100 Continue if owed, and read from the socket."""
        conn = self.conn
        if conn.expect_continue and not conn.sent_continue and not conn.response_started:
            self.write(conn.continue_response())
            self._time_body()  # the client was waiting for us until now
        self._resume_reading(PAUSED_FOR_BODY)

    def _time_body(self) -> None:
        """Run the body-read timeout if the client is the one being waited for: not while the
        application has not taken what is buffered (reading is paused), nor while a client that
        asked for 100 Continue has not been sent it. It limits a stall, not a rate: every call
        moves the deadline, and a slow upload that keeps coming is never cut."""
        stream = self.stream
        conn = self.conn
        if (
            stream is None
            or stream._end_received
            or not self._body_timeout
            or self._read_paused
            or self._closing
            or (conn.expect_continue and not conn.sent_continue)
        ):
            return
        self._arm_timer("body")

    def pause_reading_for_body(self) -> None:
        self._pause_reading(PAUSED_FOR_BODY)

    def resume_reading_for_body(self) -> None:
        self._resume_reading(PAUSED_FOR_BODY)

    def _pause_reading(self, reason: int) -> None:
        if not self._read_paused and self.transport is not None:
            self.transport.pause_reading()
        self._read_paused |= reason
        if self._timer_kind == "body":
            self._timer_kind = None  # the application is slow, not the client

    def _resume_reading(self, reason: int) -> None:
        if self._read_paused & reason:
            self._read_paused &= ~reason
            if not self._read_paused and not self._closing:
                self.transport.resume_reading()
                if self.stream is not None:
                    self._time_body()  # the client is waited for again

    def write(self, data: bytes) -> None:
        if not self._closing:
            self.transport.write(data)

    def write_pair(self, head: bytes, body: bytes) -> None:
        """A head and the large body behind it: one gathered system call where the transport
        can (:func:`gathers_writes`), else two writes."""
        if self._closing:
            return
        if self._gathers:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
            self.transport.write(body)

    async def write_body(self, data: bytes) -> None:
        """Write already framed body bytes, waiting while the client is slower than us."""
        if self._closing:
            raise ClientDisconnected("the client disconnected")
        self.transport.write(data)
        if self.write_paused:
            await self.drain()

    async def flush(self) -> None:
        """Wait until the transport holds no bytes: its high-water mark set to 0 makes it call
        ``resume_writing`` once empty. The write timeout applies as to any wait for the client."""
        transport = self.transport
        if transport.get_write_buffer_size():
            low, high = transport.get_write_buffer_limits()
            transport.set_write_buffer_limits(0, 0)
            try:
                await self.drain()
            finally:
                if not transport.is_closing():
                    transport.set_write_buffer_limits(high, low)

    async def drain(self) -> None:
        if self.write_paused and not self._closing:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._closing and self.stream is not None and self.stream.disconnected:
            raise ClientDisconnected("the client disconnected")

    # ---------------------------------------------------------------- timers and closing

    def _arm_head_timer(self) -> None:
        self._arm_timer("head")

    def _arm_timer(self, kind: str) -> None:
        """Set the connection's one deadline: ``"head"`` (the header-read timeout), ``"body"``
        (the body-read timeout) or ``"idle"`` (keep-alive).

        Every response moves the deadline, so the loop's timer is not re-armed each time: it
        stays where it is when it fires no later than the new deadline and, on firing early,
        re-arms itself for what is left.
        """
        if kind == "head":
            delay = self._head_timeout
        elif kind == "body":
            delay = self._body_timeout
        else:
            delay = self._idle_timeout
        self._timer_kind = kind if delay else None
        if not delay:
            return
        deadline = self.loop.time() + delay
        self._deadline = deadline
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._timer_kind is None:
            return
        if self._deadline > self.loop.time():
            self._timer_at = self._deadline
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        kind = self._timer_kind
        self._timer_kind = None
        if kind == "head":
            self._on_head_timeout()
        elif kind == "body":
            self._on_body_timeout()
        else:
            self._on_idle_timeout()

    def _cancel_timer(self) -> None:
        self._timer_kind = None

    def _drop_timer(self) -> None:
        self._timer_kind = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_head_timeout(self) -> None:
        if self.stream is None and self.conn.has_partial_head:
            self._reject(RequestTimeout("request head not received in time"))
        else:
            self.close()

    def _on_body_timeout(self) -> None:
        stream = self.stream
        if stream is not None and not stream._end_received and not self._read_paused:
            # 408 if no response has begun; either way the application sees a disconnect.
            self._reject(RequestTimeout("request body not received in time"))

    def _on_idle_timeout(self) -> None:
        if self.stream is None:
            self.close()

    def shutdown(self) -> bool:
        """Server shutdown: close now if idle, else after the response in progress.

        A connection whose request is still arriving — none has begun yet, or a head is
        partly read — is not idle: its client sent, or is sending, a request that no other
        server will see. It stays open for that one request (answered with ``Connection:
        close``) and True is returned; the server bounds the wait. This is what lets a worker
        be replaced under load without a refused request: a connection accepted just before
        the stop is served, not reset.
        """
        self._shutting_down = True
        if self.stream is not None:
            self.conn.keep_alive = False
            return False
        if self.awaiting_request:
            return True
        self.close()
        return False

    @property
    def awaiting_request(self) -> bool:
        """No request in progress, and one expected: the first, or a head partly read."""
        return (
            self.stream is None
            and not self._closing
            and (not self._requested or self.conn.has_partial_head)
        )

    def detach(self) -> None:
        """The transport now belongs to another protocol (a WebSocket): stop the timers, never
        write or close again, and leave the transport reading if a pause of ours held it."""
        self._closing = True
        self._drop_timer()
        if self._write_deadline is not None:
            self._write_deadline.stop()
        if self._read_paused:
            self._read_paused = 0
            self.transport.resume_reading()

    def close(self, abort: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        self._drop_timer()
        transport = self.transport
        if transport is not None:
            if abort:
                if self.conn.response_close_delimited:
                    # A plain close would end this response as if it were complete (HTTP/1.0,
                    # no Content-Length): a reset is the only way left to say it was cut short.
                    _reset_on_close(transport)
                transport.abort()
            else:
                transport.close()
                if transport.get_write_buffer_size():
                    self._watch_writes()  # the flush must not wait for ever either

    def _watch_writes(self) -> None:
        """The client must take bytes from the write buffer within ``--timeout-write``."""
        self._write_deadline = watch_writes(
            self._write_deadline,
            self.loop,
            self.transport,
            self._write_timeout,
            self._on_write_timeout,
        )

    def _on_write_timeout(self) -> None:
        self.state.logger.info(
            "%s: the client took no response bytes for %gs; closing",
            _peer(self.client),
            self._write_timeout,
        )
        self._closing = True
        self._drop_timer()
        self.transport.abort()


def _reset_on_close(transport) -> None:
    """Make the transport's close send a TCP reset (SO_LINGER on, timeout 0) instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


def tls_extension(transport):
    """The ASGI ``tls`` extension of a TLS connection (:mod:`refserver.tls`, imported only when a
    connection uses TLS)."""
    from ..tls import asgi_tls_extension

    return asgi_tls_extension(transport)


def start_upgrade(h1, request):
    """The switch an Upgrade request asks for (:mod:`refserver.protocols.connection`, imported
    here, since it builds on this module)."""
    from .connection import start_upgrade as start

    return start(h1, request)


def switch_to_h2(h1, data: bytes) -> None:
    """Hand the connection to HTTP/2 (:mod:`refserver.protocols.connection`)."""
    from .connection import switch_to_h2 as switch

    switch(h1, data)


def gathers_writes(transport_cls) -> bool:
    """Whether ``writelines`` of this transport class sends its pieces in one system call, with
    flow control: uvloop's does (one writev). A ``writelines`` written in asyncio gets two writes
    instead, whatever class inherits it: before 3.12 (and over TLS) it joins the pieces, copying
    the body, and the 3.12 and 3.13 socket transport's skips flow control (gh-127655) and the
    lost-connection check (gh-136234) in the releases made before those were fixed."""
    own = getattr(transport_cls, "writelines", None)
    module = getattr(own, "__module__", None) or ""
    return own is not None and module != "asyncio" and not module.startswith("asyncio.")


def _address(addr):
    if isinstance(addr, tuple):
        return (addr[0], addr[1])
    if isinstance(addr, str) and addr:
        return (addr, None)
    return None


def _peer(client) -> str:
    return "%s:%s" % client if client and client[1] is not None else "unix"
