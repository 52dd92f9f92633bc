"""Sans-IO tests of the HTTP/1.1 wire core: bytes in -> exact events out, events -> exact bytes out.

Every case runs on each parser the implementation table offers (today: h11), because the core
promises the same events and the same typed errors whichever parser is under it.
"""

from __future__ import annotations

import pytest
from conftest import IMPLS, require_fast_path

from refserver.wire import h1 as wire_h1
from refserver.wire.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    BadRequest,
    Body,
    ContentTooLarge,
    EndOfMessage,
    HeadersTooLarge,
    HTTPError,
    NotImplementedByServer,
    RequestHead,
    RequestTimeout,
    ResponseError,
    URITooLong,
    VersionNotSupported,
    error_for_status,
)
from refserver.wire import dates
from refserver.wire.dates import DateCache
from refserver.wire.h1 import REASONS, H1Connection, Limits
from refserver.wire.h11_parser import H11Parser

EPOCH_DATE = b"Thu, 01 Jan 1970 00:00:00 GMT"


@pytest.fixture(params=IMPLS)
def parser_cls(request):
    """The request parser of each implementation: h11 (pure) and the Cython one (fast)."""
    if request.param == "pure":
        return H11Parser
    require_fast_path()
    from refserver._speedups import FastParser

    return FastParser


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """Every Date header in this module is the epoch, so response bytes compare exactly."""
    monkeypatch.setattr(dates, "DATES", DateCache(lambda: 0.0))


def make(parser_cls, limits: Limits | None = None, **options) -> H1Connection:
    """A connection core around ``parser_cls``: the reference one for h11, its compiled copy for
    the fast parser (the pair each path runs)."""
    limits = limits or Limits()
    connection = H1Connection
    if parser_cls is not H11Parser:
        from refserver.wire._compiled_h1 import H1Connection as connection
    return connection(parser_cls(limits.head), limits, **options)


def merge(events: list) -> list:
    """Join consecutive Body events: how a body is cut into pieces depends on the reads."""
    out = []
    for event in events:
        if type(event) is Body and out and type(out[-1]) is Body:
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def drain(conn: H1Connection) -> list:
    """Every event the bytes received so far give, up to NEED_DATA / PAUSED / None."""
    events = []
    while True:
        event = conn.next_event()
        events.append(event)
        if event is NEED_DATA or event is PAUSED or event is None:
            return events


def parse(parser_cls, data: bytes, limits: Limits | None = None) -> list:
    conn = make(parser_cls, limits)
    conn.receive_data(data)
    return merge(drain(conn))


def first_error(parser_cls, data: bytes, limits: Limits | None = None) -> HTTPError:
    """Feed ``data`` and return the typed error it raises (from receive_data or next_event)."""
    conn = make(parser_cls, limits)
    with pytest.raises(HTTPError) as info:
        conn.receive_data(data)
        drain(conn)
    return info.value


def head(method=b"GET", target=b"/", version=b"1.1", headers=((b"host", b"a"),)):
    return RequestHead(method, target, version, list(headers))


# ------------------------------------------------------------------------------------ parsing

PARSE_CASES = {
    "get": (
        b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(target=b"/p?q=1"), END_OF_MESSAGE, NEED_DATA],
    ),
    "content-length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        [
            head(b"POST", headers=[(b"host", b"a"), (b"content-length", b"5")]),
            Body(b"hello"),
            END_OF_MESSAGE,
            NEED_DATA,
        ],
    ),
    "content-length zero": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        [head(b"POST", headers=[(b"host", b"a"), (b"content-length", b"0")]), END_OF_MESSAGE,
         NEED_DATA],
    ),
    "chunked with extension and trailers": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        [
            head(b"POST", headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")]),
            Body(b"hello world"),
            END_OF_MESSAGE,
            NEED_DATA,
        ],
    ),
    "http/1.0 without host": (
        b"GET / HTTP/1.0\r\n\r\n",
        [head(version=b"1.0", headers=[]), END_OF_MESSAGE, NEED_DATA],
    ),
    "names lower-cased, order and duplicates kept": (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-B: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n",
        [
            head(headers=[(b"host", b"a"), (b"x-b", b"1"), (b"x-a", b"2"), (b"x-b", b"3")]),
            END_OF_MESSAGE,
            NEED_DATA,
        ],
    ),
    "leading empty lines are ignored (RFC 9112 2.2)": (
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(), END_OF_MESSAGE, NEED_DATA],
    ),
    "absolute-form target kept as sent": (
        b"GET http://a/x?y HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(target=b"http://a/x?y"), END_OF_MESSAGE, NEED_DATA],
    ),
    "partial head waits": (b"GET / HTTP/1.1\r\nHo", [NEED_DATA]),
    "partial body waits": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel",
        [head(b"POST", headers=[(b"host", b"a"), (b"content-length", b"5")]), Body(b"hel"),
         NEED_DATA],
    ),
    "a pipelined request waits for the next cycle": (
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        [head(), END_OF_MESSAGE, PAUSED],
    ),
}


@pytest.mark.parametrize("data, expected", PARSE_CASES.values(), ids=list(PARSE_CASES))
def test_parse(parser_cls, data, expected):
    assert parse(parser_cls, data) == expected


def test_request_state_flags(parser_cls):
    conn = make(parser_cls)
    assert conn.awaiting_head and not conn.has_partial_head
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue")
    assert drain(conn) == [NEED_DATA]
    assert conn.awaiting_head and conn.has_partial_head
    conn.receive_data(b"\r\n\r\n")
    assert type(conn.next_event()) is RequestHead
    assert not conn.awaiting_head and conn.expect_continue and not conn.request_complete
    conn.receive_data(b"ok")
    assert merge(drain(conn)) == [Body(b"ok"), END_OF_MESSAGE, NEED_DATA]
    assert conn.request_complete


def test_end_of_input_between_requests_is_reported(parser_cls):
    conn = make(parser_cls)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert drain(conn) == [head(), END_OF_MESSAGE, NEED_DATA]
    conn.receive_eof()
    assert conn.next_event() is None


# A request of each framing, pipelined back to back.
PIPELINE = [
    (
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        [head(b"POST", b"/a", headers=[(b"host", b"a"), (b"content-length", b"5")]),
         Body(b"hello"), END_OF_MESSAGE],
    ),
    (
        b"PUT /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        [head(b"PUT", b"/b", headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")]),
         Body(b"abcde"), END_OF_MESSAGE],
    ),
    (b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n", [head(target=b"/c"), END_OF_MESSAGE]),
    (
        b"GET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        [head(target=b"/d", version=b"1.0", headers=[(b"connection", b"keep-alive")]),
         END_OF_MESSAGE],
    ),
    (b"HEAD /e HTTP/1.1\r\nHost: a\r\n\r\n", [head(b"HEAD", b"/e"), END_OF_MESSAGE]),
]
PIPELINE_BYTES = b"".join(data for data, _ in PIPELINE)


def run_pipeline(conn: H1Connection, pieces) -> tuple[list, bytes]:
    """Drive the core as the asyncio glue does; returns the events of each request and the bytes
    of every response (each answered with an 'ok' body once its request is complete)."""
    requests, current, out = [], [], b""
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            assert event is not None and event is not PAUSED
            current.append(event)
            if type(event) is EndOfMessage:
                requests.append(merge(current))
                current = []
                out += conn.response_head(200, [], b"ok", end=True)
                assert conn.keep_alive
                conn.start_next_cycle()
    return requests, out


def one_response(request_head: bytes) -> bytes:
    extra = b"connection: keep-alive\r\n" if b"HTTP/1.0" in request_head else b""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nserver: refserver\r\ndate: " + EPOCH_DATE
        + b"\r\n" + extra + b"\r\n" + (b"" if request_head.startswith(b"HEAD ") else b"ok")
    )


EXPECTED_PIPELINE_EVENTS = [events for _, events in PIPELINE]
EXPECTED_PIPELINE_BYTES = b"".join(one_response(data.split(b"\r\n")[0]) for data, _ in PIPELINE)


def test_pipeline_in_one_piece(parser_cls):
    requests, out = run_pipeline(make(parser_cls), [PIPELINE_BYTES])
    assert requests == EXPECTED_PIPELINE_EVENTS
    assert out == EXPECTED_PIPELINE_BYTES


def test_pipeline_split_at_every_byte_boundary(parser_cls):
    for cut in range(1, len(PIPELINE_BYTES)):
        pieces = [PIPELINE_BYTES[:cut], PIPELINE_BYTES[cut:]]
        requests, out = run_pipeline(make(parser_cls), pieces)
        assert requests == EXPECTED_PIPELINE_EVENTS, cut
        assert out == EXPECTED_PIPELINE_BYTES, cut


def test_pipeline_one_byte_at_a_time(parser_cls):
    pieces = [PIPELINE_BYTES[i : i + 1] for i in range(len(PIPELINE_BYTES))]
    requests, out = run_pipeline(make(parser_cls), pieces)
    assert requests == EXPECTED_PIPELINE_EVENTS
    assert out == EXPECTED_PIPELINE_BYTES


def test_pipelined_bytes_after_a_closing_request_are_not_an_error(parser_cls):
    """After ``Connection: close`` (or plain HTTP/1.0) the next request is never parsed; its
    bytes must not turn into a 400 while the first response is still being produced."""
    for first in (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ):
        conn = make(parser_cls)
        conn.receive_data(first + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert drain(conn)[1:] == [END_OF_MESSAGE, PAUSED]
        assert not conn.keep_alive


# ------------------------------------------------------------------------------------ errors

ERROR_CASES = {
    "missing Host": (b"GET / HTTP/1.1\r\n\r\n", None, BadRequest),
    # A valid token in the wrong case: a method refserver does not implement (RFC 9110 9.1).
    "lower-case method": (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", None, NotImplementedByServer),
    "garbage request line": (b"HELLO\r\n\r\n", None, BadRequest),
    "bare LF line ends": (b"GET / HTTP/1.1\nHost: a\n\n", None, BadRequest),
    "control character in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[0m\r\n\r\n", None,
                                      BadRequest),
    "header line without a colon": (b"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", None,
                                     BadRequest),
    "space before the colon": (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", None, BadRequest),
    "bad Content-Length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", None,
                           BadRequest),
    "conflicting Content-Lengths": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", None,
        BadRequest,
    ),
    "Content-Length with Transfer-Encoding (smuggling)": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        None,
        BadRequest,
    ),
    "bad chunk size": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", None, BadRequest,
    ),
    "body over the limit by Content-Length": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", Limits(body=10),
        ContentTooLarge,
    ),
    "body over the limit by chunked total": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n",
        Limits(body=10),
        ContentTooLarge,
    ),
    "request line over the limit": (
        b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", Limits(request_line=100),
        URITooLong,
    ),
    "request line over the limit, still incomplete": (
        b"GET /" + b"a" * 200, Limits(request_line=100), URITooLong,
    ),
    "head over the limit": (
        b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 2000 + b"\r\n\r\n", Limits(head=1000),
        HeadersTooLarge,
    ),
    "head over the limit, still incomplete": (
        b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 2000, Limits(head=1000), HeadersTooLarge,
    ),
    "too many header fields": (
        b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 5 + b"\r\n", Limits(header_count=5),
        HeadersTooLarge,
    ),
    # RFC 9112 6.3: chunked not final (or absent) is 400; an unknown coding before it is 501.
    "unknown Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", None,
        NotImplementedByServer,
    ),
    "Transfer-Encoding without chunked": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", None,
        BadRequest,
    ),
    "Transfer-Encoding not ending in chunked": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", None,
        BadRequest,
    ),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", None, VersionNotSupported),
    "HTTP/3.0 request line": (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", None, VersionNotSupported),
}

STATUS = {
    BadRequest: 400,
    ContentTooLarge: 413,
    URITooLong: 414,
    HeadersTooLarge: 431,
    NotImplementedByServer: 501,
    VersionNotSupported: 505,
}


@pytest.mark.parametrize("data, limits, error", ERROR_CASES.values(), ids=list(ERROR_CASES))
def test_typed_errors(parser_cls, data, limits, error):
    exc = first_error(parser_cls, data, limits)
    assert type(exc) is error, exc
    assert exc.status == STATUS[error]
    assert exc.detail


@pytest.mark.parametrize("data, limits, error", ERROR_CASES.values(), ids=list(ERROR_CASES))
def test_typed_errors_byte_by_byte(parser_cls, data, limits, error):
    """The same error, whatever the reads look like."""
    conn = make(parser_cls, limits)
    with pytest.raises(HTTPError) as info:
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
            drain(conn)
    assert type(info.value) is error


def test_limits_are_inclusive(parser_cls):
    body = Limits(body=5)
    assert parse(parser_cls, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
                 body)[1:] == [Body(b"hello"), END_OF_MESSAGE, NEED_DATA]
    chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert parse(parser_cls, chunked, body)[1:] == [Body(b"hello"), END_OF_MESSAGE, NEED_DATA]
    fields = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 4 + b"\r\n"
    assert type(parse(parser_cls, fields, Limits(header_count=5))[0]) is RequestHead
    line = b"GET /" + b"a" * 40 + b" HTTP/1.1"
    exact = Limits(request_line=len(line))
    assert type(parse(parser_cls, line + b"\r\nHost: a\r\n\r\n", exact)[0]) is RequestHead


def test_head_limit_does_not_count_the_body(parser_cls):
    limits = Limits(head=200)
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
    assert parse(parser_cls, data, limits)[1:] == [Body(b"x" * 1000), END_OF_MESSAGE, NEED_DATA]
    # A head ended by bare LFs is found where it ends (its body is not counted: no 431), and is
    # then refused for its line ends.
    bare = b"POST / HTTP/1.1\nHost: a\nContent-Length: 1000\n\n" + b"x" * 1000
    assert type(first_error(parser_cls, bare, limits)) is BadRequest


def test_body_received_before_the_head_is_parsed_is_not_a_head(parser_cls):
    """The owner may feed twice before pulling events: the second feed is body, not a head."""
    conn = make(parser_cls, Limits(request_line=50, head=200))
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
    conn.receive_data(b"x" * 5000)
    assert merge(drain(conn))[1:] == [Body(b"x" * 5000), END_OF_MESSAGE, NEED_DATA]


def test_head_limits_hold_however_the_head_is_split(parser_cls):
    line = b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n"
    ok = line + b"Host: a\r\nX: " + b"y" * 100 + b"\r\n\r\n"
    for limits, error in (
        (Limits(request_line=len(line) - 2, head=len(ok)), None),  # both limits are inclusive
        (Limits(request_line=len(line) - 3), URITooLong),
        (Limits(head=len(ok) - 1), HeadersTooLarge),
    ):
        for size in (1, 2, 3, 7):
            conn = make(parser_cls, limits)
            try:
                for i in range(0, len(ok), size):
                    conn.receive_data(ok[i : i + size])
                    events = drain(conn)
            except HTTPError as exc:
                assert type(exc) is error, (limits, size)
            else:
                assert error is None, (limits, size)
                assert type(events[0]) is RequestHead


def test_limits_apply_to_a_pipelined_request(parser_cls):
    conn = make(parser_cls, Limits(request_line=50))
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /" + b"a" * 100)
    assert drain(conn) == [head(), END_OF_MESSAGE, PAUSED]
    conn.response_head(200, [], b"", end=True)
    with pytest.raises(URITooLong):
        conn.start_next_cycle()


def test_next_cycle_says_whether_a_pipelined_request_is_waiting(parser_cls):
    """The protocol parses again after a response only when bytes are already here."""
    conn = make(parser_cls)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert drain(conn) == [head(), END_OF_MESSAGE, NEED_DATA]
    conn.response_head(200, [], b"", end=True)
    assert conn.start_next_cycle() is False
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HT")
    assert drain(conn) == [head(), END_OF_MESSAGE, PAUSED]
    conn.response_head(200, [], b"", end=True)
    assert conn.start_next_cycle() is True
    assert drain(conn) == [NEED_DATA]


def test_request_timeout_belongs_to_the_protocol(parser_cls):
    """The core has no clock: a partial head only waits. 408 is the glue's to raise, with the
    same typed error the parsers' status hints map to."""
    conn = make(parser_cls)
    for piece in (b"GET / HT", b"TP/1.1\r\n", b"Host: a\r\n"):
        conn.receive_data(piece)
        assert drain(conn) == [NEED_DATA]
    assert conn.has_partial_head
    assert RequestTimeout("x").status == 408
    assert type(error_for_status(408, "x")) is RequestTimeout
    assert type(error_for_status(999, "x")) is BadRequest
    response = conn.error_response(408)
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close\r\n" in response


def test_error_response_bytes(parser_cls):
    conn = make(parser_cls, Limits(body=1))
    with pytest.raises(ContentTooLarge) as info:
        conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab")
        drain(conn)
    reason = REASONS[413]
    assert conn.error_response(info.value.status) == (
        b"HTTP/1.1 413 " + reason + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nserver: refserver\r\ndate: " % len(reason) + EPOCH_DATE
        + b"\r\nconnection: close\r\n\r\n" + reason
    )
    assert not conn.keep_alive


# ---------------------------------------------------------------------------- response framing


def request(parser_cls, data: bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", **options):
    conn = make(parser_cls, **options)
    conn.receive_data(data)
    drain(conn)
    return conn


def split_head(data: bytes) -> tuple[bytes, list, bytes]:
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.split(b"\r\n")
    return lines[0], [tuple(line.split(b": ", 1)) for line in lines[1:]], body


GET11 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
GET10 = b"GET / HTTP/1.0\r\n\r\n"
HEAD11 = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
HEAD10 = b"HEAD / HTTP/1.0\r\n\r\n"

# request, status, app headers, body, end -> exact framing headers (after the app's), body bytes
FRAMING_CASES = {
    "whole body: content-length added": (
        GET11, 200, [(b"content-type", b"text/plain")], b"hello", True,
        [(b"content-type", b"text/plain"), (b"content-length", b"5")], b"hello",
    ),
    "whole empty body: content-length 0": (GET11, 200, [], b"", True,
                                           [(b"content-length", b"0")], b""),
    "app content-length kept": (GET11, 200, [(b"Content-Length", b"5")], b"hello", True,
                                [(b"Content-Length", b"5")], b"hello"),
    "streaming HTTP/1.1: chunked": (GET11, 200, [], b"hello", False,
                                    [(b"transfer-encoding", b"chunked")], b"5\r\nhello\r\n"),
    "streaming HTTP/1.0: close-delimited": (GET10, 200, [], b"hello", False,
                                            [(b"connection", b"close")], b"hello"),
    "app transfer-encoding ignored": (GET11, 200, [(b"Transfer-Encoding", b"gzip")], b"hi", True,
                                      [(b"content-length", b"2")], b"hi"),
    "app transfer-encoding ignored while streaming": (
        GET11, 200, [(b"transfer-encoding", b"chunked")], b"hi", False,
        [(b"transfer-encoding", b"chunked")], b"2\r\nhi\r\n",
    ),
    "HEAD keeps the length, sends no body": (HEAD11, 200, [], b"hello", True,
                                             [(b"content-length", b"5")], b""),
    "HEAD with the app's content-length": (HEAD11, 200, [(b"content-length", b"99")], b"", True,
                                           [(b"content-length", b"99")], b""),
    "HEAD streaming": (HEAD11, 200, [], b"hello", False, [(b"transfer-encoding", b"chunked")],
                       b""),
    "HEAD streaming on HTTP/1.0 stays open": (HEAD10, 200, [], b"", False, [], b""),
    "204 has no body and no content-length": (GET11, 204, [(b"content-length", b"5")], b"hello",
                                              True, [], b""),
    "304 keeps content-length, no body": (GET11, 304, [(b"content-length", b"5")], b"", True,
                                          [(b"content-length", b"5")], b""),
    "304 whole body: nothing added": (GET11, 304, [], b"", True, [], b""),
    "connection from the app is dropped": (GET11, 200, [(b"connection", b"keep-alive")], b"",
                                           True, [(b"content-length", b"0")], b""),
}


@pytest.mark.parametrize(
    "req, status, headers, body, end, framing, wire_body",
    FRAMING_CASES.values(),
    ids=list(FRAMING_CASES),
)
def test_response_framing(parser_cls, req, status, headers, body, end, framing, wire_body):
    conn = request(parser_cls, req, server_header=None, date_header=False)
    data = conn.response_head(status, headers, body, end)
    status_line, out_headers, out_body = split_head(data)
    assert status_line == b"HTTP/1.1 %d %s" % (status, REASONS[status])
    assert [h for h in out_headers if h[0] != b"connection" or h in framing] == framing
    assert out_body == wire_body
    assert conn.response_started
    assert conn.response_complete is end


def test_exact_response_bytes(parser_cls):
    conn = request(parser_cls)
    assert conn.response_head(200, [(b"content-type", b"text/plain")], b"hi", end=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
        b"server: refserver\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\nhi"
    )
    assert conn.response_complete and conn.keep_alive


def test_chunked_stream(parser_cls):
    conn = request(parser_cls, date_header=False, server_header=None)
    assert conn.response_head(200, []) == (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    assert conn.response_body(b"abc") == b"3\r\nabc\r\n"
    assert conn.response_body(b"") == b""  # an empty chunk would end the message
    assert conn.response_body(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.response_end() == b"0\r\n\r\n"
    assert conn.response_end() == b""  # idempotent
    assert conn.keep_alive


def test_close_delimited_stream_on_http10(parser_cls):
    conn = request(parser_cls, GET10 + b"", date_header=False, server_header=None)
    assert conn.response_head(200, []) == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
    assert conn.response_body(b"abc") == b"abc"
    assert conn.response_end() == b""
    assert not conn.keep_alive


def test_head_response_drops_streamed_body(parser_cls):
    conn = request(parser_cls, HEAD11)
    conn.response_head(200, [(b"content-length", b"3")])
    assert conn.response_body(b"abc") == b""
    assert conn.response_end() == b""
    assert conn.keep_alive


def test_more_body_than_content_length_raises(parser_cls):
    conn = request(parser_cls)
    conn.response_head(200, [(b"content-length", b"3")])
    assert conn.response_body(b"ab") == b"ab"
    with pytest.raises(ResponseError, match="longer than its Content-Length"):
        conn.response_body(b"cd")
    assert not conn.keep_alive


def test_less_body_than_content_length_closes(parser_cls):
    conn = request(parser_cls)
    conn.response_head(200, [(b"content-length", b"3")])
    assert conn.response_body(b"ab") == b"ab"
    with pytest.raises(ResponseError, match="short of its Content-Length"):
        conn.response_end()
    assert not conn.keep_alive


@pytest.mark.parametrize("body", [b"ab", b"abcd"])
def test_wrong_whole_body_is_refused_before_anything_is_written(parser_cls, body):
    """A single-message response that contradicts its Content-Length can still become a 500."""
    conn = request(parser_cls)
    with pytest.raises(ResponseError):
        conn.response_head(200, [(b"content-length", b"3")], body, end=True)
    assert not conn.response_started
    assert conn.error_response(500).startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_app_connection_close(parser_cls):
    conn = request(parser_cls)
    data = conn.response_head(200, [(b"Connection", b"Keep-Alive, Close")], b"", end=True)
    assert not conn.keep_alive
    assert data.count(b"onnection") == 1
    assert b"\r\nconnection: close\r\n" in data


# request bytes -> keep-alive after the head, Connection header of the response
KEEP_ALIVE_CASES = {
    "1.1 default": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True, None),
    "1.1 close": (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False, b"close"),
    "1.1 close among tokens": (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n",
                               False, b"close"),
    "1.0 default": (b"GET / HTTP/1.0\r\n\r\n", False, b"close"),
    "1.0 keep-alive": (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True, b"keep-alive"),
    "1.0 keep-alive and close": (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                                 False, b"close"),
}


@pytest.mark.parametrize("data, keep_alive, header", KEEP_ALIVE_CASES.values(),
                         ids=list(KEEP_ALIVE_CASES))
def test_keep_alive_rules(parser_cls, data, keep_alive, header):
    conn = request(parser_cls, data)
    assert conn.keep_alive is keep_alive
    _, headers, _ = split_head(conn.response_head(200, [], b"x", end=True))
    assert [v for n, v in headers if n == b"connection"] == ([header] if header else [])
    assert conn.keep_alive is keep_alive


def test_http10_keep_alive_serves_the_next_request(parser_cls):
    conn = request(parser_cls, b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    conn.response_head(200, [], b"x", end=True)
    assert conn.keep_alive
    conn.start_next_cycle()
    conn.receive_data(b"GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert drain(conn) == [
        head(target=b"/2", version=b"1.0", headers=[(b"connection", b"keep-alive")]),
        END_OF_MESSAGE,
        NEED_DATA,
    ]


def test_expect_continue(parser_cls):
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    conn = request(parser_cls, data)
    assert conn.expect_continue and not conn.sent_continue
    assert conn.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.sent_continue
    conn.receive_data(b"ok")
    assert merge(drain(conn)) == [Body(b"ok"), END_OF_MESSAGE, NEED_DATA]
    conn.response_head(200, [], b"", end=True)
    assert conn.keep_alive


def test_answer_without_continue_closes(parser_cls):
    """The client still waits to be told to send its body: the connection cannot be reused."""
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    conn = request(parser_cls, data)
    conn.response_head(401, [], b"", end=True)
    assert not conn.keep_alive


def test_expect_is_ignored_on_http10(parser_cls):
    conn = request(parser_cls, b"POST / HTTP/1.0\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n")
    assert not conn.expect_continue


# ------------------------------------------------------------------------------ Date and Server


def test_date_comes_from_the_clock(parser_cls, monkeypatch):
    now = [86400.0 * 365]
    monkeypatch.setattr(dates, "DATES", DateCache(lambda: now[0]))
    conn = request(parser_cls)
    assert b"\r\ndate: Fri, 01 Jan 1971 00:00:00 GMT\r\n" in conn.response_head(200, [], end=True)
    now[0] += 0.5  # the same second: the cached value
    assert dates.DATES.value() == b"Fri, 01 Jan 1971 00:00:00 GMT"
    now[0] += 1
    assert dates.DATES.value() == b"Fri, 01 Jan 1971 00:00:01 GMT"


@pytest.mark.parametrize(
    "options, app_headers, expected",
    [
        ({}, [], [(b"server", b"refserver"), (b"date", EPOCH_DATE)]),
        ({"date_header": False}, [], [(b"server", b"refserver")]),
        ({"server_header": None}, [], [(b"date", EPOCH_DATE)]),
        ({"server_header": b"other"}, [], [(b"server", b"other"), (b"date", EPOCH_DATE)]),
        ({}, [(b"Server", b"app"), (b"Date", b"today")], [(b"Server", b"app"), (b"Date", b"today")]),
        ({"date_header": False, "server_header": None}, [], []),
    ],
)
def test_date_and_server_headers(parser_cls, options, app_headers, expected):
    conn = request(parser_cls, **options)
    _, headers, _ = split_head(conn.response_head(200, app_headers, b"", end=True))
    assert [h for h in headers if h[0].lower() in (b"server", b"date")] == expected


# ------------------------------------------------------------------------ invalid responses

BAD_HEADERS = {
    "space in name": (b"bad name", b"v"),
    "colon in name": (b"x:y", b"v"),
    "empty name": (b"", b"v"),
    "CRLF in name": (b"x\r\ny", b"v"),
    "CRLF in value (response splitting)": (b"x", b"a\r\nSet-Cookie: evil"),
    "LF in value": (b"x", b"a\nb"),
    "CR in value": (b"x", b"a\rb"),
    "NUL in value": (b"x", b"a\x00b"),
    "DEL in value": (b"x", b"a\x7fb"),
    "non-numeric content-length": (b"content-length", b"12a"),
    "negative content-length": (b"content-length", b"-1"),
}


@pytest.mark.parametrize("name, value", BAD_HEADERS.values(), ids=list(BAD_HEADERS))
def test_invalid_response_headers_are_rejected(parser_cls, name, value):
    conn = request(parser_cls)
    with pytest.raises(ResponseError):
        conn.response_head(200, [(name, value)], b"", end=True)
    assert not conn.response_started
    conn.error_response(500)  # still possible


@pytest.mark.parametrize("name, value", BAD_HEADERS.values(), ids=list(BAD_HEADERS))
def test_invalid_response_headers_are_rejected_every_time(parser_cls, name, value):
    # Fields that pass are remembered; one that fails must fail again, in any container.
    for field in [(name, value), [name, value], (name, bytearray(value)), (name, value)]:
        conn = request(parser_cls)
        with pytest.raises(ResponseError):
            conn.response_head(200, [field], b"", end=True)


def test_remembered_response_fields_give_the_same_bytes(parser_cls):
    fields = [(b"Content-Type", b"text/plain"), (b"X-Id", bytearray(b"7")), [b"x-list", b"1"]]
    first = request(parser_cls).response_head(200, fields, b"hi", end=True)
    again = request(parser_cls).response_head(200, fields, b"hi", end=True)
    assert first == again
    assert b"\r\nContent-Type: text/plain\r\nX-Id: 7\r\nx-list: 1\r\n" in first


def test_a_content_length_beyond_64_bits_is_a_short_body_not_a_crash(parser_cls):
    """The compiled connection core keeps the remaining length a Python int, as the reference
    does: any declared length is carried, and the body that falls short of it is the error."""
    conn = request(parser_cls)
    conn.response_head(200, [(b"content-length", b"%d" % 2**70)])
    assert conn.response_body(b"ab") == b"ab"
    with pytest.raises(ResponseError, match="short of its Content-Length"):
        conn.response_end()


@pytest.mark.parametrize("value", [b"", b"1_0", b"+1", b"-1", b"0x1", b"\xd9\xa1"])
def test_content_length_must_be_ascii_digits(parser_cls, value):
    conn = request(parser_cls)
    with pytest.raises(ResponseError, match="invalid Content-Length"):
        conn.response_head(200, [(b"content-length", value)])


def test_conflicting_content_lengths_are_rejected(parser_cls):
    conn = request(parser_cls)
    with pytest.raises(ResponseError):
        conn.response_head(200, [(b"content-length", b"1"), (b"content-length", b"2")])


def test_valid_unusual_header_values_are_kept(parser_cls):
    conn = request(parser_cls)
    data = conn.response_head(200, [(b"x-tab", b"a\tb"), (b"x-latin", b"caf\xe9"),
                                    (b"X-Odd!#$%&'*+.^_`|~", b"")], b"", end=True)
    assert b"\r\nx-tab: a\tb\r\n" in data
    assert b"\r\nx-latin: caf\xe9\r\n" in data
    assert b"\r\nX-Odd!#$%&'*+.^_`|~: \r\n" in data


@pytest.mark.parametrize("status", [99, 100, 101, 199, 1000, -1, "200", 200.0, None])
def test_invalid_status_is_rejected(parser_cls, status):
    conn = request(parser_cls)
    with pytest.raises(ResponseError):
        conn.response_head(status, [], b"", end=True)


def test_unknown_status_has_an_empty_reason(parser_cls):
    conn = request(parser_cls, date_header=False, server_header=None)
    assert conn.response_head(599, [], b"", end=True).startswith(b"HTTP/1.1 599 \r\n")


def test_response_out_of_order(parser_cls):
    conn = request(parser_cls)
    with pytest.raises(ResponseError):
        conn.response_body(b"early")
    conn.response_head(200, [], b"", end=True)
    with pytest.raises(ResponseError):
        conn.response_head(200, [], b"", end=True)
    with pytest.raises(ResponseError):
        conn.response_body(b"late")


def test_a_large_body_is_handed_on_uncopied(parser_cls):
    body = b"x" * (wire_h1.JOIN_LIMIT + 1)
    head, rest = request(parser_cls).response_start(200, [], body, end=True)
    assert rest is body and head.endswith(b"\r\n\r\n")
    assert b"\r\ncontent-length: %d\r\n" % len(body) in head
    small = b"y" * wire_h1.JOIN_LIMIT
    head, rest = request(parser_cls).response_start(200, [], small, end=True)
    assert rest == b"" and head.endswith(b"\r\n\r\n" + small)
    # Joined or not, the bytes are those of response_head.
    assert request(parser_cls).response_head(200, [], body, end=True) == b"".join(
        request(parser_cls).response_start(200, [], body, end=True)
    )


def test_framing_refusal_reads_only_its_own_head(parser_cls):
    """The fields of a pipelined request (or a body) that came in the same read must not decide
    the status of the request before it: 501 for an unknown coding, however the bytes arrive."""
    first = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    later = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    assert type(first_error(parser_cls, first)) is NotImplementedByServer
    assert type(first_error(parser_cls, first + later)) is NotImplementedByServer
    with_length = first.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n", 1)
    assert type(first_error(parser_cls, with_length + later)) is BadRequest
