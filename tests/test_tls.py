"""TLS: the ``--ssl-*`` options, the server context, HTTPS and WSS on real sockets, client
certificates, the handshake timeout, ALPN, and the ASGI ``tls`` extension's facts.

Server tests run on both paths and both loops (``server_factory``); the context and the
extension's fields are also checked on an in-memory handshake, without a socket.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import time

import httpx
import pytest
from cryptography import x509
from support import free_port, start_cli, wait_for_port
from tls_helpers import (
    PASSWORD,
    FakeTransport,
    client_context,
    make_tls_files,
    memory_handshake,
)

from refserver.config import Config, ConfigError
from refserver.tls import asgi_tls_extension, make_context, negotiated_protocol

pytestmark = pytest.mark.timeout(60)

#: A few cipher suites' numbers from the IANA TLS registry, to check the mapping against.
IANA = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_tls_files(str(tmp_path_factory.mktemp("tls")))


def config(files=None, **options) -> Config:
    if files is not None:
        options = files.options(**options)
    return Config("x:y", **options)


# ------------------------------------------------------------------ applications


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({
            "scheme": scope["scheme"],
            "tls": scope["extensions"].get("tls"),
        })})
        await send({"type": "websocket.close"})
        return
    body = json.dumps({
        "scheme": scope["scheme"],
        "tls": scope["extensions"].get("tls"),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def rsgi_app(scope, protocol):
    if scope.proto == "ws":
        transport = await protocol.accept()
        await transport.send_str(json.dumps({"scheme": scope.scheme}))
        return
    protocol.response_str(200, [("content-type", "application/json")],
                          json.dumps({"scheme": scope.scheme}))


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"scheme": environ["wsgi.url_scheme"],
                        "HTTPS": environ.get("HTTPS")}).encode()]


APPS = {"asgi": asgi_app, "rsgi": rsgi_app, "wsgi": wsgi_app}


def https(srv, files, path="/", cert=None, http2=False) -> httpx.Response:
    context = client_context(files, cert=cert)
    with httpx.Client(verify=context, trust_env=False, timeout=5, http2=http2) as client:
        return client.get(f"https://{srv.host}:{srv.port}{path}")


def outcome(srv, context, server_hostname="localhost") -> str:
    """The status line of a GET over a raw TLS socket, or ``refused: ...`` when the handshake
    (or, under TLS 1.3, the first read after it, where a client certificate is judged) fails."""
    raw = socket.create_connection((srv.host, srv.port), timeout=5)
    try:
        with context.wrap_socket(raw, server_hostname=server_hostname) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except (ssl.SSLError, ConnectionError) as exc:
        return f"refused: {exc}"
    finally:
        raw.close()
    return data.split(b"\r\n", 1)[0].decode() if data else "refused: closed without a response"


@pytest.fixture
def refusals(server_logs):
    """The reasons of the handshakes the server refused (its debug lines)."""
    logging.getLogger("refserver").setLevel(logging.DEBUG)  # restored by server_logs

    def reasons():
        return [r.getMessage() for r in server_logs
                if r.getMessage().startswith("a connection failed before it started")]

    return reasons


def live_connections(srv, function):
    """``function(transport)`` for every connection the server holds, run on its loop."""
    return srv.call(lambda: [function(c.transport) for c in srv.server.state.connections])


# ------------------------------------------------------------------ options and the context


def test_no_certfile_means_no_context():
    assert make_context(config()) is None


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ssl_keyfile": "k.pem"}, "--ssl-keyfile given without --ssl-certfile"),
        ({"ssl_keyfile_password": "pw"}, "--ssl-keyfile-password given without --ssl-certfile"),
        ({"ssl_ca_certs": "ca.pem"}, "--ssl-ca-certs given without --ssl-certfile"),
        ({"ssl_cert_reqs": "required"}, "--ssl-cert-reqs given without --ssl-certfile"),
        ({"ssl_crl": "crl.pem"}, "--ssl-crl given without --ssl-certfile"),
        ({"ssl_certfile": "c.pem", "ssl_cert_reqs": "optional"},
         "--ssl-cert-reqs optional needs --ssl-ca-certs"),
        ({"ssl_certfile": "c.pem", "ssl_cert_reqs": "required"},
         "--ssl-cert-reqs required needs --ssl-ca-certs"),
        ({"ssl_certfile": "c.pem", "ssl_ca_certs": "ca.pem", "ssl_crl": "crl.pem"},
         "--ssl-crl needs --ssl-cert-reqs optional or required"),
        ({"ssl_certfile": "c.pem", "ssl_protocol_min": "1.1"}, "--ssl-protocol-min must be one of"),
        ({"ssl_certfile": "c.pem", "ssl_handshake_timeout": 0}, "--ssl-handshake-timeout must be"),
        ({"http": "3"}, "--http must be one of auto, 1, 2"),
        ({"http2_max_frame_size": 16383}, "--http2-max-frame-size must be at least 16384"),
        ({"http2_max_frame_size": 16777216}, "--http2-max-frame-size must be at most 16777215"),
        ({"http2_max_concurrent_streams": 0}, "--http2-max-concurrent-streams must be at least 1"),
    ],
)
def test_options_that_would_be_ignored_or_are_out_of_range_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        Config("x:y", **options)


def test_option_defaults_and_the_password_is_never_shown():
    defaults = Config("x:y")
    assert (defaults.ssl_cert_reqs, defaults.ssl_protocol_min, defaults.ssl_handshake_timeout,
            defaults.ssl_ciphers) == ("none", "1.2", 10.0, None)
    assert (defaults.http, defaults.http2_max_concurrent_streams,
            defaults.http2_initial_stream_window, defaults.http2_initial_connection_window,
            defaults.http2_max_frame_size, defaults.http2_max_header_list_size,
            defaults.http2_keep_alive_interval, defaults.http2_keep_alive_timeout) == (
        "auto", 100, 65535, 1 << 20, 16384, 65536, 0.0, 20.0)
    shown = repr(Config("x:y", ssl_certfile="c.pem", ssl_keyfile_password="hunter2"))
    assert "hunter2" not in shown and "ssl_keyfile_password='***'" in shown


def test_a_key_in_the_certificate_file_and_an_encrypted_key_with_its_password(files):
    assert make_context(config(ssl_certfile=files.both)) is not None
    context = make_context(config(ssl_certfile=files.certfile,
                                  ssl_keyfile=files.encrypted_keyfile,
                                  ssl_keyfile_password=PASSWORD))
    server, _ = memory_handshake(context, client_context(files))
    assert server.version() in ("TLSv1.2", "TLSv1.3")


def _bad_file_cases(files):
    return {
        "missing certfile": (
            dict(ssl_certfile=files.certfile + ".missing"),
            f"--ssl-certfile {files.certfile}.missing: cannot read it (No such file or directory)"),
        "garbage certfile": (
            dict(ssl_certfile=files.garbage, ssl_keyfile=files.keyfile),
            f"--ssl-certfile {files.garbage}: no PEM certificate"),
        "certificate without key": (
            dict(ssl_certfile=files.certfile),
            f"--ssl-certfile {files.certfile}: no PEM private key"),
        "garbage keyfile": (
            dict(ssl_certfile=files.certfile, ssl_keyfile=files.garbage),
            f"--ssl-keyfile {files.garbage}: no PEM private key"),
        "encrypted key, no password": (
            dict(ssl_certfile=files.certfile, ssl_keyfile=files.encrypted_keyfile),
            f"--ssl-keyfile {files.encrypted_keyfile}: the private key is encrypted and "
            "--ssl-keyfile-password is not given"),
        "wrong password": (
            dict(ssl_certfile=files.certfile, ssl_keyfile=files.encrypted_keyfile,
                 ssl_keyfile_password="wrong"),
            f"--ssl-keyfile-password: wrong password for the private key in "
            f"{files.encrypted_keyfile}"),
        "key of another certificate": (
            dict(ssl_certfile=files.certfile, ssl_keyfile=files.other_keyfile),
            f"--ssl-keyfile {files.other_keyfile}: the private key does not match the "
            f"certificate of --ssl-certfile {files.certfile}"),
        "bad cipher string": (
            dict(files.options(), ssl_ciphers="NO-SUCH-CIPHER"),
            "--ssl-ciphers 'NO-SUCH-CIPHER': no cipher suite matches"),
        "garbage CA file": (
            dict(files.options(), ssl_ca_certs=files.garbage),
            f"--ssl-ca-certs {files.garbage}: cannot load it (no certificate or crl found)"),
        "a CRL file without a CRL": (
            dict(files.options(), ssl_ca_certs=files.ca_certs, ssl_cert_reqs="required",
                 ssl_crl=files.ca_certs),
            f"--ssl-crl {files.ca_certs}: no PEM certificate revocation list"),
        "a missing CRL file": (
            dict(files.options(), ssl_ca_certs=files.ca_certs, ssl_cert_reqs="required",
                 ssl_crl=files.crl + ".missing"),
            f"--ssl-crl {files.crl}.missing: cannot read it"),
    }


BAD_FILE_CASES = [
    "missing certfile", "garbage certfile", "certificate without key", "garbage keyfile",
    "encrypted key, no password", "wrong password", "key of another certificate",
    "bad cipher string", "garbage CA file", "a CRL file without a CRL", "a missing CRL file",
]


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_every_unusable_file_is_one_config_error_line_naming_option_and_file(files, case):
    options, message = _bad_file_cases(files)[case]
    with pytest.raises(ConfigError) as info:
        make_context(Config("x:y", **options))
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text and "_ssl.c" not in text
    # No OpenSSL exception chained to it (the CLI prints the line, never a traceback).
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_alpn_offers_what_http_chooses(files):
    both = ["h2", "http/1.1"]

    def chosen(http, offer=both):
        context = make_context(config(files, http=http))
        server, client = memory_handshake(context, client_context(files, alpn=offer))
        assert negotiated_protocol(FakeTransport(server)) == client.selected_alpn_protocol()
        return client.selected_alpn_protocol()

    assert chosen("auto") == "h2"
    assert chosen("auto", offer=["http/1.1", "h2"]) == "h2"  # the server's preference
    assert chosen("auto", offer=["http/1.1"]) == "http/1.1"
    assert chosen("1") == "http/1.1"
    assert chosen("2") == "h2"
    assert chosen("1", offer=["h2"]) is None  # no common protocol: no ALPN at all
    assert negotiated_protocol(FakeTransport(None)) is None


def test_protocol_minimum_and_ciphers(files):
    default = make_context(config(files))
    assert default.minimum_version == ssl.TLSVersion.TLSv1_2
    assert default.options & ssl.OP_NO_COMPRESSION
    assert make_context(config(files, ssl_protocol_min="1.3")).minimum_version == (
        ssl.TLSVersion.TLSv1_3)
    # The default set is the ssl module's: the same suites a fresh server context has.
    fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert [c["name"] for c in default.get_ciphers()] == [c["name"] for c in fresh.get_ciphers()]
    narrow = make_context(config(files, ssl_ciphers="ECDHE+AESGCM"))
    tls12 = {c["name"] for c in narrow.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all("GCM" in name and name.startswith("ECDHE") for name in tls12)


# ------------------------------------------------------------------ the ASGI tls extension


def _pem(der_or_pem) -> str:
    """A certificate as the ssl module writes PEM, whatever its source's line layout."""
    if isinstance(der_or_pem, str):
        der_or_pem = ssl.PEM_cert_to_DER_cert(der_or_pem)
    return ssl.DER_cert_to_PEM_cert(der_or_pem)


def _client_cert_options(files, reqs="required"):
    return dict(ssl_ca_certs=files.ca_certs, ssl_cert_reqs=reqs)


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_asgi_tls_extension_fields_with_a_client_certificate(files, version):
    context = make_context(config(files, **_client_cert_options(files)))
    client_ctx = client_context(files, cert=files.client)
    if version == "TLSv1.2":
        client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server, client = memory_handshake(context, client_ctx)
    tls = asgi_tls_extension(FakeTransport(server))
    leaf = files.client.cert_chain_pems[0].bytes().decode()
    with open(files.certfile) as fh:
        server_pem = fh.read()
    assert tls["server_cert"] == _pem(server_pem)
    assert tls["client_cert_chain"][0] == _pem(leaf)
    assert all(_pem(c) == c for c in tls["client_cert_chain"])
    assert tls["client_cert_name"] == x509.load_pem_x509_certificate(
        leaf.encode()).subject.rfc4514_string()
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}[version]
    name = client.cipher()[0]
    assert name in IANA, name  # the client's default choice is one of the table's suites
    assert tls["cipher_suite"] == IANA[name]
    assert set(tls) == {"server_cert", "client_cert_chain", "client_cert_name",
                        "client_cert_error", "tls_version", "cipher_suite"}


def test_asgi_tls_extension_without_a_client_certificate_and_in_cleartext(files):
    context = make_context(config(files, **_client_cert_options(files, "optional")))
    server, _ = memory_handshake(context, client_context(files))
    tls = asgi_tls_extension(FakeTransport(server))
    assert (tls["client_cert_chain"], tls["client_cert_name"], tls["client_cert_error"]) == (
        [], None, None)
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert asgi_tls_extension(FakeTransport(None)) is None


def test_client_cert_chain_is_what_the_client_sent_its_own_certificate_first(files):
    """Python 3.13+ gives the whole chain the client sent; before it only its own certificate."""
    intermediate = files.ca.create_child_ca()
    cert = intermediate.issue_cert("chained@example.org", common_name="chained")
    context = make_context(config(files, **_client_cert_options(files)))
    server, _ = memory_handshake(context, client_context(files, cert=cert))
    chain = asgi_tls_extension(FakeTransport(server))["client_cert_chain"]
    sent = [_pem(blob.bytes().decode()) for blob in cert.cert_chain_pems]
    assert len(sent) == 2  # the client's certificate, then the intermediate CA's
    if hasattr(ssl.SSLObject, "get_unverified_chain"):
        assert chain == sent
    else:
        assert chain == sent[:1]


@pytest.mark.parametrize("common_name", [
    ' lead space, comma+plus "quote" back\\slash <angle> semi; trail ',
    "#hash first",
    "caf\u00e9 \u2603",
])
def test_client_cert_name_is_rfc4514_escaped_as_cryptography_writes_it(files, common_name):
    cert = files.ca.issue_cert("odd@example.org", common_name=common_name)
    context = make_context(config(files, **_client_cert_options(files)))
    server, _ = memory_handshake(context, client_context(files, cert=cert))
    expected = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).subject
    assert asgi_tls_extension(FakeTransport(server))["client_cert_name"] == (
        expected.rfc4514_string())


# ------------------------------------------------------------------ HTTPS and WSS on a server


@pytest.mark.parametrize("interface", ["asgi", "rsgi", "wsgi"])
def test_each_interface_sees_the_https_scheme(server_factory, files, interface):
    with server_factory(APPS[interface], interface=interface, **files.options()) as srv:
        for http2, version in ((False, "HTTP/1.1"), (True, "HTTP/2")):
            response = https(srv, files, http2=http2)
            assert response.status_code == 200 and response.http_version == version
            assert response.json()["scheme"] == "https"


@pytest.mark.parametrize("interface, scheme", [("asgi", "wss"), ("rsgi", "https")])
def test_a_websocket_over_tls_is_wss_for_asgi_and_https_for_rsgi(
    server_factory, files, interface, scheme
):
    from websockets.sync.client import connect

    with server_factory(APPS[interface], interface=interface, **files.options()) as srv:
        with connect(f"wss://localhost:{srv.port}/", ssl=client_context(files), proxy=None,
                     open_timeout=5, close_timeout=5) as ws:
            seen = json.loads(ws.recv(timeout=5))
    assert seen["scheme"] == scheme
    if interface == "asgi":
        assert seen["tls"]["tls_version"] in (0x0303, 0x0304)


def test_a_live_connection_reports_its_tls_facts(server_factory, files):
    """Both loops give the connection's SSLObject to the protocol's transport."""
    with server_factory(asgi_app, **files.options(**_client_cert_options(files))) as srv:
        context = client_context(files, cert=files.client, alpn=["http/1.1"])
        raw = socket.create_connection((srv.host, srv.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            (tls,) = live_connections(srv, asgi_tls_extension)
            (protocol,) = live_connections(srv, negotiated_protocol)
            cipher = sock.cipher()[0]
        assert protocol == "http/1.1"
        assert tls["tls_version"] == 0x0304 and tls["cipher_suite"] == IANA[cipher]
        assert tls["client_cert_chain"][0] == _pem(files.client.cert_chain_pems[0].bytes().decode())
        assert "CN=client one" in tls["client_cert_name"]


@pytest.mark.parametrize("http, offer, expected", [
    ("auto", ["h2", "http/1.1"], "HTTP/2"),
    ("auto", ["http/1.1"], "HTTP/1.1"),
    ("1", ["h2", "http/1.1"], "HTTP/1.1"),
    ("2", ["h2"], "HTTP/2"),
])
def test_alpn_decides_the_protocol_of_a_tls_connection(server_factory, files, http, offer,
                                                       expected):
    with server_factory(asgi_app, http=http, **files.options()) as srv:
        response = https(srv, files, http2="h2" in offer)
        assert response.http_version == expected and response.json()["scheme"] == "https"
        if offer == ["http/1.1"]:
            context = client_context(files, alpn=offer)
            raw = socket.create_connection((srv.host, srv.port), timeout=5)
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
                assert live_connections(srv, negotiated_protocol) == ["http/1.1"]


def test_client_certificates_required(server_factory, files):
    options = files.options(**_client_cert_options(files))
    with server_factory(asgi_app, **options) as srv:
        assert outcome(srv, client_context(files)).startswith("refused")
        assert outcome(srv, client_context(files, cert=files.stranger)).startswith("refused")
        assert outcome(srv, client_context(files, cert=files.client)) == "HTTP/1.1 200 OK"


def test_client_certificates_optional(server_factory, files):
    options = files.options(**_client_cert_options(files, "optional"))
    with server_factory(asgi_app, **options) as srv:
        assert outcome(srv, client_context(files)) == "HTTP/1.1 200 OK"
        assert outcome(srv, client_context(files, cert=files.client)) == "HTTP/1.1 200 OK"
        # Optional means "verified if sent": a certificate that fails is still refused.
        assert outcome(srv, client_context(files, cert=files.stranger)).startswith("refused")


def test_a_revoked_client_certificate_is_refused_with_a_crl(server_factory, files, refusals):
    options = files.options(**_client_cert_options(files), ssl_crl=files.crl)
    with server_factory(asgi_app, **options) as srv:
        assert outcome(srv, client_context(files, cert=files.revoked)).startswith("refused")
        wait_for(lambda: refusals(), "the refusal's log line")
        assert "certificate revoked" in refusals()[0], refusals()
        assert outcome(srv, client_context(files, cert=files.client)) == "HTTP/1.1 200 OK"
    # Without the CRL the same certificate is served: the list is what refuses it.
    with server_factory(asgi_app, **files.options(**_client_cert_options(files))) as srv:
        assert outcome(srv, client_context(files, cert=files.revoked)) == "HTTP/1.1 200 OK"


def test_a_tls_1_2_client_is_refused_with_protocol_min_1_3(server_factory, files, refusals):
    tls12 = ssl.TLSVersion.TLSv1_2
    with server_factory(asgi_app, **files.options(ssl_protocol_min="1.3")) as srv:
        assert outcome(srv, client_context(files, maximum_version=tls12)).startswith("refused")
        wait_for(lambda: refusals(), "the refusal's log line")
        assert "unsupported protocol" in refusals()[0], refusals()
        assert outcome(srv, client_context(files)) == "HTTP/1.1 200 OK"
    with server_factory(asgi_app, **files.options()) as srv:
        assert outcome(srv, client_context(files, maximum_version=tls12)) == "HTTP/1.1 200 OK"


def test_a_client_that_never_handshakes_is_closed_after_the_handshake_timeout(
    server_factory, files
):
    with server_factory(asgi_app, **files.options(ssl_handshake_timeout=0.5)) as srv:
        with srv.connect(timeout=10) as sock:
            started = time.monotonic()
            try:
                data = sock.recv(1024)
            except ConnectionResetError:
                data = b""
            waited = time.monotonic() - started
        assert data == b""
        assert 0.4 <= waited < 5, waited
        # The server goes on serving.
        assert https(srv, files).status_code == 200


def test_a_client_that_never_answers_the_servers_close_notify_is_dropped_after_the_timeout(
    server_factory, files
):
    """Closing an idle keep-alive connection, the server sends close_notify and waits for the
    client's; a client that keeps its socket open without answering is dropped after
    --ssl-handshake-timeout, not the loops' default of 30 s."""
    with server_factory(asgi_app, timeout_keep_alive=0.2,
                        **files.options(ssl_handshake_timeout=0.5)) as srv:
        raw = socket.create_connection((srv.host, srv.port), timeout=5)
        with client_context(files, alpn=["http/1.1"]).wrap_socket(
            raw, server_hostname="localhost"
        ) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            wait_for(lambda: not live_connections(srv, id), "the connection to be dropped",
                     timeout=5)
            # The keep-alive timeout, then the closing exchange's.
            assert 0.6 <= time.monotonic() - started < 3


def test_shutdown_closes_connections_still_in_their_handshake(server_factory, files):
    """A connection with no finished handshake has sent no request: closed at shutdown like an
    idle one, not left waiting for the handshake timeout."""
    with server_factory(asgi_app, **files.options()) as srv:
        sock = srv.connect(timeout=10)
        acceptor = srv.server._servers[0]
        deadline = time.monotonic() + 5
        while not srv.call(lambda: len(acceptor._tasks)):
            assert time.monotonic() < deadline, "the connection was never accepted"
            time.sleep(0.01)
    with sock:
        started = time.monotonic()
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b"" and time.monotonic() - started < 2


def test_a_client_that_stops_reading_over_tls_is_dropped_after_the_write_timeout(
    server_factory, files
):
    """The write deadline and the write buffer's bound hold over TLS: the SSL transport's
    buffer is what the deadline watches. Its high-water mark is the loops' default for TLS
    (512 KiB in asyncio and uvloop, against 64 KiB for a plain socket)."""
    chunk = 65536
    progress = {"sent": 0, "error": None}

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"z" * chunk,
                            "more_body": True})
                progress["sent"] += chunk
        except OSError as exc:
            progress["error"] = type(exc).__name__

    with server_factory(app, lifespan="off", timeout_write=0.5, **files.options()) as srv:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(5)
        raw.connect((srv.host, srv.port))
        with client_context(files).wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            wait_for(lambda: progress["sent"] > 0, "the first write")
            started = time.monotonic()
            buffered = []
            while progress["error"] is None and time.monotonic() - started < 5:
                buffered += live_connections(srv, lambda t: t.get_write_buffer_size())
                time.sleep(0.02)
            assert progress["error"] == "ClientDisconnected"
            assert 0.45 <= time.monotonic() - started < 3
            # The TLS high-water mark, one chunk, and the TLS records' overhead.
            assert buffered and max(buffered) <= 512 * 1024 + chunk + 4096, max(buffered)
            assert progress["sent"] < 16 * 1024 * 1024
            wait_for(lambda: not live_connections(srv, id), "the connection to be dropped")


def test_a_cleartext_request_on_the_tls_port_is_closed_and_logged_only_at_debug(
    server_factory, files, refusals, caplog
):
    caplog.set_level(logging.WARNING)  # every logger: the loops' own included
    with server_factory(asgi_app, **files.options()) as srv:
        response = srv.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not response.startswith(b"HTTP/")
        assert https(srv, files).status_code == 200
        wait_for(lambda: refusals(), "the refusal's log line")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------ the command line


def wait_for(predicate, message, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.01)


def _finish(proc, timeout=15):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("case", [
    "missing certfile", "garbage certfile", "wrong password", "key of another certificate",
    "encrypted key, no password",
])
def test_cli_an_unusable_certificate_or_key_exits_1_with_one_line(files, impl, case):
    options, message = _bad_file_cases(files)[case]
    args = []
    for name, value in options.items():
        args += ["--" + name.replace("_", "-"), value]
    proc = start_cli("--app-dir", "tests", "cli_apps:slow", "--port", str(free_port()),
                     "--impl", impl, *args)
    code, out, err = _finish(proc)
    assert code == 1
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "lifespan startup" not in out  # refused before the application started


def test_cli_a_keyfile_without_a_certfile_exits_1(files, impl):
    proc = start_cli("--app-dir", "tests", "cli_apps:slow", "--port", str(free_port()),
                     "--impl", impl, "--ssl-keyfile", files.keyfile)
    code, _, err = _finish(proc)
    assert code == 1 and "--ssl-keyfile given without --ssl-certfile" in err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_serves_https_to_curl_and_says_https_at_startup(files, impl):
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is required for this smoke check")
    port = free_port()
    proc = start_cli("--app-dir", "tests", "cli_apps:slow", "--port", str(port), "--impl", impl,
                     "--ssl-certfile", files.certfile, "--ssl-keyfile", files.keyfile)
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        result = subprocess.run(
            [curl, "-sS", "--cacert", files.ca_certs, "-w", " %{http_version} %{scheme}",
             f"https://localhost:{port}/"],
            capture_output=True, timeout=10,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"done 2 HTTPS"  # curl offers h2 first in ALPN
    finally:
        proc.terminate()
    code, _, err = _finish(proc)
    assert code == 0
    assert f"running on https://127.0.0.1:{port} (interface asgi, impl {impl}," in err


# ------------------------------------------------------------------ the scopes


def test_wsgi_environ_has_https_on_over_tls_only(server_factory, files):
    with server_factory(wsgi_app, interface="wsgi", **files.options()) as srv:
        for http2 in (False, True):
            assert https(srv, files, http2=http2).json()["HTTPS"] == "on"
    with server_factory(wsgi_app, interface="wsgi") as srv:
        assert httpx.get(srv.url, trust_env=False).json()["HTTPS"] is None


def test_asgi_scope_has_the_tls_extension_over_tls_only(server_factory, files):
    with open(files.certfile) as fh:
        server_pem = _pem(fh.read())
    with server_factory(asgi_app, **files.options(**_client_cert_options(files))) as srv:
        for http2 in (False, True):
            tls = https(srv, files, cert=files.client, http2=http2).json()["tls"]
            assert tls["tls_version"] in (0x0303, 0x0304)
            assert tls["client_cert_name"] and "CN=client one" in tls["client_cert_name"]
            assert tls["client_cert_chain"][0] == _pem(
                files.client.cert_chain_pems[0].bytes().decode())
            assert tls["server_cert"] == server_pem and tls["client_cert_error"] is None
    with server_factory(asgi_app) as srv:
        assert httpx.get(srv.url, trust_env=False).json()["tls"] is None
