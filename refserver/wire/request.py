"""The request as every gateway sees it, whichever protocol carried it."""

from __future__ import annotations


class Request:
    """What a request says about itself: method, target, version, fields.

    ``raw_path`` is still percent-encoded and has no query; ``headers`` keep the order and
    duplicates of the wire, names lower-case. ``authority`` is the authority the protocol carried
    apart from the fields (an HTTP/2 ``:authority``), else ``None``.
    """

    __slots__ = ("method", "raw_path", "query_string", "http_version", "headers", "authority")

    def __init__(self, method, raw_path, query_string, http_version, headers, authority):
        self.method = method
        self.raw_path = raw_path
        self.query_string = query_string
        self.http_version = http_version
        self.headers = headers
        self.authority = authority
