"""HTTP/2 over an asyncio transport.

Thin on purpose, like :mod:`refserver.protocols.h1`: frames go to the sans-IO core
(:class:`refserver.wire.h2.H2Connection`), each request goes to the gateway as an :class:`H2Stream`,
and this module adds what needs a clock or a socket: the flow of response bytes against the peer's
windows and the transport's buffer, the keep-alive PING, idle and write timeouts, and the
connection's lifetime. A stream opened with an RFC 8441 extended CONNECT becomes the channel of a
WebSocket session (:class:`H2WebSocketChannel`), the same session an HTTP/1.1 Upgrade gets.

Response bytes never wait inside the core: each stream keeps what the windows do not let through
yet and sends it as they open (:meth:`H2Protocol._flush`), so a slow stream holds only itself, and
an application writing a body waits while its stream holds more than :data:`STREAM_HIGH_WATER`.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from ..files import check_whole, copy_blocks
from ..gateways.stream import ClientDisconnected
from ..wire import h2 as wire
from ..wire.events import ResponseError
from ..wire.h1 import REASONS
from ..wire.response import (
    H2_CONNECTION_FIELDS,
    NO_BODY_STATUSES,
    TEXT_PLAIN,
    check_complete,
    check_informational,
    check_trailers,
    count_body,
)
from .flow import watch_writes
from .h1 import _address, _peer

if TYPE_CHECKING:
    from .ws import WebSocketSession

#: An application's send waits while its stream holds this many bytes the windows have not let
#: through (the HTTP/1.1 counterpart is the transport's high-water mark).
STREAM_HIGH_WATER = 65536


def h2_settings(config) -> wire.H2Settings:
    """The settings this server advertises, from the ``--http2-*`` options."""
    return wire.H2Settings(
        max_concurrent_streams=config.http2_max_concurrent_streams,
        initial_stream_window=config.http2_initial_stream_window,
        initial_connection_window=config.http2_initial_connection_window,
        max_frame_size=config.http2_max_frame_size,
        max_header_list_size=config.http2_max_header_list_size,
    )


class H2Stream:
    """One request/response exchange on an HTTP/2 connection (see gateways.stream.Stream)."""

    __slots__ = (
        "_proto",
        "stream_id",
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
        "body_received",
        "_chunks",
        "_end_received",
        "_body_waiters",
        "_done_waiter",
        "_head_only",
        "_remaining",
        "_no_body",
        "_out",
        "_out_end",
        "_trailers",
        "_send_waiter",
        "_continue_owed",
        "_te_trailers",
    )

    def __init__(self, proto: H2Protocol, stream_id: int, request):
        self._proto = proto
        self.stream_id = stream_id
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
        self.body_sent = 0  # for the access log and the metrics, as on HTTP/1.1
        self.started = 0.0
        self.response_headers = None
        self.body_received = 0
        self._chunks: list = []
        self._end_received = False
        self._body_waiters: list = []
        self._done_waiter: asyncio.Future | None = None
        self._head_only = request.method == "HEAD"
        self._remaining = -1  # what the response's Content-Length still expects
        self._no_body = False
        # Response bytes the windows have not let through yet, and whether the end follows them.
        self._out = bytearray()
        self._out_end = False
        self._trailers = None
        self._send_waiter: asyncio.Future | None = None
        self._continue_owed = self._te_trailers = False
        for name, value in request.headers:
            if name == b"expect":
                self._continue_owed = value.lower() == b"100-continue"
            elif name == b"te":
                self._te_trailers = value.strip().lower() == b"trailers"

    # -------------------------------------------------------------- fed by the protocol

    def _feed(self, data: bytes) -> None:
        self.body_received += len(data)
        if self.response_complete:
            self._proto.consumed(self.stream_id, len(data))  # nobody will read it
            return
        self._chunks.append(data)
        self._wake_body()

    def _feed_end(self) -> None:
        self._end_received = True
        self._wake_body()

    def _wake_body(self) -> None:
        for waiter in self._body_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._body_waiters.clear()

    def _finish(self, disconnected: bool) -> None:
        if disconnected:
            metrics = self._proto._metrics
            if metrics is not None:
                metrics.cut(self)  # before ``disconnected`` is set: counted once
            self.disconnected = True
        self._wake_body()
        self._wake_send()
        waiter = self._done_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_send(self) -> None:
        waiter = self._send_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -------------------------------------------------------------- used by gateways

    async def receive(self) -> bytes:
        while True:
            if self._chunks:
                data = self._take_chunks()
                if self._end_received:
                    self.body_complete = True
                return data
            if self._end_received:
                self.body_complete = True
                return b""
            if self.disconnected:
                raise ClientDisconnected("the client disconnected before sending the whole body")
            if self._continue_owed:
                self._continue_owed = False
                if not self.response_started:
                    self._proto.informational(self, 100, [])
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
        chunks = self._chunks
        if not chunks:
            return b""
        data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        chunks.clear()
        self._proto.consumed(self.stream_id, len(data))
        return data

    async def wait_disconnect(self) -> None:
        if self.disconnected or self.response_complete:
            return
        waiter = self._done_waiter
        if waiter is None:
            waiter = self._done_waiter = self._proto.loop.create_future()
        await asyncio.shield(waiter)

    def start_response(self, status, headers, body=b"", end=False, close=False) -> None:
        # ``close`` asks to end the connection; HTTP/2 ends only this stream, which the end of
        # the response does.
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if self.response_started:
            raise ResponseError("the response has already started")
        proto = self._proto
        fields, length, _ = proto.rules.head(status, headers, body, end, self._head_only)
        self._no_body = self._head_only or status in NO_BODY_STATUSES
        if self._no_body:
            # A HEAD response's Content-Length describes the GET's body: none is owed here.
            body = b""
            length = -1
        elif length >= 0 and body:
            length = count_body(length, len(body))
        self._remaining = length
        self.response_started = True
        self.status = status
        self.response_headers = headers
        self.body_sent = len(body)
        proto.send_head(self, status, fields, end and not body)
        if body:
            self._out += body
            self._out_end = end
            proto.flush_stream(self)
        if end:
            self._complete()

    async def send_body(self, data: bytes, end: bool = False) -> None:
        if self.disconnected or self._proto.closing:
            self._finish(disconnected=True)
            raise ClientDisconnected("the client disconnected")
        if not self.response_started or self.response_complete:
            raise ResponseError("response body sent outside of a response")
        if data and not self._no_body:
            if self._remaining >= 0:
                self._remaining = count_body(self._remaining, len(data))
            self._out += data
            self.body_sent += len(data)
        if end:
            self.end_response()
            return
        self._proto.flush_stream(self)
        await self._wait_sent()

    async def send_file(self, fd: int, offset: int, count: int, end: bool = True) -> None:
        """A file region as body, read in blocks: DATA frames are framed and flow-controlled
        here, which the kernel cannot do. A file that ends before ``count`` resets the stream."""
        if not self._no_body:
            check_whole(self, await copy_blocks(fd, offset, count, self.send_body), count)
        elif self.disconnected or self._proto.closing:
            self._finish(disconnected=True)
            raise ClientDisconnected("the client disconnected")
        if end:
            self.end_response()

    async def _wait_sent(self) -> None:
        """Wait while the stream holds more than :data:`STREAM_HIGH_WATER` unsent bytes, or
        the connection's transport is full."""
        proto = self._proto
        while not self.disconnected and (len(self._out) > STREAM_HIGH_WATER or proto.write_paused):
            if proto.write_paused:
                await proto.drain()
                continue
            self._send_waiter = waiter = proto.loop.create_future()
            await waiter
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")

    def end_response(self) -> None:
        self._end(None)

    async def send_trailers(self, headers: list) -> None:
        """End the response with a trailer section (HEADERS with END_STREAM), when the client
        asked for one with ``TE: trailers``; else the response simply ends, as over HTTP/1.1."""
        fields = check_trailers(headers)
        self._end(fields if self._te_trailers else None)
        await self._wait_sent()

    def _end(self, trailers) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if self.response_complete:
            return
        if self._remaining > 0:
            self.abort()
            check_complete(self._remaining)
        self._out_end = True
        self._trailers = trailers
        self._proto.flush_stream(self)
        self._complete()

    def _sent_all(self) -> None:
        """Every byte and the end of the response are with the transport."""
        if self.response_complete:
            self._proto.forget(self)

    def send_informational(self, status: int, headers: list) -> None:
        """A 1xx response (103 Early Hints) before the final one."""
        fields = check_informational(status, headers)
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if not self.response_started:
            self._proto.informational(self, status, fields)

    def abort(self) -> None:
        self._proto.reset(self)

    def _complete(self) -> None:
        self.response_complete = True
        waiter = self._done_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._proto.response_done(self)


class H2Protocol:
    """One HTTP/2 connection: feeds the core, dispatches streams, sends what the windows allow."""

    def __init__(self, server_state, impl):
        self.state = server_state
        self.loop = server_state.loop
        self._metrics = server_state.metrics  # None unless --metrics
        config = server_state.config
        self.config = config
        self.impl = impl
        self.rules = impl.response_rules(
            b"refserver" if config.server_header else None,
            config.date_header,
            H2_CONNECTION_FIELDS,
        )
        self.conn = wire.H2Connection(h2_settings(config), server_state.limits)
        self.transport = None
        self.scheme = "http"
        self.tls = None
        self.client = None
        self.server = None
        self.streams: dict = {}  # stream id -> H2Stream or H2WebSocketChannel
        self.write_paused = False
        self.closing = False
        self._drain_waiters: list = []
        self._blocked: dict = {}  # streams holding bytes the windows did not let through
        self._idle_timer = None
        self._ping_timer = None
        self._pong_timer = None
        self._ping_payload = None
        self._write_deadline = None
        self._shutting_down = False
        self._forwarding = None  # refserver.proxy.Forwarding when the peer is a trusted proxy
        self.upgrade_request = None  # an h2c upgrade's request, made stream 1 (connection.py)
        self._write_pending = False  # a write of the core's output is scheduled
        self._unwritten = 0  # DATA bytes handed to the core since its output was last written

    # ---------------------------------------------------------------- starting

    def connection_made(self, transport, data: bytes = b"", upgrade=None) -> None:
        """Start on ``transport``: fresh (ALPN h2), or handed over by the HTTP/1.1 protocol with
        the ``data`` it read (a prior-knowledge preface) or after an h2c ``upgrade`` (the
        request received over HTTP/1.1, which becomes stream 1; the core was started from its
        HTTP2-Settings already, see :mod:`refserver.protocols.connection`)."""
        self.transport = transport
        self.client = _address(transport.get_extra_info("peername"))
        self.server = _address(transport.get_extra_info("sockname"))
        forwarding = self.state.forwarding
        if forwarding is not None and forwarding.trusts_peer(self.client):
            self._forwarding = forwarding  # the peer is a proxy: its requests are rewritten
        if transport.get_extra_info("sslcontext"):
            from ..tls import asgi_tls_extension

            self.scheme = "https"
            self.tls = asgi_tls_extension(transport)
        self.state.connections.add(self)
        if upgrade is None:
            self.conn.initiate()
        self._write_out()
        if upgrade is not None:
            self._on_request(wire.RequestReceived(1, upgrade, True))
        self._arm_idle()
        self._arm_ping()
        if data:
            self.data_received(data)

    # ---------------------------------------------------------------- asyncio callbacks

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except Exception:  # the core promises not to raise; a bug must not leave a hung peer
            self.state.logger.exception("%s: HTTP/2 core failed", _peer(self.client))
            self.conn.close(wire.INTERNAL_ERROR, reason="internal error")
            events = self.conn.take_events()
        self._handle(events)
        self._write_out()

    def eof_received(self):
        return None  # the transport closes; connection_lost ends the streams

    def connection_lost(self, exc) -> None:
        self.closing = True
        self._cancel_timers()
        if self._write_deadline is not None:
            self._write_deadline.stop()
        self.state.connections.discard(self)
        for stream in list(self.streams.values()):
            stream._finish(disconnected=True)
        self.streams.clear()
        self._blocked.clear()
        self._wake_drain()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._write_deadline = watch_writes(
            self._write_deadline,
            self.loop,
            self.transport,
            self.config.timeout_write,
            self._on_write_timeout,
        )

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._write_deadline is not None:
            self._write_deadline.stop()
        self._wake_drain()

    def _wake_drain(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        for stream in list(self.streams.values()):
            stream._wake_send()

    async def drain(self) -> None:
        if self.write_paused and not self.closing:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    # ---------------------------------------------------------------- events

    def _handle(self, events: list) -> None:
        for event in events:
            kind = type(event)
            if kind is wire.BodyReceived:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._feed(event.data)
                else:
                    self.conn.consumed(event.stream_id, len(event.data))
            elif kind is wire.RequestReceived:
                self._on_request(event)
            elif kind is wire.BodyEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream._feed_end()
            elif kind is wire.WindowOpened:
                self._on_window(event.stream_id)
            elif kind is wire.StreamReset:
                if event.reason and not event.by_peer:
                    self.state.logger.info(
                        "%s: HTTP/2 stream %d reset (%s: %s)",
                        _peer(self.client),
                        event.stream_id,
                        event.code,
                        event.reason,
                    )
                stream = self.streams.pop(event.stream_id, None)
                self._blocked.pop(event.stream_id, None)
                if stream is not None:
                    stream._finish(disconnected=True)
                self._arm_idle()
            elif kind is wire.RequestRejected:
                self._on_rejected(event)
            elif kind is wire.PingAcked:
                self._on_ping_ack(event.payload)
            elif kind is wire.ConnectionEnded:
                self._on_ended(event)

    def _on_request(self, event) -> None:
        sid = event.stream_id
        request = event.request
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if event.protocol is not None:
            self._on_extended_connect(event)
            return
        stream = H2Stream(self, sid, request)
        if self._forwarding is not None:
            self._forwarding.apply(stream)
        self.streams[sid] = stream
        if event.end_stream:
            stream._feed_end()
        self.state.dispatch(stream)

    def _on_extended_connect(self, event) -> None:
        """RFC 8441: ``:protocol websocket`` opens a WebSocket session on this stream; any other
        protocol is not served (501), like a plain CONNECT."""
        from ..wire.ws_handshake import HandshakeError, parse_handshake

        sid = event.stream_id
        if event.protocol != "websocket" or self.state.ws_handler is None:
            self._answer(sid, 501, b"Not Implemented")
            if self._metrics is not None:
                self._metrics.refused("2", 501)  # no WebSocket served: a refused request
            return
        try:
            handshake = parse_handshake(event.request)
        except HandshakeError as exc:
            self.state.logger.info("%s: %d %s", _peer(self.client), exc.status, exc.detail)
            self._answer(sid, exc.status, exc.detail.encode(), list(exc.headers))
            return
        from .ws import WebSocketSession

        channel = H2WebSocketChannel(self, sid)
        session = WebSocketSession(self.state, event.request, self, handshake)
        channel.session = session
        session.channel = channel
        self.streams[sid] = channel
        if event.end_stream:
            channel._finish(disconnected=True)
            return
        self.state.dispatch_ws(session)

    def _on_rejected(self, event) -> None:
        """A refused request (413, 414, 431, 400, 501): the client is told why on its stream."""
        sid = event.stream_id
        error = event.error
        self.state.logger.info("%s: %d %s", _peer(self.client), error.status, error.detail)
        stream = self.streams.pop(sid, None)
        if stream is not None:
            if stream.response_started:
                stream._finish(disconnected=True)
                self.conn.reset(sid, wire.CANCEL)
                return
            # The server's answer is the response; the application sees a disconnect.
            stream.response_started = stream.response_complete = True
            stream._finish(disconnected=True)
        self._answer(sid, error.status, REASONS.get(error.status, b"Error"))
        if self._metrics is not None:
            self._metrics.refused("2", error.status)

    def _answer(self, sid: int, status: int, body: bytes, headers=()) -> None:
        """A complete response the server makes itself, on a stream no application has."""
        fields, _, _ = self.rules.head(status, [TEXT_PLAIN, *headers], body, True, False)
        self.conn.send_headers(sid, status, fields, False)
        self.conn.send_data(sid, body, True)

    def _on_window(self, sid: int) -> None:
        if sid == 0:
            for stream in list(self._blocked.values()):
                self.flush_stream(stream)
        else:
            stream = self._blocked.get(sid)
            if stream is not None:
                self.flush_stream(stream)

    def _on_ended(self, event) -> None:
        if event.code != wire.NO_ERROR and not event.by_peer:
            self.state.logger.info(
                "%s: HTTP/2 connection ended (%s: %s)",
                _peer(self.client),
                event.code,
                event.reason,
            )
        self._write_out()
        self.close()

    # ---------------------------------------------------------------- sending

    def send_head(self, stream, status: int, fields: list, end: bool) -> None:
        if self.closing:
            raise ClientDisconnected("the client disconnected")
        self.conn.send_headers(stream.stream_id, status, fields, end)
        self._write_out()

    def informational(self, stream, status: int, headers: list) -> None:
        self.conn.send_informational(stream.stream_id, status, list(headers))
        self._write_out()

    def flush_stream(self, stream) -> None:
        """Send what the windows allow of what ``stream`` holds, then its end (and trailers)
        once all of it is out."""
        if self.closing:
            return
        sid = stream.stream_id
        out = stream._out
        conn = self.conn
        if out:
            sent = conn.send_data(sid, bytes(out), stream._out_end and stream._trailers is None)
            del out[:sent]
            self._unwritten += sent
        elif stream._out_end and stream._trailers is None:
            conn.send_data(sid, b"", True)
        if out:
            self._blocked[sid] = stream
        else:
            self._blocked.pop(sid, None)
        if len(out) <= STREAM_HIGH_WATER:
            stream._wake_send()
        if not out and stream._out_end:
            if stream._trailers is not None:
                conn.send_trailers(sid, stream._trailers)
                stream._trailers = None
            stream._out_end = False
            self._write_out()
            stream._sent_all()
        else:
            self._write_out()

    def consumed(self, sid: int, n: int) -> None:
        if n and not self.closing:
            self.conn.consumed(sid, n)
            self._write_out()

    def reset(self, stream) -> None:
        """Reset one exchange (RST_STREAM INTERNAL_ERROR): a response that cannot be completed."""
        sid = stream.stream_id
        self.streams.pop(sid, None)
        self._blocked.pop(sid, None)
        if not self.closing:
            self.conn.reset(sid, wire.INTERNAL_ERROR)
            self._write_out()
        stream._finish(disconnected=True)
        self._arm_idle()

    def response_done(self, stream) -> None:
        if self.state.access_log:
            self.state.log_access(stream)
        if self._metrics is not None:
            self._metrics.count(stream, stream.body_received)
        if not stream._out and not stream._out_end:
            self.forget(stream)

    def forget(self, stream) -> None:
        """The exchange is over on this side: the stream leaves the connection's table."""
        sid = stream.stream_id
        if self.streams.get(sid) is stream:
            del self.streams[sid]
        stream._finish(disconnected=False)
        self._arm_idle()

    def _write_out(self) -> None:
        """Have what the core queued written, once per pass of the loop: the responses of the
        streams started in one batch then leave in one write (a write per response measured a
        third of the server's CPU under 32 x 10 concurrent streams). Past
        :data:`STREAM_HIGH_WATER` bytes of DATA it is written at once: the transport's
        high-water mark is what stops an application's sends when the windows do not (a client
        with large windows), and an application whose sends never wait never yields the loop."""
        if self._unwritten > STREAM_HIGH_WATER:
            self._write_now()
        elif not self._write_pending and not self.closing:
            self._write_pending = True
            self.loop.call_soon(self._write_now)
        events = self.conn.take_events()  # queued by a send: a reset, the end of a closing one
        if events:
            self._handle(events)

    def _write_now(self) -> None:
        self._write_pending = False
        self._unwritten = 0
        data = self.conn.data_to_send()
        if data and not self.closing:
            self.transport.write(data)

    # ---------------------------------------------------------------- timers

    def _arm_idle(self) -> None:
        """With no stream open, the connection is closed (GOAWAY) after ``--timeout-keep-alive``."""
        timeout = self.config.timeout_keep_alive
        if self.streams or self.closing or not timeout or self._idle_timer is not None:
            return
        self._idle_timer = self.loop.call_later(timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        if not self.streams and not self.closing:
            self.conn.close(wire.NO_ERROR, reason="idle")
            self._write_out()
            self.close()

    def _arm_ping(self) -> None:
        interval = self.config.http2_keep_alive_interval
        if interval and not self.closing:
            self._ping_timer = self.loop.call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self.closing:
            return
        self._ping_payload = os.urandom(8)
        self.conn.ping(self._ping_payload)
        self._write_out()
        timeout = self.config.http2_keep_alive_timeout
        if timeout:
            self._pong_timer = self.loop.call_later(timeout, self._on_ping_timeout)

    def _on_ping_ack(self, payload: bytes) -> None:
        if payload != self._ping_payload:
            return
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
        self._arm_ping()

    def _on_ping_timeout(self) -> None:
        self._pong_timer = None
        self.state.logger.info(
            "%s: HTTP/2 keep-alive PING not answered in %gs; closing",
            _peer(self.client),
            self.config.http2_keep_alive_timeout,
        )
        self.conn.close(wire.NO_ERROR, reason="keep-alive timeout")
        self._write_out()
        self.close(abort=True)

    def _cancel_timers(self) -> None:
        for name in ("_idle_timer", "_ping_timer", "_pong_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

    def _on_write_timeout(self) -> None:
        self.state.logger.info(
            "%s: the client took no response bytes for %gs; closing",
            _peer(self.client),
            self.config.timeout_write,
        )
        self.close(abort=True)

    # ---------------------------------------------------------------- closing

    def shutdown(self) -> bool:
        """Server shutdown: GOAWAY(NO_ERROR); the streams already received finish, then the
        connection closes (the core reports the end). Returns False: nothing to hold open for,
        since the GOAWAY tells the client which streams it must send again elsewhere."""
        self._shutting_down = True
        if self.closing:
            return False
        for stream in list(self.streams.values()):
            if isinstance(stream, H2WebSocketChannel) and stream.session is not None:
                stream.session.shutdown()
        self.conn.close(wire.NO_ERROR, reason="server shutting down")
        self._write_out()
        if not self.streams:
            self.close()
        return False

    def close(self, abort: bool = False) -> None:
        if self.closing:
            return
        if not abort and self.transport is not None:
            self._write_now()  # what the core queued last (a GOAWAY) goes before the close
        self.closing = True
        self._cancel_timers()
        transport = self.transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()
                if transport.get_write_buffer_size():
                    self._write_deadline = watch_writes(
                        self._write_deadline,
                        self.loop,
                        transport,
                        self.config.timeout_write,
                        self._on_write_timeout,
                    )


class H2WebSocketChannel:
    """An HTTP/2 stream carrying a WebSocket (RFC 8441): the channel of a
    :class:`refserver.protocols.ws.WebSocketSession`, as an upgraded connection is over HTTP/1.1.

    Reading is paused by not giving the stream's window back, which stops the client's sends on
    this stream alone; closing ends the stream, not the connection.
    """

    __slots__ = (
        "_proto",
        "loop",
        "stream_id",
        "session",
        "closing",
        "response_complete",
        "_read_paused",
        "_unread",
        "_out",
        "_out_end",
        "_trailers",
        "_send_waiter",
        "_close_timer",
        "_remaining",
    )

    def __init__(self, proto: H2Protocol, stream_id: int):
        self._proto = proto
        self.loop = proto.loop
        self.stream_id = stream_id
        self.session: WebSocketSession | None = None
        self.closing = False
        self.response_complete = False
        self._read_paused = False
        self._unread = 0  # bytes received while paused, whose window is given back on resume
        self._out = bytearray()
        self._out_end = False
        self._trailers = None
        self._send_waiter: asyncio.Future | None = None
        self._close_timer = None
        self._remaining = -1

    # ---------------------------------------------------------------- fed by the protocol

    def _feed(self, data: bytes) -> None:
        if self._read_paused:
            self._unread += len(data)
        else:
            self._proto.consumed(self.stream_id, len(data))
        session = self.session
        assert session is not None, "the session is given right after the channel is made"
        session.feed(data)

    def _feed_end(self) -> None:
        # The client ended its side: as a TCP FIN is for an upgraded connection.
        self.finish()

    def _finish(self, disconnected: bool) -> None:
        self.closing = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._wake_send()
        session = self.session
        if session is not None:
            session.connection_lost()

    def _wake_send(self) -> None:
        waiter = self._send_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _sent_all(self) -> None:
        """Our end of the stream is sent: the session asked for it once the closing handshake
        was over (or failed, or a denial was complete), so the channel is closed."""
        self._proto.forget(self)

    # ---------------------------------------------------------------- the channel

    @property
    def write_paused(self) -> bool:
        return len(self._out) > STREAM_HIGH_WATER or self._proto.write_paused

    def write(self, data: bytes) -> None:
        if not self.closing and data:
            self._out += data
            self._proto.flush_stream(self)

    async def drain(self) -> None:
        proto = self._proto
        while not self.closing and self.write_paused:
            if proto.write_paused:
                await proto.drain()
                continue
            self._send_waiter = waiter = self.loop.create_future()
            await waiter

    def pause_reading(self) -> None:
        self._read_paused = True

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            unread, self._unread = self._unread, 0
            self._proto.consumed(self.stream_id, unread)

    @property
    def read_paused(self) -> bool:
        return self._read_paused

    def finish(self, half_close: bool = False) -> None:
        """End our side of the stream once what was written is sent; the stream is reset if
        the peer has not ended its side within the session's close timeout."""
        if self.closing or self._out_end:
            return
        self._out_end = True
        self._proto.flush_stream(self)
        if self._close_timer is None:
            from .ws import CLOSE_TIMEOUT

            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def expect_close(self) -> None:
        if self._close_timer is None and not self.closing:
            from .ws import CLOSE_TIMEOUT

            self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        self._close_timer = None
        if not self.closing:
            self._proto.reset(self)

    # ---------------------------------------------------------------- the handshake's answer

    def accept(self, fields: list) -> None:
        fields, _, _ = self._proto.rules.head(200, fields, b"", False, False)
        self._proto.send_head(self, 200, fields, False)

    def deny(self, status: int, headers: list, body: bytes, end: bool) -> None:
        fields, length, _ = self._proto.rules.head(status, headers, body, end, False)
        self._remaining = count_body(length, len(body)) if length >= 0 else -1
        self._proto.send_head(self, status, fields, end and not body)
        self._out += body
        self._out_end = end
        self._proto.flush_stream(self)

    def deny_body(self, data: bytes, end: bool) -> None:
        if self._remaining >= 0 and data:
            self._remaining = count_body(self._remaining, len(data))
        if end and self._remaining > 0:
            check_complete(self._remaining)
        self._out += data
        self._out_end = end
        self._proto.flush_stream(self)
