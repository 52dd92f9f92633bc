"""A blocking WebSocket client for tests, over HTTP/1.1 or an HTTP/2 stream.

Over HTTP/2 it opens the WebSocket with an extended CONNECT (RFC 8441), which the usual client
libraries do not speak; so one WebSocket test runs unchanged against a server that speaks only
HTTP/2, or offers it by ALPN. The frames are wsproto's, the HTTP/2 stream h2's, both dependencies
of the server already. The pytest plugin opens it with ``srv.websocket(path)``.
"""

from __future__ import annotations

import collections
import socket
import ssl
import time

__all__ = ["WebSocket", "WebSocketClosed", "WebSocketRejected", "open_websocket"]


class WebSocketClosed(Exception):
    """The WebSocket is closed: the code and reason of the server's Close frame, or 1006 when the
    connection (over HTTP/2, the stream) ended without one."""

    def __init__(self, code: int, reason: str = ""):
        super().__init__(f"the WebSocket is closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class WebSocketRejected(Exception):
    """The server answered the handshake with an HTTP response instead of accepting it."""

    def __init__(self, status: int, headers: list, body: bytes):
        super().__init__(f"the WebSocket handshake was answered with {status}")
        self.status = status
        self.headers = headers
        self.body = body


class _H1Channel:
    """The bytes of a WebSocket on its own connection, after an HTTP/1.1 Upgrade."""

    http_version = "1.1"

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, data: bytes) -> None:
        if data:
            self.sock.sendall(data)

    def receive(self, deadline: float) -> bytes | None:
        """The next bytes, or None once the server closed the connection."""
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        return self.sock.recv(65536) or None

    def end(self) -> None:
        """Nothing to end: the server closes the connection after the closing handshake."""

    def close(self) -> None:
        self.sock.close()


class _H2Channel:
    """The bytes of a WebSocket in the DATA frames of one HTTP/2 stream (RFC 8441), on its own
    connection: stream windows given back as the bytes are read, sent as the windows allow."""

    http_version = "2"

    def __init__(self, sock: socket.socket, timeout: float):
        import h2.config
        import h2.connection

        self.sock = sock
        self.timeout = timeout
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.sid = 0
        self.settings_seen = False
        self.response: list | None = None  # the response's header fields
        self.data = bytearray()
        self.ended = False  # the server ended (or reset) its side of the stream
        self.closed = False  # the server closed the connection

    def open(self, method_fields: list, deadline: float):
        """Send the extended CONNECT once the server's SETTINGS allow it; returns the response's
        status and fields, and its body when it is not 200."""
        import h2.settings

        self._pump_until(lambda: self.settings_seen, deadline)
        if not self.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL):
            raise ConnectionError("the server does not offer WebSockets over HTTP/2 (RFC 8441)")
        self.sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.sid, method_fields)
        self._flush()
        self._pump_until(lambda: self.response is not None or self.ended, deadline)
        if self.response is None:
            raise ConnectionError("the server reset the stream of the handshake")
        fields = [(bytes(n), bytes(v)) for n, v in self.response]
        status = int(dict(fields).get(b":status", b"0"))
        if status != 200:
            self._pump_until(lambda: self.ended, deadline)
        return status, [(n, v) for n, v in fields if not n.startswith(b":")], bytes(self.data)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            window = min(
                self.conn.local_flow_control_window(self.sid), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                self._pump(deadline)  # WINDOW_UPDATE frames; TimeoutError at the deadline
                continue
            self.conn.send_data(self.sid, bytes(view[:window]))
            view = view[window:]
            self._flush()

    def receive(self, deadline: float) -> bytes | None:
        """The next bytes of the stream, or None once the server ended it."""
        while not self.data and not self.ended:
            self._pump(deadline)
        data, self.data = bytes(self.data), bytearray()
        return data or None

    def end(self) -> None:
        """Ends the client's side of the stream (RFC 8441 leaves the TCP FIN to END_STREAM)."""
        import h2.exceptions

        try:
            self.conn.end_stream(self.sid)
            self._flush()
        except (h2.exceptions.H2Error, OSError):
            pass  # the stream or the connection is over already

    def close(self) -> None:
        self.sock.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _pump_until(self, done, deadline: float) -> None:
        while not done():
            self._pump(deadline)

    def _pump(self, deadline: float) -> None:
        """Read once (TimeoutError at the deadline) and handle the frames."""
        import h2.events

        if self.closed:
            raise ConnectionError("the server closed the HTTP/2 connection")
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        data = self.sock.recv(65536)
        if not data:
            self.closed = self.ended = True
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.settings_seen = True
            elif getattr(event, "stream_id", None) != self.sid or not self.sid:
                continue
            elif isinstance(event, h2.events.ResponseReceived):
                self.response = event.headers
            elif isinstance(event, h2.events.DataReceived):
                self.data += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, self.sid)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                self.ended = True
        self._flush()


class WebSocket:
    """A blocking WebSocket client for tests, on an HTTP/1.1 connection or an HTTP/2 stream:
    ``send()`` a text (``str``) or binary (``bytes``) message, ``recv()`` the next one, which
    raises :class:`WebSocketClosed` once the server closed; ``close()`` (also at the end of a
    ``with`` block) runs the closing handshake. Opened by :meth:`ServedApp.websocket`."""

    def __init__(self, channel, connection, subprotocol: str | None, headers: list, timeout: float):
        self._channel = channel
        self._ws = connection
        self.http_version: str = channel.http_version
        self.subprotocol = subprotocol
        self.headers = headers  # the fields of the server's answer to the handshake
        self.timeout = timeout
        self._messages: collections.deque = collections.deque()
        self._parts: list = []
        self.closed: WebSocketClosed | None = None
        self._handle_events()  # frames that came with the handshake's response

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def send(self, message: str | bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        if self.closed is not None:
            raise self.closed
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        self._channel.send(self._ws.send(event))

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; TimeoutError after ``timeout`` seconds (the client's by default)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._messages:
            if self.closed is not None:
                raise self.closed
            self._read(deadline)
        return self._messages.popleft()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a Close (unless the server closed first) and wait, bounded, for the server's."""
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        try:
            if self.closed is None and self._ws.state is ConnectionState.OPEN:
                self._channel.send(self._ws.send(CloseConnection(code, reason)))
                deadline = time.monotonic() + self.timeout
                while self.closed is None:
                    self._read(deadline)
        finally:
            self._channel.close()

    def _read(self, deadline: float) -> None:
        self._ws.receive_data(self._channel.receive(deadline))
        self._handle_events()

    def _handle_events(self) -> None:
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection, Message, Ping

        for event in self._ws.events():
            if isinstance(event, Message):
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    self._messages.append(("" if isinstance(parts[0], str) else b"").join(parts))
            elif isinstance(event, Ping):
                self._channel.send(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._channel.send(self._ws.send(event.response()))
                self.closed = WebSocketClosed(event.code, event.reason or "")
                self._channel.end()


def open_websocket(
    host: str,
    port: int,
    path: str = "/",
    *,
    http: str = "1.1",
    ssl_context: ssl.SSLContext | None = None,
    subprotocols=(),
    headers=(),
    timeout: float = 10.0,
) -> WebSocket:
    """Open a WebSocket to ``path`` at ``host:port`` on a new connection, over TLS when
    ``ssl_context`` is given: an RFC 8441 extended CONNECT on an HTTP/2 stream with ``http="2"``,
    an HTTP/1.1 Upgrade with ``http="1"`` (or ``"1.1"``). :class:`WebSocketRejected` when the
    server answers the handshake with a response."""
    if http not in ("1", "1.1", "2"):
        raise ValueError(f"http must be '1', '1.1' or '2', not {http!r}")
    from wsproto.connection import Connection, ConnectionType

    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2" if http == "2" else "http/1.1"])
            sock = ssl_context.wrap_socket(sock, server_hostname=host)
        authority = f"{host}:{port}"
        if http == "2":
            h2_channel = _H2Channel(sock, timeout)
            fields = [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"http" if ssl_context is None else b"https"),
                (b":path", path.encode()),
                (b":authority", authority.encode()),
                (b"sec-websocket-version", b"13"),
            ]
            if subprotocols:
                fields.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
            fields += [(_bytes(n).lower(), _bytes(v)) for n, v in headers]
            status, answer, body = h2_channel.open(fields, deadline)
            if status != 200:
                raise WebSocketRejected(status, answer, body)
            agreed = dict(answer).get(b"sec-websocket-protocol")
            subprotocol = agreed.decode() if agreed is not None else None
            connection = Connection(ConnectionType.CLIENT)
            return WebSocket(h2_channel, connection, subprotocol, answer, timeout)
        return _upgrade(_H1Channel(sock), authority, path, subprotocols, headers, deadline, timeout)
    except BaseException:
        sock.close()
        raise


def _upgrade(channel: _H1Channel, authority, path, subprotocols, headers, deadline, timeout):
    from wsproto.connection import ConnectionType
    from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
    from wsproto.handshake import H11Handshake

    handshake = H11Handshake(ConnectionType.CLIENT)
    extra = [(_bytes(n), _bytes(v)) for n, v in headers]
    channel.send(
        handshake.send(
            Request(
                host=authority, target=path, subprotocols=list(subprotocols), extra_headers=extra
            )
        )
    )
    rejected: RejectConnection | None = None
    body = bytearray()
    while True:
        data = channel.receive(deadline)
        if data is None:
            raise ConnectionError("the server closed the connection during the handshake")
        handshake.receive_data(data)
        for event in handshake.events():
            if isinstance(event, AcceptConnection):
                assert handshake.connection is not None
                return WebSocket(
                    channel,
                    handshake.connection,
                    event.subprotocol,
                    list(event.extra_headers),
                    timeout,
                )
            if isinstance(event, RejectConnection):
                rejected = event
                if not event.has_body:
                    raise WebSocketRejected(event.status_code, list(event.headers), b"")
            elif isinstance(event, RejectData) and rejected is not None:
                body += event.data
                if event.body_finished:
                    raise WebSocketRejected(
                        rejected.status_code, list(rejected.headers), bytes(body)
                    )


def _bytes(value) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)
