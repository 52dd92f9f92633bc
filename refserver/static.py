"""Static files, served before the application (``--static-path-route`` / ``--static-path-mount``).

A request whose path starts with a route is answered here, on every interface and protocol, by the
stream's ``send_file`` (the kernel's sendfile on plain HTTP/1.1): the application never sees it.
What a maintainer of a file server expects is done: content types, ``Last-Modified``, an ``ETag``
per representation, ``304`` for ``If-None-Match`` (which wins) and ``If-Modified-Since``, one
byte range (``206``, ``416``; ``If-Range``), ``HEAD``, ``405`` for other methods, pre-compressed
variants beside the file chosen by ``Accept-Encoding``; and no path leaves its mount, whatever
encoding or symlink it tries. The rules are spec/server.md's SERVER-STATIC clauses.

The few file system calls (``stat``, ``realpath``, ``open``) run on the loop: on a local disk they
take microseconds, less than handing them to a thread would; the body itself goes through
``send_file``.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from email.utils import formatdate, mktime_tz, parsedate_tz
from urllib.parse import unquote_to_bytes

from .files import FileShrunk
from .gateways.stream import ClientDisconnected
from .wire.events import ResponseError
from .wire.response import TEXT_PLAIN

#: Pre-compressed variants, in the order preferred when the client rates several alike:
#: (content coding, file suffix).
VARIANTS = (("br", ".br"), ("zstd", ".zst"), ("gzip", ".gz"))

_ALLOW = [(b"allow", b"GET, HEAD")]


def _plain(status: int, text: bytes, extra=()) -> tuple:
    return status, [TEXT_PLAIN, *extra], text


NOT_FOUND = _plain(404, b"Not Found")
BAD_REQUEST = _plain(400, b"Bad Request")
NOT_ALLOWED = _plain(405, b"Method Not Allowed", _ALLOW)


class Mount:
    """One route and the directory it serves."""

    __slots__ = ("route", "directory")

    def __init__(self, route: str, directory: str):
        self.route = route.rstrip("/").encode("ascii")
        self.directory = os.path.realpath(directory)


class StaticFiles:
    """The static routes of a server. :attr:`prefixes` is what the dispatcher checks, once per
    request, with one ``bytes.startswith``; everything else happens only for a matching path."""

    def __init__(self, routes, mounts, expires: int, index: str | None, logger):
        # Longest route first: /static/img is more specific than /static.
        pairs = sorted(
            zip(routes, mounts, strict=False), key=lambda pair: -len(pair[0].rstrip("/"))
        )
        self.mounts = [Mount(route, directory) for route, directory in pairs]
        self.prefixes = tuple(mount.route for mount in self.mounts)
        self.cache_control = (b"cache-control", b"max-age=%d" % expires) if expires else None
        self.index = index
        self.logger = logger

    @classmethod
    def from_config(cls, config, logger):
        if not config.static_path_route:
            return None
        return cls(
            config.static_path_route,
            config.static_path_mount,
            config.static_path_expires,
            config.static_path_dir_to_file,
            logger,
        )

    async def serve(self, stream, app) -> None:
        """Answer ``stream`` from the files, or hand it to ``app`` when no route covers its
        path after all (``/staticx`` starts with ``/static`` but is not under it)."""
        raw_path = stream.request.raw_path
        for mount in self.mounts:
            rest = raw_path[len(mount.route) :]
            if raw_path.startswith(mount.route) and (not rest or rest[:1] == b"/"):
                break
        else:
            await app(stream)
            return
        try:
            await self._answer(stream, mount, rest)
        except ClientDisconnected:
            pass
        except FileShrunk as exc:
            self.logger.error(
                "static file %s: %s; the response was reset", raw_path.decode("latin-1"), exc
            )
        except (ResponseError, OSError) as exc:
            self.logger.error("static file %s: %s", raw_path.decode("latin-1"), exc)
            if not stream.response_started and not stream.disconnected:
                stream.start_response(*NOT_FOUND, True)
            elif not stream.response_complete and not stream.disconnected:
                stream.abort()

    async def _answer(self, stream, mount: Mount, rest: bytes) -> None:
        request = stream.request
        if request.method not in ("GET", "HEAD"):
            stream.start_response(*NOT_ALLOWED, True)
            return
        path = resolve(mount.directory, rest)
        if type(path) is int:
            stream.start_response(*(BAD_REQUEST if path == 400 else NOT_FOUND), True)
            return
        path = self._file_of(path)
        if path is None or not _inside(mount.directory, path):
            stream.start_response(*NOT_FOUND, True)
            return
        fields = _fields(request.headers)
        coding, file_path = _variant(path, mount.directory, fields.get(b"accept-encoding"))
        try:
            fh = open(file_path, "rb", buffering=0)  # noqa: SIM115 - the response body owns and closes it
        except OSError:
            stream.start_response(*NOT_FOUND, True)
            return
        with fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                stream.start_response(*NOT_FOUND, True)
                return
            await self._send(stream, fh.fileno(), info, path, coding, fields)

    def _file_of(self, path: str):
        """The regular file a resolved path names: itself, or a directory's index file."""
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(info.st_mode):
            if not self.index:
                return None
            path = os.path.join(path, self.index)
            try:
                info = os.stat(path)
            except OSError:
                return None
        return path if stat.S_ISREG(info.st_mode) else None

    async def _send(self, stream, fd: int, info, path: str, coding, fields: dict) -> None:
        size = info.st_size
        etag = b'"%x-%x%s"' % (info.st_mtime_ns, size, b"-" + coding if coding else b"")
        last_modified = formatdate(info.st_mtime, usegmt=True).encode("ascii")
        headers = [(b"etag", etag), (b"last-modified", last_modified)]
        if self.cache_control is not None:
            headers.append(self.cache_control)
        if coding is not False:  # a variant exists beside the file: the answer depends on it
            headers.append((b"vary", b"accept-encoding"))
        if _not_modified(fields, etag, int(info.st_mtime)):
            stream.start_response(304, headers, b"", True)
            return
        headers.append((b"content-type", content_type(path)))
        if coding:
            headers.append((b"content-encoding", coding))
        headers.append((b"accept-ranges", b"bytes"))
        offset, count, status = 0, size, 200
        if stream.request.method == "GET" and b"range" in fields:
            wanted = _range(fields, etag, last_modified, size)
            if wanted == 416:
                stream.start_response(
                    416,
                    [TEXT_PLAIN, (b"content-range", b"bytes */%d" % size)],
                    b"Range Not Satisfiable",
                    True,
                )
                return
            if wanted is not None:
                offset, count = wanted
                status = 206
                headers.append(
                    (b"content-range", b"bytes %d-%d/%d" % (offset, offset + count - 1, size))
                )
        headers.append((b"content-length", b"%d" % count))
        stream.start_response(status, headers)
        await stream.send_file(fd, offset, count, True)


#: The type of a compressed file asked for by its own name (``/x.js.gz``): mimetypes gives
#: the type of what it would decompress to, which is not what the bytes are.
_COMPRESSED_TYPES = {
    "gzip": b"application/gzip",
    "bzip2": b"application/x-bzip2",
    "xz": b"application/x-xz",
    "compress": b"application/x-compress",
}


def content_type(path: str) -> bytes:
    kind, encoding = mimetypes.guess_type(path)
    if encoding is not None:
        return _COMPRESSED_TYPES.get(encoding, b"application/octet-stream")
    return (kind or "application/octet-stream").encode("ascii")


def resolve(directory: str, rest: bytes):
    """The file system path ``rest`` (the percent-encoded path after the route) names under
    ``directory``, or the status that refuses it: 404 for a name no file under the mount can
    have, 400 for bytes no path may hold.

    Every segment is decoded on its own, so an encoded ``/`` (``%2F``) cannot join two of them;
    ``..`` and ``.`` in any spelling, a backslash (a separator elsewhere) and a NUL are refused
    rather than normalised, since nothing legitimate sends them."""
    segments = []
    for raw in rest.split(b"/"):
        if not raw:
            continue
        if _BAD_ESCAPE.search(raw):
            return 400
        segment = unquote_to_bytes(raw)
        if b"\x00" in segment:
            return 400
        if segment in (b".", b"..") or b"/" in segment or b"\\" in segment:
            return 404
        try:
            segments.append(segment.decode("utf-8"))
        except UnicodeDecodeError:
            return 400
    return os.path.join(directory, *segments)


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _inside(directory: str, path: str) -> bool:
    """Whether ``path``, its symlinks resolved, is still under ``directory``."""
    real = os.path.realpath(path)
    return real == directory or real.startswith(directory.rstrip("/") + "/")


def _fields(headers) -> dict:
    """The request fields this module reads, repeated ones joined with commas."""
    out: dict = {}
    for name, value in headers:
        if name in (
            b"accept-encoding",
            b"if-none-match",
            b"if-modified-since",
            b"range",
            b"if-range",
        ):
            out[name] = out[name] + b", " + value if name in out else value
    return out


def _variant(path: str, directory: str, accept):
    """``(coding, file)``: the pre-compressed variant of ``path`` to send, by the client's
    ``Accept-Encoding`` q-values (ties go to :data:`VARIANTS`' order), or ``(None, path)``
    for the file itself when some variant exists, ``(False, path)`` when none does."""
    present = [
        (coding, path + suffix)
        for coding, suffix in VARIANTS
        if os.path.isfile(path + suffix) and _inside(directory, path + suffix)
    ]
    if not present:
        return False, path
    if not accept:
        return None, path
    rated = _qvalues(accept)
    best, best_q = None, 0.0
    for coding, file in present:
        q = rated.get(coding, rated.get("*", 0.0))
        if q > best_q:
            best, best_q = (coding, file), q
    if best is None:
        return None, path
    return best[0].encode("ascii"), best[1]


def _qvalues(accept: bytes) -> dict:
    """``{coding: q}`` of an Accept-Encoding value (RFC 9110 12.5.3); a bad q counts as 0."""
    rated = {}
    for item in accept.decode("latin-1").split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        params = params.strip().lower()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
            if not 0.0 <= q <= 1.0:
                q = 0.0
        rated[coding] = q
    return rated


def _etags(value: bytes) -> list:
    return [tag.strip().removeprefix(b"W/") for tag in value.split(b",")]


def _not_modified(fields: dict, etag: bytes, mtime: int) -> bool:
    """RFC 9110 13.1.2 and 13.1.3: If-None-Match (weak comparison) decides when present;
    If-Modified-Since is looked at only without it."""
    match = fields.get(b"if-none-match")
    if match is not None:
        tags = _etags(match)
        return b"*" in tags or etag in tags
    since = fields.get(b"if-modified-since")
    if since is not None:
        parsed = parsedate_tz(since.decode("latin-1"))
        if parsed is not None:
            try:
                return mtime <= mktime_tz(parsed)
            except (OverflowError, ValueError):
                return False
    return False


def _range(fields: dict, etag: bytes, last_modified: bytes, size: int):
    """The one range to send, ``(offset, count)``; None for the whole file (no usable Range, an
    If-Range that no longer matches, several ranges); 416 for a range past the end."""
    if_range = fields.get(b"if-range")
    if if_range is not None:
        if_range = if_range.strip()
        if if_range.startswith((b'"', b"W/")):
            if if_range != etag:  # a strong comparison: a weak tag never matches
                return None
        elif if_range != last_modified:
            return None
    value = fields[b"range"].strip()
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None  # another unit, or several ranges: the whole file (RFC 9110 14.2 allows it)
    first, dash, last = spec.strip().partition(b"-")
    if not dash or not (first + last).isdigit() or not (first or last):
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return 416
        suffix = min(suffix, size)
        return size - suffix, suffix
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None  # not a valid range: ignored (RFC 9110 14.1.1)
    if start >= size:
        return 416
    end = size - 1 if end is None else min(end, size - 1)
    return start, end - start + 1
