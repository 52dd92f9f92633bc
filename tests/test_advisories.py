"""Published request-smuggling and resource advisories of other HTTP/1.1 servers and parsers, as
attacks on refserver over real sockets, on every path and loop.

Each test sends the advisory's kind of input with a second request hidden behind it, and checks
that refserver refuses the first with the status its spec names, closes the connection, and never
hands the hidden request to the application.
"""

from __future__ import annotations

import pytest
from h1_helpers import read_body, respond
from support import read_response, read_until_closed

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"


def recording_app():
    """An ASGI app that answers every request with its path and body, and the list of paths it
    was called with."""
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
        body, _ = await read_body(receive)
        await respond(send, body=scope["path"].encode() + b" " + body)

    return app, seen


def attack(server_factory, data: bytes) -> tuple[int, bytes, list]:
    """(status of the first response, everything received until the server closed, paths the
    application saw)."""
    app, seen = recording_app()
    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(data)
        raw = read_until_closed(sock)
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
    return status, raw, seen


def served(server_factory, data: bytes) -> tuple[bytes, list]:
    """(the one response to ``data``, paths the application saw), for a request that is valid."""
    app, seen = recording_app()
    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        sock.sendall(data)
        raw = read_response(sock)
    return raw, seen


def assert_refused(result, status: int) -> None:
    got, raw, seen = result
    assert got == status, raw
    assert raw.count(b"HTTP/1.1 ") == 1, raw  # one response, then the connection closed
    assert b"connection: close" in raw.lower()
    assert "/smuggled" not in seen, seen


def chunked(chunks: bytes) -> bytes:
    return b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks


# ------------------------------------------------------------------------------ chunked framing


@pytest.mark.parametrize("terminator", [b"XX", b"\n\n", b"\r\r", b"\rX", b"\n"])
def test_h11_cve_2025_43859_chunk_data_must_end_with_crlf(server_factory, terminator):
    """h11 < 0.16 accepted any two bytes after chunk data, so the bytes a proxy takes for the
    next chunk line could hide a request (spec/http1.md H1-CHUNKED-4)."""
    data = chunked(b"5\r\nhello" + terminator + b"0\r\n\r\n" + SMUGGLED)
    assert_refused(attack(server_factory, data), 400)


@pytest.mark.parametrize(
    "line",
    [b"5;a\rb", b'5;a="\r"', b"5;a\x00", b"5 ", b"5;", b'5;a="b', b"5;a=b ", b"0x5", b"+5"],
    ids=["bare-cr", "bare-cr-quoted", "nul", "ws-no-ext", "no-name", "open-quote",
         "ws-after-ext", "0x", "sign"],
)
def test_chunk_line_leniency_is_refused(server_factory, line):
    """RFC 9112 7.1 chunk lines without leniency (H1-CHUNKED-2, H1-CHUNKED-3): a front proxy that
    ends the line at a bare CR, or skips what it cannot read, frames another body than ours."""
    data = chunked(line + b"\r\nhello\r\n0\r\n\r\n" + SMUGGLED)
    assert_refused(attack(server_factory, data), 400)


def test_chunk_extension_bws_is_accepted(server_factory):
    """RFC 9110 5.6.3: a recipient MUST accept BWS, so whitespace before ';' is not an error."""
    raw, seen = served(server_factory, chunked(b"5 \t; a = b\r\nhello\r\n0\r\n\r\n"))
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"/upload hello"), raw


def test_node_cve_2024_22019_chunk_extensions_are_a_bounded_budget(server_factory):
    """Node.js CVE-2024-22019: a server that reads chunk extensions without a bound reads without
    end for a one-byte body. refserver answers 413 once 16 KiB of extensions are spent, without
    waiting for the line (or the body) to end (H1-CHUNKED-7)."""
    app, seen = recording_app()
    with server_factory(app, lifespan="off") as srv, srv.connect() as sock:
        # A line that never ends: past the budget, then nothing more. A server that waits for
        # the line's CRLF (or buffers up to some other limit) never answers.
        sock.sendall(chunked(b"1;" + b"e" * (16384 + 1024)))
        raw = read_until_closed(sock, timeout=5)
    assert raw.startswith(b"HTTP/1.1 413 "), raw
    assert seen in ([], ["/upload"])  # the application never got a byte of body


def test_node_cve_2024_22019_budget_spans_the_whole_message(server_factory):
    extension = b";" + b"e" * 9000
    data = chunked(b"1" + extension + b"\r\nx\r\n1" + extension + b"\r\ny\r\n0\r\n\r\n" + SMUGGLED)
    assert_refused(attack(server_factory, data), 413)


# -------------------------------------------------------------------------- Transfer-Encoding

TE_CL = b"POST /upload HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Length: %d\r\n\r\n"
# A chunked body that is empty, followed by a request; read by Content-Length it is all body.
CHUNKED_THEN_SMUGGLED = b"0\r\n\r\n" + SMUGGLED


@pytest.mark.parametrize(
    "fields, status",
    [
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity", 400),
        (b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked", 400),
        (b"Transfer-Encoding: chunked, identity", 400),
        (b"Transfer-Encoding: gzip, chunked", 400),
    ],
    ids=["chunked-then-identity", "identity-then-chunked", "list-ends-identity", "gzip-chunked"],
)
def test_gunicorn_cve_2024_1135_conflicting_transfer_encodings(server_factory, fields, status):
    """gunicorn CVE-2024-1135: several Transfer-Encoding fields (or a list) read differently by a
    proxy and the server. Whatever the list, with Content-Length too it is refused
    (H1-FRAMING-6, H1-FRAMING-7)."""
    data = TE_CL % (fields, len(CHUNKED_THEN_SMUGGLED)) + CHUNKED_THEN_SMUGGLED
    assert_refused(attack(server_factory, data), status)


@pytest.mark.parametrize(
    "fields, status",
    [
        (b"Transfer-Encoding: chunked, identity", 400),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400),
        (b"Transfer-Encoding: identity", 400),
        (b"Transfer-Encoding: gzip, chunked", 501),
    ],
    ids=["chunked-not-last", "chunked-twice", "identity", "gzip-chunked"],
)
def test_gunicorn_cve_2024_1135_transfer_codings_without_content_length(
    server_factory, fields, status
):
    """Without Content-Length, a list that does not end in one chunked cannot be framed (400);
    one that does but names another coding is 501 (H1-FRAMING-7)."""
    data = b"POST /upload HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n\r\n" + CHUNKED_THEN_SMUGGLED
    assert_refused(attack(server_factory, data), status)


@pytest.mark.parametrize(
    "value",
    [b"xchunked", b"chunked-false", b'"chunked"', b"chunked;q=1", b"\x0bchunked", b"chunk"],
)
def test_gunicorn_cve_2024_6827_invalid_transfer_encoding_never_falls_back_to_length(
    server_factory, value
):
    """gunicorn CVE-2024-6827: a Transfer-Encoding value it did not recognise made it frame the
    body by Content-Length, while a proxy used chunked. refserver never frames a request that has
    a Transfer-Encoding field by its Content-Length (H1-FRAMING-6)."""
    data = TE_CL % (b"Transfer-Encoding: " + value, len(CHUNKED_THEN_SMUGGLED))
    result = attack(server_factory, data + CHUNKED_THEN_SMUGGLED)
    assert result[0] in (400, 501), result[1]
    assert_refused(result, result[0])
    assert "/upload" not in result[2]


@pytest.mark.parametrize(
    "head",
    [
        b"Transfer-Encoding: chunked\r\nX: a\rContent-Length: 5",
        b"X: a\rTransfer-Encoding: chunked",
        b"Transfer-Encoding: chunked\r",
        b"Transfer-Encoding: \x00chunked",
    ],
    ids=["bare-cr-before-cl", "bare-cr-before-te", "bare-cr-ends-te", "nul-in-te"],
)
def test_llhttp_cve_2022_32213_transfer_encoding_is_validated(server_factory, head):
    """llhttp CVE-2022-32213: Transfer-Encoding fields that a bare CR or a NUL make one parser
    see and another not (H1-HEADER-2, H1-HEADER-4)."""
    data = b"POST /upload HTTP/1.1\r\nHost: t\r\n" + head + b"\r\n\r\n" + CHUNKED_THEN_SMUGGLED
    assert_refused(attack(server_factory, data), 400)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /upload HTTP/1.1\r\nHost: t\r\nX-A: 1\nContent-Length: %d\r\n\r\n",
        b"POST /upload HTTP/1.1\nHost: t\nContent-Length: %d\n\n",
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\n",
    ],
    ids=["lf-inside-a-field", "lf-everywhere", "lf-ends-head"],
)
def test_llhttp_cve_2022_32214_lines_end_with_crlf_only(server_factory, head):
    """llhttp CVE-2022-32214: a bare LF taken as a line end. Behind a proxy that keeps the LF in
    a field value, `X-A: 1<LF>Content-Length: N` is a Content-Length only the server sees, and
    the next request becomes its body (H1-HEADER-4)."""
    data = head % len(SMUGGLED) + SMUGGLED + SMUGGLED
    assert_refused(attack(server_factory, data), 400)


@pytest.mark.parametrize(
    "fields, status",
    [
        (b"Transfer-Encoding: chunked\r\n , identity", 400),
        (b"Transfer-Encoding:\r\n chunked\r\nContent-Length: %d" % len(CHUNKED_THEN_SMUGGLED), 400),
        (b"Transfer-Encoding: gzip\r\n\t, chunked", 501),
    ],
    ids=["fold-adds-identity", "fold-holds-chunked-with-cl", "fold-adds-chunked"],
)
def test_llhttp_cve_2022_32215_folded_transfer_encoding(server_factory, fields, status):
    """llhttp CVE-2022-32215: a Transfer-Encoding field continued on a second line (obs-fold).
    refserver unfolds before any framing decision, so the field means what its whole value says
    (H1-HEADER-3, H1-FRAMING-7)."""
    data = b"POST /upload HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n\r\n" + CHUNKED_THEN_SMUGGLED
    assert_refused(attack(server_factory, data), status)


def test_llhttp_cve_2022_32215_folded_chunked_alone_is_chunked(server_factory):
    """The same fold with nothing to conflict with is a plain chunked request on both paths."""
    raw, seen = served(
        server_factory,
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 200 ") and seen == ["/upload"], raw


@pytest.mark.parametrize("value", [b"a\x01b", b"\x1b[2J\x1b[H", b"a\x7f", b"a\x0bb"])
def test_control_characters_in_values_are_refused(server_factory, value):
    """RFC 9110 5.5 lets a recipient keep controls other than CR, LF and NUL only in a safe
    context; an escape sequence in a value is never one refserver can know (H1-HEADER-2)."""
    data = b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + value + b"\r\n\r\n" + SMUGGLED
    assert_refused(attack(server_factory, data), 400)


def test_raw_socket_helper_sees_a_served_request(server_factory):
    """The attack helper itself: a valid request is served and its path recorded, so the
    refusals above are refusals and not a helper that never reaches the application."""
    status, raw, seen = attack(
        server_factory, b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and seen == ["/ok"], raw
