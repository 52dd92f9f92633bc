"""Fuzzing the sans-IO wire cores: input generators and the properties every input must keep.

One module, so that the short run in the test suite (tests/test_fuzz_wire.py, driven by
hypothesis) and the long run (scripts/fuzz_wire.py, driven by seeded ``random.Random``) check
exactly the same things. A generator takes anything with the ``random.Random`` interface -- a
seeded ``Random`` for a run that must be replayable from its seed, or hypothesis's
``st.randoms()`` so that a failure shrinks -- and returns an input; a property takes that input and
raises :class:`PropertyFailure` naming the broken rule.

HTTP/1.1 (:func:`check_h1`): valid requests, mutated, fed at random split points to
:class:`refserver.wire.h1.H1Connection` over each path's parser.

- Only typed errors come out: :class:`refserver.wire.events.HTTPError` with a status the core may
  answer with, never another exception.
- Nothing loops: the events per input are bounded, and a Body event is never empty.
- No byte is lost or invented: the bytes left after a request are a suffix of the bytes fed, and
  bytes fed after it that give no event yet are still buffered.
- Both paths agree: the same transcript for the same pieces; and the same outcome (events with
  bodies joined, errors by status) whether the bytes arrive whole or split.

WebSocket (:func:`check_ws`, :func:`check_ws_handshake`): client frames, mutated, fed at random
split points to :class:`refserver.wire.ws.WSConnection` with each path's unmasking, with and
without permessage-deflate; only the events of the core come out (a protocol violation is an
event, never an exception), nothing follows the end, no message is over the size limit, and the
outcome is the same for both paths however the bytes are split. The opening handshake's header
checks raise only :class:`refserver.wire.ws.HandshakeError`.
"""

from __future__ import annotations

import struct
import zlib

from refserver.wire.events import (  # noqa: F401 -- EndOfMessage, Body: for the tests too
    NEED_DATA,
    PAUSED,
    Body,
    EndOfMessage,
    HTTPError,
    RequestHead,
)
from refserver.wire.h1 import Limits

#: The statuses the HTTP/1.1 core's typed errors may carry (RFC 9110 / 9112 refusals).
H1_STATUSES = frozenset((400, 408, 413, 414, 431, 501, 505))
#: The statuses a refused WebSocket opening handshake may carry (RFC 6455 4.2.1, 4.4).
HANDSHAKE_STATUSES = frozenset((400, 426))


class PropertyFailure(AssertionError):
    """An input broke a property; the message says which one and how."""


# ======================================================================================= paths


def paths() -> dict:
    """name -> (parser factory, connection core, WebSocket unmask) for each built path."""
    from refserver import impl
    from refserver.wire.ws import unmask

    out = {}
    for name in ("pure", "fast"):
        try:
            chosen = impl.select(name)[0]
        except impl.ImplementationUnavailable:
            continue
        out[name] = (chosen.make_parser, chosen.h1_connection, chosen.ws_unmask or unmask)
    return out


# ============================================================================== HTTP/1.1 inputs

_HOST = b"Host: example.com\r\n"
_H1_TEMPLATES = (
    b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n",
    b"GET /a/b?c=d HTTP/1.1\r\n" + _HOST + b"Accept: */*\r\nUser-Agent: f\r\n\r\n",
    b"HEAD / HTTP/1.1\r\n" + _HOST + b"\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://example.com:80/x HTTP/1.1\r\n" + _HOST + b"\r\n",
    b"OPTIONS * HTTP/1.1\r\n" + _HOST + b"\r\n",
    b"POST /p HTTP/1.1\r\n" + _HOST + b"Content-Length: 5\r\n\r\nhello",
    b"PUT /p HTTP/1.1\r\n" + _HOST + b"Content-Length: 0\r\n\r\n",
    b"POST /p HTTP/1.1\r\n" + _HOST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /p HTTP/1.1\r\n" + _HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"POST /p HTTP/1.1\r\n" + _HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"a;name=value\r\n0123456789\r\n3;q=\"x y\";z\r\nabc\r\n0\r\nTrailer: t\r\n\r\n",
    b"GET /ws HTTP/1.1\r\n" + _HOST + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + _HOST + b"Connection: close\r\nCookie: a=b; c=d\r\n\r\n",
)
#: What mutations insert: the bytes that matter to HTTP/1.1 framing, and numbers that overflow.
_H1_INSERTS = (
    b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b";", b",", b"=", b"\"", b"\\", b"\x7f",
    b"\xff", b"\x0b", b"0", b"f", b"-", b"+", b"0x", b"\r\n\r\n", b"chunked", b"HTTP/1.1",
    b"99999999999999999999999", b"ffffffffffffffffffff", b"18446744073709551616",
    b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: b\r\n", b" x\r\n",
    b"GET / HTTP/1.1\r\n",
)
_HUGE = (b"99999999999999999999999", b"18446744073709551615", b"4294967296",
         b"ffffffffffffffffffff", b"0000000000000000000000001", b"-1")


def _mutate(rng, data: bytes, inserts) -> bytes:
    """One random edit: a bit flip, an insertion, a deletion, a duplicated or dropped line, a
    CR/LF/NUL/space put in place of a byte, or a number made huge."""
    buf = bytearray(data)
    size = len(buf)
    kind = rng.randrange(8)
    at = rng.randrange(size + 1)
    if kind == 0 and size:
        buf[at % size] ^= 1 << rng.randrange(8)
    elif kind == 1:
        buf[at:at] = rng.choice(inserts)
    elif kind == 2:
        del buf[at:at + rng.randint(1, 4)]
    elif kind == 3 and size:
        buf[at % size] = rng.choice(b"\r\n\x00 \t")
    elif kind in (4, 5):
        lines = bytes(buf).split(b"\n")
        i = rng.randrange(len(lines))
        if kind == 4:
            lines.insert(i, lines[i])
        elif len(lines) > 1:
            del lines[i]
        buf = bytearray(b"\n".join(lines))
    elif kind == 6:
        digits = [i for i, byte in enumerate(buf) if 48 <= byte <= 57]
        if digits:
            i = rng.choice(digits)
            j = i
            while j < size and 48 <= buf[j] <= 57:
                j += 1
            buf[i:j] = rng.choice(_HUGE)
    else:
        buf[at:at] = rng.randbytes(rng.randint(1, 3))
    return bytes(buf)


def random_cuts(rng, size: int) -> list:
    """Split points: none, a few, or every byte."""
    roll = rng.randrange(16)
    if roll == 0:
        return list(range(1, size))
    if roll < 3:
        return []
    return sorted(rng.randrange(size + 1) for _ in range(rng.randint(1, 6)))


def pieces_of(data: bytes, cuts) -> list:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def h1_input(rng) -> tuple:
    """(data, cuts, eof, late): one to three requests, mutated zero to four times."""
    data = b"".join(rng.choice(_H1_TEMPLATES) for _ in range(rng.choice((1, 1, 2, 3))))
    for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3, 4))):
        data = _mutate(rng, data, _H1_INSERTS)
    return data, random_cuts(rng, len(data)), rng.random() < 0.3, rng.random() < 0.3


# ============================================================================ HTTP/1.1 property

#: Events a single request may give at most; more from inputs this small means a loop.
MAX_EVENTS = 10_000


class _Stop(Exception):
    pass


def h1_transcript(path: str, pieces: list, eof: bool = False, late: bool = False,
                  limits: Limits | None = None) -> list:
    """Everything observable when ``pieces`` reach the HTTP/1.1 core of ``path``, driven as the
    protocol drives it; raises :class:`PropertyFailure` when a per-input property breaks."""
    if not _PATHS:
        _PATHS.update(paths())
    make_parser, connection, _ = _PATHS[path]
    limits = limits or Limits()
    conn = connection(make_parser(limits.head), limits, date_header=False, server_header=None)
    out = []
    fed = bytearray()
    steps = [0]
    waiting = [False]  # a complete request waits for its response
    # The bytes given since the last request ended that no event has taken yet (None once a
    # head came out of them: from then on the parser holds them as parse state).
    pending = [b""]

    def typed(exc: BaseException, where: str):
        if isinstance(exc, HTTPError):
            if exc.status not in H1_STATUSES:
                raise PropertyFailure(f"{path}: {where}: {type(exc).__name__} with status "
                                      f"{exc.status}") from exc
            out.append(("error", exc.status))
            raise _Stop
        raise PropertyFailure(f"{path}: {where} raised {type(exc).__name__}: {exc}") from exc

    def respond():
        waiting[0] = False
        try:
            out.append(("response", conn.response_head(200, [], b"ok", end=True)))
        except Exception as exc:  # noqa: BLE001 -- any exception here is what is looked for
            typed(exc, "response_head")
        if not conn.keep_alive:
            out.append("close")
            raise _Stop
        rest = conn.trailing_data()
        if not bytes(fed).endswith(rest):
            raise PropertyFailure(f"{path}: bytes after a request {rest!r} are not the end of "
                                  "what was fed")
        out.append(("pipelined", rest))
        pending[0] = rest
        try:
            conn.start_next_cycle()
        except Exception as exc:  # noqa: BLE001
            typed(exc, "start_next_cycle")

    def drain():
        while True:
            steps[0] += 1
            if steps[0] > MAX_EVENTS:
                raise PropertyFailure(f"{path}: no end to the events: {out[-6:]!r}")
            try:
                event = conn.next_event()
            except Exception as exc:  # noqa: BLE001
                typed(exc, "next_event")
            kind = type(event)
            if kind is RequestHead:
                pending[0] = None
                out.append(("head", event.method, event.target, event.http_version,
                             tuple(event.headers)))
            elif kind is Body:
                if type(event.data) is not bytes or not event.data:
                    raise PropertyFailure(f"{path}: empty or non-bytes Body {event!r}")
                out.append(("body", event.data))
            elif kind is EndOfMessage:
                out.append("eom")
                if late:
                    waiting[0] = True
                else:
                    respond()
            elif event is NEED_DATA or event is PAUSED or event is None:
                out.append("need" if event is NEED_DATA else
                           "paused" if event is PAUSED else "closed")
                if waiting[0]:
                    respond()
                    continue
                if event is None:
                    raise _Stop
                return
            else:
                raise PropertyFailure(f"{path}: unknown event {event!r}")

    try:
        for piece in pieces:
            fed += piece
            if pending[0] is not None:
                pending[0] += piece
            try:
                conn.receive_data(piece)
            except Exception as exc:  # noqa: BLE001
                typed(exc, "receive_data")
            drain()
        if eof:
            conn.receive_eof()
            drain()
        elif pending[0] is not None and out and out[-1] == "need":
            # Bytes that gave no event yet must still be held (leading empty lines may go).
            held = conn.trailing_data()
            if not (pending[0].endswith(held) and
                    not pending[0][: len(pending[0]) - len(held)].strip(b"\r\n")):
                raise PropertyFailure(f"{path}: {pending[0]!r} was fed but {held!r} is "
                                      "buffered")
    except _Stop:
        pass
    return out


_PATHS: dict = {}


def normalised(transcript: list) -> list:
    """What must not depend on how the bytes were split: events with each body joined, and the
    error status; not when the parser asked for more, nor what was pipelined at each moment."""
    out = []
    for item in transcript:
        if item in ("need", "paused") or (type(item) is tuple and item[0] == "pipelined"):
            continue
        if type(item) is tuple and item[0] == "body" and out and out[-1][0] == "body":
            out[-1] = ("body", out[-1][1] + item[1])
            continue
        out.append(item)
    return out


def _alike(transcript, outcome, pieces: list, whole: list) -> list:
    """The properties every core shares: on each path the pieces give the outcome the whole input
    gives (``outcome`` leaves out what may depend on the reads), and every path gives the same
    transcript for the pieces. Returns that transcript."""
    if not _PATHS:
        _PATHS.update(paths())
    reference = None
    for path in _PATHS:
        split = transcript(path, pieces)
        one, other = outcome(split), outcome(transcript(path, whole))
        if one != other:
            raise PropertyFailure(
                f"{path}: the split changes the outcome ({difference(one, other)})\n"
                f"  split {pieces!r} gives\n  {one!r}\n  whole gives\n  {other!r}")
        if reference is None:
            reference = (path, split)
        elif split != reference[1]:
            raise PropertyFailure(
                f"{reference[0]} and {path} differ ({difference(reference[1], split)})\n"
                f"  on {pieces!r}:\n  {reference[1]!r}\n  {split!r}")
    return reference[1]


def check_h1(data: bytes, cuts, eof: bool = False, late: bool = False) -> list:
    """Every HTTP/1.1 property for one input; returns the reference outcome."""
    return _alike(
        lambda path, pieces: h1_transcript(path, pieces, eof, late),
        normalised,
        pieces_of(data, cuts),
        [data] if data else [],
    )


def _kind(item) -> str:
    if type(item) is tuple:
        return f"{item[0]} {item[1]}" if item[0] == "error" else str(item[0])
    if item in ("eom", "close", "closed", "need", "paused"):
        return item
    code = getattr(item, "code", None)  # the WebSocket core's ends
    return type(item).__name__ if code is None else f"{type(item).__name__} {code}"


def difference(a: list, b: list) -> str:
    """Where two transcripts first part, by kind only: the line failures are grouped by."""
    for x, y in zip(a, b):
        if x != y:
            return f"{_kind(x)} / {_kind(y)}"
    return f"{len(a)} / {len(b)} items"


# ============================================================================= WebSocket inputs

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0,
                 mask: bytes | None = b"\x37\xfa\x21\x3d", length: int | None = None) -> bytes:
    """One frame as a client sends it (RFC 6455 5.2)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    from refserver.wire.ws import unmask  # masking and unmasking are the same XOR

    return head + mask + unmask(payload, mask)


def _deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


#: 256 KiB of zeros in a few hundred bytes: inflating must stop at the size limit.
_BOMB = _deflated(bytes(256 * 1024))
#: Long enough for each length encoding (7-bit, 16-bit); 64-bit lengths come from ``length=``.
_WS_TEXTS = ("", "hello", "héllo wörld", "€" * 20, "x" * 130)
_WS_INSERTS = (b"\x00", b"\xff", b"\x80", b"\x81", b"\x88", b"\x89", b"\x7f", b"\x7e\xff\xff",
               b"\xff" * 8, b"\xc3", b"\xed\xa0\x80", b"\x03\xe8", b"\x00\x00\xff\xff")


def ws_input(rng) -> tuple:
    """(data, cuts, deflate, max_size): a sequence of client frames, mutated zero to three
    times."""
    deflate = rng.random() < 0.3
    frames = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.randrange(9)
        mask = rng.randbytes(4)
        text = rng.choice(_WS_TEXTS)
        data = text.encode() if rng.random() < 0.5 else rng.randbytes(rng.choice((0, 1, 5, 126)))
        opcode = TEXT if rng.random() < 0.5 else BINARY
        payload = text.encode() if opcode == TEXT else data
        rsv = 0
        if deflate and rng.random() < 0.5:
            payload, rsv = _deflated(payload), 4
            if rng.random() < 0.1:
                payload = _BOMB
        if kind <= 3:
            frames.append(client_frame(opcode, payload, rsv=rsv, mask=mask))
        elif kind == 4:  # a fragmented message, with a ping in between
            cut = rng.randint(0, len(payload))
            frames.append(client_frame(opcode, payload[:cut], fin=False, rsv=rsv, mask=mask))
            if rng.random() < 0.5:
                frames.append(client_frame(PING, b"p", mask=mask))
            frames.append(client_frame(CONT, payload[cut:], mask=mask))
        elif kind == 5:
            frames.append(client_frame(PING, data[:125], mask=mask))
        elif kind == 6:
            frames.append(client_frame(PONG, data[:125], mask=mask))
        elif kind == 7:
            code = rng.choice((1000, 1001, 1002, 1005, 1006, 1011, 1015, 2999, 3000, 4999, 5000,
                               0, 65535))
            frames.append(client_frame(CLOSE, struct.pack("!H", code) + data[:20], mask=mask))
        else:
            frames.append(client_frame(opcode, payload, mask=mask, length=rng.choice(
                (126, 65535, 65536, 1 << 31, (1 << 63) - 1))))
    data = b"".join(frames)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        data = _mutate(rng, data, _WS_INSERTS)
    max_size = rng.choice((16, 1024, 65536, 16 * 1024 * 1024))
    return data, random_cuts(rng, len(data)), deflate, max_size


_HANDSHAKE_INSERTS = _H1_INSERTS + (b"permessage-deflate", b"server_no_context_takeover",
                                    b"client_max_window_bits=", b"server_max_window_bits=8")


def ws_handshake_input(rng) -> tuple:
    """(method, http_version, headers) of an opening handshake, its values mutated."""
    headers = [
        (b"host", b"example.com"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"chat, superchat"),
        (b"sec-websocket-extensions",
         b"permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-foo"),
    ]
    for _ in range(rng.randint(0, 4)):
        i = rng.randrange(len(headers))
        name, value = headers[i]
        roll = rng.randrange(4)
        if roll == 0:
            del headers[i]
        elif roll == 1:
            headers.append((name, value))
        else:
            headers[i] = (name, _mutate(rng, value, _HANDSHAKE_INSERTS))
    method = rng.choice((b"GET", b"GET", b"GET", b"POST"))
    version = rng.choice((b"1.1", b"1.1", b"1.1", b"1.0"))
    return method, version, headers


# ========================================================================== WebSocket property

def ws_transcript(path: str, pieces: list, deflate: bool, max_size: int) -> list:
    """Events and output bytes when ``pieces`` reach the WebSocket core with ``path``'s
    unmasking; raises :class:`PropertyFailure` when a per-input property breaks."""
    from refserver.wire.ws import Closed, ProtocolViolation, PongReceived, WSConnection
    from refserver.wire.ws_handshake import DeflateParams

    if not _PATHS:
        _PATHS.update(paths())
    params = DeflateParams(False, 15, "permessage-deflate") if deflate else None
    ws = WSConnection(max_size, params, _PATHS[path][2])
    out = []
    ended = False
    for piece in pieces:
        try:
            events = ws.receive_data(piece)
        except Exception as exc:  # noqa: BLE001 -- any exception is what is looked for
            raise PropertyFailure(f"{path}: receive_data raised {type(exc).__name__}: "
                                  f"{exc}") from exc
        if len(events) > len(piece) + 1:
            raise PropertyFailure(f"{path}: {len(events)} events from {len(piece)} bytes")
        for event in events:
            kind = type(event)
            if ended:
                raise PropertyFailure(f"{path}: {event!r} after the end")
            if kind is str or kind is bytes:
                size = len(event.encode()) if kind is str else len(event)
                if size > max_size:
                    raise PropertyFailure(f"{path}: a {size}-byte message over max_size "
                                          f"{max_size}")
                out.append(event)
            elif kind is PongReceived:
                out.append(event)
            elif kind is Closed or kind is ProtocolViolation:
                ended = True
                out.append(event)
                if kind is ProtocolViolation:
                    if not 1000 <= event.code <= 4999:
                        raise PropertyFailure(f"{path}: violation with close code {event.code}")
                    closed = ws.fail()
                    if closed.code != event.code:
                        raise PropertyFailure(f"{path}: failed with {closed!r} after {event!r}")
            else:
                raise PropertyFailure(f"{path}: unknown event {event!r}")
        sent = ws.data_to_send()
        if sent:
            out.append(("sent", sent))
    return _joined_sends(out)


def _joined_sends(out: list) -> list:
    """Output bytes joined where no event came between them (writes follow the reads)."""
    joined = []
    for item in out:
        if type(item) is tuple and joined and type(joined[-1]) is tuple:
            joined[-1] = ("sent", joined[-1][1] + item[1])
        else:
            joined.append(item)
    return joined


def check_ws(data: bytes, cuts, deflate: bool, max_size: int) -> list:
    """Every WebSocket property for one input; returns the reference outcome."""
    return _alike(
        lambda path, pieces: ws_transcript(path, pieces, deflate, max_size),
        _ws_outcome,
        pieces_of(data, cuts),
        [data],
    )


def _ws_outcome(transcript: list) -> list:
    """The events, then all bytes sent: when a frame is written depends on the reads."""
    events = [item for item in transcript if type(item) is not tuple]
    return events + [("sent", b"".join(item[1] for item in transcript if type(item) is tuple))]


def check_ws_handshake(method: bytes, http_version: bytes, headers: list):
    """A handshake is accepted (and its 101 head can be built) or refused with a typed error."""
    from refserver.wire.fields import TOKEN_STR_RE
    from refserver.wire.request import Request
    from refserver.wire.ws_handshake import HandshakeError, accept_headers, negotiate_deflate, \
        parse_handshake

    try:
        handshake = parse_handshake(
            Request(method.decode("latin-1"), b"/", b"", http_version.decode("latin-1"), headers)
        )
    except HandshakeError as exc:
        if exc.status not in HANDSHAKE_STATUSES:
            raise PropertyFailure(f"handshake refused with status {exc.status}") from exc
        return ("refused", exc.status)
    except Exception as exc:  # noqa: BLE001
        raise PropertyFailure(f"parse_handshake raised {type(exc).__name__}: {exc}") from exc
    try:
        # An application may only pick an offered token; refusing others is its own rule.
        tokens = [p for p in handshake.subprotocols if TOKEN_STR_RE.fullmatch(p)]
        deflate = negotiate_deflate(handshake.extensions)
        accept_headers(handshake, tokens[0] if tokens else None, [], deflate)
    except Exception as exc:  # noqa: BLE001
        raise PropertyFailure(f"accept_headers raised {type(exc).__name__}: {exc}") from exc
    return ("accepted",)


#: name -> (generator, property): what scripts/fuzz_wire.py and the test suite run.
TARGETS = {
    "h1": (h1_input, check_h1),
    "ws": (ws_input, check_ws),
    "ws-handshake": (ws_handshake_input, check_ws_handshake),
}
