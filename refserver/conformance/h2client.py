"""HTTP/2 for conformance cases: a raw client, frames as data, and the steps that use them.

The frame-level cases must send what no HTTP/2 library would (a PING of seven bytes, DATA on
stream 0, an even stream id, an uppercase field name, a header block cut by another frame), and
must see exactly how the server ends a connection. So frames are built here by hand from their
description, header blocks are encoded with ``hpack``, and what the server sends is parsed with
``hyperframe`` and decoded with ``hpack``, with no state machine judging either side.

An HTTP/2 case runs on a connection of its own (cleartext prior knowledge, or TLS with ALPN h2
under ``--tls``) and uses these steps:

``{"h2_connect": {"settings": [[NAME, VALUE], ...], "wait": true}}``
    the client preface and a SETTINGS frame; waits (unless ``"wait": false``) for the server's
    SETTINGS. The server's SETTINGS and PINGs are acknowledged whenever they arrive.
``{"h2_send": FRAME or [FRAME, ...]}``
    one write of frames.
``{"h2_request": {"stream": 1, "method": "GET", "path": "/", "headers": [[n, v]], "body": TEXT}}``
    HEADERS (``:method``, ``:scheme``, ``:authority``, ``:path``, then ``headers``) and DATA; the
    request ends with the body unless ``"end_stream": false``. ``"authority": null`` sends none.
``{"h2_response": EXPECTATION + {"stream": N, "data_frames": N, "before": M}}``
    the complete response on that stream (any :mod:`.expect` key, on the final response);
    ``before``: it ended while stream M was still unanswered.
``{"h2_goaway": {"error": NAME or [NAME, ...], "last_stream": N or PREDICATE}}``
    a GOAWAY (a close without one fails the case: never a silent close); then, for an error
    code, the server closes the connection (``"closed": false`` to skip that check).
    ``"or_close": true`` also accepts a close without GOAWAY, or an HTTP/1.x error response
    (what a connection preface that is not HTTP/2 may get).
``{"h2_reset": {"stream": N, "error": NAME or [NAME, ...]}}``
    RST_STREAM on that stream, or a GOAWAY with one of those codes (RFC 9113 5.4.1 lets a
    stream error be treated as a connection error).
``{"h2_expect": FRAME_EXPECTATION}``
    the next frame of that type (received since the previous ``h2_expect``).
``{"h2_closed": true}``, ``{"h2_open": true}``
    the server closes the connection; or it still answers a PING.
``{"not_reached": PATH_PREFIX}``
    as in HTTP/1.1 cases: no request for that path reached the application (the probe is asked
    on a new HTTP/2 connection).

A FRAME is ``{"type": NAME or INT, "stream": N, "flags": [NAME, ...] or INT}`` (stream 0 by
default for SETTINGS, PING, GOAWAY and WINDOW_UPDATE, 1 otherwise) with, by type:
``headers`` (a list of pairs, HPACK-encoded; a value may be ``{"repeat": TEXT, "times": N}``) or
``block_hex`` (HEADERS, CONTINUATION, PUSH_PROMISE); ``settings`` (pairs of a setting name or
number and a value); ``increment``; ``error`` (a code name or number) and ``last_stream`` and
``debug`` (GOAWAY); ``depends_on``, ``weight``, ``exclusive`` (PRIORITY, or HEADERS with the
PRIORITY flag); ``pad`` (pad length, with the PADDED flag); ``promised`` (PUSH_PROMISE).
``data`` (latin-1 text, or ``{"repeat": TEXT, "times": N}``) or ``hex`` replace the payload
whatever the type; ``length`` makes the frame header announce another length; ``repeat`` sends
the frame N times; ``"exceed_window": true`` (DATA) sends one byte more than the server's
initial stream window, in frames of at most 16,384 bytes; ``"oversize": true`` makes a DATA
payload, or a header block (with a field that HPACK cannot compress), one byte longer than the
server's SETTINGS_MAX_FRAME_SIZE. A FRAME without a type is bytes sent as they are: ``data`` or
``hex``.

A FRAME_EXPECTATION has ``type`` and optionally ``stream`` and ``flags`` (each must be set): the
first such frame is the one checked. Then, when present: ``data``/``hex`` (the payload),
``error``, ``increment``, ``length`` (a number or a predicate, see :mod:`.expect`).
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

import hpack
from hyperframe import frame as hf
from hyperframe.exceptions import HyperframeError

from . import client as wire
from .expect import check_predicate, check_response

if TYPE_CHECKING:
    from .runner import CaseRun

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TYPES = {
    "DATA": 0x0,
    "HEADERS": 0x1,
    "PRIORITY": 0x2,
    "RST_STREAM": 0x3,
    "SETTINGS": 0x4,
    "PUSH_PROMISE": 0x5,
    "PING": 0x6,
    "GOAWAY": 0x7,
    "WINDOW_UPDATE": 0x8,
    "CONTINUATION": 0x9,
}
TYPE_NAMES = {value: name for name, value in TYPES.items()}
CONNECTION_TYPES = {"SETTINGS", "PING", "GOAWAY", "WINDOW_UPDATE"}
FLAGS = {"END_STREAM": 0x1, "ACK": 0x1, "END_HEADERS": 0x4, "PADDED": 0x8, "PRIORITY": 0x20}
ERRORS = {  # RFC 9113 7
    "NO_ERROR": 0x0,
    "PROTOCOL_ERROR": 0x1,
    "INTERNAL_ERROR": 0x2,
    "FLOW_CONTROL_ERROR": 0x3,
    "SETTINGS_TIMEOUT": 0x4,
    "STREAM_CLOSED": 0x5,
    "FRAME_SIZE_ERROR": 0x6,
    "REFUSED_STREAM": 0x7,
    "CANCEL": 0x8,
    "COMPRESSION_ERROR": 0x9,
    "CONNECT_ERROR": 0xA,
    "ENHANCE_YOUR_CALM": 0xB,
    "INADEQUATE_SECURITY": 0xC,
    "HTTP_1_1_REQUIRED": 0xD,
}
ERROR_NAMES = {value: name for name, value in ERRORS.items()}
SETTINGS = {  # RFC 9113 6.5.2, RFC 8441 3
    "HEADER_TABLE_SIZE": 0x1,
    "ENABLE_PUSH": 0x2,
    "MAX_CONCURRENT_STREAMS": 0x3,
    "INITIAL_WINDOW_SIZE": 0x4,
    "MAX_FRAME_SIZE": 0x5,
    "MAX_HEADER_LIST_SIZE": 0x6,
    "ENABLE_CONNECT_PROTOCOL": 0x8,
}
SETTING_NAMES = {value: name for name, value in SETTINGS.items()}
DEFAULT_WINDOW = 65535
MAX_FRAME = 16384  # what this client announces, and the most it sends in one DATA frame
FRAME_KEYS = {
    "type",
    "stream",
    "flags",
    "headers",
    "block_hex",
    "settings",
    "increment",
    "error",
    "last_stream",
    "debug",
    "depends_on",
    "weight",
    "exclusive",
    "pad",
    "promised",
    "data",
    "hex",
    "length",
    "repeat",
    "exceed_window",
    "oversize",
}
EXPECT_FRAME_KEYS = {"type", "stream", "flags", "data", "hex", "error", "increment", "length"}
STEP_SPEC_KEYS = {
    "h2_connect": {"settings", "wait"},
    "h2_request": {
        "stream",
        "method",
        "path",
        "scheme",
        "authority",
        "headers",
        "body",
        "end_stream",
    },
    "h2_goaway": {"error", "last_stream", "closed", "or_close"},
    "h2_reset": {"stream", "error"},
}


# ------------------------------------------------------------------------------------ validation


def _case_error(message: str):
    from .cases import CaseError

    return CaseError(message)


def check_frame_spec(spec, where: str, expectation: bool = False) -> None:
    if not isinstance(spec, dict):
        raise _case_error(f"{where}: an HTTP/2 frame must be an object")
    allowed = EXPECT_FRAME_KEYS if expectation else FRAME_KEYS
    unknown = set(spec) - allowed
    if unknown:
        raise _case_error(f"{where}: unknown HTTP/2 frame keys {sorted(unknown)}")
    kind = spec.get("type")
    if kind is None:
        if expectation or not ({"data", "hex"} & set(spec)):
            raise _case_error(f"{where}: an HTTP/2 frame needs a type (or raw data or hex)")
    elif not isinstance(kind, int) and kind not in TYPES:
        raise _case_error(f"{where}: unknown HTTP/2 frame type {kind!r}")
    flags = spec.get("flags", [])
    if not isinstance(flags, int):
        for flag in flags:
            if flag not in FLAGS:
                raise _case_error(f"{where}: unknown HTTP/2 flag {flag!r}")
    for code in _listed(spec.get("error")):
        if not isinstance(code, int) and code not in ERRORS:
            raise _case_error(f"{where}: unknown HTTP/2 error code {code!r}")
    for name, _ in spec.get("settings", ()):
        if not isinstance(name, int) and name not in SETTINGS:
            raise _case_error(f"{where}: unknown HTTP/2 setting {name!r}")


def check_step(step: dict, where: str) -> None:
    ((key, spec),) = step.items()
    if key == "h2_send":
        for frame in spec if isinstance(spec, list) else [spec]:
            check_frame_spec(frame, where)
        return
    if key == "h2_expect":
        check_frame_spec(spec, where, expectation=True)
        return
    if key in ("h2_closed", "h2_open"):
        if spec is not True:
            raise _case_error(f"{where}: {key} takes true")
        return
    if not isinstance(spec, dict):
        raise _case_error(f"{where}: {key} takes an object")
    if key == "h2_response":
        from .cases import EXPECT_KEYS

        unknown = set(spec) - EXPECT_KEYS - {"stream", "data_frames", "before"}
    else:
        unknown = set(spec) - STEP_SPEC_KEYS[key]
    if unknown:
        raise _case_error(f"{where}: unknown {key} keys {sorted(unknown)}")
    for code in _listed(spec.get("error")):
        if key in ("h2_goaway", "h2_reset") and code not in ERRORS:
            raise _case_error(f"{where}: unknown HTTP/2 error code {code!r}")
    for name, _ in spec.get("settings", ()) if key == "h2_connect" else ():
        if not isinstance(name, int) and name not in SETTINGS:
            raise _case_error(f"{where}: unknown HTTP/2 setting {name!r}")


def _listed(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------ frames


def _text_bytes(value) -> bytes:
    if isinstance(value, dict):
        return value["repeat"].encode("latin-1") * int(value["times"])
    return value.encode("latin-1")


def frame_bytes(kind: int, flags: int, stream: int, payload: bytes, length=None) -> bytes:
    """A frame as RFC 9113 4.1 lays it out; ``length`` may lie about the payload's size."""
    length = len(payload) if length is None else length
    head = struct.pack("!I", length)[1:] + bytes([kind, flags]) + struct.pack("!I", stream)
    return head + payload


def _flags(value) -> int:
    if isinstance(value, int):
        return value
    bits = 0
    for name in value:
        bits |= FLAGS[name]
    return bits


def _code(value) -> int:
    return value if isinstance(value, int) else ERRORS[value]


def _priority(spec: dict) -> bytes:
    dependency = int(spec.get("depends_on", 0)) | (0x80000000 if spec.get("exclusive") else 0)
    return struct.pack("!IB", dependency, int(spec.get("weight", 16)) - 1)


def _hpack_int(value: int, prefix: int, first: int = 0) -> bytes:
    """RFC 7541 5.1 integer, ``first`` holding the bits above the prefix."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def _uncompressed_field(name: bytes, size: int) -> bytes:
    """A literal field, not indexed and not Huffman-coded, of ``size`` bytes (or a few more when
    ``size`` is too small for one)."""
    head = b"\x00" + _hpack_int(len(name), 7) + name
    for width in range(1, 6):
        length = size - len(head) - width
        if length > 0 and len(_hpack_int(length, 7)) == width:
            break
    else:
        length = 1
    return head + _hpack_int(length, 7) + b"v" * length


def _padded(payload: bytes, spec: dict, flags: int) -> bytes:
    if not flags & FLAGS["PADDED"]:
        return payload
    pad = int(spec.get("pad", 0))
    return bytes([pad]) + payload + b"\0" * pad


class FrameWriter:
    """Frames from their description, with the connection's HPACK encoder.

    ``server_settings`` (the server's SETTINGS as received so far) sizes the frames that must
    exceed what the server allows.
    """

    def __init__(self, server_settings: dict):
        self.encoder = hpack.Encoder()
        self.server_settings = server_settings

    def encode(self, spec: dict) -> bytes:
        kind = spec.get("type")
        if kind is None:
            return bytes.fromhex(spec["hex"]) if "hex" in spec else _text_bytes(spec["data"])
        name = kind if isinstance(kind, str) else TYPE_NAMES.get(kind, "")
        code = TYPES[kind] if isinstance(kind, str) else kind
        flags = _flags(spec.get("flags", []))
        stream = int(spec.get("stream", 0 if name in CONNECTION_TYPES else 1))
        if spec.get("exceed_window"):
            return self._exceeding_data(stream, flags)
        if "hex" in spec:
            payload = bytes.fromhex(spec["hex"])
        elif "data" in spec:
            payload = _text_bytes(spec["data"])
        else:
            payload = self._payload(name, spec, flags)
        if spec.get("oversize"):
            over = self.server_settings.get("MAX_FRAME_SIZE", MAX_FRAME) + 1 - len(payload)
            if name == "DATA":
                payload += b"x" * max(over, 0)
            else:
                payload += _uncompressed_field(b"x-oversize", over)
        if name in ("DATA", "HEADERS", "PUSH_PROMISE") and ("hex" in spec or "data" in spec):
            payload = _padded(payload, spec, flags)
        data = frame_bytes(code, flags, stream, payload, spec.get("length"))
        return data * int(spec.get("repeat", 1))

    def _payload(self, name: str, spec: dict, flags: int) -> bytes:
        if name in ("HEADERS", "CONTINUATION", "PUSH_PROMISE"):
            if "block_hex" in spec:
                block = bytes.fromhex(spec["block_hex"])
            else:
                headers = [(_text_bytes(n), _text_bytes(v)) for n, v in spec.get("headers", ())]
                block = self.encoder.encode(headers) if headers else b""
            if name == "HEADERS" and flags & FLAGS["PRIORITY"]:
                block = _priority(spec) + block
            if name == "PUSH_PROMISE":
                block = struct.pack("!I", int(spec.get("promised", 2))) + block
            return block if name == "CONTINUATION" else _padded(block, spec, flags)
        if name == "PRIORITY":
            return _priority(spec)
        if name == "RST_STREAM":
            return struct.pack("!I", _code(spec.get("error", "CANCEL")))
        if name == "SETTINGS":
            return b"".join(
                struct.pack("!HI", SETTINGS.get(n, n) if isinstance(n, str) else n, int(v))
                for n, v in spec.get("settings", ())
            )
        if name == "PING":
            return b"\0" * 8
        if name == "GOAWAY":
            return struct.pack(
                "!II", int(spec.get("last_stream", 0)), _code(spec.get("error", "NO_ERROR"))
            ) + spec.get("debug", "").encode("latin-1")
        if name == "WINDOW_UPDATE":
            return struct.pack("!I", int(spec.get("increment", 1)) & 0xFFFFFFFF)
        return b""

    def _exceeding_data(self, stream: int, flags: int) -> bytes:
        window = self.server_settings.get("INITIAL_WINDOW_SIZE", DEFAULT_WINDOW)
        remaining = window + 1
        out = []
        while remaining:
            size = min(remaining, MAX_FRAME)
            remaining -= size
            out.append(frame_bytes(0, 0 if remaining else flags, stream, b"x" * size))
        return b"".join(out)

    def request_frames(self, spec: dict, variables: dict) -> bytes:
        stream = int(spec.get("stream", 1))
        headers = [
            [":method", spec.get("method", "GET")],
            [":scheme", spec.get("scheme", variables.get("SCHEME", "http"))],
        ]
        authority = spec.get("authority", variables.get("HOST", "127.0.0.1"))
        if authority is not None:
            headers.append([":authority", authority])
        headers.append([":path", spec.get("path", "/")])
        headers.extend(spec.get("headers", ()))
        body = spec.get("body")
        end = spec.get("end_stream", True)
        flags = ["END_HEADERS"] + (["END_STREAM"] if end and body is None else [])
        data = self.encode(
            {"type": "HEADERS", "stream": stream, "flags": flags, "headers": headers}
        )
        if body is not None:
            data += self.encode(
                {
                    "type": "DATA",
                    "stream": stream,
                    "flags": ["END_STREAM"] if end else [],
                    "data": body,
                }
            )
        return data


# ------------------------------------------------------------------------------------ the client


class NotHTTP2(wire.ClientError):
    kind = "not-h2"


class H2Client:
    """One HTTP/2 connection, with what the server sent so far kept as state.

    Frames are read only when a step waits for something; each is recorded (``frames``) and
    folded into the state the steps look at: responses by stream, resets, the first GOAWAY, the
    server's settings, PING and SETTINGS acknowledgements.
    """

    def __init__(self, host: str, port: int, timeout: float, tls=None):
        self.conn = wire.Connection(host, port, timeout, tls)
        if tls is not None and self.conn.selected_protocol() != "h2":
            protocol = self.conn.selected_protocol()
            self.conn.close()
            raise NotHTTP2(f"ALPN chose {protocol!r}, not 'h2'")
        self.timeout = timeout
        self.decoder = hpack.Decoder()
        self.frames: list = []
        self.streams: dict = {}
        self.resets: dict = {}
        self.goaway: dict | None = None
        self.server_settings: dict = {}
        self.writer = FrameWriter(self.server_settings)
        self.settings_seen = False
        self.ping_acks: list = []
        self.closed = False
        self.cursor = 0  # frames already matched by an h2_expect step
        # (stream, block so far, END_STREAM, frame type) while CONTINUATION frames are due
        self._block: tuple[int, bytearray, bool, str] | None = None
        self._unacknowledged = 0  # DATA bytes received since the last WINDOW_UPDATE

    def close(self) -> None:
        self.conn.close()

    def send(self, data: bytes) -> bool:
        return self.conn.send(data)

    # --------------------------------------------------------------- reading

    def read_frame(self, deadline: float):
        """The next frame's record, folded into the state; None once the server closed."""
        conn = self.conn
        while len(conn.buffer) < 9:
            if not conn._fill(deadline):
                self.closed = True
                return None
        if conn.buffer[:5] == b"HTTP/":  # a server that does not speak HTTP/2 answered the preface
            status_line = bytes(conn.buffer[:60]).split(b"\r\n", 1)[0]
            raise wire.Malformed(f"it answered in HTTP/1.x, not HTTP/2 ({status_line!r})")
        length = int.from_bytes(conn.buffer[:3], "big")
        if length > MAX_FRAME:
            raise wire.Malformed(
                f"a {length}-byte frame, over the {MAX_FRAME} bytes this client allows "
                f"(received {bytes(conn.buffer[:16])!r})"
            )
        while len(conn.buffer) < 9 + length:
            if not conn._fill(deadline):
                self.closed = True
                return None
        header = conn._take(9)
        body = conn._take(length)
        try:
            frame, _ = hf.Frame.parse_frame_header(memoryview(header))
            frame.parse_body(memoryview(body))
        except HyperframeError as exc:
            raise wire.Malformed(f"invalid frame from the server: {exc}") from None
        record = self._fold(frame, body)
        self.frames.append(record)
        return record

    def _fold(self, frame, body: bytes) -> dict:
        kind = TYPE_NAMES.get(frame.type, frame.type)
        flags = sorted(frame.flags)
        sid = frame.stream_id
        record = {"type": kind, "stream": sid, "flags": flags, "length": len(body)}
        if kind == "SETTINGS":
            if "ACK" not in flags:
                values = {SETTING_NAMES.get(k, k): v for k, v in frame.settings.items()}
                record["settings"] = values
                self.server_settings.update(values)
                self.settings_seen = True
                self.send(frame_bytes(4, FLAGS["ACK"], 0, b""))
        elif kind == "PING":
            record["data"] = frame.opaque_data.hex()
            if "ACK" in flags:
                self.ping_acks.append(frame.opaque_data)
            else:
                self.send(frame_bytes(6, FLAGS["ACK"], 0, frame.opaque_data))
        elif kind == "GOAWAY":
            record.update(
                error=ERROR_NAMES.get(frame.error_code, frame.error_code),
                last_stream=frame.last_stream_id,
                debug=frame.additional_data[:200].decode("latin-1"),
            )
            if self.goaway is None:
                self.goaway = record
        elif kind == "RST_STREAM":
            record["error"] = ERROR_NAMES.get(frame.error_code, frame.error_code)
            self.resets.setdefault(sid, record["error"])
        elif kind == "WINDOW_UPDATE":
            record["increment"] = frame.window_increment
        elif kind == "DATA":
            stream = self._stream(sid)
            stream["data"] += frame.data
            stream["data_frames"] += 1
            record["data"] = frame.data[:200].decode("latin-1")
            if "END_STREAM" in flags:
                stream["ended"] = True
            self._acknowledge(frame.flow_controlled_length, sid, stream["ended"])
        elif kind in ("HEADERS", "PUSH_PROMISE"):
            self._block = (sid, bytearray(frame.data), "END_STREAM" in flags, kind)
            if "END_HEADERS" in flags:
                record["headers"] = self._end_block()
        elif kind == "CONTINUATION":
            if self._block is None or self._block[0] != sid:
                raise wire.Malformed(f"CONTINUATION on stream {sid} without a header block")
            self._block[1].extend(frame.data)
            if "END_HEADERS" in flags:
                record["headers"] = self._end_block()
        return record

    def _stream(self, sid: int) -> dict:
        return self.streams.setdefault(
            sid, {"blocks": [], "data": bytearray(), "data_frames": 0, "ended": False}
        )

    def _end_block(self) -> list:
        pending = self._block
        assert pending is not None, "called while a header block is open"
        sid, block, end_stream, kind = pending
        self._block = None
        try:
            fields = self.decoder.decode(bytes(block), raw=True)
        except hpack.HPACKError as exc:
            raise wire.Malformed(f"undecodable header block on stream {sid}: {exc}") from None
        headers = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in fields]
        if kind == "HEADERS":
            stream = self._stream(sid)
            stream["blocks"].append(headers)
            if end_stream:
                stream["ended"] = True
        return headers

    def _acknowledge(self, size: int, sid: int, ended: bool) -> None:
        """Give the server its window back in large steps, so long bodies keep coming."""
        self._unacknowledged += size
        if self._unacknowledged >= DEFAULT_WINDOW // 2:
            increment = self._unacknowledged
            self._unacknowledged = 0
            data = frame_bytes(8, 0, 0, struct.pack("!I", increment))
            if not ended:
                data += frame_bytes(8, 0, sid, struct.pack("!I", increment))
            self.send(data)

    def wait_for(self, predicate, timeout: float):
        """The predicate's first true value, reading frames meanwhile; None if the server closed
        first. Raises :class:`wire.Timeout` at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.closed:
                return None
            self.read_frame(deadline)

    def wait_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            self.read_frame(deadline)

    def response(self, sid: int, head: bool = False) -> wire.Response:
        """The stream's final response as an HTTP/1.1 client would see it, for :mod:`.expect`."""
        stream = self.streams[sid]
        interim, final = [], None
        for block in stream["blocks"]:
            status = dict(block).get(":status", "")
            fields = [(n, v) for n, v in block if not n.startswith(":")]
            if final is None and status.isdigit() and 100 <= int(status) < 200:
                interim.append(wire.Response("HTTP/2", int(status), "", fields, b""))
            elif final is None:
                if not status.isdigit():
                    raise wire.Malformed(f"response on stream {sid} without a valid :status")
                final = wire.Response("HTTP/2", int(status), "", fields, b"")
            else:
                final.trailers = fields
        if final is None:
            raise wire.Malformed(f"stream {sid} ended without a final response")
        final.interim = interim
        final.body = bytes(stream["data"])
        return final


def fetch(host: str, port: int, target: str, timeout: float, tls=None) -> wire.Response:
    """GET ``target`` on a new HTTP/2 connection; raises :class:`wire.ClientError` if it fails."""
    client = H2Client(host, port, timeout, tls)
    try:
        client.send(
            PREFACE
            + frame_bytes(4, 0, 0, b"")
            + client.writer.request_frames({"path": target}, {"HOST": f"{host}:{port}"})
        )
        try:
            ended = client.wait_for(
                lambda: client.streams.get(1, {}).get("ended") or client.resets or client.goaway,
                timeout,
            )
        except wire.Timeout:
            raise wire.Timeout("no answer" + _first_bytes(client)) from None
        if not ended:
            raise wire.Closed("the connection closed" + _first_bytes(client))
        if client.goaway or client.resets:
            raise wire.ClientError(f"the request was refused: {client.goaway or client.resets}")
        return client.response(1)
    finally:
        client.close()


def refusal(host: str, port: int, timeout: float, tls=None) -> str | None:
    """None when the probe answers a ping over HTTP/2 on ``port``, else what happened instead."""
    try:
        response = fetch(host, port, "/__probe__/ping", timeout, tls)
    except (OSError, wire.ClientError) as exc:
        return str(exc)
    if response.status != 200 or response.body != b"pong":
        return f"the probe answered {response.status} {response.body[:40]!r}"
    return None


def _first_bytes(client: H2Client) -> str:
    data = bytes(client.conn.buffer[:40])
    return f" (it sent {data!r})" if data else ""


# ------------------------------------------------------------------------------------ steps


def do_step(run, step: dict) -> None:
    from .cases import substitute

    ((key, spec),) = step.items()
    spec = substitute(spec, run.variables)
    try:
        STEPS[key](run, spec)
    except wire.Timeout:
        run.log({"kind": key, "error": "timeout", "received": _summary(run.h2)})
        run.fail(f"{key}: nothing conclusive within {run.timeout:g}s; received {_summary(run.h2)}")
    except wire.Malformed as exc:
        run.log({"kind": key, "error": "malformed", "detail": str(exc)})
        run.fail(f"{key}: {exc}")


def _client(run: CaseRun) -> H2Client:
    if run.h2 is None:
        tls = run.endpoint.transport.context("h2")
        from .runner import HOST

        try:
            run.h2 = H2Client(HOST, run.endpoint.port, run.timeout, tls)
        except NotHTTP2 as exc:
            run.fail(f"no HTTP/2 connection: {exc}")
        run.replacements[str(run.h2.conn.local_port)] = "<client-port>"
        run.connections.append(run.h2.conn)
    return run.h2


def _summary(client, limit: int = 6) -> str:
    if client is None:
        return "nothing"
    frames = client.frames
    shown = []
    for record in frames[-limit:]:
        text = str(record["type"])
        if record["stream"]:
            text += f"[{record['stream']}]"
        if "error" in record:
            text += f" {record['error']}"
        shown.append(text)
    more = f"{len(frames) - limit} frames, then " if len(frames) > limit else ""
    end = ", then a close" if client.closed else ""
    return (more + ", ".join(shown) if shown else "no frame") + end


def h2_connect(run, spec: dict) -> None:
    client = _client(run)
    settings = client.writer.encode({"type": "SETTINGS", "settings": spec.get("settings", [])})
    if not client.send(PREFACE + settings):
        run.fail("the connection closed before the preface was sent")
    if spec.get("wait", True):
        client.wait_for(lambda: client.settings_seen or client.goaway, run.timeout)
        run.log({"kind": "h2_connect", "settings": client.server_settings})
        if not client.settings_seen:
            run.fail(f"no SETTINGS from the server after the preface; received {_summary(client)}")
        first = client.frames[0]
        if first["type"] != "SETTINGS" or "ACK" in first["flags"]:
            run.fail(f"the server's first frame is {first['type']}, not its SETTINGS")


def h2_send(run, spec) -> None:
    client = _client(run)
    frames = spec if isinstance(spec, list) else [spec]
    if not client.send(b"".join(client.writer.encode(frame) for frame in frames)):
        run.log({"kind": "h2_send", "delivered": False})


def h2_request(run, spec: dict) -> None:
    client = _client(run)
    if not client.send(client.writer.request_frames(spec, run.variables)):
        run.log({"kind": "h2_send", "delivered": False})


def h2_response(run: CaseRun, spec: dict) -> None:
    from .runner import response_record

    client = _client(run)
    sid = int(spec.get("stream", 1))

    def settled():
        stream = client.streams.get(sid)
        return (
            (stream and stream["ended"])
            or sid in client.resets
            or (client.goaway is not None and client.goaway["last_stream"] < sid)
        )

    done = client.wait_for(settled, run.timeout)
    stream = client.streams.get(sid)
    if not (stream and stream["ended"]):
        if sid in client.resets:
            run.log({"kind": "h2_response", "stream": sid, "reset": client.resets[sid]})
            run.fail(f"stream {sid} was reset with {client.resets[sid]} instead of answered")
        if done and client.goaway is not None:
            run.log({"kind": "h2_response", "stream": sid, "goaway": client.goaway["error"]})
            run.fail(
                f"GOAWAY {client.goaway['error']} (last stream "
                f"{client.goaway['last_stream']}) instead of a response on stream {sid}"
            )
        run.log({"kind": "h2_response", "stream": sid, "error": "closed"})
        run.fail(
            f"the connection closed before stream {sid} was answered; received {_summary(client)}"
        )
    # Frames are read one at a time, so the other stream's state is the one when this one ended.
    other = client.streams.get(int(spec.get("before", 0)), {})
    response = client.response(sid)
    record = response_record(response, run.replacements, run.case.volatile)
    record["data_frames"] = stream["data_frames"]
    run.log({"kind": "h2_response", "stream": sid, **record})
    expect = {k: v for k, v in spec.items() if k not in ("stream", "data_frames", "before")}
    failures = check_response(response, expect)
    if "before" in spec and other.get("ended"):
        failures.append(
            f"stream {spec['before']} was answered first: streams are not served concurrently"
        )
    if "data_frames" in spec and stream["data_frames"] != spec["data_frames"]:
        failures.append(f"{stream['data_frames']} DATA frames, expected {spec['data_frames']}")
    if failures:
        run.fail("; ".join(failures))


def h2_goaway(run, spec: dict) -> None:
    client = _client(run)
    codes = _listed(spec.get("error"))
    try:
        goaway = client.wait_for(lambda: client.goaway, run.timeout)
    except wire.Malformed:
        if spec.get("or_close") and client.conn.buffer.startswith(b"HTTP/1."):
            status = bytes(client.conn.buffer[9:12])
            run.log({"kind": "h2_goaway", "http1_status": status.decode("latin-1")})
            if status.isdigit() and int(status) >= 400:
                return
            run.fail(f"an HTTP/1.x {status.decode('latin-1')} response, not an error")
        raise
    if goaway is None:
        run.log({"kind": "h2_goaway", "goaway": None, "closed": True})
        if spec.get("or_close"):
            return
        run.fail(
            "the connection closed without a GOAWAY (a silent close); received " + _summary(client)
        )
    run.log({"kind": "h2_goaway", "error": goaway["error"], "last_stream": goaway["last_stream"]})
    failures = []
    if codes and goaway["error"] not in codes:
        failures.append(f"GOAWAY {goaway['error']}, expected {' or '.join(codes)}")
    if "last_stream" in spec:
        reason = check_predicate(goaway["last_stream"], spec["last_stream"])
        if reason:
            failures.append(f"GOAWAY last stream id: {reason}")
    if failures:
        run.fail("; ".join(failures))
    if spec.get("closed", goaway["error"] != "NO_ERROR"):
        try:
            client.wait_closed(run.timeout)
        except wire.Timeout:
            run.fail(
                f"the connection is still open {run.timeout:g}s after GOAWAY {goaway['error']}"
            )


def h2_reset(run, spec: dict) -> None:
    client = _client(run)
    sid = int(spec["stream"])
    codes = _listed(spec.get("error"))
    # A stream answered before this step (a case reusing a closed stream) is no answer now.
    answered_before = bool(client.streams.get(sid, {}).get("ended"))

    def settled():
        stream = client.streams.get(sid)
        ended = stream and stream["ended"] and not answered_before
        return sid in client.resets or client.goaway or ended

    if not client.wait_for(settled, run.timeout):
        run.log({"kind": "h2_reset", "stream": sid, "closed": True})
        run.fail(
            "the connection closed without RST_STREAM or GOAWAY (a silent close); "
            "received " + _summary(client)
        )
    if sid in client.resets:
        code = client.resets[sid]
        run.log({"kind": "h2_reset", "stream": sid, "error": code})
        if codes and code not in codes:
            run.fail(f"RST_STREAM {code} on stream {sid}, expected {' or '.join(codes)}")
        return
    if client.goaway is not None:
        code = client.goaway["error"]
        run.log({"kind": "h2_reset", "stream": sid, "goaway": code})
        if codes and code not in codes:
            run.fail(
                f"GOAWAY {code}, expected RST_STREAM (or GOAWAY) {' or '.join(codes)} "
                f"on stream {sid}"
            )
        return
    response = client.response(sid)
    run.log({"kind": "h2_reset", "stream": sid, "status": response.status})
    run.fail(
        f"stream {sid} was answered {response.status}, expected RST_STREAM {' or '.join(codes)}"
    )


def h2_expect(run, spec: dict) -> None:
    client = _client(run)
    wanted = (
        spec["type"]
        if isinstance(spec["type"], str)
        else TYPE_NAMES.get(spec["type"], spec["type"])
    )

    def matches(record) -> bool:
        return (
            record["type"] == wanted
            and spec.get("stream", record["stream"]) == record["stream"]
            and all(flag in record["flags"] for flag in spec.get("flags", ()))
        )

    def found():
        for index in range(client.cursor, len(client.frames)):
            if matches(client.frames[index]):
                return index + 1
        if wanted != "GOAWAY" and client.goaway is not None:
            return -1
        return 0

    index = client.wait_for(found, run.timeout)
    if not index or index < 0:
        run.log({"kind": "h2_expect", "type": wanted, "found": False})
        flags = "".join(f" {flag}" for flag in spec.get("flags", ()))
        run.fail(f"no {wanted}{flags} frame; received {_summary(client)}")
    client.cursor = index
    record = client.frames[index - 1]
    run.log({"kind": "h2_expect", **record})
    failures = []
    if "length" in spec:
        reason = check_predicate(record["length"], spec["length"])
        if reason:
            failures.append(f"{wanted} length: {reason}")
    if "hex" in spec and record.get("data") != spec["hex"]:
        failures.append(f"{wanted} payload {record.get('data')}, expected {spec['hex']}")
    if "data" in spec:
        expected = _text_bytes(spec["data"])
        actual = record.get("data", "")
        actual = bytes.fromhex(actual) if wanted == "PING" else actual.encode("latin-1")
        if actual != expected:
            failures.append(f"{wanted} payload {actual!r}, expected {expected!r}")
    if "error" in spec and record.get("error") not in _listed(spec["error"]):
        failures.append(f"{wanted} {record.get('error')}, expected {spec['error']}")
    if "increment" in spec and record.get("increment") != spec["increment"]:
        failures.append(f"increment {record.get('increment')}, expected {spec['increment']}")
    if failures:
        run.fail("; ".join(failures))


def h2_closed(run, spec) -> None:
    client = _client(run)
    try:
        client.wait_closed(run.timeout)
    except wire.Timeout:
        run.log({"kind": "h2_closed", "closed": False})
        run.fail(f"the connection is still open after {run.timeout:g}s")
    run.log({"kind": "h2_closed", "closed": True})


def h2_open(run, spec) -> None:
    client = _client(run)
    payload = b"stillup?"
    client.send(frame_bytes(6, 0, 0, payload))
    acked = client.wait_for(lambda: payload in client.ping_acks or client.goaway, run.timeout)
    usable = acked is True
    run.log({"kind": "h2_open", "open": usable})
    if not usable:
        if client.goaway is not None:
            run.fail(f"GOAWAY {client.goaway['error']}, expected the connection to stay usable")
        run.fail("the connection closed, expected it to stay usable; received " + _summary(client))


STEPS = {
    "h2_connect": h2_connect,
    "h2_send": h2_send,
    "h2_request": h2_request,
    "h2_response": h2_response,
    "h2_goaway": h2_goaway,
    "h2_reset": h2_reset,
    "h2_expect": h2_expect,
    "h2_closed": h2_closed,
    "h2_open": h2_open,
}
