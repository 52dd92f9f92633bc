"""The sans-IO WebSocket core (refserver.wire.ws): bytes in, events and bytes out, no socket."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ws_helpers import (
    BINARY,
    CLOSE,
    CONT,
    KEY,
    PING,
    PONG,
    TEXT,
    close_code,
    close_frame,
    deflate_message,
    frame,
    parse_frames,
)
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import FrameDecoder, ParseFailed

from refserver.wire.events import ResponseError
from refserver.wire.fields import is_upgrade
from refserver.wire.request import Request
from refserver.wire.ws import (
    Closed,
    LeanFrameDecoder,
    MessageRules,
    PongReceived,
    ProtocolViolation,
    WSConnection,
    check_close_code,
    unmask,
)
from refserver.wire.ws_handshake import (
    DeflateParams,
    HandshakeError,
    VersionNotSupported,
    accept_headers,
    accept_token,
    negotiate_deflate,
    parse_extensions,
)
from refserver.wire.ws_handshake import parse_handshake as parse_request


def parse_handshake(method: bytes, version: bytes, headers: list):
    """The handshake of a request with this method, version and fields."""
    return parse_request(Request(method.decode(), b"/", b"", version.decode(), headers))

DEFLATE = DeflateParams(False, 15, "permessage-deflate")


def hs_headers(**extra):
    headers = [
        (b"host", b"x"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY),
        (b"sec-websocket-version", b"13"),
    ]
    for name, value in extra.items():
        headers.append((name.replace("_", "-").encode(), value))
    return headers


def server_frames(ws: WSConnection) -> list:
    frames, rest = parse_frames(ws.data_to_send())
    assert rest == b""
    return frames


# ------------------------------------------------------------------------------------ handshake


def test_is_upgrade_needs_both_fields():
    assert is_upgrade(hs_headers())
    assert is_upgrade([(b"upgrade", b"WebSocket"), (b"connection", b"keep-alive, Upgrade")])
    assert not is_upgrade([(b"upgrade", b"websocket")])  # no Connection: upgrade
    assert not is_upgrade([(b"connection", b"upgrade"), (b"upgrade", b"h2c")])
    assert not is_upgrade([(b"host", b"x")])


def test_accept_token_is_rfc6455_example():
    # RFC 6455 1.3: the sample nonce and its accept value.
    assert accept_token(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_handshake_and_subprotocols_from_comma_separated_fields():
    headers = hs_headers(sec_websocket_protocol=b"chat, superchat")
    headers.append((b"sec-websocket-protocol", b"v3"))
    hs = parse_handshake(b"GET", b"1.1", headers)
    assert hs.key == KEY
    assert hs.subprotocols == ["chat", "superchat", "v3"]


@pytest.mark.parametrize(
    "method, version, headers, status",
    [
        (b"POST", b"1.1", hs_headers(), 400),
        (b"GET", b"1.0", hs_headers(), 400),
        (b"GET", b"1.1", [h for h in hs_headers() if h[0] != b"sec-websocket-key"], 400),
        (b"GET", b"1.1", [*hs_headers()[:3], (b"sec-websocket-key", b"c2hvcnQ="),
                          (b"sec-websocket-version", b"13")], 400),
        (b"GET", b"1.1", [*hs_headers()[:4], (b"sec-websocket-version", b"8")], 426),
        (b"GET", b"1.1", hs_headers()[:4], 426),
        (b"GET", b"1.1", hs_headers(content_length=b"5"), 400),
        (b"GET", b"1.1", hs_headers(transfer_encoding=b"chunked"), 400),
    ],
)
def test_invalid_handshakes(method, version, headers, status):
    with pytest.raises(HandshakeError) as info:
        parse_handshake(method, version, headers)
    assert info.value.status == status
    if status == 426:
        assert isinstance(info.value, VersionNotSupported)
        assert (b"sec-websocket-version", b"13") in info.value.headers


def test_accept_headers_subprotocol_and_extra_headers():
    hs = parse_handshake(b"GET", b"1.1", hs_headers(sec_websocket_protocol=b"a, b"))
    headers = accept_headers(hs, "b", [(b"x-extra", b"1")], DEFLATE)
    assert headers == [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", accept_token(KEY)),
        (b"sec-websocket-protocol", b"b"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
        (b"x-extra", b"1"),
    ]


@pytest.mark.parametrize(
    "subprotocol, headers",
    [
        ("c", []),  # not offered
        (None, [(b"sec-websocket-protocol", b"a")]),
        (None, [(b"upgrade", b"other")]),
        (None, [(b"bad name", b"v")]),
        (None, [(b"x", b"bad\r\nvalue")]),
    ],
)
def test_accept_headers_refuses_what_the_handshake_owns(subprotocol, headers):
    hs = parse_handshake(b"GET", b"1.1", hs_headers(sec_websocket_protocol=b"a, b"))
    with pytest.raises(ResponseError):
        accept_headers(hs, subprotocol, headers)


def test_parse_extensions_with_quoted_values():
    assert parse_extensions(
        'permessage-deflate; client_max_window_bits="10", x-foo, permessage-deflate'
    ) == [
        ("permessage-deflate", [("client_max_window_bits", "10")]),
        ("x-foo", []),
        ("permessage-deflate", []),
    ]


@pytest.mark.parametrize(
    "offer, response, bits",
    [
        ("permessage-deflate", "permessage-deflate", 15),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate", 15),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            15,
        ),
        (
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=8",
            8,
        ),
        # An invalid first offer is declined and the next one accepted (RFC 7692 5).
        ("permessage-deflate; server_max_window_bits=7, permessage-deflate", "permessage-deflate", 15),
        ("permessage-deflate; unknown_param", None, None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None, None),
        ("permessage-deflate; client_max_window_bits=16", None, None),
        ("x-webkit-deflate-frame", None, None),
    ],
)
def test_negotiate_deflate(offer, response, bits):
    params = negotiate_deflate(parse_extensions(offer))
    if response is None:
        assert params is None
    else:
        assert params.response == response
        assert params.server_max_window_bits == bits


# ------------------------------------------------------------------------------------ messages


def test_text_and_binary_messages_and_server_frames():
    ws = WSConnection()
    events = ws.receive_data(frame(TEXT, "héllo".encode()) + frame(BINARY, b"\x00\x01"))
    assert events == ["héllo", b"\x00\x01"]
    assert ws.send("ok") == b"\x81\x02ok"
    assert ws.send(b"\xff") == b"\x82\x01\xff"


def test_bytes_split_anywhere_give_the_same_events():
    data = frame(TEXT, b"a" * 300) + frame(PING, b"p") + frame(BINARY, b"b" * 70000)
    for size in (1, 2, 7, 64, 1000, len(data)):
        ws = WSConnection()
        events = []
        for i in range(0, len(data), size):
            events += ws.receive_data(data[i : i + size])
        assert events == ["a" * 300, b"b" * 70000], size
        assert server_frames(ws) == [(True, 0, PONG, b"p")]


def test_fragmented_message_with_interleaved_control_frames():
    ws = WSConnection()
    data = (
        frame(TEXT, b"fra", fin=False)
        + frame(PING, b"1")
        + frame(CONT, b"gmen", fin=False)
        + frame(PONG, b"x")
        + frame(CONT, b"ted")
    )
    assert ws.receive_data(data) == [PongReceived(b"x"), "fragmented"]
    assert server_frames(ws) == [(True, 0, PONG, b"1")]


def test_utf8_split_across_fragments_is_valid():
    snowman = "☃".encode()
    ws = WSConnection()
    assert ws.receive_data(frame(TEXT, snowman[:1], fin=False) + frame(CONT, snowman[1:])) == ["☃"]


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007),
        (frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff"), 1007),
        (frame(TEXT, b"x", mask=None), 1002),  # clients must mask
        (frame(3, b"x"), 1002),  # reserved opcode
        (frame(TEXT, b"x", rsv=2), 1002),  # RSV2 without an extension
        (frame(CONT, b"x"), 1002),  # continuation with no message
        (frame(TEXT, b"x", fin=False) + frame(TEXT, b"y"), 1002),
        (frame(PING, b"x", fin=False), 1002),  # fragmented control frame
        (frame(PING, b"x" * 126), 1002),
        (close_frame(999), 1002),
        (close_frame(1005), 1002),
        (close_frame(1000, b"\xff"), 1007),
        (frame(CLOSE, b"\x03"), 1002),
    ],
)
def test_violations_fail_the_connection_with_the_rfc_code(data, code):
    ws = WSConnection()
    events = ws.receive_data(frame(TEXT, b"before") + data)
    assert events[0] == "before"
    violation = events[-1]
    assert isinstance(violation, ProtocolViolation) and violation.code == code
    assert ws.data_to_send() == b""  # the close frame waits for fail()
    assert ws.receive_data(frame(TEXT, b"after")) == []  # nothing after a violation counts
    closed = ws.fail()
    assert closed == Closed(code, violation.reason)
    ((fin, rsv, opcode, payload),) = server_frames(ws)
    assert opcode == CLOSE and close_code(payload) == code
    assert not ws.open


def test_peer_close_is_echoed_and_reported():
    ws = WSConnection()
    (closed,) = ws.receive_data(close_frame(4001, "adiós".encode()))
    assert closed == Closed(4001, "adiós", by_peer=True)
    assert [(f[2], close_code(f[3])) for f in server_frames(ws)] == [(CLOSE, 4001)]
    assert ws.handshake_complete
    assert ws.receive_data(frame(TEXT, b"late")) == []


def test_peer_close_without_code_is_answered_1000_and_reported_1005():
    ws = WSConnection()
    (closed,) = ws.receive_data(close_frame(None))
    assert closed.code == 1005
    assert [close_code(f[3]) for f in server_frames(ws)] == [1000]


def test_server_close_then_peer_reply():
    ws = WSConnection()
    closed = ws.close(4000, "bye")
    assert closed == Closed(4000, "bye")
    (f,) = server_frames(ws)
    assert f[2] == CLOSE and f[3] == b"\x0f\xa0bye"
    # Data after our close frame is read and discarded; the reply completes the handshake.
    events = ws.receive_data(frame(TEXT, b"ignored") + close_frame(4000))
    assert events == [closed]
    assert ws.handshake_complete
    assert ws.close(1000) is closed  # idempotent


def test_connection_lost_without_close_is_dropped_1006():
    ws = WSConnection()
    assert ws.connection_lost() == Closed(1006, "", dropped=True)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999])
def test_close_codes_an_endpoint_may_send(code):
    assert check_close_code(code) == code


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, True, "1000"])
def test_close_codes_refused(code):
    with pytest.raises(ValueError):
        check_close_code(code)


# ------------------------------------------------------------------------------------ limits


def test_message_too_big_is_refused_at_the_frame_header():
    ws = WSConnection(max_size=100)
    assert ws.receive_data(frame(BINARY, b"x" * 100)) == [b"x" * 100]
    # The header announces 101 bytes: refused before any payload is read.
    events = ws.receive_data(frame(BINARY, b"", length=101))
    assert events == [ProtocolViolation(1009, "message larger than 100 bytes")]


def test_message_too_big_across_fragments():
    ws = WSConnection(max_size=100)
    events = ws.receive_data(frame(TEXT, b"a" * 60, fin=False) + frame(CONT, b"a" * 60))
    assert [type(e) for e in events] == [ProtocolViolation]
    assert events[0].code == 1009


def test_deflate_bomb_stops_at_the_limit():
    """A compressed message is inflated only up to the limit: 1 MiB of zeros in ~1 KiB."""
    ws = WSConnection(max_size=10000, deflate=DEFLATE)
    bomb = deflate_message(b"\x00" * (1 << 20))
    assert len(bomb) < 2000
    events = ws.receive_data(frame(BINARY, bomb, rsv=4))
    assert events == [ProtocolViolation(1009, "message larger than 10000 bytes")]
    assert ws._rules._size <= 10001


# ------------------------------------------------------------------------------------ deflate


def test_deflate_round_trip_with_context_takeover():
    ws = WSConnection(deflate=DEFLATE)
    client = zlib.compressobj(6, zlib.DEFLATED, -15)
    events = []
    for text in ("hello hello hello", "hello again", ""):
        events += ws.receive_data(frame(TEXT, deflate_message(text.encode(), client), rsv=4))
    assert events == ["hello hello hello", "hello again", ""]
    inflater = zlib.decompressobj(-15)
    for message in ("x" * 1000, "x" * 1000):  # the second reuses the window: smaller
        (f,) = parse_frames(ws.send(message))[0]
        assert f[1] == 4  # RSV1: compressed
        assert inflater.decompress(f[3] + b"\x00\x00\xff\xff").decode() == message


def test_deflate_uncompressed_message_in_a_compressed_session():
    ws = WSConnection(deflate=DEFLATE)
    assert ws.receive_data(frame(TEXT, b"plain")) == ["plain"]


def test_deflate_fragmented_with_a_ping_in_between():
    """wsproto's own extension forgets that the message is compressed after a control frame;
    refserver's keeps it."""
    ws = WSConnection(deflate=DEFLATE)
    payload = deflate_message(b"fragmented and compressed")
    data = (
        frame(TEXT, payload[:5], fin=False, rsv=4)
        + frame(PING, b"p")
        + frame(CONT, payload[5:])
    )
    assert ws.receive_data(data) == ["fragmented and compressed"]


@pytest.mark.parametrize(
    "data",
    [
        frame(PING, b"x", rsv=4),  # RSV1 on a control frame
        frame(TEXT, b"x", fin=False) + frame(CONT, b"y", rsv=4),  # RSV1 on a continuation
        frame(BINARY, b"\xff\xff\xff\xff", rsv=4),  # not deflate data
    ],
)
def test_deflate_violations(data):
    ws = WSConnection(deflate=DEFLATE)
    events = ws.receive_data(data)
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].code in (1002, 1007)


def test_server_no_context_takeover_and_window_bits_8():
    params = negotiate_deflate(
        parse_extensions("permessage-deflate; server_no_context_takeover; server_max_window_bits=8")
    )
    ws = WSConnection(deflate=params)
    for _ in range(2):
        (f,) = parse_frames(ws.send("abcabcabc" * 100))[0]
        # A fresh inflater for each message (no context taken over), and a 2^8 window suffices.
        assert zlib.decompressobj(-8).decompress(f[3] + b"\x00\x00\xff\xff") == b"abcabcabc" * 100


# ------------------------------------------------------------------------------------ framing


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 100, 2048, 2049, 70000])
def test_unmask_matches_the_definition(n):
    data = bytes(range(256)) * (n // 256 + 1)
    data = data[:n]
    key = b"\x01\x80\xfe\x7f"
    assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


_frames = st.lists(
    st.one_of(
        st.tuples(st.just(TEXT), st.text(max_size=300).map(str.encode)),
        st.tuples(st.just(BINARY), st.binary(max_size=70000)),
        st.tuples(st.just(PING), st.binary(max_size=125)),
        st.tuples(st.just(PONG), st.binary(max_size=20)),
        st.tuples(st.sampled_from([3, 11]), st.binary(max_size=3)),  # reserved opcodes
        st.tuples(st.just(CONT), st.binary(max_size=3)),
        st.tuples(st.just(TEXT), st.binary(max_size=8)),  # maybe invalid UTF-8
    ),
    max_size=6,
)


def _events(data: bytes, cuts: list, lean: bool) -> list:
    conn = Connection(ConnectionType.SERVER, extensions=[MessageRules(100000, None)])
    proto = conn._proto
    if lean:
        proto._frame_decoder = LeanFrameDecoder(False, proto.extensions)
    else:
        proto._frame_decoder = FrameDecoder(False, proto.extensions)
    out = []
    parts = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        conn.receive_data(data[start:cut])
        start = cut
        for event in conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                # The lean decoder may hand a message up in fewer pieces; the messages are equal.
                parts.append(event.data)
                if event.message_finished:
                    out.append((type(event).__name__, parts[0][:0].join(parts)))
                    parts = []
            elif isinstance(event, CloseConnection):
                # The reason text of a violation quotes the UTF-8 decoder's offset, which counts
                # from wherever each decoder happened to split the payload; the code is the rule.
                out.append(("CloseConnection", event.code))
            else:
                out.append(repr(event))
    return out


@settings(max_examples=150, deadline=None)
@given(
    _frames,
    st.lists(st.integers(min_value=0, max_value=200000), max_size=5),
    st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_lean_decoder_gives_exactly_wsproto_events(frames, cuts, fins):
    """The lean decoder is a drop-in: for any frames, however the bytes are split, the messages,
    pings, pongs and close codes for violations are wsproto's own decoder's, in the same order."""
    data = b"".join(
        frame(op, payload, fin=fins[i] or op & 8 != 0) for i, (op, payload) in enumerate(frames)
    )
    cuts = [c % (len(data) + 1) for c in cuts]
    assert _events(data, cuts, True) == _events(data, cuts, False)


def test_lean_decoder_refuses_non_minimal_lengths():
    decoder = LeanFrameDecoder(False, [])
    decoder.receive_bytes(b"\x82\x7e\x00\x05" + b"\x00" * 9)
    with pytest.raises(ParseFailed):
        decoder.process_buffer()


def test_fast_unmask_is_a_drop_in():
    """The fast path's compiled unmasking gives the pure function's bytes for every length and
    alignment (it replaces it on the fast path: behaviour must stay identical)."""
    from conftest import IMPLS, require_fast_path

    if "fast" not in IMPLS:
        pytest.skip("REFSERVER_TEST_PURE_ONLY=1")
    require_fast_path()
    from refserver.impl import select

    fast_unmask = select("fast")[0].ws_unmask
    assert fast_unmask is not None, "refserver._speedups was built without ws_unmask"
    data = bytes(range(256)) * 80
    for key in (b"\x00\x00\x00\x00", b"\x01\x80\xfe\x7f", b"\xff\xff\xff\xff"):
        for n in list(range(0, 40)) + [2047, 2048, 2049, 16384, 20000]:
            piece = data[:n]
            assert fast_unmask(piece, key) == unmask(piece, key), (key, n)
            assert fast_unmask(bytearray(piece), key) == unmask(piece, key)
    with pytest.raises(ValueError):
        fast_unmask(b"abc", b"\x00\x00\x00")
