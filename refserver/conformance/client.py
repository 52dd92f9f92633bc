"""A deliberately small HTTP/1.1 client over a plain socket.

The conformance suite must send bytes no well-behaved client library would produce (bare CR,
obs-fold, two framing headers, several requests in one write) and must see exactly what the server
answers, including a connection that closes early or a body that stops short. So it speaks raw
bytes in both directions and parses responses itself, strictly: anything a server should not send
is reported as a malformed response rather than guessed around.
"""

from __future__ import annotations

import socket
import ssl
import time

MAX_RESPONSE_HEAD = 65536

#: Bytes of each direction a connection keeps for the report of a failed case: enough for the
#: heads and the start of the bodies, bounded for the flood cases that send megabytes.
WIRE_RECORD_LIMIT = 4096


def visible(data: bytes) -> str:
    """Bytes as text a person can read without being misled: printable ASCII as is, CR, LF and
    TAB as ``\\r``, ``\\n``, ``\\t`` (a line break follows ``\\n``), a backslash doubled,
    any other byte as ``\\xHH``. So a bare LF and CRLF look different, and no byte from the wire
    reaches a terminal or a page as itself."""
    out = []
    for byte in data:
        if byte == 0x0A:
            out.append("\\n\n")
        elif byte == 0x0D:
            out.append("\\r")
        elif byte == 0x09:
            out.append("\\t")
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


class ClientError(Exception):
    """The exchange could not be completed as the case expected (named ``kind`` for reports)."""

    kind = "error"


class Closed(ClientError):
    """The server closed the connection before a complete response arrived."""

    kind = "closed"

    def __init__(self, message: str, partial: bytes = b"", head: Response | None = None):
        super().__init__(message)
        self.partial = partial
        self.head = head  # the response head, when the connection closed inside the body


class Timeout(ClientError):
    kind = "timeout"

    def __init__(self, message: str, partial: bytes = b""):
        super().__init__(message)
        self.partial = partial


class Malformed(ClientError):
    kind = "malformed"


class Response:
    """One response as it arrived: status line, headers (order and case kept), de-chunked body."""

    __slots__ = (
        "version",
        "status",
        "reason",
        "headers",
        "body",
        "chunked",
        "chunk_sizes",
        "trailers",
        "close_delimited",
        "interim",
        "raw_head",
    )

    def __init__(self, version: str, status: int, reason: str, headers: list, raw_head: bytes):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] as str (latin-1), names as sent
        self.body = b""
        self.chunked = False
        self.chunk_sizes: list = []
        self.trailers: list = []
        self.close_delimited = False
        self.interim: list = []  # 1xx responses received before this one
        self.raw_head = raw_head

    def header(self, name: str):
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body.decode("latin-1"),
            "chunked": self.chunked,
            "chunk_sizes": self.chunk_sizes,
            "trailers": [list(pair) for pair in self.trailers],
            "close_delimited": self.close_delimited,
            "interim": [r.status for r in self.interim],
        }


class Connection:
    """A client connection with an explicit deadline on every read.

    ``eof`` becomes true when the server closed (or reset) the connection; bytes read but not yet
    parsed stay in ``buffer`` so pipelined responses are split exactly where the server put them.
    """

    def __init__(self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                # A TLS connection that ends without close_notify was cut, not closed: the
                # error is kept, so a body delimited by the close is seen as truncated.
                sock = tls.wrap_socket(sock, server_hostname=host, suppress_ragged_eofs=False)
            except OSError:
                sock.close()
                raise
        self.sock = sock
        self.tls = tls is not None
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False
        self.reset = False
        self.local_port = self.sock.getsockname()[1]
        # The start of each direction, for the report of a failed case (see wire_record).
        self.sent = bytearray()
        self.received = bytearray()
        self.sent_total = 0
        self.received_total = 0

    def wire_record(self) -> dict:
        """What went each way on this connection: the first WIRE_RECORD_LIMIT bytes of each, as
        :func:`visible` text, and the totals."""
        return {
            "local_port": self.local_port,
            "sent": visible(bytes(self.sent)),
            "sent_bytes": self.sent_total,
            "received": visible(bytes(self.received)),
            "received_bytes": self.received_total,
        }

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> bool:
        """Send everything; False if the server had already closed (the case decides if it may)."""
        self.sent += data[: WIRE_RECORD_LIMIT - len(self.sent)]
        self.sent_total += len(data)
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return False
        except TimeoutError:
            return False

    def selected_protocol(self):
        """The protocol the server chose by ALPN (None in cleartext or without ALPN)."""
        return self.sock.selected_alpn_protocol() if self.tls else None

    def shutdown_write(self) -> None:
        """Half-close: a TCP FIN (cleartext only; cases that do it do not run over TLS)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _fill(self, deadline: float) -> bool:
        """Read once more into the buffer; False at EOF. Raises :class:`Timeout` at the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("no data from the server in time", bytes(self.buffer))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise Timeout("no data from the server in time", bytes(self.buffer)) from None
        except (ConnectionResetError, ssl.SSLEOFError):
            self.eof = True
            self.reset = True
            return False
        except OSError:
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.received += data[: WIRE_RECORD_LIMIT - len(self.received)]
        self.received_total += len(data)
        self.buffer += data
        return True

    def _take(self, count: int) -> bytes:
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def _read_exact(self, count: int, deadline: float, head: Response) -> bytes:
        while len(self.buffer) < count:
            if not self._fill(deadline):
                raise Closed(
                    "connection closed %d bytes into a %d-byte body" % (len(self.buffer), count),
                    bytes(self.buffer),
                    head,
                )
        return self._take(count)

    def _read_line(self, deadline: float, head: Response, limit: int = 4096) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = self._take(end)
                del self.buffer[:2]
                return line
            if len(self.buffer) > limit:
                raise Malformed("chunk line longer than %d bytes" % limit)
            if not self._fill(deadline):
                raise Closed("connection closed inside a chunked body", bytes(self.buffer), head)

    def read_response(self, head_request: bool = False, timeout: float | None = None) -> Response:
        """Read one final response (1xx responses before it are kept in ``interim``)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        interim = []
        while True:
            response = self._read_head(deadline)
            if 100 <= response.status < 200 and response.status != 101:
                interim.append(response)
                continue
            response.interim = interim
            self._read_body(response, head_request, deadline)
            return response

    def read_head_only(self, timeout: float | None = None) -> Response:
        """Read one response head and nothing after it (an interim 1xx response)."""
        timeout = timeout if timeout is not None else self.timeout
        return self._read_head(time.monotonic() + timeout)

    def _read_head(self, deadline: float) -> Response:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buffer) > MAX_RESPONSE_HEAD:
                raise Malformed("response head larger than %d bytes" % MAX_RESPONSE_HEAD)
            if not self._fill(deadline):
                if self.buffer:
                    raise Closed("connection closed inside a response head", bytes(self.buffer))
                raise Closed("connection closed without a response")
        raw = self._take(end + 4)
        lines = raw[:-4].split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise Malformed("bad status line %r" % status_line[:200])
        if len(parts[1]) != 3:
            raise Malformed("status code must be three digits: %r" % status_line[:200])
        headers = []
        for line in lines[1:]:
            if b"\n" in line or b"\r" in line:
                raise Malformed("bare CR or LF in response head: %r" % line[:200])
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise Malformed("bad response header line %r" % line[:200])
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        return Response(
            parts[0].decode("latin-1"),
            int(parts[1]),
            parts[2].decode("latin-1") if len(parts) > 2 else "",
            headers,
            raw,
        )

    def _read_body(self, response: Response, head_request: bool, deadline: float) -> None:
        status = response.status
        if head_request or status in (204, 304) or 100 <= status < 200:
            return
        te = response.header_all("transfer-encoding")
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
            if codings and codings[-1] == "chunked":
                response.chunked = True
                self._read_chunked(response, deadline)
                return
            response.close_delimited = True
            response.body = self._read_until_close(deadline, response)
            return
        lengths = response.header_all("content-length")
        if lengths:
            values = {v.strip() for v in lengths}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise Malformed("invalid Content-Length in response: %r" % lengths)
            response.body = self._read_exact(int(next(iter(values))), deadline, response)
            return
        response.close_delimited = True
        response.body = self._read_until_close(deadline, response)

    def _read_chunked(self, response: Response, deadline: float) -> None:
        body = bytearray()
        while True:
            line = self._read_line(deadline, response)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
                if not size_text or size_text[:1] in b"+-" or size_text.lower().startswith(b"0x"):
                    raise ValueError
            except ValueError:
                raise Malformed("bad chunk size line %r" % line[:100]) from None
            if size == 0:
                break
            response.chunk_sizes.append(size)
            body += self._read_exact(size, deadline, response)
            if self._read_exact(2, deadline, response) != b"\r\n":
                raise Malformed("chunk data not followed by CRLF")
        while True:
            line = self._read_line(deadline, response)
            if not line:
                break
            name, _, value = line.partition(b":")
            response.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        response.body = bytes(body)

    def _read_until_close(self, deadline: float, response: Response) -> bytes:
        while self._fill(deadline):
            pass
        if self.reset:
            # A body that ends with the connection ends with a clean close; a reset cuts it.
            raise Closed(
                "connection reset inside a close-delimited body", bytes(self.buffer), head=response
            )
        return self._take(len(self.buffer))

    def wait_closed(self, timeout: float) -> bytes:
        """Read until the server closes; returns what arrived before (there should be nothing).

        Raises :class:`Timeout` if the connection is still open at the deadline.
        """
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        return self._take(len(self.buffer))

    def quiet_for(self, seconds: float) -> bytes:
        """Wait ``seconds`` for unsolicited bytes; returns what arrived (EOF sets ``eof``)."""
        deadline = time.monotonic() + seconds
        try:
            while self._fill(deadline):
                pass
        except Timeout:
            pass
        return self._take(len(self.buffer))
