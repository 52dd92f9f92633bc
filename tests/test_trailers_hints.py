"""ASGI http.response.trailers and http.response.early_hint, over HTTP/1.1 and HTTP/2.

Trailers reach a client that sent ``TE: trailers``: in the last chunk of an HTTP/1.1 response, in
a HEADERS frame over HTTP/2; a client that did not ask gets the response without them. A 103
precedes the response on both protocols (not to an HTTP/1.0 client). Checked on the wire: raw
bytes for HTTP/1.1, the h2 library's client for HTTP/2 in cleartext and over TLS.
"""

from __future__ import annotations

import h2.events
import pytest
from memory_stream import MemoryStream
from support import read_until_closed

from refserver.wire.events import ResponseError

pytest_plugins = ("h2_helpers",)


async def app(scope, receive, send):
    assert "http.response.trailers" in scope["extensions"]
    assert "http.response.early_hint" in scope["extensions"]
    await receive()
    if scope["path"] == "/hint":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hinted"})
        return
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"trailer", b"x-checksum")]})
    await send({"type": "http.response.body", "body": b"part1", "more_body": True})
    await send({"type": "http.response.body", "body": b"part2"})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")],
                "more_trailers": True})
    await send({"type": "http.response.trailers", "headers": [(b"x-count", b"2")]})


def h1(srv, target: str, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    with srv.connect() as sock:
        sock.sendall(b"GET %s HTTP/%s\r\nHost: x\r\nConnection: close\r\n%s\r\n"
                     % (target.encode(), version, extra))
        return read_until_closed(sock)


def test_h1_trailers_in_the_last_chunk_when_asked(server_factory):
    with server_factory(app, lifespan="off") as srv:
        asked = h1(srv, "/", b"TE: trailers\r\n")
        plain = h1(srv, "/")
    assert b"transfer-encoding: chunked" in asked.lower()
    assert asked.endswith(b"5\r\npart1\r\n5\r\npart2\r\n0\r\nx-checksum: abc\r\nx-count: 2\r\n\r\n")
    assert plain.endswith(b"5\r\npart1\r\n5\r\npart2\r\n0\r\n\r\n")


def test_h1_early_hint_precedes_the_response_and_skips_http10(server_factory):
    with server_factory(app, lifespan="off") as srv:
        hinted = h1(srv, "/hint")
        old = h1(srv, "/hint", version=b"1.0")
    assert hinted.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
                             b"HTTP/1.1 200 OK\r\n")
    assert hinted.endswith(b"hinted")
    assert old.startswith(b"HTTP/1.1 200 OK\r\n")


def h2_exchange(srv, path: str, te: bool) -> list:
    """The h2 events of one GET (prior knowledge in cleartext, ALPN over TLS), until it ends."""
    from h2_helpers import H2Client  # the plugin module, imported once pytest has loaded it

    client = H2Client(srv)
    try:
        sid = client.headers(path, extra=[("te", "trailers")] if te else ())
        client.response(sid)
        return [e for e in client.events if getattr(e, "stream_id", None) == sid]
    finally:
        client.sock.close()


def _of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_h2_trailers_in_a_headers_frame_when_asked(h2_serve, tls_mode):
    with h2_serve(app, tls=tls_mode == "tls", lifespan="off") as srv:
        asked = h2_exchange(srv, "/", te=True)
        plain = h2_exchange(srv, "/", te=False)
    assert b"".join(e.data for e in _of(asked, h2.events.DataReceived)) == b"part1part2"
    (trailers,) = _of(asked, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-checksum", b"abc"), (b"x-count", b"2")]
    assert not _of(plain, h2.events.TrailersReceived)
    assert b"".join(e.data for e in _of(plain, h2.events.DataReceived)) == b"part1part2"


def test_h2_early_hint_precedes_the_response(h2_serve, tls_mode):
    with h2_serve(app, tls=tls_mode == "tls", lifespan="off") as srv:
        events = h2_exchange(srv, "/hint", te=False)
    (hint,) = _of(events, h2.events.InformationalResponseReceived)
    assert (b":status", b"103") in hint.headers
    assert (b"link", b"</style.css>; rel=preload") in hint.headers
    (response,) = _of(events, h2.events.ResponseReceived)
    assert events.index(hint) < events.index(response)


@pytest.mark.parametrize("fields", [
    [(b"content-length", b"3")], [(b"host", b"x")], [(b"x-bad", b"a\r\nb")],
])
def test_a_field_that_cannot_be_a_trailer_is_refused(fields):
    import asyncio

    stream = MemoryStream()
    stream.start_response(200, [], b"", False)
    with pytest.raises(ResponseError):
        asyncio.run(stream.send_trailers(fields))


@pytest.mark.parametrize("status", [100, 101, 200, "103"])
def test_only_102_to_199_are_informational(status):
    with pytest.raises(ResponseError):
        MemoryStream().send_informational(status, [])
