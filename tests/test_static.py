"""Static files (--static-path-route / --static-path-mount), served before the application.

Over HTTP/1.1 on both paths and loops, and over HTTP/2 in cleartext and TLS: types, ETag and 304,
If-None-Match winning over If-Modified-Since, single ranges (206, 416, several ranges served
whole, If-Range), HEAD, 405, pre-compressed variants by Accept-Encoding, and every traversal form
(raw, percent-encoded, encoded separators, backslashes, NUL, symlinks out of the mount), each
answered without reaching the application or the file outside.
"""

from __future__ import annotations

import gzip
import os
from email.utils import formatdate

import httpx
import pytest

pytest.register_assert_rewrite("h2_helpers")  # before its import, as it is a plugin below
from h2_helpers import H2Client, httpx_client  # noqa: E402
from support import read_response

import refserver.files as files
from refserver.config import Config, ConfigError

#: the fixtures certs and h2_serve
pytest_plugins = ("h2_helpers",)

SECRET = b"the secret outside the mount"
CSS = b"body { color: red }\n" * 50
DATA = bytes(range(256)) * 40  # 10240 bytes
JS = b"console.log('plain');\n" * 20
GZ = gzip.compress(JS, mtime=0)


@pytest.fixture
def site(tmp_path):
    """A mount with files, a sub-directory with an index, pre-compressed variants, a symlink
    inside and one pointing out; a secret file beside the mount."""
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "style.css").write_bytes(CSS)
    (root / "data.bin").write_bytes(DATA)
    (root / "sub" / "index.html").write_bytes(b"<p>index</p>")
    (root / "sub" / "page.txt").write_bytes(b"page")
    (root / "a b é.txt").write_bytes(b"spaced")
    (root / "app.js").write_bytes(JS)
    (root / "app.js.br").write_bytes(b"BR" + JS[:10])
    (root / "app.js.gz").write_bytes(GZ)
    (root / "app.js.zst").write_bytes(b"ZS" + JS[:10])
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path, root / "outside")
    os.symlink(root / "style.css", root / "alias.css")
    return root


async def app(scope, receive, send):
    """The application: it answers "app" to whatever reaches it."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


def options(site, **extra):
    return {
        "interface": "asgi",
        "static_path_route": ["/static", "/static/deep"],
        "static_path_mount": [str(site), str(site / "sub")],
        "static_path_dir_to_file": "index.html",
        **extra,
    }


def raw(srv, target: bytes, method: bytes = b"GET", headers: bytes = b"") -> tuple:
    """Status, header dict and body of one raw HTTP/1.1 request (no client normalises it)."""
    with srv.connect() as sock:
        sock.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, target, headers))
        data = read_response(sock) if method != b"HEAD" else sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower().decode()] = value.strip().decode("latin-1")
    return int(lines[0].split()[1]), fields, body


def test_files_types_validators_and_conditionals(server_factory, site):
    with server_factory(app, **options(site)) as srv, httpx.Client(base_url=srv.url) as client:
        r = client.get("/static/style.css")
        assert r.status_code == 200 and r.content == CSS
        assert r.headers["content-type"] == "text/css"
        assert r.headers["content-length"] == str(len(CSS))
        assert r.headers["cache-control"] == "max-age=86400"
        assert r.headers["accept-ranges"] == "bytes"
        assert "vary" not in r.headers  # no variant beside this file
        mtime = os.stat(site / "style.css").st_mtime
        assert r.headers["last-modified"] == formatdate(mtime, usegmt=True)
        etag = r.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')

        for headers in (
            {"if-none-match": etag},
            {"if-none-match": f'"other", W/{etag}'},  # weak comparison
            {"if-none-match": "*"},
            {"if-modified-since": r.headers["last-modified"]},
            {"if-modified-since": formatdate(mtime + 3600, usegmt=True)},
        ):
            r = client.get("/static/style.css", headers=headers)
            assert (r.status_code, r.content) == (304, b""), headers
            assert r.headers["etag"] == etag
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2), either way round.
        r = client.get("/static/style.css", headers={
            "if-none-match": '"other"', "if-modified-since": formatdate(mtime + 3600, usegmt=True)})
        assert r.status_code == 200 and r.content == CSS
        r = client.get("/static/style.css", headers={
            "if-none-match": etag, "if-modified-since": formatdate(mtime - 3600, usegmt=True)})
        assert r.status_code == 304
        r = client.get("/static/style.css",
                       headers={"if-modified-since": formatdate(mtime - 3600, usegmt=True)})
        assert r.status_code == 200

        r = client.head("/static/style.css")
        assert (r.status_code, r.content) == (200, b"")
        assert r.headers["content-length"] == str(len(CSS))
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            r = client.request(method, "/static/style.css")
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD", method

        assert client.get("/static/data.bin").headers["content-type"] == "application/octet-stream"
        assert client.get("/static/a%20b%20%C3%A9.txt").content == b"spaced"
        assert client.get("/static/alias.css").content == CSS  # a symlink inside the mount
        # A directory: its index file (--static-path-dir-to-file), with or without the slash.
        assert client.get("/static/sub/").content == b"<p>index</p>"
        assert client.get("/static/sub").content == b"<p>index</p>"
        # The mount's root is a directory without an index file.
        assert client.get("/static").status_code == 404
        assert client.get("/static/").status_code == 404
        # The longest route wins; a missing file under a route is a 404, not the application.
        assert client.get("/static/deep/page.txt").content == b"page"
        r = client.get("/static/missing.txt")
        assert (r.status_code, r.content) == (404, b"Not Found")
        # Paths that only share the prefix, and every other path, reach the application.
        assert client.get("/staticx/style.css").content == b"app"
        assert client.get("/other").content == b"app"
        # Keep-alive survives all of the above: one connection served them.
        assert client.get("/static/style.css").content == CSS


def test_directory_without_index_is_404(server_factory, site):
    opts = options(site)
    del opts["static_path_dir_to_file"]
    with server_factory(app, static_path_expires=0, **opts) as srv:
        status, fields, _ = raw(srv, b"/static/sub/")
        assert status == 404
        status, fields, _ = raw(srv, b"/static/style.css")
        assert status == 200 and "cache-control" not in fields


def test_single_ranges(server_factory, site):
    size = len(DATA)
    with server_factory(app, **options(site)) as srv, httpx.Client(base_url=srv.url) as client:
        etag = client.get("/static/data.bin").headers["etag"]
        for spec, (start, end) in {
            "bytes=0-9": (0, 9),
            "bytes=100-": (100, size - 1),
            "bytes=-5": (size - 5, size - 1),
            f"bytes=10-{size * 2}": (10, size - 1),  # a last byte past the end is clamped
            f"bytes=-{size * 2}": (0, size - 1),
        }.items():
            r = client.get("/static/data.bin", headers={"range": spec})
            assert r.status_code == 206, spec
            assert r.content == DATA[start:end + 1], spec
            assert r.headers["content-range"] == f"bytes {start}-{end}/{size}", spec
            assert r.headers["content-length"] == str(end - start + 1)
        for spec in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
            r = client.get("/static/data.bin", headers={"range": spec})
            assert r.status_code == 416, spec
            assert r.headers["content-range"] == f"bytes */{size}"
        # Several ranges, another unit, nonsense: the whole file.
        for spec in ("bytes=0-1,5-6", "items=0-1", "bytes=x-y", "bytes=5-1", "bytes=-"):
            r = client.get("/static/data.bin", headers={"range": spec})
            assert (r.status_code, r.content) == (200, DATA), spec
        # If-Range: the range only while the representation is the one the client has.
        r = client.get("/static/data.bin", headers={"range": "bytes=0-9", "if-range": etag})
        assert r.status_code == 206
        r = client.get("/static/data.bin", headers={"range": "bytes=0-9", "if-range": '"old"'})
        assert r.status_code == 200 and r.content == DATA
        # HEAD ignores Range.
        r = client.head("/static/data.bin", headers={"range": "bytes=0-9"})
        assert r.status_code == 200 and r.headers["content-length"] == str(size)


def test_precompressed_variants_by_accept_encoding(server_factory, site):
    variants = {"br": b"BR" + JS[:10], "zstd": b"ZS" + JS[:10], "gzip": GZ}
    with server_factory(app, **options(site)) as srv:
        etags = set()
        for accept, coding in {
            "gzip, br": "br",  # equal q: the server's order (br, zstd, gzip)
            "gzip;q=1, br;q=0.5": "gzip",
            "zstd": "zstd",
            "br;q=0, gzip;q=0.1": "gzip",
            "*": "br",
            "identity": None,
            "br;q=0": None,
            "": None,
        }.items():
            status, fields, body = raw(
                srv, b"/static/app.js",
                headers=b"Accept-Encoding: %s\r\n" % accept.encode() if accept else b"",
            )
            assert status == 200 and fields["vary"] == "accept-encoding", accept
            assert fields["content-type"] in ("text/javascript", "application/javascript")
            if coding is None:
                assert "content-encoding" not in fields and body == JS, accept
            else:
                assert fields["content-encoding"] == coding, accept
                assert body == variants[coding], accept
                assert fields["content-length"] == str(len(variants[coding]))
            etags.add((coding, fields["etag"]))
        assert len({etag for _, etag in etags}) == 4  # one ETag per representation
        # A variant asked for by its own name is a gzip file, not JavaScript.
        status, fields, body = raw(srv, b"/static/app.js.gz")
        assert (status, body) == (200, GZ)
        assert fields["content-type"] == "application/gzip" and "content-encoding" not in fields
        br_etag = next(etag for coding, etag in etags if coding == "br")
        status, fields, _ = raw(
            srv, b"/static/app.js",
            headers=b"Accept-Encoding: br\r\nIf-None-Match: %s\r\n" % br_etag.encode(),
        )
        assert status == 304 and fields["vary"] == "accept-encoding"


TRAVERSALS = [
    # (target, accepted statuses)
    (b"/static/../secret.txt", {404}),
    (b"/static/sub/../../secret.txt", {404}),
    (b"/static/%2e%2e/secret.txt", {404}),
    (b"/static/%2E%2E/secret.txt", {404}),
    (b"/static/.%2e/secret.txt", {404}),
    (b"/static/%2e%2e%2fsecret.txt", {404}),
    (b"/static/sub%2f..%2f..%2fsecret.txt", {404}),
    (b"/static/..%2F..%2Fsecret.txt", {404}),
    (b"/static/..%5csecret.txt", {404}),
    (b"/static/..%5C..%5Csecret.txt", {404}),
    (b"/static/..\\secret.txt", {400, 404}),  # a raw backslash: refused by the parser or here
    (b"/static/./style.css", {404}),
    (b"/static/%2e/style.css", {404}),
    (b"/static/style.css%00.txt", {400}),
    (b"/static/%00", {400}),
    (b"/static/%zz", {400}),
    (b"/static/%c3%28", {400}),
    (b"/static/escape.txt", {404}),  # a symlink to a file outside the mount
    (b"/static/outside/secret.txt", {404}),  # through a symlinked directory
    (b"/static//etc/passwd", {404}),
    (b"/static/%2fetc%2fpasswd", {404}),
]


def test_every_traversal_form_is_refused(server_factory, site):
    with server_factory(app, **options(site)) as srv:
        for target, statuses in TRAVERSALS:
            status, _, body = raw(srv, target)
            assert status in statuses, (target, status)
            assert SECRET not in body and body != b"app", target
        assert raw(srv, b"/static/style.css")[0] == 200


def test_served_for_every_interface_by_sendfile(server_factory, site, monkeypatch):
    calls = []
    real = files._sendfile

    def spy(*args):
        sent = real(*args)
        calls.append(sent)
        return sent

    monkeypatch.setattr(files, "_sendfile", spy)

    async def rsgi_app(scope, protocol):
        protocol.response_str(200, [], "app")

    def wsgi_app(environ, start_response):
        start_response("200 OK", [])
        return [b"app"]

    for interface, application in (("asgi", app), ("rsgi", rsgi_app), ("wsgi", wsgi_app)):
        with server_factory(application, **{**options(site), "interface": interface}) as srv:
            with httpx.Client(base_url=srv.url) as client:
                assert client.get("/static/data.bin").content == DATA, interface
                assert client.get("/static/nothing").status_code == 404
                assert client.get("/elsewhere").content == b"app", interface
    assert sum(calls) == 3 * len(DATA)


@pytest.mark.parametrize("tls", [False, True], ids=["h2", "h2-tls"])
def test_over_http2(h2_serve, site, tls):
    with h2_serve(app, tls=tls, **options(site)) as srv, httpx_client(srv) as client:
        base = srv.url
        r = client.get(base + "/static/style.css")
        assert r.http_version == "HTTP/2" and r.status_code == 200 and r.content == CSS
        etag = r.headers["etag"]
        r = client.get(base + "/static/style.css", headers={"if-none-match": etag})
        assert (r.status_code, r.content) == (304, b"")
        r = client.get(base + "/static/data.bin", headers={"range": "bytes=-5"})
        assert r.status_code == 206 and r.content == DATA[-5:]
        r = client.get(base + "/static/data.bin", headers={"range": f"bytes={len(DATA)}-"})
        assert r.status_code == 416
        r = client.head(base + "/static/data.bin")
        assert r.content == b"" and r.headers["content-length"] == str(len(DATA))
        r = client.get(base + "/static/app.js", headers={"accept-encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "accept-encoding"
        assert r.content == JS  # decoded by the client
        assert client.post(base + "/static/style.css").status_code == 405
        assert client.get(base + "/other").content == b"app"
    with h2_serve(app, tls=tls, **options(site)) as srv, H2Client(srv, validate=False) as h2:
        for target, statuses in TRAVERSALS:
            if b"\\" in target:
                continue
            sid = h2.request(target.decode("latin-1"))
            record = h2.response(sid)
            assert record.status in statuses, (target, record.status)
            assert SECRET not in bytes(record.data)


def test_routes_and_mounts_pair_up(site):
    with pytest.raises(ConfigError, match="pair up by position"):
        Config(app, static_path_route=["/a", "/b"], static_path_mount=[str(site)])
    with pytest.raises(ConfigError, match="not a directory"):
        Config(app, static_path_route=["/a"], static_path_mount=[str(site / "style.css")])
    with pytest.raises(ConfigError, match="starting with /"):
        Config(app, static_path_route=["a"], static_path_mount=[str(site)])
    config = Config(app, static_path_route="/a,/b", static_path_mount=f"{site},{site / 'sub'}")
    assert config.static_path_mount == (str(site), str(site / "sub"))
    # One mount alone is served under /static (Granian's default route).
    assert Config(app, static_path_mount=str(site)).static_path_route == ("/static",)
    with pytest.raises(ConfigError, match="pair up by position"):
        Config(app, static_path_mount=[str(site), str(site / "sub")])


@pytest.mark.parametrize(
    "given, seconds",
    [
        ("0", 0),
        ("90", 90),
        (" 90 ", 90),
        (3600, 3600),
        ("720d", 720 * 86400),
        ("12h", 12 * 3600),
        ("10m", 600),
        ("45s", 45),
        ("1h30m", 5400),
        ("1d12h", 129600),
        ("10d10h10m10s", 10 * 86400 + 10 * 3600 + 10 * 60 + 10),
    ],
)
def test_expires_takes_seconds_or_a_duration(given, seconds, monkeypatch):
    assert Config(app, static_path_expires=given).static_path_expires == seconds
    monkeypatch.setenv("REFSERVER_STATIC_PATH_EXPIRES", str(given))
    assert Config(app).static_path_expires == seconds


@pytest.mark.parametrize(
    "given",
    ["", "d", "10x", "10D", "1.5h", "-5", "-1d", "+5", "10s10m", "1h1h", "10d10h10m10s10",
     "1 h", "٣", "1w"],
)
def test_expires_refuses_anything_else(given):
    with pytest.raises(ConfigError) as caught:
        Config(app, static_path_expires=given)
    assert str(caught.value) == (
        "argument: --static-path-expires expects seconds or a duration such as 720d, 12h or "
        f"1h30m (units d, h, m, s, largest first), got {given!r}"
    )


def test_expires_as_a_duration_is_the_max_age(server_factory, site):
    with server_factory(app, **options(site, static_path_expires="1d12h")) as srv:
        status, fields, body = raw(srv, b"/static/style.css")
        assert (status, fields["cache-control"], body) == (200, "max-age=129600", CSS)
