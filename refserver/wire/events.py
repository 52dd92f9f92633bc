"""The events every wire protocol produces, and the typed errors it raises.

Both HTTP/1.1 parsers (h11 on the reference path, httptools on the fast path) yield exactly these
objects, so nothing above the wire layer can tell which one is running.
"""

from __future__ import annotations


class RequestHead:
    """A parsed request line and header block.

    ``headers`` keeps the order and duplicates of the wire, with names lower-cased, because ASGI,
    RSGI and WSGI all promise applications exactly that.
    """

    __slots__ = ("method", "target", "http_version", "headers")

    def __init__(self, method: bytes, target: bytes, http_version: bytes, headers: list):
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequestHead) and (
            self.method,
            self.target,
            self.http_version,
            self.headers,
        ) == (other.method, other.target, other.http_version, other.headers)

    def __repr__(self) -> str:
        return (
            f"RequestHead({self.method!r}, {self.target!r}, {self.http_version!r}, "
            f"{self.headers!r})"
        )


class Body:
    """A piece of de-chunked request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Body) and self.data == other.data

    def __repr__(self) -> str:
        return f"Body({self.data!r})"


class EndOfMessage:
    """The request body is complete (trailers, if any, are discarded)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage)

    def __repr__(self) -> str:
        return "EndOfMessage()"


END_OF_MESSAGE = EndOfMessage()


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The parser has consumed everything it was given and needs more bytes.
NEED_DATA = _Sentinel("NEED_DATA")
#: A complete request was parsed; the next one waits until the current response has finished.
PAUSED = _Sentinel("PAUSED")


class HTTPError(Exception):
    """Bad input from the peer. ``status`` is the response the server should send before closing."""

    status = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class BadRequest(HTTPError):
    status = 400


class RequestTimeout(HTTPError):
    status = 408


class ContentTooLarge(HTTPError):
    status = 413


class URITooLong(HTTPError):
    status = 414


class HeadersTooLarge(HTTPError):
    status = 431


class NotImplementedByServer(HTTPError):
    status = 501


class VersionNotSupported(HTTPError):
    status = 505


def error_for_status(status: int, detail: str) -> HTTPError:
    """Map a parser library's status hint onto our typed errors."""
    cls = _BY_STATUS.get(status, BadRequest)
    return cls(detail)


_BY_STATUS = {
    cls.status: cls
    for cls in (
        BadRequest,
        RequestTimeout,
        ContentTooLarge,
        URITooLong,
        HeadersTooLarge,
        NotImplementedByServer,
        VersionNotSupported,
    )
}


class ResponseError(Exception):
    """The application asked for a response the protocol cannot carry (an invalid status or
    header, more body than its Content-Length announced, a second response head).

    ``rule`` says which kind of rule was broken -- ``"status"``, ``"header"``, ``"length"`` or
    ``"order"`` -- so each gateway can name the clause of its own spec.
    """

    def __init__(self, message: str, rule: str = "order"):
        super().__init__(message)
        self.rule = rule
