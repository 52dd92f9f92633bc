"""A Stream (refserver.gateways.stream) held in memory, with no protocol under it.

The gateways are tested over it to show that the Stream contract is all they use: whatever a
gateway needs beyond these attributes and methods would fail here before it failed over HTTP/2.
The response rules are the server's own (refserver.wire.response), so an invalid response raises
here as it does on the wire; what the gateway sent is recorded for the test to read.
"""

from __future__ import annotations

import asyncio

from refserver.files import check_whole, copy_blocks
from refserver.gateways.stream import ClientDisconnected
from refserver.wire.events import ResponseError
from refserver.wire.request import Request
from refserver.wire.response import (
    ResponseRules,
    check_complete,
    check_informational,
    check_trailers,
    count_body,
)


class MemoryStream:
    def __init__(
        self,
        method: str = "GET",
        raw_path: bytes = b"/",
        query_string: bytes = b"",
        http_version: str = "1.1",
        headers=((b"host", b"example.com"),),
        body=(),
        *,
        scheme: str = "http",
        client=("127.0.0.1", 5000),
        server=("127.0.0.1", 8000),
        authority: str | None = None,
        tls: dict | None = None,
    ):
        self.request = Request(
            method, raw_path, query_string, http_version, list(headers), authority
        )
        self.scheme = scheme
        self.client = client
        self.server = server
        self.tls = tls
        self.body_complete = False
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.status = 0
        self.body_sent = 0
        self.started = 0.0
        self.response_headers = None
        self._chunks = list(body)
        self._changed = asyncio.Event() if _running() else None
        self._rules = ResponseRules(server_header=None, date_header=False)
        self._remaining = -1
        # What the gateway did, for the test.
        self.fields: list | None = None
        self.sent = bytearray()
        self.close_requested = False
        self.aborted = False
        self.informational: list = []  # (status, fields) of each 1xx sent
        self.trailers: list | None = None
        self.files: list = []  # (offset, count, end) of each send_file

    # ------------------------------------------------------------------ the test's side

    def disconnect(self) -> None:
        """The client goes away."""
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ the contract

    async def receive(self) -> bytes:
        if self._chunks:
            data = self._chunks.pop(0)
            if not self._chunks:
                self.body_complete = True
            return data
        if self.disconnected and not self.body_complete:
            raise ClientDisconnected("the client disconnected before sending the whole body")
        self.body_complete = True
        return b""

    def take_body(self):
        if self.body_complete:
            return None
        self.body_complete = True
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    async def wait_disconnect(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        while not (self.disconnected or self.response_complete):
            self._changed.clear()
            await self._changed.wait()

    def start_response(self, status, headers, body=b"", end=False, close=False) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if self.response_started:
            raise ResponseError("the response has already started")
        head_only = self.request.method == "HEAD"
        fields, length, asked_close = self._rules.head(status, headers, body, end, head_only)
        self.fields = fields
        self.response_headers = headers
        self.status = status
        self.close_requested = close or asked_close
        self.response_started = True
        self._remaining = -1 if head_only else length  # HEAD: the GET's length, no body owed
        self._write(b"" if head_only else body)
        self.body_sent = 0 if head_only else len(body)
        if end:
            self.end_response()

    async def send_body(self, data: bytes, end: bool = False) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if not self.response_started or self.response_complete:
            raise ResponseError("response body sent outside of a response")
        self._write(data)
        self.body_sent += len(data)
        if end:
            self.end_response()
        await asyncio.sleep(0)

    async def send_file(self, fd: int, offset: int, count: int, end: bool = True) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if not self.response_started or self.response_complete:
            raise ResponseError("response body sent outside of a response")
        self.files.append((offset, count, end))
        if self.request.method != "HEAD":
            check_whole(self, await copy_blocks(fd, offset, count, self.send_body), count)
        if end:
            self.end_response()

    def end_response(self) -> None:
        if self.response_complete:
            return
        if self._remaining > 0:
            check_complete(self._remaining)
        self.response_complete = True
        self._wake()

    async def send_trailers(self, headers: list) -> None:
        fields = check_trailers(headers)
        self.end_response()
        self.trailers = fields

    def send_informational(self, status: int, headers: list) -> None:
        fields = check_informational(status, headers)
        if not self.response_started:
            self.informational.append((status, fields))

    def abort(self) -> None:
        self.aborted = True
        self.disconnected = True
        self._wake()

    def _write(self, data: bytes) -> None:
        if self._remaining >= 0 and data:
            self._remaining = count_body(self._remaining, len(data))
        self.sent += data
        self.body_sent += len(data)


def _running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False
