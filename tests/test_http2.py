"""HTTP/2 end to end: every interface over real sockets on 127.0.0.1, in cleartext (prior
knowledge) and over TLS (ALPN), with httpx, curl, h2load and a frame-level h2 client.

The sans-IO core has its own unit tests; these check that the glue, the connection factory and
the gateways give applications and clients what spec/http2.md says, on both paths.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import h2.errors
import httpx
import pytest
from h2_apps import APPS, State
from h2_helpers import H2Client, certs, h2_serve, httpx_client, tls_mode  # noqa: F401
from support import read_until_closed

pytestmark = pytest.mark.timeout(60)

INTERFACES = ["asgi", "rsgi", "wsgi"]


@pytest.fixture(params=INTERFACES)
def interface(request):
    return request.param


def served(h2_serve, interface, tls=False, **options):
    state = State()
    ctx = h2_serve(APPS[interface](state), tls=tls, interface=interface, **options)
    return state, ctx


# ---------------------------------------------------------------------------- interfaces


def test_request_facts_bodies_and_bodiless_responses(h2_serve, interface, tls_mode):
    tls = tls_mode == "tls"
    state, ctx = served(h2_serve, interface, tls)
    with ctx as srv, httpx_client(srv) as client:
        response = client.get(srv.url + "/scope?a=1")
        assert response.http_version == "HTTP/2"
        facts = response.json()
        authority = f"127.0.0.1:{srv.port}"
        scheme = "https" if tls else "http"
        assert facts["method"] == "GET" and facts["path"] == "/scope"
        assert facts["query_string"] == "a=1"
        assert facts["scheme"] == scheme
        if interface == "asgi":
            assert facts["http_version"] == "2"
            assert facts["host"] == [authority]
        elif interface == "rsgi":
            assert facts["http_version"] == "2"
            assert facts["authority"] == authority
            assert facts["host"] == [authority]
        else:
            assert facts["http_version"] == "HTTP/2"
            assert facts["host"] == authority
            assert facts["https"] == ("on" if tls else None)

        # A body of several MiB, larger than every initial window, streamed in and echoed.
        body = os.urandom(3 * 1024 * 1024 + 17)

        def upload():
            for i in range(0, len(body), 100_000):
                yield body[i : i + 100_000]

        response = client.post(srv.url + "/echo", content=upload())
        assert response.status_code == 200
        assert response.content == body

        response = client.get(srv.url + "/stream?40")
        assert response.content == b"".join(b"%03d" % i + b"x" * 997 for i in range(40))

        response = client.head(srv.url + "/big?5000")
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-length"] == "5000"

        for status in (204, 304):
            response = client.get(srv.url + f"/{status}")
            assert response.status_code == status and response.content == b""
            assert "content-length" not in response.headers or status == 304

        response = client.get(srv.url + "/keepalive")
        assert response.status_code == 200 and response.text == "ok"
        assert response.headers["x-kept"] == "yes"
        assert "connection" not in response.headers  # HTTP/2 forbids it: stripped, not sent


def test_an_application_error_is_500_on_its_stream_only(h2_serve, interface):
    state, ctx = served(h2_serve, interface)
    with ctx as srv, H2Client(srv) as client:
        ok_before = client.request("/stream?3")
        failing = client.request("/error")
        ok_after = client.request("/echo", "POST", b"after the failure")
        assert client.response(failing).status == 500
        first, last = client.response(ok_before), client.response(ok_after)
        assert first.status == 200 and len(first.data) == 3000
        assert last.status == 200 and bytes(last.data) == b"after the failure"
        assert client.goaway is None and not client.closed
        # the connection goes on after the failure
        assert client.response(client.request("/204")).status == 204
