"""The fast path's components against the reference ones: same bytes in, same events, errors and
bytes out.

Each byte stream goes to :class:`H11Parser` and to :class:`FastParser` (with llhttp as its header
tokenizer, and with its exact tokenizer only), each wrapped in an :class:`H1Connection` with the
same limits and driven the way the protocol drives it: feed each piece, pull events until the
parser needs data, answer each request (at once or after the parser was asked again, to reach
PAUSED), start the next cycle while the connection stays alive. The transcripts -- events, errors
(type and status), pipelined bytes, response bytes -- must be equal.
"""

from __future__ import annotations

import string
import sys

import pytest
from conftest import PURE_ONLY, require_fast_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refserver.wire.events import (
    NEED_DATA,
    PAUSED,
    Body,
    EndOfMessage,
    HTTPError,
    RequestHead,
)
from refserver.wire.chunked import EXTENSIONS_LIMIT
from refserver.wire.h1 import H1Connection, Limits
from refserver.wire.h1 import write_head as reference_write_head
from refserver.wire.h11_parser import H11Parser

if PURE_ONLY:
    pytest.skip("REFSERVER_TEST_PURE_ONLY=1: no fast path to compare", allow_module_level=True)
require_fast_path()  # a build without the extension fails here, at collection (never a skip)
from refserver._speedups import FastParser  # noqa: E402
from refserver._speedups import write_head as fast_write_head  # noqa: E402
from refserver.wire._compiled_h1 import H1Connection as FastH1Connection  # noqa: E402


def _exact(max_head):
    return FastParser(max_head, llhttp=False)


PARSERS = {"h11": H11Parser, "fast": FastParser, "fast-exact": _exact}
#: The connection core each parser runs under: the reference module, or its compiled copy.
CONNECTIONS = {"h11": H1Connection, "fast": FastH1Connection, "fast-exact": FastH1Connection}
MAX_EVENTS = 200


# ------------------------------------------------------------------------------------ the driver


def _describe(event):
    kind = type(event)
    if kind is RequestHead:
        for part in (event.method, event.target, event.http_version):
            assert type(part) is bytes
        for name, value in event.headers:
            assert type(name) is bytes and type(value) is bytes
        assert type(event.headers) is list
        return ("head", event.method, event.target, event.http_version, tuple(event.headers))
    if kind is Body:
        assert type(event.data) is bytes and event.data
        return ("body", event.data)
    if kind is EndOfMessage:
        return "eom"
    if event is NEED_DATA:
        return "need"
    if event is PAUSED:
        return "paused"
    assert event is None, event
    return "closed"


def transcript(name, pieces, limits=None, eof=False, late=False):
    """Everything observable when ``pieces`` arrive one after the other (then EOF if ``eof``),
    through the parser and the connection core of ``name`` (a key of :data:`PARSERS`).

    ``late``: the application answers a request only once the parser has been asked for the next
    event (as when the app is slower than the wire), which is how PAUSED is reached.
    """
    limits = limits or Limits()
    conn = CONNECTIONS[name](
        PARSERS[name](limits.head), limits, date_header=False, server_header=None
    )
    out = []
    pending = [False]  # a complete request waits for its response

    def respond():
        pending[0] = False
        out.append(("response", conn.response_head(200, [], b"ok", end=True)))
        if not conn.keep_alive:
            out.append("close")
            return False
        out.append(("pipelined", conn.trailing_data()))
        try:
            conn.start_next_cycle()  # checks the limits on the pipelined bytes
        except HTTPError as exc:
            out.append(("error", type(exc).__name__, exc.status))
            return False
        return True

    def drain():
        """False once the connection is finished (error or close)."""
        for _ in range(MAX_EVENTS):
            try:
                event = conn.next_event()
            except HTTPError as exc:
                out.append(("error", type(exc).__name__, exc.status))
                return False
            out.append(_describe(event))
            if type(event) is EndOfMessage:
                if not late:
                    if not respond():
                        return False
                else:
                    pending[0] = True
            elif event is NEED_DATA or event is PAUSED or event is None:
                if pending[0]:
                    if not respond():
                        return False
                    continue
                return event is not None
        raise AssertionError("no end to the events: %r" % out[-10:])

    for piece in pieces:
        try:
            conn.receive_data(piece)
        except HTTPError as exc:
            out.append(("error", type(exc).__name__, exc.status))
            return out
        if not drain():
            return out
    if eof:
        conn.receive_eof()
        drain()
    return out


def split(data: bytes, cuts) -> list:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def assert_same(pieces, limits=None, eof=False, late=False, bare=False):
    """Same transcript through H1Connection (and, if ``bare``, from the bare parsers too)."""
    reference = transcript("h11", pieces, limits, eof, late)
    for name in ("fast", "fast-exact"):
        got = transcript(name, pieces, limits, eof, late)
        assert got == reference, (name, pieces)
    if bare:
        max_head = (limits or Limits()).head
        bare_reference = parser_script(H11Parser, pieces, eof, max_head)
        for name in ("fast", "fast-exact"):
            got = parser_script(PARSERS[name], pieces, eof, max_head)
            assert got == bare_reference, ("bare " + name, pieces)
    return reference


def outcome(data, **kwargs):
    """The reference transcript of ``data`` fed whole, after checking every split agrees."""
    reference = assert_same([data], **kwargs)
    assert_same([data[i:i + 1] for i in range(len(data))], **kwargs)
    for at in (1, len(data) // 2, len(data) - 1):
        assert_same(split(data, [at]), **kwargs)
    return reference


def errors(script):
    return [item for item in script if isinstance(item, tuple) and item[0] == "error"]


def parser_script(make_parser, pieces, eof=True, max_head=65536):
    """The bare parser, with no H1Connection policy on top to stop at the first request it
    refuses; every request is answered as soon as it is complete."""
    parser = make_parser(max_head)
    out = []

    def drain():
        for _ in range(MAX_EVENTS):
            try:
                event = parser.next_event()
            except HTTPError as exc:
                out.append(("error", type(exc).__name__, exc.status))
                return False
            out.append(_describe(event))
            if type(event) is EndOfMessage:
                out.append(("pipelined", parser.buffered()))
                parser.start_next_cycle()
            elif event is NEED_DATA or event is None or event is PAUSED:
                return True
        raise AssertionError("no end to the events: %r" % out[-10:])

    for piece in pieces:
        parser.feed(piece)
        if not drain():
            return out
    if eof:
        parser.feed_eof()
        drain()
    return out


def parsed(data, eof=True):
    """The reference parser's script for ``data``, after checking both fast tokenizers agree."""
    reference = parser_script(H11Parser, [data], eof)
    for name in ("fast", "fast-exact"):
        assert parser_script(PARSERS[name], [data], eof) == reference, name
    return reference


# ------------------------------------------------------------------------------- table-driven

HOST = b"Host: a\r\n"
GET = b"GET / HTTP/1.1\r\n" + HOST + b"\r\n"

VALID = {
    "simple get": GET,
    "http/1.0 no host": b"GET / HTTP/1.0\r\n\r\n",
    "http/1.0 keep-alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET,
    "unknown method (llhttp refuses)": b"FROBNICATE /x HTTP/1.1\r\n" + HOST + b"\r\n",
    "token method with symbols": b"M-SEARCH * HTTP/1.1\r\n" + HOST + b"\r\n",
    "obs-fold replaced by SP": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\tc\r\n\r\n",
    "OWS stripped both ends": b"GET / HTTP/1.1\r\nHost: a\r\nX: \t a b \t \r\n\r\n",
    "empty value": b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY:   \r\n\r\n",
    "obs-text": b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n",
    "duplicates kept in order": b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n",
    "names lower-cased": b"GET / HTTP/1.1\r\nHOST: a\r\nX-Mixed-CASE: V\r\n\r\n",
    "target forms": b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n"
    + b"GET http://a/b?c HTTP/1.1\r\n" + HOST + b"\r\n"
    + b"CONNECT a:443 HTTP/1.1\r\n" + HOST + b"\r\n"
    + b"GET a HTTP/1.1\r\n" + HOST + b"\r\n",
    "content-length body": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "content-length list of one value": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n"
    b"\r\nabc",
    "duplicate content-length collapsed": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
    b"Content-Length: 3\r\n\r\nabc",
    "content-length zero": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + GET,
    "chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "chunked, case and extensions": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n"
    b'\r\nA;name=val;x\r\n0123456789\r\nb;q="a;\\"b"\r\nhello world\r\n0;end\r\n\r\n',
    "whitespace around chunk extensions (BWS)": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3 ;x\r\nabc\r\n3\t; y = z\t;w\r\ndef\r\n0\r\n\r\n",
    "chunk size upper hex, 16 digits": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n000000000000000F\r\n" + b"x" * 15 + b"\r\n0\r\n\r\n",
    "trailers": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\nx\r\n0\r\nT: 1\r\nU: 2\r\n\r\n" + GET,
    "framing fields in trailers are discarded unread": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: x\r\nTransfer-Encoding: gzip"
    b"\r\nHost: b\r\n\r\n" + GET,
    "http/1.0 chunked": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    "pipelined three": GET + b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" + GET,
    "empty lines before and between requests": b"\r\n\n\r\n" + GET + b"\r\n\r\n" + GET,
    "upgrade request served as a plain one": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade"
    b"\r\nUpgrade: websocket\r\n\r\n" + GET,
    "connect with a body": b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" + GET,
    "expect 100-continue": b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
    b"Content-Length: 1\r\n\r\nx",
}

INVALID = {
    # name: (bytes, the parser's status; None: a request the parser passes on and the
    # shared H1Connection refuses)
    "two spaces in request line (llhttp accepts)": (b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "space after version": (b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400),
    "tab as separator": (b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "lower-case method (H1Connection)": (b"get / HTTP/1.1\r\n" + HOST + b"\r\n", None),
    "invalid method char": (b"G@T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "del in target": (b"GET /a\x7f HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "obs-text in target": (b"GET /\xff HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "version 1.2 (H1Connection, llhttp refuses)": (b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", None),
    "version 2.0": (b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", None),
    "h2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),
    "lower-case protocol name": (b"GET / http/1.1\r\n" + HOST + b"\r\n", 400),
    "missing host on 1.1 (llhttp accepts)": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two hosts": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "whitespace before colon": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    "no colon": (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    "empty name": (b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400),
    "bare CR in value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    "NUL in value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    "VT in value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", 400),
    "SOH in value (h11 keeps it)": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
    "DEL in value (h11 keeps it)": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
    "ESC in value (h11 keeps it)": (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", 400),
    # RFC 9112 2.2 lets a recipient accept a bare LF as a line end; refserver does not (both
    # h11 and the fast parser's tokenizer would).
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: a\nX: y\n\n", 400),
    "mixed line ends": (b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\n", 400),
    "bare LF ending the request line": (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    "bare LF ending the head": (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    "bare LF hiding a header (llhttp CVE-2022-32214)": (
        b"POST / HTTP/1.1\r\nHost: a\r\nX: y\nContent-Length: 5\r\n\r\nhello", 400),
    "bare LF after 501 framing: 501 first, as h11 finds it": (
        b"POST / HTTP/1.1\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    "trailer block ended by bare LF": (b"POST / HTTP/1.1\r\nHost: a\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n0\r\n\n" + GET, 400),
    "fold before any field": (b"GET / HTTP/1.1\r\n x: a\r\n" + HOST + b"\r\n", 400),
    "control as first byte": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    "conflicting content-length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                                   b"Content-Length: 4\r\n\r\nabcd", 400),
    "content-length list of two values": (b"POST / HTTP/1.1\r\nHost: a\r\n"
                                          b"Content-Length: 3, 4\r\n\r\nabcd", 400),
    "signed content-length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
                              400),
    "21-digit content-length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                                + b"0" * 20 + b"1\r\n\r\nx", 400),
    "transfer-encoding and content-length (H1Connection)": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n", None),
    "gzip, chunked (llhttp accepts)": (b"POST / HTTP/1.1\r\nHost: a\r\n"
                                       b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    "identity": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501),
    "two transfer-encodings": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n", 501),
    "501 before a later 400": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                               b"Content-Length: x\r\n\r\n", 501),
    "400 before a later 501": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n"
                               b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "bad chunk size": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"x\r\n", 400),
    "17 hex digits": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"0" * 16 + b"1\r\nx\r\n0\r\n\r\n", 400),
    "text after a chunk size": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                b"\r\n3 x\r\nabc\r\n0\r\n\r\n", 400),
    # RFC 9112 7.1: whitespace after a chunk size only before a ";" (h11 allows it at the end).
    "chunk size with trailing OWS": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                     b"\r\n\r\n3 \t\r\nabc\r\n0\r\n\r\n", 400),
    "control in a chunk extension (h11 allows it)": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;\x01\r\nabc\r\n0\r\n\r\n", 400),
    "bare CR in a chunk extension (h11 allows it)": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;a\rb\r\nabc\r\n0\r\n\r\n", 400),
    "chunk extension without a name": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;\r\nabc\r\n0\r\n\r\n", 400),
    "unbalanced quote in a chunk extension": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3;a="b\r\nabc\r\n0\r\n\r\n', 400),
    "chunk extensions past their budget": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1;" + b"e" * 9000 + b"\r\nx\r\n" + b"1;" + b"e" * 9000 + b"\r\ny\r\n0\r\n\r\n", 413),
    "chunk size ended by bare LF": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                    b"\r\n\r\n3\nabc\r\n0\r\n\r\n", 400),
    "no CRLF after chunk data": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n3\r\nabcXY0\r\n\r\n", 400),
    "bare LF after chunk data": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n3\r\nabc\n0\r\n\r\n", 400),
    "invalid trailer": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"0\r\nBad Trailer: x\r\n\r\n", 400),
    "control in a trailer value": (b"POST / HTTP/1.1\r\nHost: a\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n"
                                   b"0\r\nT: a\x01\r\n\r\n", 400),
    "fold before any trailer": (b"POST / HTTP/1.1\r\nHost: a\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n"
                                b"0\r\n T: a\r\n\r\n", 400),
    "garbage pipelined after a request": (GET + b"\x00GARBAGE\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_requests_are_parsed_alike(name):
    script = parsed(VALID[name])
    assert not errors(script), script
    assert any(isinstance(item, tuple) and item[0] == "head" for item in script)
    outcome(VALID[name])
    outcome(VALID[name], late=True)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_requests_fail_alike(name):
    data, status = INVALID[name]
    script = parsed(data)
    if status is None:
        assert script[0][0] == "head", script  # the parser passes the head on
        assert errors(outcome(data))
    else:
        assert [e[2] for e in errors(script)] == [status], script
        outcome(data)


def test_obs_fold_and_ows_values():
    script = parsed(VALID["obs-fold replaced by SP"])
    assert script[0][4] == ((b"host", b"a"), (b"x", b"a b c"))
    assert parsed(VALID["OWS stripped both ends"])[0][4][1] == (b"x", b"a b")


def test_content_length_normalised_as_h11_does():
    assert parsed(VALID["content-length list of one value"])[0][4][1] == (b"content-length", b"3")
    head = parsed(VALID["duplicate content-length collapsed"])[0]
    assert head[4] == ((b"host", b"a"), (b"content-length", b"3"))
    head = parsed(VALID["chunked, case and extensions"])[0]
    assert head[4][1] == (b"transfer-encoding", b"chunked")


@pytest.mark.parametrize("eof_after", [0, 5, 20, 40, 45, 60, 66])
def test_end_of_input_anywhere(eof_after):
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    for late in (False, True):
        assert_same([data[:eof_after]] if eof_after else [], eof=True, late=late)
        assert_same([data[:eof_after], data[eof_after:]], eof=True, late=late)
        cl = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"
        assert_same([cl[:eof_after]] if eof_after else [], eof=True, late=late)


@pytest.mark.parametrize(
    "limits",
    [Limits(request_line=20), Limits(head=40), Limits(header_count=1), Limits(body=3)],
    ids=["line", "head", "count", "body"],
)
def test_limits_apply_alike(limits):
    data = (b"POST /a/long/target/path HTTP/1.1\r\nHost: a\r\nX: yyyyyyyyyyyyyyyyyy\r\n"
            b"Content-Length: 5\r\n\r\nhello")
    script = outcome(data, limits=limits)
    assert errors(script)
    chunked = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;"
               + b"e" * 60 + b"\r\nhello\r\n0\r\n" + b"T: " + b"t" * 60 + b"\r\n\r\n")
    outcome(chunked, limits=limits)


def test_limits_in_chunked_body():
    """A chunk line is bounded by the extension budget (413 as soon as it is spent, not when the
    line ends: Node.js CVE-2024-22019), a trailer section by the head limit (431)."""
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    limits = Limits(head=100)
    script = assert_same([head, b"5;" + b"x" * 200], limits=limits)
    assert not errors(script)  # within the budget, whatever the head limit
    script = assert_same([head, b"5;" + b"x" * (EXTENSIONS_LIMIT + 1)], limits=limits)
    assert errors(script)[-1][2] == 413
    script = assert_same([head, b"0\r\nT: " + b"x" * 200], limits=limits)
    assert errors(script)[-1][2] == 431


def test_body_events_follow_the_reads():
    """h11 hands out whatever part of the body has arrived; so must the fast path."""
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"
    script = assert_same([data[:-7], data[-7:-3], data[-3:]])
    assert [s for s in script if s[0] == "body"] == [("body", b"012"), ("body", b"3456"),
                                                     ("body", b"789")]


def test_bytes_after_error_state_are_refused_alike():
    for make in PARSERS.values():
        parser = make(65536)
        parser.feed(b"BAD LINE\r\n\r\n")
        with pytest.raises(HTTPError) as first:
            parser.next_event()
        with pytest.raises(HTTPError) as second:
            parser.next_event()
        assert (first.value.status, second.value.status) == (400, 400)


def test_llhttp_tokenizes_the_common_heads():
    """The llhttp path is the one taken for ordinary requests (not the exact fallback)."""
    parser = FastParser(65536)
    for _ in range(3):
        parser.feed(GET + b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        for _ in range(2):
            while type(parser.next_event()) is not EndOfMessage:
                pass
            parser.start_next_cycle()
    assert parser.llhttp_heads == 6
    parser.feed(b"FROB / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_event().method == b"FROB"
    assert parser.llhttp_heads == 6


def test_one_llhttp_parser_serves_heads_with_bodies():
    """llhttp never sees a body; one it was told of is stood in for so that the same llhttp
    parser reads the next head. A chunked body, or one too long to stand in for, costs a new
    parser, and the heads after it are still tokenized by llhttp."""
    parser = FastParser(65536)

    def exchange(data: bytes) -> None:
        parser.feed(data)
        while type(parser.next_event()) is not EndOfMessage:
            pass
        parser.start_next_cycle()

    for size in (0, 1, 4096, 65536):
        exchange(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        exchange(GET)
    assert (parser.llhttp_parsers, parser.llhttp_heads) == (1, 8)
    exchange(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
    exchange(GET)
    exchange(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n" + b"x" * 65537)
    exchange(GET)
    assert (parser.llhttp_parsers, parser.llhttp_heads) == (3, 12)


def test_zero_copy_body():
    """A read that is all body is handed on as the same object."""
    parser = FastParser(65536)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
    assert type(parser.next_event()) is RequestHead
    chunk = b"0123456789"
    parser.feed(chunk)
    assert parser.next_event().data is chunk


# --------------------------------------------------------------------------------- generated

# Generation is the expensive part of these tests, so each field is one draw of raw bytes mapped
# onto an alphabet. Every part of a request is well-formed most of the time and deviant now and
# then (``odd``), so that streams get past their first head often enough to reach bodies,
# trailers and pipelining, while every kind of deviation still turns up somewhere.


def _alphabet(chars: bytes):
    table = bytes(chars[i % len(chars)] for i in range(256))
    return lambda raw: raw.translate(table)


def odd(draw, one_in=16):
    return draw(st.integers(0, one_in - 1)) == 0


def pick(draw, usual, unusual, one_in=16):
    """A draw from ``unusual`` one time in ``one_in``, else from ``usual``."""
    return draw(unusual if odd(draw, one_in) else usual)


TCHARS = b"!#$%&'*+-.^_`|~" + string.ascii_letters.encode() + string.digits.encode()
tokens = st.binary(min_size=1, max_size=6).map(_alphabet(TCHARS))

methods = st.sampled_from([b"GET", b"GET", b"POST", b"POST", b"PUT", b"HEAD", b"DELETE",
                           b"OPTIONS", b"PATCH"])
odd_methods = st.one_of(
    st.sampled_from([b"CONNECT", b"PRI", b"M-SEARCH", b"PURGE", b"QUERY", b"FROB", b"get",
                     b"G@T", b"", b"GET\t", b"Get"]),
    tokens,
)
targets = st.sampled_from([b"/", b"/", b"/a/b?c=d&e", b"/%20x", b"//x", b"/a#f", b"/x?"])
odd_targets = st.one_of(
    st.sampled_from([b"*", b"a:80", b"http://h:1/p?q", b"/{}|^`\"<>", b"a", b"/\x7f", b"/\xff",
                     b"/a b", b"", b"/\t", b"/\r"]),
    st.binary(min_size=1, max_size=8).map(
        _alphabet(b"/aZ09?=&%:@.-~" * 6 + b"\x00\x7f\xff\t \r\n#")).map(lambda b: b"/" + b),
)
versions = st.sampled_from([b"HTTP/1.1"] * 5 + [b"HTTP/1.0"])
odd_versions = st.sampled_from([b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.7", b"http/1.1",
                                b"HTTP/1.10", b"HTTP/1", b"HTTP/a.b", b""])
values = st.binary(max_size=10).map(_alphabet(b"aZ0,;= \t\xe9\x80\":/"))
odd_values = st.binary(max_size=8).map(_alphabet(b"a ,\t\x01\x7f\x00\x0b\x0c\r\n"))
names = st.one_of(
    st.sampled_from([b"X-A", b"x-b", b"Accept", b"User-Agent", b"Cookie", b"Expect",
                     b"Connection", b"Upgrade"]),
    tokens,
)
odd_names = st.sampled_from([b"X Y", b"", b"X\x00", b"X:", b"\xe9", b" X", b"X\r"])
eols = st.just(b"\r\n")
odd_eols = st.sampled_from([b"\n", b"\n", b"\r", b"\r\r\n", b"\n\r"])


@st.composite
def fields(draw):
    out = []
    hosts = draw(st.sampled_from([0, 2])) if odd(draw) else 1
    for _ in range(hosts):
        out.append((b"Host", draw(st.sampled_from([b"a", b"example.com:80", b""]))))
    for _ in range(draw(st.integers(0, 3))):
        out.append((pick(draw, names, odd_names, 30), pick(draw, values, odd_values)))
    framing = draw(st.sampled_from(["none", "none", "length", "length", "chunked", "chunked"]))
    if odd(draw, 30):
        framing = "both"
    special = []
    if framing in ("length", "both"):
        special.append((b"Content-Length", pick(draw, st.just(b"%d"), st.sampled_from(
            [b" %d ", b"%d, %d", b"+%d", b"%dx", b"", b"%d,", b"7", b"-1"]))))
        if odd(draw):
            special.append((b"Content-Length", draw(st.sampled_from([b"%d", b"7"]))))
    if framing in ("chunked", "both"):
        special.append((b"Transfer-Encoding", pick(draw, st.just(b"chunked"), st.sampled_from(
            [b"Chunked", b"chunked ", b"gzip, chunked", b"gzip", b"chunked, chunked"]))))
        if odd(draw, 30):
            special.append((b"Transfer-Encoding", b"chunked"))
    for field in special:
        out.insert(draw(st.integers(0, len(out))), field)
    return out, framing


@st.composite
def chunked_body(draw, payload):
    out = []
    rest = payload
    while rest:
        n = draw(st.integers(1, len(rest)))
        size = pick(draw, st.sampled_from([b"%x", b"%X", b"0%x", b"%x;e=1", b"%x;e=\"q\""]),
                    st.sampled_from([b"%x ", b"%x;\x01", b"%x ;e", b"%x\t", b"%x;a\nb"]), 8) % n
        out.append(size + pick(draw, eols, odd_eols, 30))
        out.append(rest[:n])
        rest = rest[n:]
        out.append(pick(draw, eols, st.sampled_from([b"\n", b"XX", b"\r", b""]), 30))
    out.append(pick(draw, st.just(b"0\r\n"), st.sampled_from([b"000;x\r\n", b"0\n", b"0 \r\n"])))
    if odd(draw, 4):
        out.append(pick(draw, names, odd_names, 30) + b": " + pick(draw, values, odd_values)
                   + b"\r\n")
    out.append(pick(draw, eols, st.just(b"\n"), 8))
    return b"".join(out)


@st.composite
def requests(draw):
    sep = pick(draw, st.just(b" "), st.sampled_from([b"  ", b"\t"]), 40)
    line = (pick(draw, methods, odd_methods) + sep + pick(draw, targets, odd_targets) + b" "
            + pick(draw, versions, odd_versions, 30))
    out = [line, pick(draw, eols, odd_eols)]
    headers, framing = draw(fields())
    payload = draw(st.binary(max_size=24))
    for name, value in headers:
        if b"%d" in value:
            value = value.replace(b"%d", b"%d" % len(payload))
        colon = pick(draw, st.sampled_from([b": ", b":"]), st.sampled_from([b" : ", b":\t  "]),
                     30)
        out.append(name + colon + value + pick(draw, eols, odd_eols, 30))
        if odd(draw, 30):  # obs-fold
            out.append(draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(values) + b"\r\n")
    out.append(pick(draw, eols, st.just(b"\n")))
    if framing in ("chunked", "both"):
        out.append(draw(chunked_body(payload)))
    else:
        cut = draw(st.integers(0, 3)) if odd(draw, 8) else 0
        out.append(payload[: len(payload) - cut] if framing == "length" else payload)
    return b"".join(out)


@st.composite
def streams(draw):
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        if odd(draw, 8):
            parts.append(draw(st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n", b"\r"])))
        parts.append(draw(requests()))
    if odd(draw, 8):
        parts.append(draw(st.sampled_from([b"GET", b"\x00", b"\r\n", b"GET / HTTP/1.1\r\n"])))
    return b"".join(parts)


cuts = st.lists(st.integers(0, 10_000), max_size=6)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


@settings(max_examples=3000, **SETTINGS)
@given(data=streams(), cuts=cuts, eof=st.booleans(), late=st.booleans(),
       small=st.integers(0, 5))
def test_generated_streams(data, cuts, eof, late, small):
    limits = Limits(head=60, request_line=30) if small == 0 else None
    assert_same(split(data, cuts), limits=limits, eof=eof, late=late, bare=True)


MUTATIONS = [b"\r", b"\n", b" ", b"\t", b":", b";", b",", b"0", b"9", b"a", b"F", b"\x00",
             b"\x7f", b"\xff", b"\r\n", b"\r\n\r\n", b"HTTP/1.1", b"chunked"]


@settings(max_examples=2500, **SETTINGS)
@given(data=streams(), edits=st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 2), st.sampled_from(MUTATIONS)),
    min_size=1, max_size=4), cuts=cuts, eof=st.booleans())
def test_mutated_streams(data, edits, cuts, eof):
    buf = bytearray(data)
    for at, op, text in edits:
        at %= len(buf) + 1
        if op == 0:
            buf[at:at] = text
        elif op == 1:
            del buf[at:at + len(text)]
        else:
            buf[at:at + len(text)] = text
    assert_same(split(bytes(buf), cuts), eof=eof, bare=True)


# ------------------------------------------------------------------------------ head writer

header_bytes = st.binary(max_size=12)


@settings(max_examples=500, deadline=None)
@given(status=st.integers(0, 10**12), reason=st.binary(max_size=20),
       headers=st.lists(st.tuples(header_bytes, header_bytes), max_size=8))
def test_head_writer_identical(status, reason, headers):
    assert fast_write_head(status, reason, headers) == reference_write_head(status, reason, headers)


@pytest.mark.parametrize(
    "args",
    [
        (200, b"OK", []),
        (599, b"", [(b"a", b"")]),
        (True, b"OK", []),
        (-1, b"X", []),
        (10**30, b"X", []),
        (200, b"OK", [[b"a", b"b"]]),
        (200, b"OK", ((b"a", b"b"),)),
        (200, b"OK", [(bytearray(b"a"), memoryview(b"b"))]),
        (200, bytearray(b"OK"), []),
    ],
)
def test_head_writer_identical_on_odd_input(args):
    assert fast_write_head(*args) == reference_write_head(*args)


@pytest.mark.parametrize(
    "args",
    [("200", b"OK", []), (200, "OK", []), (200, b"OK", [(b"a",)]), (200, b"OK", [("a", b"b")]),
     (200, b"OK", None)],
)
def test_head_writer_fails_alike(args):
    with pytest.raises(Exception) as expected:
        reference_write_head(*args)
    with pytest.raises(type(expected.value)):
        fast_write_head(*args)


# --------------------------------------------------------------------------- implementation


def test_select_picks_fast_and_falls_back(monkeypatch):
    from refserver import impl

    assert impl.select("auto") == (impl.select("fast")[0], None)
    assert impl.select("fast")[0].name == "fast"
    assert impl.select("pure")[0].name == "pure"
    monkeypatch.setitem(sys.modules, "refserver._speedups", None)  # as if it were not built
    chosen, note = impl.select("auto")
    assert chosen.name == "pure" and "fast path not available" in note
    # This suite imports refserver from the checkout, where the fix is to build it in place.
    assert "source checkout" in note and "pip install -e ." in note
    with pytest.raises(impl.ImplementationUnavailable, match="--impl fast"):
        impl.select("fast")


def test_fast_path_runs_the_compiled_http1_modules():
    """The fast path's connection core and protocol are the reference modules compiled as
    extension types; the pure path's are the interpreted modules themselves."""
    from refserver import impl
    from refserver.protocols import h1 as reference_protocol
    from refserver.wire import h1 as reference_wire

    fast, pure = impl.select("fast")[0], impl.select("pure")[0]
    assert pure.h1_connection is reference_wire.H1Connection
    assert pure.h1_protocol is reference_protocol.H1Protocol
    assert fast.h1_connection.__module__ == "refserver.wire._compiled_h1"
    assert fast.h1_protocol.__module__ == "refserver.protocols._compiled_h1"
    heap_type = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes, clear for static extension types
    for cls in (fast.h1_connection, fast.h1_protocol):
        # Compiled without its .pxd, a class stays a (slower) Python class: that must not pass.
        assert not cls.__flags__ & heap_type, f"{cls} is not an extension type"
    for module in ("refserver.protocols._compiled_h1", "refserver.wire._compiled_h1"):
        sys.modules.pop(module, None)
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # as if this copy were not built
            assert impl.select("auto")[0].name == "pure"
