"""HTTP/2 for tests: trustme certificates, a raw frame-level client, and the serving fixture.

The raw client drives h2's client-side ``H2Connection`` over a real socket (cleartext prior
knowledge, or TLS with ALPN h2) and records what the server sent, stream by stream, so tests can
do what httpx and curl never would: hold a stream's window shut, reset streams in flight, flood
frames, or leave a PING unanswered.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from support import serve

TLS_MODES = ["cleartext", "tls"]


# ---------------------------------------------------------------------------- certificates


@dataclass
class Certs:
    ca_file: str
    cert_file: str
    key_file: str

    def client_context(self, alpn=("h2", "http/1.1")) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx

    @property
    def server_options(self) -> dict:
        return {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file}


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    """A trustme CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("h2certs")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return Certs(str(ca_file), str(cert_file), str(key_file))


@pytest.fixture(params=TLS_MODES)
def tls_mode(request):
    return request.param


@pytest.fixture
def h2_serve(impl, certs):
    """``with h2_serve(app, tls=False, **options) as srv`` runs ``app`` on this test's path on the
    asyncio loop (the loop matters to the few tests that use ``server_factory`` instead); with
    ``tls=True`` it serves HTTPS with the test certificate. ``srv.tls`` tells the clients."""

    def factory(app, tls: bool = False, loop: str = "asyncio", **options):
        options.setdefault("impl", impl)
        if tls:
            options.update(certs.server_options)
        return _tagged(serve(app, loop=loop, **options), tls, certs)

    return factory


class _tagged:
    """A ``serve()`` context whose server knows whether it is TLS and how to reach it."""

    def __init__(self, ctx, tls: bool, certs: Certs):
        self.ctx, self.tls, self.certs = ctx, tls, certs

    def __enter__(self):
        srv = self.ctx.__enter__()
        srv.tls = self.tls
        srv.certs = self.certs
        srv.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{srv.port}"
        return srv

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def httpx_client(srv, **options):
    """An httpx client that speaks HTTP/2 to ``srv``: prior knowledge in cleartext, ALPN over
    TLS (trusting the test CA)."""
    import httpx

    options.setdefault("timeout", 10)
    if srv.tls:
        return httpx.Client(http2=True, verify=srv.certs.client_context(), **options)
    return httpx.Client(http1=False, http2=True, **options)


# ---------------------------------------------------------------------------- raw client


@dataclass
class StreamRecord:
    status: int | None = None
    headers: list = field(default_factory=list)
    informational: list = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the error code of a RST_STREAM from the server

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes):
        values = [v for n, v in self.headers if n == name]
        return values[0] if values else None


class H2Client:
    """A frame-level HTTP/2 client on one socket.

    ``auto_ack`` gives back the window of every DATA frame received (both the stream's and the
    connection's); a test that wants a stalled reader lists the streams in ``hold``, whose data
    only reopens the connection window. PINGs are acknowledged by h2 itself as long as
    :meth:`pump` is allowed to send (``send=False`` keeps them unanswered).
    """

    def __init__(self, srv, *, tls: bool | None = None, timeout: float = 5.0, validate=True,
                 settings: dict | None = None, connect: bool = True):
        tls = srv.tls if tls is None else tls
        sock = socket.create_connection((srv.host, srv.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            sock = srv.certs.client_context(alpn=("h2",)).wrap_socket(
                sock, server_hostname="127.0.0.1"
            )
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.timeout = timeout
        self.authority = f"127.0.0.1:{srv.port}"
        self.scheme = "https" if tls else "http"
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
            validate_inbound_headers=validate,
        )
        self.conn = h2.connection.H2Connection(config=config)
        # h2 refuses every frame after a GOAWAY, even the rest of the bytes it came with; RFC
        # 9113 6.8 has the streams up to its last id go on (and the tests check that they do,
        # and that later ones are refused), so this client accepts frames in any state.
        machine = self.conn.state_machine
        machine._transitions = dict(machine._transitions)
        for state in h2.connection.ConnectionState:
            for kind in h2.connection.ConnectionInputs:
                machine._transitions.setdefault((state, kind), (None, state))
        # Literal strings, not Huffman: encoding (and decoding) 100 KB of header in pure Python
        # Huffman takes seconds, and the tests are about sizes, not compression.
        encode = self.conn.encoder.encode
        self.conn.encoder.encode = lambda headers, huffman=False: encode(headers, huffman=False)
        self.streams: dict[int, StreamRecord] = {}
        self.hold: set[int] = set()
        self.goaway = None  # the ConnectionTerminated event, once received
        self.pings: list[bytes] = []  # payloads of PINGs the server sent
        self.ping_acks: list[bytes] = []
        self.remote_settings_seen = False
        self.closed = False  # the server closed the TCP connection
        self.events: list = []
        if connect:
            self.conn.initiate_connection()
            if settings:
                self.conn.update_settings(settings)
            self.flush()

    # -- sending

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def headers(self, path="/", method="GET", extra=(), end=True, sid=None) -> int:
        sid = self.conn.get_next_available_stream_id() if sid is None else sid
        head = [
            (b":method", method.encode()),
            (b":scheme", self.scheme.encode()),
            (b":authority", self.authority.encode()),
            (b":path", path.encode()),
        ]
        head += [(n.encode() if isinstance(n, str) else n, v.encode() if isinstance(v, str) else v)
                 for n, v in extra]
        self.conn.send_headers(sid, head, end_stream=end)
        self.streams[sid] = StreamRecord()
        self.flush()
        return sid

    def request(self, path="/", method="GET", body: bytes | None = None, extra=()) -> int:
        """Open a stream; a body is sent as far as the windows allow now (see :meth:`send_body`)."""
        sid = self.headers(path, method, extra, end=body is None)
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True, timeout: float | None = None):
        """Send ``body`` on ``sid`` as the windows open, reading meanwhile; returns when all of
        it is sent (and the stream ended, with ``end``)."""
        view = memoryview(body)
        deadline = time.monotonic() + (timeout or self.timeout)
        while view:
            if self.streams[sid].reset is not None:
                return  # the server does not want the rest
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(deadline - time.monotonic())
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the window of stream {sid} stayed shut")
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(sid, bytes(chunk), end_stream=end and not view)
            self.flush()
        if end and not body:
            self.conn.end_stream(sid)
            self.flush()

    def send_available(self, sid: int, body: bytes) -> int:
        """Send as much of ``body`` as the windows allow right now, without ending; the count."""
        sent = 0
        while sent < len(body):
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                break
            chunk = body[sent : sent + window]
            self.conn.send_data(sid, chunk)
            sent += len(chunk)
        self.flush()
        return sent

    def reset(self, sid: int, code: int = 8) -> None:  # 8: CANCEL
        self.conn.reset_stream(sid, error_code=code)
        self.flush()

    # -- receiving

    def pump(self, timeout: float | None = None, send: bool = True) -> bool:
        """Read once (up to ``timeout``) and handle the frames; False on timeout or EOF."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout if timeout is not None else self.timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._record(event)
        if send:
            try:
                self.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True
        return True

    def feed(self, data: bytes) -> None:
        """Handle bytes read by the test itself (after an h2c upgrade's 101)."""
        for event in self.conn.receive_data(data):
            self._record(event)
        self.flush()

    def _record(self, event) -> None:
        self.events.append(event)
        sid = getattr(event, "stream_id", None)
        record = self.streams.setdefault(sid, StreamRecord()) if sid else None
        if isinstance(event, h2.events.ResponseReceived):
            record.headers = list(event.headers)
            record.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived):
            record.informational.append(int(dict(event.headers)[b":status"]))
        elif isinstance(event, h2.events.DataReceived):
            record.data += event.data
            n = event.flow_controlled_length
            if n:
                if sid in self.hold:
                    self.conn.increment_flow_control_window(n)
                elif not record.done:
                    self.conn.acknowledge_received_data(n, sid)
                else:
                    self.conn.increment_flow_control_window(n)
        elif isinstance(event, h2.events.StreamEnded):
            record.ended = True
        elif isinstance(event, h2.events.StreamReset):
            record.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.PingReceived):
            self.pings.append(event.ping_data)
        elif isinstance(event, h2.events.PingAckReceived):
            self.ping_acks.append(event.ping_data)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def wait(self, predicate, timeout: float | None = None, send: bool = True) -> None:
        """Pump until ``predicate()`` holds; AssertionError at the deadline or at EOF before."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server did not send what was awaited in time")
            if not self.pump(left, send=send) and self.closed and not predicate():
                raise AssertionError("the server closed the connection first")

    def response(self, sid: int, timeout: float | None = None) -> StreamRecord:
        self.wait(lambda: self.streams[sid].done, timeout)
        return self.streams[sid]

    def wait_closed(self, timeout: float | None = None, send: bool = True) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server did not close the connection in time")
            self.pump(left, send=send)

    @property
    def server_settings(self):
        return self.conn.remote_settings

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wide_open(srv) -> H2Client:
    """A client whose windows (its streams' and its connection's) are as large as HTTP/2 allows:
    only the transport holds a response back."""
    window = 2**31 - 1
    client = H2Client(srv, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    client.wait(lambda: client.remote_settings_seen)
    client.conn.increment_flow_control_window(window - client.conn.inbound_flow_control_window)
    client.flush()
    return client


def buffered(srv) -> list:
    """(write paused, bytes in the transport's buffer) of each connection (on the loop)."""
    return [
        (conn.write_paused, conn.transport.get_write_buffer_size())
        for conn in srv.server.state.connections
    ]
