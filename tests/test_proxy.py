"""--proxy-headers: the client, scheme and host a trusted proxy forwards (spec/server.md,
SERVER-PROXY-*).

The rules are checked sans-IO on :class:`refserver.proxy.Forwarding` (table-driven), then end to
end on real sockets: every interface, HTTP/1.1 and HTTP/2, both paths, a trusted peer and an
untrusted one. A peer is made trusted or not by the address the test connects from (127.0.0.1
or 127.0.0.2, both loopback) against ``--forwarded-allow-ips``.
"""

from __future__ import annotations

import http.client
import json

import pytest

pytest.register_assert_rewrite("h2_helpers")
from h2_helpers import httpx_client
from proxy_apps import APPS
from support import serve

from refserver.config import Config, ConfigError
from refserver.proxy import Forwarding
from refserver.wire.request import Request

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ("h2_helpers",)

INTERFACES = ["asgi", "rsgi", "wsgi"]
PEER = ("127.0.0.1", 40000)


class Target:
    """What :meth:`Forwarding.apply` rewrites: a stream's client, scheme and request."""

    def __init__(self, headers, client=PEER, scheme="http", authority=None):
        self.client = client
        self.scheme = scheme
        self.request = Request("GET", b"/", b"", "1.1", list(headers), authority)


def forwarded(headers, trusted=("127.0.0.1", "10.0.0.0/8"), **target):
    t = Target(headers, **target)
    Forwarding(trusted).apply(t)
    hosts = [v for n, v in t.request.headers if n == b"host"]
    return t.client, t.scheme, t.request.authority, hosts


# ---------------------------------------------------------------------------- sans-IO rules

XFF = b"x-forwarded-for"


@pytest.mark.parametrize(
    "headers, client",
    [
        # The rightmost untrusted hop; trusted proxies (10/8) on the right are skipped.
        ([(XFF, b"203.0.113.9")], ("203.0.113.9", 0)),
        ([(XFF, b"198.51.100.1, 203.0.113.9, 10.0.0.7")], ("203.0.113.9", 0)),
        # What a client prepends is left of what the proxies append: it cannot choose.
        ([(XFF, b"1.2.3.4"), (XFF, b"203.0.113.9")], ("203.0.113.9", 0)),
        # Every hop trusted: the leftmost is the client.
        ([(XFF, b"10.1.1.1, 10.0.0.7")], ("10.1.1.1", 0)),
        # Ports and IPv6, bracketed or not; addresses are normalised.
        ([(XFF, b"203.0.113.9:5123")], ("203.0.113.9", 5123)),
        ([(XFF, b"[2001:DB8::1]:443")], ("2001:db8::1", 443)),
        ([(XFF, b"2001:db8:0:0::1")], ("2001:db8::1", 0)),
        ([(XFF, b"::ffff:203.0.113.9")], ("203.0.113.9", 0)),  # IPv4-mapped: as IPv4
        # Empty list elements are skipped.
        ([(XFF, b" , 203.0.113.9 ,")], ("203.0.113.9", 0)),
        # A hop that is not an address ends the walk at the last address reached.
        ([(XFF, b"203.0.113.9, garbage, 10.0.0.7")], ("10.0.0.7", 0)),
        ([(XFF, b"unknown")], PEER),
        ([(XFF, b"fe80::1%eth0")], PEER),
        ([(XFF, b"[203.0.113.9]")], PEER),
        ([(XFF, b"203.0.113.9:99999")], PEER),
        ([(XFF, b"203.0.113.9\x1b[31m")], PEER),
        # A chain is read from the right, its 64 rightmost entries at most: a client's long
        # prefix is never parsed, and cannot hide the hops the proxies appended.
        ([(XFF, b", ".join([b"198.51.100.1"] * 3000) + b", 203.0.113.9, 10.0.0.7")],
         ("203.0.113.9", 0)),
        ([(b"forwarded", b", ".join([b'for="[2001:db8::1]"'] * 3000)
           + b", for=203.0.113.9, for=10.0.0.7")], ("203.0.113.9", 0)),
        ([(XFF, b", ".join([b"10.0.0.1"] * 100))], ("10.0.0.1", 0)),
        # ...and a quoted string cut there makes the field unreadable: the peer stays.
        ([(b"forwarded", b'for="x' + b"," * 70 + b'", for=203.0.113.9')], PEER),
        # RFC 7239: quoted strings, IPv6 in brackets, parameters in any case and order.
        ([(b"forwarded", b'for="[2001:db8::5]:99";proto=https')], ("2001:db8::5", 99)),
        ([(b"forwarded", b"For=198.51.100.1, for=203.0.113.9;by=10.0.0.7, for=10.0.0.6")],
         ("203.0.113.9", 0)),
        ([(b"forwarded", b"for=198.51.100.1"), (b"forwarded", b"for=203.0.113.9")],
         ("203.0.113.9", 0)),
        # An obfuscated or unknown node ends the walk like garbage does.
        ([(b"forwarded", b"for=203.0.113.9, for=_hidden, for=10.0.0.7")], ("10.0.0.7", 0)),
        ([(b"forwarded", b"for=unknown")], PEER),
        # A Forwarded value that does not parse says nothing.
        ([(b"forwarded", b'for="203.0.113.9')], PEER),
        ([(b"forwarded", b"for=203.0.113.9;for=198.51.100.1")], PEER),
        ([(b"forwarded", b"for 203.0.113.9")], PEER),
        # X-Forwarded-* present: Forwarded is not read, not even for what they lack.
        ([(b"forwarded", b"for=198.51.100.1"), (b"x-forwarded-proto", b"https")], PEER),
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop(headers, client):
    assert forwarded(headers)[0] == client


@pytest.mark.parametrize(
    "headers, scheme",
    [
        ([(b"x-forwarded-proto", b"https")], "https"),
        ([(b"x-forwarded-proto", b"HTTPS")], "https"),
        ([(b"x-forwarded-proto", b"wss")], "https"),
        ([(b"x-forwarded-proto", b"http, https")], "https"),  # the nearest proxy's
        ([(b"x-forwarded-proto", b"gopher")], "http"),
        ([(b"x-forwarded-proto", b"")], "http"),
        ([(b"forwarded", b"for=203.0.113.9;proto=https")], "https"),
        # The proto of the element whose hop is the client.
        ([(b"forwarded", b"for=203.0.113.9;proto=https, for=10.0.0.7;proto=http")], "https"),
    ],
)
def test_the_scheme_is_http_or_https_and_nothing_else(headers, scheme):
    assert forwarded(headers)[1] == scheme


@pytest.mark.parametrize(
    "headers, authority",
    [
        ([(b"host", b"internal:8000"), (b"x-forwarded-host", b"example.com")], "example.com"),
        ([(b"host", b"internal:8000"), (b"x-forwarded-host", b"a.example, b.example")],
         "b.example"),
        ([(b"host", b"internal:8000"), (b"x-forwarded-port", b"443")], "internal:443"),
        ([(b"host", b"[::1]:8000"), (b"x-forwarded-port", b"8443")], "[::1]:8443"),
        ([(b"host", b"internal"), (b"x-forwarded-host", b"example.com:81"),
          (b"x-forwarded-port", b"82")], "example.com:82"),
        ([(b"host", b"internal"), (b"forwarded", b'host="example.com:8080"')], "example.com:8080"),
        # Not a valid authority, or not a port: ignored.
        ([(b"host", b"internal"), (b"x-forwarded-host", b"ev il")], None),
        ([(b"host", b"internal"), (b"x-forwarded-host", b"evil\x1b[2J")], None),
        ([(b"host", b"internal"), (b"x-forwarded-host", "h\u00e9".encode("utf-8"))], None),
        ([(b"host", b"internal"), (b"x-forwarded-port", b"0")], None),
        ([(b"host", b"internal"), (b"x-forwarded-port", b"https")], None),
    ],
)
def test_a_forwarded_host_replaces_the_host_field_and_the_authority(headers, authority):
    _, _, got, hosts = forwarded(headers)
    assert got == authority
    original = [v for n, v in headers if n == b"host"]
    assert hosts == ([authority.encode()] if authority else original)


def test_nothing_changes_without_forwarding_fields():
    t = Target([(b"host", b"internal")])
    Forwarding(("*",)).apply(t)
    assert (t.client, t.scheme, t.request.authority) == (PEER, "http", None)


@pytest.mark.parametrize(
    "trusted, peer, trusts",
    [
        (("127.0.0.1",), ("127.0.0.1", 1), True),
        (("127.0.0.1",), ("::ffff:127.0.0.1", 1), True),
        (("127.0.0.1",), ("127.0.0.2", 1), False),
        (("10.0.0.0/8",), ("10.200.3.4", 1), True),
        (("2001:db8::/32",), ("2001:db8:1::9", 1), True),
        (("[::1]",), ("::1", 1), True),
        (("*",), ("198.51.100.1", 1), True),
        (("*",), None, True),
        (("unix",), None, True),
        (("unix",), ("/run/app.sock", None), True),
        (("127.0.0.1",), None, False),
        (("UNIX",), ("127.0.0.1", 1), False),
    ],
)
def test_which_peers_are_trusted(trusted, peer, trusts):
    assert Forwarding(trusted).trusts_peer(peer) is trusts


@pytest.mark.parametrize("value", ["not-an-ip", "10.0.0.0/33", "1.2.3", "*.example.com"])
def test_an_invalid_trusted_entry_is_one_config_error(value):
    with pytest.raises(ConfigError) as info:
        Config(None, proxy_headers=True, forwarded_allow_ips=f"127.0.0.1,{value}")
    assert value in str(info.value) and "\n" not in str(info.value)


def test_forwarded_allow_ips_defaults_to_the_environment_then_loopback(monkeypatch):
    monkeypatch.delenv("REFSERVER_FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Config(None).forwarded_allow_ips == ("127.0.0.1", "::1")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8, unix")
    assert Config(None).forwarded_allow_ips == ("10.0.0.0/8", "unix")
    monkeypatch.setenv("REFSERVER_FORWARDED_ALLOW_IPS", "192.0.2.1")
    assert Config(None).forwarded_allow_ips == ("192.0.2.1",)
    assert Config(None, forwarded_allow_ips=["*"]).forwarded_allow_ips == ("*",)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "bogus")
    monkeypatch.delenv("REFSERVER_FORWARDED_ALLOW_IPS")
    with pytest.raises(ConfigError, match="bogus"):
        Config(None)


def test_proxy_headers_are_off_by_default():
    assert Config(None).proxy_headers is False


# ---------------------------------------------------------------------------- end to end

FORGED = {
    "X-Forwarded-For": "198.51.100.77, 203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "public.example",
}


@pytest.fixture(params=INTERFACES)
def interface(request):
    return request.param


def h1_facts(port, headers, source="127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/", headers={"Host": f"127.0.0.1:{port}", **headers})
        response = conn.getresponse()
        assert response.status == 200
        facts = json.loads(response.read())
        facts["local_port"] = conn.sock.getsockname()[1]
        return facts
    finally:
        conn.close()


def check_interface_agrees(interface, facts):
    """The fields of one interface tell the same story."""
    raw = facts["raw"]
    if interface == "rsgi" and raw["authority"] is not None:
        assert raw["authority"] == raw["host_header"]
    if interface == "wsgi":
        assert raw["HTTPS"] == ("on" if facts["scheme"] == "https" else None)


def test_h1_a_trusted_peer_moves_client_scheme_and_host(impl, interface):
    with serve(APPS[interface], impl=impl, interface=interface, proxy_headers=True,
               forwarded_allow_ips="127.0.0.2") as srv:
        facts = h1_facts(srv.port, FORGED, source="127.0.0.2")
        assert facts["client"] == ["203.0.113.9", 0]
        assert facts["scheme"] == "https"
        assert facts["host"] == "public.example"
        check_interface_agrees(interface, facts)
        # The same server, reached from an untrusted address: nothing moves.
        facts = h1_facts(srv.port, FORGED, source="127.0.0.1")
        assert facts["client"] == ["127.0.0.1", facts["local_port"]]
        assert facts["scheme"] == "http"
        assert facts["host"] == f"127.0.0.1:{srv.port}"
        check_interface_agrees(interface, facts)


def test_h1_off_by_default_even_from_loopback(impl, interface):
    with serve(APPS[interface], impl=impl, interface=interface) as srv:
        facts = h1_facts(srv.port, FORGED)
        assert facts["client"] == ["127.0.0.1", facts["local_port"]]
        assert (facts["scheme"], facts["host"]) == ("http", f"127.0.0.1:{srv.port}")


def test_h1_each_request_of_a_connection_is_read_on_its_own(impl):
    """Keep-alive: the second request's fields, not the first's, decide its client."""
    with serve(APPS["asgi"], impl=impl, interface="asgi", proxy_headers=True) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            seen = []
            sent = ({"X-Forwarded-For": "203.0.113.1"}, {}, {"Forwarded": "for=203.0.113.2"})
            for headers in sent:
                conn.request("GET", "/", headers=headers)
                seen.append(json.loads(conn.getresponse().read())["client"][0])
        finally:
            conn.close()
        assert seen == ["203.0.113.1", "127.0.0.1", "203.0.113.2"]


@pytest.mark.parametrize("trusted", [True, False])
def test_h2_every_interface_sees_the_forwarded_facts(h2_serve, interface, trusted):
    allow = "127.0.0.1" if trusted else "127.0.0.2"
    with h2_serve(APPS[interface], interface=interface, proxy_headers=True,
                  forwarded_allow_ips=allow) as srv, httpx_client(srv) as client:
        response = client.get(srv.url + "/", headers=FORGED)
        assert response.http_version == "HTTP/2"
        facts = response.json()
    if trusted:
        assert facts["client"] == ["203.0.113.9", 0]
        assert (facts["scheme"], facts["host"]) == ("https", "public.example")
    else:
        assert facts["client"][0] == "127.0.0.1" and facts["client"][1] != 0
        assert (facts["scheme"], facts["host"]) == ("http", f"127.0.0.1:{srv.port}")
    check_interface_agrees(interface, facts)


def test_h2_over_tls_a_forwarded_http_scheme_wins(h2_serve):
    """The proxy's word on the scheme replaces the connection's, both ways."""
    with h2_serve(APPS["wsgi"], tls=True, interface="wsgi", proxy_headers=True) as srv, \
            httpx_client(srv) as client:
        facts = client.get(srv.url + "/", headers={"X-Forwarded-Proto": "http"}).json()
    assert facts["scheme"] == "http" and facts["raw"]["HTTPS"] is None


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_websocket_handshakes_are_rewritten_too(impl, interface):
    from websockets.sync.client import connect

    with serve(APPS[interface], impl=impl, interface=interface, proxy_headers=True) as srv:
        with connect(f"ws://127.0.0.1:{srv.port}/", additional_headers={
            "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "public.example",
        }, open_timeout=5) as ws:
            facts = json.loads(ws.recv(timeout=5))
    assert facts["client"] == ["203.0.113.9", 0]
    assert facts["host"] == "public.example"
    assert facts["scheme"] == ("wss" if interface == "asgi" else "https")


def test_a_unix_socket_peer_is_trusted_only_when_listed(impl, tmp_path):
    import socket

    for allow, expected in (("unix", "203.0.113.9"), ("127.0.0.1", None)):
        path = str(tmp_path / f"{allow}.sock")
        with serve(APPS["wsgi"], impl=impl, interface="wsgi", uds=path, proxy_headers=True,
                   forwarded_allow_ips=allow):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(path)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n"
                             b"X-Forwarded-For: 203.0.113.9\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        facts = json.loads(data.partition(b"\r\n\r\n")[2])
        assert (facts["client"] or [None])[0] == expected


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_websockets_over_http2_are_rewritten_too(h2_serve, interface):
    from h2_helpers import H2Client
    from ws_helpers import TEXT, parse_frames

    extra = [(":protocol", "websocket"), ("sec-websocket-version", "13"),
             ("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https"),
             ("x-forwarded-host", "public.example")]
    with h2_serve(APPS[interface], interface=interface, proxy_headers=True) as srv, \
            H2Client(srv) as client:
        client.wait(lambda: client.remote_settings_seen)
        sid = client.headers("/", "CONNECT", extra=extra, end=False)
        record = client.streams[sid]
        client.wait(lambda: parse_frames(bytes(record.data))[0] or record.done)
        (_, _, opcode, payload), *_ = parse_frames(bytes(record.data))[0]
    assert record.status == 200 and opcode == TEXT
    facts = json.loads(payload)
    assert facts["client"] == ["203.0.113.9", 0]
    assert facts["host"] == "public.example"
    assert facts["scheme"] == ("wss" if interface == "asgi" else "https")
