"""WebSocket steps for conformance cases: frames as data, sent and read over the case's socket.

Three step kinds join the HTTP ones (see :mod:`.cases`):

``{"ws_handshake": {"target": PATH, "headers": [[name, value], ...], "frames": [FRAME, ...],
"expect": EXPECTATION}}``
    sends an opening handshake (Host, Upgrade, Connection, a fixed Sec-WebSocket-Key and
    Version 13, then ``headers``), with ``frames`` in the same write, and checks the response head
    (by default: status 101, ``upgrade: websocket`` and the RFC 6455 accept value for the key);
``{"ws_send": FRAME or [FRAME, ...]}``
    one write of client frames (masked unless ``"masked": false``);
``{"ws_expect": FRAME_EXPECTATION}``
    the next frame from the server.

A FRAME is ``{"opcode": "text" | "binary" | "cont" | "close" | "ping" | "pong" | INT}`` with a
payload given as ``"text"`` (UTF-8), ``"data"`` (latin-1, one character per byte; or
``{"repeat": TEXT, "times": N}``) or ``"hex"``; ``"code"`` and ``"reason"`` for a close frame;
``"fin"`` (default true), ``"rsv"`` (0-7), ``"masked"`` (default true), ``"length"`` (the payload
length the header announces, when it should differ from what is sent).

A FRAME_EXPECTATION has the same keys, each checked only when present (``"code": null`` means a
close frame without a code), plus ``"length"``. The transcript records each frame received, so two
servers can be compared frame by frame.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time

from . import client as wire
from .expect import check_head, check_response

HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's sample nonce
HANDSHAKE_ACCEPT = base64.b64encode(
    hashlib.sha1(HANDSHAKE_KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
).decode()
OPCODES = {"cont": 0, "text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10}
NAMES = {value: name for name, value in OPCODES.items()}
FRAME_KEYS = {"opcode", "text", "data", "hex", "code", "reason", "fin", "rsv", "masked", "length"}
HANDSHAKE_KEYS = {"target", "headers", "frames", "expect"}
MASK = b"\x37\xfa\x21\x3d"


def check_frame_spec(spec, where: str, expectation: bool = False) -> None:
    from .cases import CaseError

    if not isinstance(spec, dict):
        raise CaseError(f"{where}: a frame must be an object")
    unknown = set(spec) - FRAME_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown frame keys {sorted(unknown)}")
    opcode = spec.get("opcode")
    if opcode is None and not expectation:
        raise CaseError(f"{where}: a frame needs an opcode")
    if opcode is not None and not isinstance(opcode, int) and opcode not in OPCODES:
        raise CaseError(f"{where}: unknown opcode {opcode!r}")


def check_handshake_spec(spec, where: str) -> None:
    from .cases import CaseError

    if not isinstance(spec, dict):
        raise CaseError(f"{where}: ws_handshake must be an object")
    unknown = set(spec) - HANDSHAKE_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown ws_handshake keys {sorted(unknown)}")
    for frame_spec in spec.get("frames", ()):
        check_frame_spec(frame_spec, where)


def _payload(spec: dict) -> bytes:
    if "text" in spec:
        payload = spec["text"].encode("utf-8")
    elif "hex" in spec:
        payload = bytes.fromhex(spec["hex"])
    else:
        data = spec.get("data", "")
        if isinstance(data, dict):
            payload = data["repeat"].encode("latin-1") * int(data["times"])
        else:
            payload = data.encode("latin-1")
    if "code" in spec and spec["code"] is not None:
        payload = struct.pack("!H", spec["code"]) + spec.get("reason", "").encode("utf-8") + payload
    return payload


def encode_frame(spec: dict) -> bytes:
    opcode = spec["opcode"]
    opcode = OPCODES.get(opcode, opcode)
    payload = _payload(spec)
    fin = spec.get("fin", True)
    b0 = (0x80 if fin else 0) | (int(spec.get("rsv", 0)) << 4) | opcode
    masked = spec.get("masked", True)
    n = len(payload)
    bit = 0x80 if masked else 0
    declared = spec.get("length", n)  # a header may announce more than is sent (limit cases)
    if declared < 126:
        head = bytes([b0, bit | declared])
    elif declared < 65536:
        head = bytes([b0, bit | 126]) + struct.pack("!H", declared)
    else:
        head = bytes([b0, bit | 127]) + struct.pack("!Q", declared)
    if not masked:
        return head + payload
    mask = (MASK * (n // 4 + 1))[:n]
    return (
        head
        + MASK
        + (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")
    )


def handshake_bytes(spec: dict, variables: dict) -> bytes:
    target = spec.get("target", "/")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {variables.get('HOST', '127.0.0.1')}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {HANDSHAKE_KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in spec.get("headers", ())]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + b"".join(encode_frame(f) for f in spec.get("frames", ()))


def read_frame(conn: wire.Connection, timeout: float) -> tuple:
    """(fin, rsv, opcode, payload) of the next server frame; raises the client's errors."""
    deadline = time.monotonic() + timeout
    while True:
        buf = conn.buffer
        if len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            if b1 & 0x80:
                raise wire.Malformed("the server sent a masked frame (RFC 6455 5.1 forbids it)")
            n = b1 & 0x7F
            head = 2
            if n == 126 and len(buf) >= 4:
                n, head = struct.unpack("!H", bytes(buf[2:4]))[0], 4
            elif n == 127 and len(buf) >= 10:
                n, head = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
            if (n < 126 or head > 2) and len(buf) >= head + n:
                data = conn._take(head + n)
                return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, data[head:]
        if not conn._fill(deadline):
            raise wire.Closed("connection closed before a complete frame", bytes(conn.buffer))


def frame_record(frame: tuple) -> dict:
    fin, rsv, opcode, payload = frame
    record = {"opcode": NAMES.get(opcode, opcode), "fin": fin, "rsv": rsv, "length": len(payload)}
    if opcode == 8:
        record["code"] = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        record["reason"] = payload[2:].decode("utf-8", "replace")
    elif opcode == 1:
        record["text"] = payload.decode("utf-8", "replace")[:200]
    else:
        record["data"] = payload[:200].decode("latin-1")
    return record


def frame_failures(frame: tuple, expect: dict) -> list:
    fin, rsv, opcode, payload = frame
    record = frame_record(frame)
    failures = []
    if "opcode" in expect:
        wanted = OPCODES.get(expect["opcode"], expect["opcode"])
        if opcode != wanted:
            failures.append(f"expected a {expect['opcode']} frame, got {record['opcode']}")
            return failures
    if "fin" in expect and fin != expect["fin"]:
        failures.append(f"fin is {fin}, expected {expect['fin']}")
    if "rsv" in expect and rsv != expect["rsv"]:
        failures.append(f"rsv is {rsv}, expected {expect['rsv']}")
    if "length" in expect and len(payload) != expect["length"]:
        failures.append(f"payload is {len(payload)} bytes, expected {expect['length']}")
    if opcode == 8:
        if "code" in expect and record["code"] != expect["code"]:
            failures.append(f"close code {record['code']}, expected {expect['code']}")
        if "reason" in expect and record["reason"] != expect["reason"]:
            failures.append(f"close reason {record['reason']!r}, expected {expect['reason']!r}")
    else:
        if "text" in expect and payload != expect["text"].encode("utf-8"):
            failures.append(f"payload {payload[:80]!r}, expected text {expect['text'][:80]!r}")
        if ("data" in expect or "hex" in expect) and payload != _payload(
            {k: v for k, v in expect.items() if k in ("data", "hex")}
        ):
            failures.append(f"payload {payload[:80]!r} differs from the expected bytes")
    return failures


# ------------------------------------------------------------------------------------ steps


def do_handshake(run, spec: dict) -> None:
    from .cases import substitute

    spec = substitute(spec, run.variables)
    conn = run._ensure()
    if not conn.send(handshake_bytes(spec, run.variables)):
        run.log({"kind": "send", "delivered": False})
        run.fail("the server closed the connection before the handshake was sent")
    expect = spec.get(
        "expect",
        {
            "status": 101,
            "headers": {"upgrade": "websocket", "sec-websocket-accept": HANDSHAKE_ACCEPT},
        },
    )
    try:
        head = conn.read_head_only()
    except wire.ClientError as exc:
        run.log({"kind": "ws_handshake", "error": exc.kind})
        run.fail(f"no handshake response: {exc}")
    headers = [[n.lower(), v] for n, v in head.headers if n.lower() != "date"]
    if head.status != 101:
        # A refusal is an ordinary response: its body is read, and may be checked.
        try:
            conn._read_body(head, False, time.monotonic() + run.timeout)
        except wire.ClientError as exc:
            run.log({"kind": "ws_handshake", "status": head.status, "error": exc.kind})
            run.fail(f"incomplete refusal response: {exc}")
        run.log(
            {
                "kind": "ws_handshake",
                "status": head.status,
                "headers": headers,
                "body": head.body.decode("latin-1"),
            }
        )
        failures = check_response(head, expect)
        if failures:
            run.fail("; ".join(failures))
        return
    run.log({"kind": "ws_handshake", "status": head.status, "headers": headers})
    failures = check_head(head, expect)
    if failures:
        run.fail("; ".join(failures))


def do_send(run, frames) -> None:
    conn = run._ensure()
    frames = frames if isinstance(frames, list) else [frames]
    if not conn.send(b"".join(encode_frame(f) for f in frames)):
        run.log({"kind": "ws_send", "delivered": False})


def do_expect(run, expect: dict) -> None:
    from .cases import substitute

    expect = substitute(expect, run.variables)
    conn = run._ensure()
    try:
        frame = read_frame(conn, run.timeout)
    except wire.Timeout:
        run.log({"kind": "ws_frame", "error": "timeout"})
        run.fail(f"no frame within {run.timeout:g}s")
    except wire.ClientError as exc:
        run.log({"kind": "ws_frame", "error": exc.kind})
        run.fail(f"no frame: {exc}")
    run.log({"kind": "ws_frame", **frame_record(frame)})
    failures = frame_failures(frame, expect)
    if failures:
        run.fail("; ".join(failures))
