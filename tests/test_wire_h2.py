"""The HTTP/2 connection core, sans-IO: frames in, events and frames out.

The peer is h2's own client-side connection; frames it refuses to make are built with hyperframe
and hpack. The core has one implementation (no compiled variant), so there is one path to test.
"""

from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.events as h2e
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, given, settings, strategies as st

from refserver.wire import h2 as core
from refserver.wire.events import (
    BadRequest,
    ContentTooLarge,
    HeadersTooLarge,
    NotImplementedByServer,
    URITooLong,
)
from refserver.wire.h1 import Limits
from refserver.wire.h2 import (
    BodyEnded,
    BodyReceived,
    ConnectionEnded,
    H2Connection,
    H2Settings,
    PingAcked,
    RequestReceived,
    RequestRejected,
    StreamReset,
    WindowOpened,
)

GET = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com"), (":path", "/")]


def parse_frames(data: bytes) -> list:
    frames = []
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


class Peer:
    """A client connection to one server core, and the frames the server sent back."""

    def __init__(self, settings=None, limits=None, client_settings=None, handshake=True):
        self.server = H2Connection(settings or H2Settings(), limits or Limits())
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        ))
        self.server.initiate()
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.frames: list = []
        if handshake:
            self.pump()

    def pump(self) -> list:
        """Client bytes to the server, server bytes to the client; the server's events."""
        events = self.server.receive_data(self.client.data_to_send())
        out = self.server.data_to_send()
        self.frames.extend(parse_frames(out))
        try:
            self.client.receive_data(out)
        except h2.exceptions.ProtocolError:
            pass  # the server broke something on purpose (a test of a defence)
        return events

    def send_raw(self, *frames) -> list:
        """Bytes the h2 client would refuse to make."""
        self.client.data_to_send()  # nothing of the client's own in between
        events = self.server.receive_data(b"".join(f.serialize() for f in frames))
        self.frames.extend(parse_frames(self.server.data_to_send()))
        return events

    def raw_block(self, fields) -> bytes:
        """A header block in the client's HPACK context (so later blocks still decode)."""
        return self.client.encoder.encode([(n.encode() if isinstance(n, str) else n,
                                            v.encode() if isinstance(v, str) else v)
                                           for n, v in fields])

    def request(self, sid, fields=GET, end_stream=True) -> list:
        self.client.send_headers(sid, fields, end_stream=end_stream)
        return self.pump()

    def goaway(self):
        found = [f for f in self.frames if isinstance(f, GoAwayFrame)]
        return found[-1] if found else None

    def resets(self) -> dict:
        """The code of the first RST_STREAM sent on each stream."""
        found: dict = {}
        for f in self.frames:
            if isinstance(f, RstStreamFrame):
                found.setdefault(f.stream_id, f.error_code)
        return found


def resets(events) -> list:
    """``(stream id, code, by peer)`` of the StreamReset events (their reasons are for logs)."""
    return [(e.stream_id, e.code, e.by_peer) for e in events if isinstance(e, StreamReset)]


def only(events, kind):
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


def answer(peer, sid, body=b"ok"):
    peer.server.send_headers(sid, 200, [(b"content-type", b"text/plain")], end_stream=False)
    peer.server.send_data(sid, body, end_stream=True)


# ------------------------------------------------------------------ start and ordinary requests


def test_server_preface_advertises_the_settings_and_opens_the_connection_window():
    settings = H2Settings(max_concurrent_streams=7, initial_stream_window=300000,
                          initial_connection_window=1 << 20, max_frame_size=32768,
                          max_header_list_size=8192)
    conn = H2Connection(settings, Limits())
    conn.initiate()
    frames = parse_frames(conn.data_to_send())
    assert isinstance(frames[0], SettingsFrame)
    assert frames[0].settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert frames[0].settings[SettingCodes.INITIAL_WINDOW_SIZE] == 300000
    assert frames[0].settings[SettingCodes.MAX_FRAME_SIZE] == 32768
    assert frames[0].settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 8192
    assert frames[0].settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    assert isinstance(frames[1], WindowUpdateFrame)
    assert (frames[1].stream_id, frames[1].window_increment) == (0, (1 << 20) - 65535)


def test_no_connection_window_update_when_the_window_is_the_default():
    conn = H2Connection(H2Settings(initial_connection_window=65535), Limits())
    conn.initiate()
    assert [type(f) for f in parse_frames(conn.data_to_send())] == [SettingsFrame]


@pytest.mark.parametrize("kwargs", [
    {"max_concurrent_streams": 0}, {"initial_stream_window": 65534},
    {"initial_stream_window": 2**31}, {"initial_connection_window": 1000},
    {"max_frame_size": 16383}, {"max_frame_size": 2**24}, {"max_header_list_size": 100},
])
def test_settings_out_of_range_are_refused(kwargs):
    with pytest.raises(ValueError):
        H2Settings(**kwargs)


def test_a_request_becomes_one_request_view():
    peer = Peer()
    fields = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com:8443"),
              (":path", "/a%20b?x=1&y"), ("accept", "*/*"), ("cookie", "a=1"),
              ("cookie", "b=2"), ("host", "other.example")]
    event = only(peer.request(1, fields), RequestReceived)
    request = event.request
    assert (event.stream_id, event.end_stream, event.protocol) == (1, True, None)
    assert (request.method, request.raw_path, request.query_string) == ("GET", b"/a%20b", b"x=1&y")
    assert request.http_version == "2" and request.authority == "example.com:8443"
    # :authority replaces Host; the cookie fields are joined as HTTP/1.1 would carry them.
    assert request.headers == [(b"accept", b"*/*"), (b"host", b"example.com:8443"),
                               (b"cookie", b"a=1; b=2")]


def test_the_authority_is_the_first_header_when_no_host_was_sent():
    """ASGI: the value of ``:authority`` is added at the start of the headers as ``host``."""
    peer = Peer()
    fields = [(":method", "GET"), (":scheme", "https"), (":authority", "example.com"),
              (":path", "/"), ("accept", "*/*"), ("user-agent", "t")]
    request = only(peer.request(1, fields), RequestReceived).request
    assert request.headers == [(b"host", b"example.com"), (b"accept", b"*/*"), (b"user-agent", b"t")]


def test_the_authority_comes_from_host_without_authority():
    peer = Peer()
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "h.example")]
    event = only(peer.request(1, fields), RequestReceived)
    assert event.request.authority == "h.example"
    assert event.request.headers == [(b"host", b"h.example")]


def test_a_body_comes_in_pieces_and_ends():
    peer = Peer()
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/"),
              ("content-length", "6")]
    assert only(peer.request(1, fields, end_stream=False), RequestReceived).end_stream is False
    peer.client.send_data(1, b"abc")
    assert peer.pump() == [BodyReceived(1, b"abc")]
    peer.client.send_data(1, b"def", end_stream=True)
    assert peer.pump() == [BodyReceived(1, b"def"), BodyEnded(1)]
    answer(peer, 1)
    assert peer.server.open_streams == 0


def test_the_response_is_framed_with_status_informational_and_trailers():
    peer = Peer()
    peer.request(1)
    peer.server.send_informational(1, 103, [(b"Link", b"</s.css>; rel=preload")])
    peer.server.send_headers(1, 200, [(b"Content-Type", b"text/plain"),
                                      (b"connection", b"close")], end_stream=False)
    assert peer.server.send_data(1, b"body") == 4
    peer.server.send_trailers(1, [(b"x-checksum", b"1")])
    events = peer.client.receive_data(peer.server.data_to_send())
    kinds = [type(e) for e in events]
    assert kinds == [h2e.InformationalResponseReceived, h2e.ResponseReceived,
                     h2e.DataReceived, h2e.TrailersReceived, h2e.StreamEnded]
    assert events[0].headers == [(b":status", b"103"), (b"link", b"</s.css>; rel=preload")]
    # Connection-specific fields are left out (RFC 9113 8.2.2).
    assert events[1].headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
    assert events[3].headers == [(b"x-checksum", b"1")]


def test_trailers_from_the_client_are_validated_and_discarded():
    peer = Peer()
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, fields, end_stream=False)
    peer.client.send_data(1, b"x")
    peer.client.send_headers(1, [("x-sum", "1")], end_stream=True)
    assert peer.pump() == [BodyReceived(1, b"x"), BodyEnded(1)]


def test_extended_connect_is_a_request_with_its_protocol():
    peer = Peer()
    fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
              (":authority", "e"), (":path", "/chat"), ("sec-websocket-version", "13")]
    event = only(peer.request(1, fields, end_stream=False), RequestReceived)
    assert event.protocol == "websocket" and event.request.method == "CONNECT"
    assert event.request.raw_path == b"/chat"


def test_an_extended_connect_stream_is_not_held_to_the_body_limit():
    peer = Peer(limits=Limits(body=100))
    fields = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
              (":authority", "e"), (":path", "/chat")]
    peer.request(1, fields, end_stream=False)
    peer.server.send_headers(1, 200, [], end_stream=False)
    for _ in range(10):
        peer.client.send_data(1, b"w" * 50)
        events = peer.pump()
        assert events == [BodyReceived(1, b"w" * 50)]
        peer.server.consumed(1, 50)
        assert peer.server.send_data(1, b"v" * 50) == 50


def test_ping_and_its_ack():
    peer = Peer()
    peer.server.ping(b"12345678")
    peer.client.receive_data(peer.server.data_to_send())
    assert peer.pump() == [PingAcked(b"12345678")]


def test_a_peer_reset_tells_the_glue():
    peer = Peer()
    peer.request(1, end_stream=False)
    peer.client.reset_stream(1, ErrorCodes.CANCEL)
    assert resets(peer.pump()) == [(1, ErrorCodes.CANCEL, True)]
    assert peer.server.open_streams == 0
    assert peer.server.send_data(1, b"late", end_stream=True) == 0  # gone: takes nothing


def test_a_response_that_ends_before_the_request_body_resets_it_with_no_error():
    peer = Peer()
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, fields, end_stream=False)
    answer(peer, 1)
    peer.pump()
    assert peer.resets() == {1: ErrorCodes.NO_ERROR}
    # The body still in flight is ignored, and its connection window given back.
    before = len(peer.resets())
    events = peer.send_raw(*[DataFrame(1, data=b"x" * 16000) for _ in range(5)])
    assert events == [] and len(peer.resets()) == before
    assert any(isinstance(f, WindowUpdateFrame) and f.stream_id == 0 for f in peer.frames)


# ------------------------------------------------------------------ malformed and refused requests

BASE = [(":method", "GET"), (":scheme", "https"), (":authority", "e"), (":path", "/")]


def _without(name):
    return [f for f in BASE if f[0] != name]


MALFORMED = {
    "no-method": _without(":method"),
    "no-scheme": _without(":scheme"),
    "no-path": _without(":path"),
    "empty-path": _without(":path") + [(":path", "")],
    "path-not-origin-form": _without(":path") + [(":path", "index.html")],
    "path-absolute-form": _without(":path") + [(":path", "https://e/")],
    "path-with-space": _without(":path") + [(":path", "/a b")],
    "asterisk-for-get": _without(":path") + [(":path", "*")],
    "unknown-pseudo": BASE + [(":foo", "x")],
    "response-pseudo": BASE + [(":status", "200")],
    "repeated-pseudo": BASE + [(":path", "/again")],
    "pseudo-after-field": [BASE[0], ("accept", "*/*")] + BASE[1:],
    "upper-case-name": BASE + [("Accept", "*/*")],
    "name-not-a-token": BASE + [("a(b", "1")],
    "connection": BASE + [("connection", "keep-alive")],
    "keep-alive": BASE + [("keep-alive", "5")],
    "proxy-connection": BASE + [("proxy-connection", "x")],
    "transfer-encoding": BASE + [("transfer-encoding", "chunked")],
    "upgrade": BASE + [("upgrade", "h2c")],
    "te-gzip": BASE + [("te", "gzip")],
    "value-control": BASE + [("x", "a\x01b")],
    "value-nul": BASE + [("x", "a\x00b")],
    "value-leading-space": BASE + [("x", " a")],
    "value-trailing-tab": BASE + [("x", "a\t")],
    "content-length-letters": BASE + [("content-length", "abc")],
    "content-length-conflict": BASE + [("content-length", "1"), ("content-length", "2")],
    "content-length-without-body": BASE + [("content-length", "5")],
    "protocol-without-connect": BASE + [(":protocol", "websocket")],
    "connect-with-path": [(":method", "CONNECT"), (":authority", "e:443"), (":path", "/")],
    "connect-without-authority": [(":method", "CONNECT")],
    "extended-connect-bad-protocol": [(":method", "CONNECT"), (":protocol", "web socket"),
                                      (":scheme", "https"), (":authority", "e"), (":path", "/")],
    "method-not-a-token": _without(":method") + [(":method", "G(T")],
    "scheme-invalid": _without(":scheme") + [(":scheme", "1http")],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_request_is_a_stream_error_and_the_connection_goes_on(name):
    peer = Peer()
    block = peer.raw_block(MALFORMED[name])
    events = peer.send_raw(HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]))
    assert resets(events) == [(1, ErrorCodes.PROTOCOL_ERROR, False)]
    assert len(events) == 1 and events[0].reason  # nothing dispatched; a reason for the log
    assert peer.resets() == {1: ErrorCodes.PROTOCOL_ERROR}
    assert peer.goaway() is None
    assert only(peer.request(3), RequestReceived).stream_id == 3


REJECTED = {
    "lower-case-method": (_without(":method") + [(":method", "get")], NotImplementedByServer),
    "connect": ([(":method", "CONNECT"), (":authority", "e:443")], NotImplementedByServer),
    "long-path": (_without(":path") + [(":path", "/" + "a" * 100)], URITooLong),
    "many-fields": (BASE + [("x-%d" % i, "v") for i in range(11)], HeadersTooLarge),
    "big-list": (BASE + [("x", "v" * 3000)], HeadersTooLarge),
    "body-too-large": (BASE + [("content-length", "101")], ContentTooLarge),
    "no-authority": (_without(":authority"), BadRequest),
    "two-hosts": (_without(":authority") + [("host", "a"), ("host", "b")], BadRequest),
    "bad-authority": (_without(":authority") + [(":authority", "a b")], BadRequest),
    "userinfo": (_without(":authority") + [(":authority", "u@h")], BadRequest),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_a_refused_request_is_answered_with_its_status(name):
    fields, error = REJECTED[name]
    limits = Limits(request_line=64, header_count=10, body=100)
    peer = Peer(H2Settings(max_header_list_size=2048), limits)
    events = peer.request(1, fields, end_stream="body" not in name)
    rejected = only(events, RequestRejected)
    assert type(rejected.error) is error
    peer.server.send_headers(1, rejected.error.status, [], end_stream=True)
    responses = [e for e in peer.client.receive_data(peer.server.data_to_send())
                 if isinstance(e, h2e.ResponseReceived)]
    assert responses[0].headers[0] == (b":status", b"%d" % error.status)
    assert peer.goaway() is None


def test_the_body_limit_without_content_length_is_413_before_the_response():
    peer = Peer(limits=Limits(body=10))
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, fields, end_stream=False)
    peer.client.send_data(1, b"x" * 8)
    assert peer.pump() == [BodyReceived(1, b"x" * 8)]
    peer.client.send_data(1, b"x" * 8)
    event = only(peer.pump(), RequestRejected)
    assert isinstance(event.error, ContentTooLarge)
    peer.client.send_data(1, b"x" * 8)
    assert peer.pump() == []  # discarded


def test_the_body_limit_after_the_response_began_resets_the_stream():
    peer = Peer(limits=Limits(body=10))
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, fields, end_stream=False)
    peer.server.send_headers(1, 200, [], end_stream=False)
    peer.client.send_data(1, b"x" * 11)
    assert resets(peer.pump()) == [(1, ErrorCodes.CANCEL, False)]
    assert peer.resets() == {1: ErrorCodes.CANCEL}


@pytest.mark.parametrize("chunks, end", [([b"abcdef"], True), ([b"ab"], True), ([b"abcd"], False)])
def test_a_body_that_differs_from_content_length_is_a_stream_error(chunks, end):
    peer = Peer()
    fields = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/"),
              ("content-length", "3")]
    peer.request(1, fields, end_stream=False)
    frames = [DataFrame(1, data=c) for c in chunks]
    if end:
        frames[-1].flags.add("END_STREAM")
    events = peer.send_raw(*frames)
    assert resets(events[-1:]) == [(1, ErrorCodes.PROTOCOL_ERROR, False)]
    assert peer.resets() == {1: ErrorCodes.PROTOCOL_ERROR} and peer.goaway() is None


@pytest.mark.parametrize("fields, end", [([(":path", "/")], True), ([("x-a", "1")], False)])
def test_malformed_trailers_are_a_stream_error(fields, end):
    peer = Peer()
    post = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, post, end_stream=False)
    flags = ["END_HEADERS"] + (["END_STREAM"] if end else [])
    events = peer.send_raw(HeadersFrame(1, data=peer.raw_block(fields), flags=flags))
    assert (1, ErrorCodes.PROTOCOL_ERROR, False) in resets(events)
    assert peer.resets()[1] == ErrorCodes.PROTOCOL_ERROR and peer.goaway() is None
    assert only(peer.request(3), RequestReceived).stream_id == 3


def test_streams_over_the_concurrency_limit_are_refused():
    peer = Peer(H2Settings(max_concurrent_streams=3), handshake=False)
    # The client has not seen the server's SETTINGS yet, as on a real first flight.
    peer.server.receive_data(peer.client.data_to_send())
    peer.server.data_to_send()
    for sid in (1, 3, 5, 7):
        peer.client.send_headers(sid, GET, end_stream=True)
    events = peer.server.receive_data(peer.client.data_to_send())
    peer.frames.extend(parse_frames(peer.server.data_to_send()))
    assert [e.stream_id for e in events if isinstance(e, RequestReceived)] == [1, 3, 5]
    assert peer.resets() == {7: ErrorCodes.REFUSED_STREAM} and peer.goaway() is None
    answer(peer, 1)
    peer.client.send_headers(9, GET, end_stream=True)
    events = peer.server.receive_data(peer.client.data_to_send())
    assert only(events, RequestReceived).stream_id == 9


# ------------------------------------------------------------------ flow control


def test_a_stream_whose_application_never_reads_does_not_block_the_others():
    peer = Peer(H2Settings(initial_connection_window=65535))
    post = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, post, end_stream=False)
    peer.request(3, post, end_stream=False)
    for _ in range(4):
        peer.client.send_data(1, b"x" * 16383)  # nobody consumes stream 1
    peer.client.send_data(1, b"x" * 3)
    peer.pump()
    assert peer.client.local_flow_control_window(1) == 0
    # The connection window was given back as the bytes arrived: stream 3 still flows, as
    # far as its own application reads.
    received = 0
    while received < 300000:
        window = peer.client.local_flow_control_window(3)
        assert window > 0
        peer.client.send_data(3, b"y" * min(window, 16384))
        for event in peer.pump():
            if isinstance(event, BodyReceived):
                assert event.stream_id == 3
                received += len(event.data)
                peer.server.consumed(3, len(event.data))
    assert peer.client.local_flow_control_window(1) == 0
    # Stream 1 opens again once its application takes the body.
    peer.server.consumed(1, 65535)
    peer.pump()
    assert peer.client.local_flow_control_window(1) > 0


def test_padding_is_given_back_by_the_server_and_data_by_the_application():
    peer = Peer()
    post = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, post, end_stream=False)
    for _ in range(4):
        peer.client.send_data(1, b"p" * 10000, pad_length=200)
    taken = sum(len(e.data) for e in peer.pump() if isinstance(e, BodyReceived))
    assert taken == 40000
    assert peer.client.local_flow_control_window(1) == 65535 - 4 * 10201
    peer.server.consumed(1, taken)
    peer.pump()
    assert peer.client.local_flow_control_window(1) == 65535


def test_send_data_sends_what_the_windows_allow_and_waits_for_window_opened():
    peer = Peer(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 100})
    peer.request(1)
    peer.server.send_headers(1, 200, [], end_stream=False)
    assert peer.server.window(1) == 100
    assert peer.server.send_data(1, b"z" * 250, end_stream=True) == 100
    assert peer.server.window(1) == 0 and peer.server.open_streams == 1
    peer.client.receive_data(peer.server.data_to_send())
    peer.client.increment_flow_control_window(1000, stream_id=1)
    assert WindowOpened(1) in peer.pump()
    assert peer.server.send_data(1, b"z" * 150, end_stream=True) == 150
    assert peer.server.open_streams == 0


def test_send_data_splits_by_the_peer_frame_size():
    peer = Peer()
    peer.request(1)
    peer.server.send_headers(1, 200, [], end_stream=False)
    assert peer.server.send_data(1, b"q" * 40000, end_stream=True) == 40000
    data = [f for f in parse_frames(peer.server.data_to_send()) if isinstance(f, DataFrame)]
    assert [len(f.data) for f in data] == [16384, 16384, 7232]
    assert "END_STREAM" in data[-1].flags and "END_STREAM" not in data[0].flags


# ------------------------------------------------------------------ connection errors and defences


def test_an_invalid_preface_ends_the_connection():
    conn = H2Connection(H2Settings(), Limits())
    conn.initiate()
    conn.data_to_send()
    events = conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert events == [ConnectionEnded(ErrorCodes.PROTOCOL_ERROR, "invalid connection preface",
                                      False)]
    assert parse_frames(conn.data_to_send())[-1].error_code == ErrorCodes.PROTOCOL_ERROR
    assert conn.receive_data(b"more") == []


def test_the_preface_must_go_on_with_settings():
    conn = H2Connection(H2Settings(), Limits())
    conn.initiate()
    conn.data_to_send()
    events = conn.receive_data(core.PREFACE + PingFrame(0, opaque_data=b"12345678").serialize())
    assert only(events, ConnectionEnded).code == ErrorCodes.PROTOCOL_ERROR


def test_an_oversized_frame_is_refused_before_its_payload_arrives():
    peer = Peer()
    header = struct.pack(">I", 16385)[1:] + bytes([0, 0]) + struct.pack(">I", 1)
    events = peer.server.receive_data(header)  # only the 9-octet header
    assert only(events, ConnectionEnded).code == ErrorCodes.FRAME_SIZE_ERROR


def test_rst_stream_on_an_idle_stream_ends_the_connection():
    peer = Peer()
    peer.send_raw(RstStreamFrame(5, error_code=0))
    assert peer.goaway().error_code == ErrorCodes.PROTOCOL_ERROR


def test_window_update_of_zero_is_a_stream_error_on_a_stream():
    peer = Peer()
    peer.request(1, end_stream=False)
    zero = struct.pack(">I", 4)[1:] + bytes([8, 0]) + struct.pack(">II", 1, 0)
    peer.client.data_to_send()
    events = peer.server.receive_data(zero)
    peer.frames.extend(parse_frames(peer.server.data_to_send()))
    assert resets(events) == [(1, ErrorCodes.PROTOCOL_ERROR, False)] and len(events) == 1
    assert peer.goaway() is None


def test_window_update_of_zero_on_the_connection_ends_it():
    peer = Peer()
    zero = struct.pack(">I", 4)[1:] + bytes([8, 0]) + struct.pack(">II", 0, 0)
    events = peer.server.receive_data(zero)
    assert only(events, ConnectionEnded).code == ErrorCodes.PROTOCOL_ERROR


def test_an_hpack_decoding_error_is_a_compression_error():
    peer = Peer()
    bad_index = bytes([0xFF, 0xFF, 0xFF, 0x0F])  # an indexed field far past both tables
    peer.send_raw(HeadersFrame(1, data=bad_index, flags=["END_HEADERS", "END_STREAM"]))
    assert peer.goaway().error_code == ErrorCodes.COMPRESSION_ERROR


def test_an_hpack_bomb_ends_the_connection_with_enhance_your_calm():
    peer = Peer(H2Settings(max_header_list_size=4096))
    # One 4000-byte entry in the dynamic table, then a block that names it again and again.
    peer.client.encoder.header_table_size = 4096
    first = peer.raw_block(BASE + [("x-big", "b" * 3900)])
    peer.send_raw(HeadersFrame(1, data=first, flags=["END_HEADERS", "END_STREAM"]))
    assert peer.goaway() is None  # within twice the limit: a 431, not a connection error
    index = bytes([0x80 | 62])  # the newest dynamic entry
    bomb = peer.raw_block(BASE) + index * 200
    peer.send_raw(HeadersFrame(3, data=bomb, flags=["END_HEADERS", "END_STREAM"]))
    assert peer.goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_a_continuation_flood_ends_the_connection():
    peer = Peer()
    frames = [HeadersFrame(1, data=peer.raw_block(BASE))]
    frames += [ContinuationFrame(1, data=b"") for _ in range(core.CONTINUATION_LIMIT + 1)]
    peer.send_raw(*frames)
    goaway = peer.goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert b"CONTINUATION" in goaway.additional_data


def test_a_header_block_larger_than_the_hard_limit_ends_the_connection():
    peer = Peer(H2Settings(max_header_list_size=4096))
    frames = [HeadersFrame(1, data=b"\x00" * 8000)]
    frames += [ContinuationFrame(1, data=b"\x00" * 8000) for _ in range(3)]
    peer.send_raw(*frames)
    assert peer.goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_continuation_frames_of_a_normal_large_block_are_accepted():
    peer = Peer()
    fields = BASE + [("x-%d" % i, "v" * 1000) for i in range(30)]
    block = peer.raw_block(fields)
    pieces = [block[i : i + 4000] for i in range(0, len(block), 4000)]
    frames = [HeadersFrame(1, data=pieces[0], flags=["END_STREAM"])]
    frames += [ContinuationFrame(1, data=p) for p in pieces[1:]]
    frames[-1].flags.add("END_HEADERS")
    assert only(peer.send_raw(*frames), RequestReceived).stream_id == 1


FLOODS = {
    "settings": lambda i: SettingsFrame(0, settings={SettingCodes.HEADER_TABLE_SIZE: 4096}),
    "ping": lambda i: PingFrame(0, opaque_data=struct.pack(">Q", i)),
    "priority": lambda i: PriorityFrame(1, depends_on=0, stream_weight=15),
    "window-update": lambda i: WindowUpdateFrame(0, window_increment=1),
    "unknown-type": lambda i: _unknown_frame(),
}


def _unknown_frame():
    class Unknown:
        def serialize(self):
            return b"\x00\x00\x00\x42\x00\x00\x00\x00\x00"
    return Unknown()


@pytest.mark.parametrize("name", sorted(FLOODS))
def test_a_flood_of_frames_without_requests_ends_the_connection(name):
    peer = Peer()
    peer.request(1, end_stream=False)
    make = FLOODS[name]
    peer.send_raw(*[make(i) for i in range(core.OVERHEAD_ALLOWANCE + 10)])
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert b"without requests" in goaway.additional_data


def test_empty_data_frames_in_a_row_end_the_connection():
    peer = Peer()
    peer.request(1, end_stream=False)
    peer.send_raw(*[DataFrame(1, data=b"") for _ in range(core.EMPTY_DATA_LIMIT + 1)])
    goaway = peer.goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert b"empty DATA" in goaway.additional_data


def test_empty_data_frames_between_data_do_not_trip():
    peer = Peer()
    post = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    peer.request(1, post, end_stream=False)
    for _ in range(50):
        events = peer.send_raw(*[DataFrame(1, data=b"") for _ in range(core.EMPTY_DATA_LIMIT)],
                               DataFrame(1, data=b"x"))
        assert events == [BodyReceived(1, b"x")]
        peer.server.consumed(1, 1)
    assert peer.goaway() is None


def test_control_frames_alongside_requests_do_not_trip_the_flood_defence():
    peer = Peer()
    for n in range(300):
        sid = 2 * n + 1
        peer.client.ping(struct.pack(">Q", n))
        peer.client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 4096})
        peer.client.increment_flow_control_window(100)
        peer.request(sid)
        answer(peer, sid)
        peer.pump()
    assert peer.goaway() is None


def test_rapid_reset_ends_the_connection():
    peer = Peer()
    for n in range(core.RESET_ALLOWANCE + 2):
        sid = 2 * n + 1
        peer.client.send_headers(sid, GET, end_stream=False)
        peer.client.reset_stream(sid, ErrorCodes.CANCEL)
        peer.pump()
        if peer.goaway() is not None:
            break
    goaway = peer.goaway()
    assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert n == core.RESET_ALLOWANCE


def test_resets_of_answered_streams_do_not_trip_rapid_reset():
    peer = Peer()
    post = [(":method", "POST"), (":scheme", "https"), (":authority", "e"), (":path", "/")]
    for n in range(200):
        sid = 2 * n + 1
        peer.request(sid, post, end_stream=False)
        answer(peer, sid)  # the body is not read: the stream is reset NO_ERROR by the server
        peer.pump()
        try:
            peer.client.reset_stream(sid, ErrorCodes.CANCEL)
        except h2.exceptions.StreamClosedError:
            pass
        peer.pump()
    # Some cancellations of unanswered streams are fine too.
    for n in range(200, 250):
        peer.request(2 * n + 1, end_stream=False)
        peer.client.reset_stream(2 * n + 1, ErrorCodes.CANCEL)
        peer.pump()
    assert peer.goaway() is None


def test_malformed_requests_draw_on_the_rapid_reset_allowance():
    peer = Peer()
    for n in range(core.RESET_ALLOWANCE + 1):
        sid = 2 * n + 1
        block = peer.raw_block(_without(":path"))
        peer.send_raw(HeadersFrame(sid, data=block, flags=["END_HEADERS", "END_STREAM"]))
    assert peer.goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM


# ------------------------------------------------------------------ ending a connection


def test_graceful_close_lets_streams_in_flight_finish_and_refuses_new_ones():
    peer = Peer()
    peer.request(1)
    peer.server.close()
    peer.pump()
    goaway = peer.goaway()
    assert (goaway.error_code, goaway.last_stream_id) == (0, 1)
    # Sent before the client saw the GOAWAY:
    events = peer.send_raw(HeadersFrame(3, data=peer.raw_block(GET),
                                        flags=["END_HEADERS", "END_STREAM"]))
    assert events == []
    assert peer.resets() == {3: ErrorCodes.REFUSED_STREAM}
    answer(peer, 1)
    assert peer.server.take_events() == [ConnectionEnded(0, "graceful shutdown", False)]
    assert peer.server.ended


def test_graceful_close_with_no_stream_ends_at_once():
    peer = Peer()
    peer.server.close()
    assert peer.server.take_events() == [ConnectionEnded(0, "graceful shutdown", False)]


def test_close_with_an_error_code_sends_goaway_now():
    peer = Peer()
    peer.request(1)
    peer.server.close(ErrorCodes.INTERNAL_ERROR, reason="bye")
    peer.pump()
    assert peer.goaway().error_code == ErrorCodes.INTERNAL_ERROR
    assert peer.server.ended


def test_a_peer_goaway_ends_the_connection_after_its_streams():
    peer = Peer()
    peer.request(1)
    peer.client.close_connection()
    assert peer.pump() == []
    answer(peer, 1)
    assert peer.server.take_events() == [ConnectionEnded(0, "", True)]
    sent = parse_frames(peer.server.data_to_send())
    assert [type(f) for f in sent] == [HeadersFrame, DataFrame]
    assert "END_STREAM" in sent[-1].flags


def test_a_peer_goaway_with_an_error_ends_at_once():
    peer = Peer()
    peer.request(1)
    events = peer.send_raw(GoAwayFrame(0, last_stream_id=0, error_code=2,
                                       additional_data=b"oops"))
    assert events == [ConnectionEnded(ErrorCodes.INTERNAL_ERROR, "oops", True)]


def test_h2c_upgrade_answers_stream_1():
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    header = client.initiate_upgrade_connection().rstrip(b"=")
    server = H2Connection(H2Settings(), Limits())
    server.initiate_upgrade(header)
    client.data_to_send()
    events = server.receive_data(core.PREFACE + SettingsFrame(0).serialize())
    assert not any(isinstance(e, ConnectionEnded) for e in events)
    server.send_headers(1, 200, [], end_stream=False)
    server.send_data(1, b"upgraded", end_stream=True)
    got = client.receive_data(server.data_to_send())
    assert any(isinstance(e, h2e.DataReceived) and e.data == b"upgraded" for e in got)


@pytest.mark.parametrize("value", [b"!!!", b"AAAA", b"AAE"])
def test_h2c_upgrade_with_invalid_settings_is_bad_request(value):
    with pytest.raises(BadRequest):
        H2Connection(H2Settings(), Limits()).initiate_upgrade(value)


# ------------------------------------------------------------------ property


_FRAME_TYPES = st.integers(min_value=0, max_value=11)


@st.composite
def _frames(draw):
    count = draw(st.integers(min_value=0, max_value=12))
    out = []
    for _ in range(count):
        ftype = draw(_FRAME_TYPES)
        flags = draw(st.integers(min_value=0, max_value=255))
        sid = draw(st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]))
        payload = draw(st.binary(max_size=40))
        out.append(struct.pack(">I", len(payload))[1:] + bytes([ftype, flags])
                   + struct.pack(">I", sid) + payload)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_frames(), split=st.integers(min_value=1, max_value=50))
def test_arbitrary_frames_never_raise_out_of_receive_data(frames, split):
    peer = Peer()
    peer.request(1, end_stream=False)
    data = b"".join(frames)
    events = []
    for i in range(0, len(data), split):
        events += peer.server.receive_data(data[i : i + split])
    out = parse_frames(peer.server.data_to_send())
    ended = [e for e in events if isinstance(e, ConnectionEnded)]
    if ended and not ended[0].by_peer:
        assert isinstance(out[-1], GoAwayFrame) and out[-1].error_code == ended[0].code
    if ended:
        assert peer.server.receive_data(b"\x00" * 9) == []  # nothing more is read


@st.composite
def _conversations(draw):
    """Frames a client could plausibly send, valid or not, in any order: request heads (valid,
    malformed, split into CONTINUATION), bodies, resets, window updates, settings, pings."""
    steps = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        sid = draw(st.sampled_from([1, 3, 5, 7, 9, 11]))
        kind = draw(st.sampled_from(["headers", "bad-headers", "split-headers", "data", "rst",
                                     "window", "settings", "ping", "priority", "goaway",
                                     "trailers"]))
        end = draw(st.booleans())
        steps.append((kind, sid, end, draw(st.integers(min_value=0, max_value=70000))))
    return steps


def _frames_for(peer, kind, sid, end, n):
    flags = ["END_HEADERS"] + (["END_STREAM"] if end else [])
    if kind == "headers":
        fields = BASE + ([("content-length", str(n % 50))] if n % 3 == 0 else [])
        return [HeadersFrame(sid, data=peer.raw_block(fields), flags=flags)]
    if kind == "bad-headers":
        bad = MALFORMED[sorted(MALFORMED)[n % len(MALFORMED)]]
        return [HeadersFrame(sid, data=peer.raw_block(bad), flags=flags)]
    if kind == "split-headers":
        block = peer.raw_block(BASE + [("x", "y" * (n % 3000))])
        half = len(block) // 2
        first = HeadersFrame(sid, data=block[:half], flags=["END_STREAM"] if end else [])
        return [first, ContinuationFrame(sid, data=block[half:], flags=["END_HEADERS"])]
    if kind == "trailers":  # or a second head on a new stream
        return [HeadersFrame(sid, data=peer.raw_block([("x-t", "1")]), flags=flags)]
    if kind == "data":
        return [DataFrame(sid, data=b"d" * (n % 16385), flags=["END_STREAM"] if end else [])]
    if kind == "rst":
        return [RstStreamFrame(sid, error_code=n % 14)]
    if kind == "window":
        return [WindowUpdateFrame(sid if end else 0, window_increment=1 + n)]
    if kind == "settings":
        return [SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: n,
                                           SettingCodes.MAX_FRAME_SIZE: 16384 + n})]
    if kind == "ping":
        return [PingFrame(0, opaque_data=struct.pack(">Q", n), flags=["ACK"] if end else [])]
    if kind == "priority":
        return [PriorityFrame(sid, depends_on=n % 12, stream_weight=n % 256)]
    return [GoAwayFrame(0, last_stream_id=0, error_code=0 if end else n % 14)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_conversations(), answer_every=st.integers(min_value=1, max_value=4))
def test_plausible_conversations_with_responses_never_raise(steps, answer_every):
    """The core driven as the glue would: requests answered (some partly, some with a body
    larger than the window), consumed, reset; it never raises, and an ended connection ends with
    GOAWAY unless the client ended it."""
    peer = Peer()
    live = []
    opened = [1]
    for number, (kind, sid, end, n) in enumerate(steps):
        # Mostly the order a client keeps (new streams ascending, frames on opened ones), now
        # and then any stream at all.
        if n % 4:
            if kind.endswith("headers"):
                sid = opened[-1] + 2 if len(opened) > 1 or number else 1
                opened.append(sid)
            else:
                sid = opened[n % len(opened)]
        events = peer.send_raw(*_frames_for(peer, kind, sid, end, n))
        for event in events:
            if isinstance(event, (RequestReceived, RequestRejected)):
                live.append(event.stream_id)
            elif isinstance(event, BodyReceived):
                peer.server.consumed(event.stream_id, len(event.data))
            elif isinstance(event, StreamReset) and event.stream_id in live:
                live.remove(event.stream_id)
            elif isinstance(event, ConnectionEnded):
                assert peer.server.ended
        if live and number % answer_every == 0:
            sid = live.pop(0)
            if n % 5 == 0:
                peer.server.reset(sid)
            else:
                peer.server.send_headers(sid, 200, [(b"x", b"y")], end_stream=False)
                peer.server.send_data(sid, b"r" * (n % 100000), end_stream=n % 2 == 0)
                if n % 7 == 0:
                    peer.server.send_trailers(sid, [(b"x-t", b"1")])
        peer.server.take_events()
        if peer.server.ended:
            break
    parse_frames(peer.server.data_to_send())


def _raw_frame(ftype, flags, sid, payload=b""):
    class Raw:
        def serialize(self):
            return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags])
                    + struct.pack(">I", sid) + payload)
    return Raw()


def _after_request(make):
    """Frames sent after a request head (and its END_STREAM) on stream 1."""
    return lambda peer: [HeadersFrame(1, data=peer.raw_block(BASE),
                                      flags=["END_HEADERS", "END_STREAM"])] + make(peer)


CONNECTION_ERRORS = {
    "data-on-idle-stream": (lambda p: [DataFrame(1, data=b"x")], ErrorCodes.PROTOCOL_ERROR),
    "headers-on-even-stream": (lambda p: [HeadersFrame(2, data=p.raw_block(BASE),
                                                       flags=["END_HEADERS"])],
                               ErrorCodes.PROTOCOL_ERROR),
    "stream-id-going-down": (_after_request(lambda p: [
        HeadersFrame(5, data=p.raw_block(BASE), flags=["END_HEADERS", "END_STREAM"]),
        HeadersFrame(3, data=p.raw_block(BASE), flags=["END_HEADERS", "END_STREAM"])]),
        ErrorCodes.PROTOCOL_ERROR),
    "header-block-interrupted": (lambda p: [HeadersFrame(1, data=p.raw_block(BASE)),
                                            PingFrame(0, opaque_data=b"12345678")],
                                 ErrorCodes.PROTOCOL_ERROR),
    "continuation-without-headers": (lambda p: [ContinuationFrame(1, data=b"",
                                                                  flags=["END_HEADERS"])],
                                     ErrorCodes.PROTOCOL_ERROR),
    "push-promise-from-client": (lambda p: [_raw_frame(5, 4, 1, struct.pack(">I", 2))],
                                 ErrorCodes.PROTOCOL_ERROR),
    "settings-on-a-stream": (lambda p: [_raw_frame(4, 0, 1)], ErrorCodes.PROTOCOL_ERROR),
    "settings-wrong-length": (lambda p: [_raw_frame(4, 0, 0, b"\x00" * 5)],
                              ErrorCodes.FRAME_SIZE_ERROR),
    "settings-ack-with-payload": (lambda p: [_raw_frame(4, 1, 0, b"\x00" * 6)],
                                  ErrorCodes.FRAME_SIZE_ERROR),
    "settings-enable-push-2": (lambda p: [SettingsFrame(0, settings={2: 2})],
                               ErrorCodes.PROTOCOL_ERROR),
    "settings-window-too-large": (lambda p: [SettingsFrame(0, settings={4: 2**31})],
                                  ErrorCodes.FLOW_CONTROL_ERROR),
    "settings-frame-size-too-small": (lambda p: [SettingsFrame(0, settings={5: 100})],
                                      ErrorCodes.PROTOCOL_ERROR),
    "ping-wrong-length": (lambda p: [_raw_frame(6, 0, 0, b"\x00" * 7)],
                          ErrorCodes.FRAME_SIZE_ERROR),
    "ping-on-a-stream": (lambda p: [_raw_frame(6, 0, 1, b"\x00" * 8)], ErrorCodes.PROTOCOL_ERROR),
    "goaway-on-a-stream": (lambda p: [_raw_frame(7, 0, 1, b"\x00" * 8)],
                           ErrorCodes.PROTOCOL_ERROR),
    "goaway-too-short": (lambda p: [_raw_frame(7, 0, 0, b"\x00" * 4)],
                         ErrorCodes.FRAME_SIZE_ERROR),
    "connection-window-overflow": (lambda p: [WindowUpdateFrame(0, window_increment=2**31 - 1)],
                                   ErrorCodes.FLOW_CONTROL_ERROR),
    "data-beyond-the-stream-window": (  # nobody consumes stream 1
        lambda p: [HeadersFrame(1, data=p.raw_block(BASE), flags=["END_HEADERS"])]
        + [DataFrame(1, data=b"x" * 16384) for _ in range(5)], ErrorCodes.FLOW_CONTROL_ERROR),
    "data-after-the-stream-closed": (_after_request(lambda p: [DataFrame(1, data=b"x")]),
                                     ErrorCodes.STREAM_CLOSED),
    "priority-on-itself": (lambda p: [PriorityFrame(3, depends_on=3)], ErrorCodes.PROTOCOL_ERROR),
    "rst-stream-on-stream-0": (lambda p: [_raw_frame(3, 0, 0, b"\x00" * 4)],
                               ErrorCodes.PROTOCOL_ERROR),
}


@pytest.mark.parametrize("name", sorted(CONNECTION_ERRORS))
def test_connection_errors_end_with_goaway_and_their_code(name):
    make, code = CONNECTION_ERRORS[name]
    peer = Peer()
    if name == "data-after-the-stream-closed":
        peer.send_raw(*make(peer)[:1])
        answer(peer, 1)  # both sides have ended the stream
        events = peer.send_raw(*make(peer)[1:])
    else:
        events = peer.send_raw(*make(peer))
    ended = only(events, ConnectionEnded)
    assert (ended.code, ended.by_peer) == (code, False)
    assert peer.goaway().error_code == code and peer.goaway().additional_data
    assert peer.server.receive_data(PingFrame(0, opaque_data=b"12345678").serialize()) == []


def test_a_peer_goaway_refuses_streams_opened_after_it():
    peer = Peer()
    peer.request(1)
    peer.send_raw(GoAwayFrame(0, last_stream_id=0, error_code=0))
    events = peer.send_raw(HeadersFrame(3, data=peer.raw_block(BASE),
                                        flags=["END_HEADERS", "END_STREAM"]))
    assert events == [] and peer.resets() == {3: ErrorCodes.REFUSED_STREAM}
    answer(peer, 1)
    assert peer.server.take_events() == [ConnectionEnded(0, "", True)]
