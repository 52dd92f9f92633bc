"""Sans-IO tests of the chunked body reader (RFC 9112 7.1): bytes in -> exact body or typed error.

Each case runs on the reference module and on its compiled copy (the fast path's), fed whole and
split at every byte, so where the bytes are cut never changes the outcome.
"""

from __future__ import annotations

import pytest
from conftest import IMPLS, require_fast_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refserver.wire import chunked as reference
from refserver.wire.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    BadRequest,
    Body,
    ContentTooLarge,
    HeadersTooLarge,
    HTTPError,
)
from refserver.wire.fields import parse_field_lines


@pytest.fixture(params=IMPLS)
def reader_cls(request):
    if request.param == "pure":
        return reference.ChunkedReader
    require_fast_path()
    from refserver.wire import _compiled_chunked

    return _compiled_chunked.ChunkedReader


def read(reader_cls, pieces, eof=False, trailer_limit=65536):
    """(body, outcome, leftover): outcome is "end", "more" (NEED_DATA) or the error raised."""
    reader = reader_cls(b"", trailer_limit)
    body = b""
    try:
        for i, piece in enumerate(pieces):
            reader.feed(piece)
            while True:
                event = reader.next_event()
                if type(event) is Body:
                    body += event.data
                    continue
                if event is END_OF_MESSAGE:
                    for rest in pieces[i + 1 :]:  # the next request's bytes
                        reader.feed(rest)
                    return body, "end", reader.leftover()
                assert event is NEED_DATA
                break
        if eof:
            reader.feed_eof()
            event = reader.next_event()
            assert event is END_OF_MESSAGE, event
            return body, "end", reader.leftover()
    except HTTPError as exc:
        return body, exc, None
    return body, "more", reader.leftover()


def splits(data: bytes):
    """The whole input, then every split of it in two, then one byte at a time."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


VALID = {
    "one chunk": (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    "empty body": (b"0\r\n\r\n", b""),
    "hex in both cases, leading zeros": (b"a\r\n0123456789\r\n00B\r\nhello world\r\n0\r\n\r\n",
                                         b"0123456789hello world"),
    "16 hex digits": (b"000000000000000F\r\n" + b"x" * 15 + b"\r\n0\r\n\r\n", b"x" * 15),
    "data that looks like framing": (b"7\r\n0\r\n\r\nGE\r\n0\r\n\r\n", b"0\r\n\r\nGE"),
    "extension name only": (b"3;a\r\nabc\r\n0\r\n\r\n", b"abc"),
    "extension token value": (b"3;a=b;c=d-e\r\nabc\r\n0;end\r\n\r\n", b"abc"),
    "extension quoted value": (b'3;a="x;y \\" z\tw"\r\nabc\r\n0\r\n\r\n', b"abc"),
    "extension quoted value with obs-text": (b'3;a="\xe9"\r\nabc\r\n0\r\n\r\n', b"abc"),
    "BWS around ; and = (RFC 9112 7.1.1)": (b"3 \t; a \t= b ;c\r\nabc\r\n0\r\n\r\n", b"abc"),
    "trailers discarded": (b"1\r\nx\r\n0\r\nA: 1\r\nB:\t2 \r\n\r\n", b"x"),
    "folded trailer": (b"0\r\nA: 1\r\n  2\r\n\r\n", b""),
    "framing fields in trailers have no meaning": (
        b"0\r\nContent-Length: x\r\nTransfer-Encoding: gzip\r\nHost: a\r\nHost: b\r\n\r\n", b""),
}


@pytest.mark.parametrize("data, body", VALID.values(), ids=list(VALID))
def test_valid_framing_is_decoded_however_split(reader_cls, data, body):
    for pieces in splits(data + b"NEXT"):
        assert read(reader_cls, pieces) == (body, "end", b"NEXT"), pieces


INVALID = {
    # RFC 9112 7.1: chunk-size = 1*HEXDIG
    "empty size": (b"\r\n", BadRequest),
    "not hex": (b"g\r\n", BadRequest),
    "minus sign": (b"-1\r\nx\r\n", BadRequest),
    "plus sign": (b"+1\r\nx\r\n", BadRequest),
    "0x prefix": (b"0x5\r\nhello\r\n", BadRequest),
    "underscore": (b"1_0\r\n", BadRequest),
    "leading space": (b" 5\r\nhello\r\n", BadRequest),
    "17 hex digits": (b"0" * 16 + b"1\r\nx\r\n", BadRequest),
    # chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
    "whitespace with no extension after it": (b"5 \r\nhello\r\n", BadRequest),
    "tab with no extension after it": (b"5\t\r\nhello\r\n", BadRequest),
    "whitespace after an extension": (b"5;a=b \r\nhello\r\n", BadRequest),
    "; without a name": (b"5;\r\nhello\r\n", BadRequest),
    "; without a name before another": (b"5;;a\r\nhello\r\n", BadRequest),
    "= without a value": (b"5;a=\r\nhello\r\n", BadRequest),
    "unbalanced quote": (b'5;a="b\r\nhello\r\n', BadRequest),
    "quote inside a token value": (b'5;a=b"c"\r\nhello\r\n', BadRequest),
    "text after the size": (b"5x\r\nhello\r\n", BadRequest),
    "non-token name": (b"5;a@b\r\nhello\r\n", BadRequest),
    "bare CR in an extension (smuggling)": (b"5;a\rb\r\nhello\r\n", BadRequest),
    "bare CR in a quoted extension": (b'5;a="\r"\r\nhello\r\n', BadRequest),
    "bare LF in an extension": (b"5;a\nb\r\nhello\r\n", BadRequest),
    "size line ended by bare LF": (b"5\nhello\r\n0\r\n\r\n", BadRequest),
    "size line ended by bare CR": (b"5\rhello\r\n0\r\n\r\n", BadRequest),
    "NUL in an extension": (b"5;a\x00\r\nhello\r\n", BadRequest),
    "control in an extension": (b"5;a\x01\r\nhello\r\n", BadRequest),
    "DEL in a quoted extension": (b'5;a="\x7f"\r\nhello\r\n', BadRequest),
    # h11 CVE-2025-43859: exactly CRLF after the data
    "no CRLF after the data": (b"3\r\nabcXY0\r\n\r\n", BadRequest),
    "bare LF after the data": (b"3\r\nabc\n0\r\n\r\n", BadRequest),
    "bare CR after the data": (b"3\r\nabc\r0\r\n\r\n", BadRequest),
    "more data than the size": (b"3\r\nabcd\r\n0\r\n\r\n", BadRequest),
    # the trailer section uses the head's field grammar
    "trailer without a colon": (b"0\r\nBad Trailer\r\n\r\n", BadRequest),
    "trailer with space before the colon": (b"0\r\nA : 1\r\n\r\n", BadRequest),
    "trailer with a control": (b"0\r\nA: \x1b[2J\r\n\r\n", BadRequest),
    "trailer with a bare CR": (b"0\r\nA: 1\rB: 2\r\n\r\n", BadRequest),
    "trailer section starting with a bare CR": (b"0\r\n\rX\r\n\r\n", BadRequest),
    "fold before any trailer": (b"0\r\n A: 1\r\n\r\n", BadRequest),
    "trailer lines ended by bare LF": (b"0\r\nA: 1\nB: 2\n\n", BadRequest),
    "trailer line ended by bare LF": (b"0\r\nA: 1\n\r\n", BadRequest),
    "trailer section of a bare LF": (b"0\r\n\n", BadRequest),
    "a request line where the trailers end": (b"0\r\nGET / HTTP/1.1\r\n\r\n", BadRequest),
}


@pytest.mark.parametrize("data, error", INVALID.values(), ids=list(INVALID))
def test_invalid_framing_is_refused_however_split(reader_cls, data, error):
    for pieces in splits(data):
        _, outcome, _ = read(reader_cls, pieces)
        assert type(outcome) is error, (pieces, outcome)
        assert outcome.status == 400


@pytest.mark.parametrize("line", [b"5;a\rb", b"5;a\nb", b"5 x" + b"y" * 100])
def test_a_line_that_cannot_become_valid_is_refused_before_its_end(reader_cls, line):
    """A bare CR or LF is refused as soon as it arrives; the reader does not wait for a CRLF that
    may never come."""
    _, outcome, _ = read(reader_cls, [line])  # no CRLF yet
    if b"\r" in line or b"\n" in line:
        assert type(outcome) is BadRequest
    else:
        assert outcome == "more"  # still a possible line... until its CRLF says otherwise
        _, outcome, _ = read(reader_cls, [line + b"\r\n"])
        assert type(outcome) is BadRequest


def test_extension_bytes_are_a_budget_per_message(reader_cls):
    """Node.js CVE-2024-22019: extensions may not make a small body cost unbounded reading.
    The budget counts every chunk's extensions; exceeding it is 413 at once, mid-line."""
    limit = reference.EXTENSIONS_LIMIT
    within = b"1;" + b"e" * (limit // 2 - 1) + b"\r\nx\r\n"
    assert read(reader_cls, [within * 2 + b"0\r\n\r\n"])[:2] == (b"xx", "end")
    body, outcome, _ = read(reader_cls, [within * 2 + b"1;e\r\nx\r\n0\r\n\r\n"])
    assert type(outcome) is ContentTooLarge and outcome.status == 413
    # A single line that never ends is refused once it passes the budget, never buffered further.
    pieces = [b"1;"] + [b"e" * 1024] * (limit // 1024 + 1)
    _, outcome, _ = read(reader_cls, pieces)
    assert type(outcome) is ContentTooLarge


def test_size_digits_are_bounded_before_the_line_ends(reader_cls):
    _, outcome, _ = read(reader_cls, [b"0" * 17])
    assert type(outcome) is BadRequest


def test_trailer_section_is_bounded_by_its_limit(reader_cls):
    _, outcome, _ = read(reader_cls, [b"0\r\nA: " + b"x" * 200], trailer_limit=100)
    assert type(outcome) is HeadersTooLarge and outcome.status == 431
    _, outcome, _ = read(reader_cls, [b"0\r\nA: " + b"x" * 200 + b"\r\n\r\n"], trailer_limit=100)
    assert type(outcome) is HeadersTooLarge


@pytest.mark.parametrize(
    "data", [b"", b"5\r\nhe", b"5\r\nhello", b"5\r\nhello\r", b"0\r\n", b"0\r\nA: 1\r\n", b"5;a"]
)
def test_end_of_input_before_the_last_chunk_is_an_error(reader_cls, data):
    _, outcome, _ = read(reader_cls, [data], eof=True)
    assert type(outcome) is BadRequest


def test_large_chunk_streams_as_it_arrives(reader_cls):
    reader = reader_cls(b"", 65536)
    reader.feed(b"100000\r\n" + b"a" * 1000)
    assert reader.next_event() == Body(b"a" * 1000)
    assert reader.next_event() is NEED_DATA
    reader.feed(b"b" * 10)
    assert reader.next_event() == Body(b"b" * 10)


def test_chunk_size_reports_extension_bytes():
    assert reference.chunk_size(b"1f") == (31, 0)
    assert reference.chunk_size(b"1f ; a=b") == (31, 6)
    with pytest.raises(BadRequest):
        reference.chunk_size(b"1f ")


# ------------------------------------------------------------- the trailer grammar is the head's

_piece = st.sampled_from(
    [b"a", b"X-T", b" ", b"\t", b"\r", b"\n", b"\x01", b"\x7f", b"\xe9", b"v", b'"', b";",
     b"=", b"@", b"\x00", b":"]
)
_line = st.tuples(
    st.sampled_from([b"", b" ", b"\t", b"a", b"X-Trailer", b"t t", b"@"]),  # name, or a fold
    st.sampled_from([b":", b": ", b":\t", b" :", b""]),
    st.lists(_piece, max_size=6).map(b"".join),
    st.sampled_from([b"", b" ", b"\t "]),
    st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r"]),
).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, min_size=1, max_size=5).map(b"".join))
def test_trailer_fields_follow_the_head_grammar(block):
    """The trailer section is read with the head's field grammar (spec/http1.md H1-CHUNKED-5):
    whatever the bytes, ``parse_field_lines`` accepts exactly the field blocks that each path's
    head parser accepts, with the same fields."""
    block += b"\r\n\r\n"
    try:
        trailers = ("ok", parse_field_lines(block))
    except BadRequest:
        trailers = ("error",)
    for impl in IMPLS:
        if impl == "fast":
            require_fast_path()
            from refserver._speedups import FastParser as parser_cls
        else:
            from refserver.wire.h11_parser import H11Parser as parser_cls
        parser = parser_cls(65536)
        parser.feed(b"GET / HTTP/1.0\r\n" + block)
        try:
            event = parser.next_event()
        except HTTPError as exc:
            # A field the head parser also reads for framing (none of these names is one) or a
            # field line it refuses: either way not a valid block.
            assert trailers == ("error",), (impl, block, exc)
            continue
        if event is NEED_DATA:  # the block ended the head early: its empty line came first
            continue
        assert trailers == ("ok", event.headers), (impl, block)
