"""The fast path's scope builders (refserver/scopes.py compiled by Cython) against the same source
interpreted: for any request, the same RSGI scope, ASGI scope and WSGI environ.

Requests are generated over the shapes that take different branches: escaped and non-ASCII paths,
HTTP/1.0 and HTTP/2 versions, IPv6, UNIX-socket and missing peers, repeated and dropped headers,
absolute-form authorities and root paths.
"""

from __future__ import annotations

from memory_stream import MemoryStream

import pytest
from conftest import PURE_ONLY, require_fast_path
from hypothesis import given, settings
from hypothesis import strategies as st

from refserver.rsgi import Scope
from refserver.scopes import asgi_scope as connection_scope
from refserver.scopes import rsgi_scope as build_scope
from refserver.scopes import wsgi_environ as build_environ

if PURE_ONLY:
    pytest.skip("REFSERVER_TEST_PURE_ONLY=1: no fast path to compare", allow_module_level=True)
require_fast_path()
from refserver._speedups import asgi_scope, rsgi_scope, wsgi_environ  # noqa: E402

_PATH_BYTES = st.sampled_from([b"/", b"a", b"%", b"%2F", b"%C3%A9", b"%FF", b"\xc3\xa9", b"\xff",
                               b" ", b"~", b"/x", b"%zz", b"%2"])
_ADDRESSES = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["127.0.0.1", "::1", "fe80::1%eth0"]), st.integers(0, 65535)),
    st.tuples(st.sampled_from(["/tmp/app.sock", ""]), st.none()),
)
_NAMES = st.sampled_from([b"host", b"cookie", b"content-type", b"content-length", b"x_under",
                          b"x-forwarded-for", b"accept", b"x-\xe9"])
_VALUES = st.binary(max_size=12).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def streams(draw):
    return MemoryStream(
        raw_path=b"/" + b"".join(draw(st.lists(_PATH_BYTES, max_size=8))),
        query_string=draw(st.binary(max_size=10)),
        http_version=draw(st.sampled_from(["1.1", "1.0", "2"])),
        method=draw(st.sampled_from(["GET", "POST", "M-SEARCH"])),
        scheme=draw(st.sampled_from(["http", "https"])),
        client=draw(_ADDRESSES),
        server=draw(_ADDRESSES),
        headers=draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=8)),
        authority=draw(st.one_of(st.none(), st.sampled_from(["example.com", "[::1]:8080", ""]))),
        tls=draw(st.sampled_from([None, {"tls_version": 0x0304, "cipher_suite": None}])),
    )


_ROOTS = st.sampled_from(["", "/api", "/caf\u00e9", "/"])


def _rsgi_fields(scope: Scope):
    assert type(scope) is Scope
    return tuple(scope[:8]), scope.headers.items(), list(scope.headers), scope.authority


@settings(max_examples=600, deadline=None)
@given(streams(), st.sampled_from(["http", "ws"]))
def test_rsgi_scope_is_the_reference_one(stream, proto):
    assert _rsgi_fields(rsgi_scope(stream, proto)) == _rsgi_fields(build_scope(stream, proto))


@settings(max_examples=600, deadline=None)
@given(streams(), _ROOTS, st.sampled_from([("http", "http", "GET"), ("websocket", "ws", None)]))
def test_asgi_scope_is_the_reference_one(stream, root_path, shape):
    kind, scheme, method = shape
    state = {"counter": 1}
    fast = asgi_scope(kind, stream, root_path, state, scheme, method)
    reference = connection_scope(kind, stream, root_path, state, scheme, method)
    assert fast == reference
    assert list(fast) == list(reference)  # the same keys, in the same order
    assert fast["state"] is not state and fast["state"] == state


@settings(max_examples=600, deadline=None)
@given(streams(), _ROOTS)
def test_wsgi_environ_is_the_reference_one(stream, root_path):
    root = root_path.rstrip("/").encode("utf-8").decode("latin-1")
    base = {"SCRIPT_NAME": root, "wsgi.version": (1, 0)}
    wsgi_input = object()
    fast = wsgi_environ(stream, base, root, wsgi_input)
    reference = build_environ(stream, base, root, wsgi_input)
    assert fast == reference
    assert fast["wsgi.input"] is wsgi_input and "REQUEST_METHOD" not in base
