"""The chunked transfer coding of a request body (RFC 9112 7.1), once, for every HTTP/1.1 parser.

Sans-IO: the bytes after a request head go in through :meth:`ChunkedReader.feed`, the de-chunked
body comes out of :meth:`ChunkedReader.next_event` as the events of :mod:`refserver.wire.events`,
and the bytes after the last chunk's trailer section (a pipelined request) are handed back by
:meth:`ChunkedReader.leftover`. Both request parsers hand a chunked body to this reader as soon as
its head is parsed, so h11 and llhttp, each lenient in its own places, never frame one.

The grammar is RFC 9112's, without leniency, because a chunk line that two parsers read
differently is a request-smuggling vector (a front proxy that ends the line at a bare CR reads
another body than a server that does not)::

    chunk-line = chunk-size [ chunk-ext ] CRLF
    chunk-size = 1*HEXDIG                       ; at most 16 digits here
    chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    chunk-ext-val = token / quoted-string

Everything else on a chunk line is 400: a bare CR or LF, any other control, whitespace that no
``;`` follows, a ``;`` with no name, an unbalanced quote, a sign or ``0x`` prefix. Extensions are
read and ignored; their bytes are counted against a per-message budget (Node.js CVE-2024-22019: a
peer that sends endless extensions must cost a bounded amount of work, not an unbounded buffer).
"""

from __future__ import annotations

import re

from .events import (
    END_OF_MESSAGE,
    NEED_DATA,
    BadRequest,
    Body,
    ContentTooLarge,
    HeadersTooLarge,
)
from .fields import BARE_LF_RE, parse_field_lines

#: Chunk-extension bytes (everything between a chunk size and its CRLF) that one message may
#: carry, summed over its chunks; more is 413, as Node.js answers since CVE-2024-22019.
EXTENSIONS_LIMIT = 16384
#: Hex digits in a chunk size: 16 give every size a 64-bit count can hold. Longer ones, even
#: with leading zeros, are refused rather than parsed as arbitrarily large numbers.
SIZE_DIGITS = 16

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXT = rb"[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?" % (_TOKEN, _TOKEN, _QUOTED)
_CHUNK_LINE_RE = re.compile(rb"([0-9A-Fa-f]{1,%d})((?:%s)*)" % (SIZE_DIGITS, _EXT))
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_HEX_RE = re.compile(rb"[0-9A-Fa-f]*")
_BARE_CR_RE = re.compile(rb"\r(?!\n)")

# Reader states.
_SIZE = 0  # reading a chunk-size line
_DATA = 1  # reading chunk data
_DATA_END = 2  # reading the CRLF after chunk data
_TRAILER = 3  # reading the trailer section
_DONE = 4  # the message is complete; what is buffered belongs to the next one


def _has_bare_cr_or_lf(buf: bytearray, start: int) -> bool:
    """Whether ``buf[start:]`` holds a LF that no CR precedes, or a CR that no LF follows (a CR
    at the very end may still get its LF)."""
    if BARE_LF_RE.search(buf, start):
        return True
    cr = _BARE_CR_RE.search(buf, start)
    return cr is not None and cr.start() < len(buf) - 1


def _take(buf: bytearray, n: int) -> bytes:
    """The first ``n`` bytes of ``buf``, removed from it. All of it (a large chunk spanning
    reads) is copied once; a part is copied twice, which costs less than a view for the short
    pieces it usually is (a chunk line, a chunk within one read)."""
    if n == len(buf):
        data = bytes(buf)
        buf.clear()
    else:
        data = bytes(buf[:n])
        del buf[:n]
    return data


def chunk_size(line: bytes) -> tuple:
    """The size a chunk-size line (without its CRLF) announces and the number of bytes of its
    extensions; BadRequest when the line breaks the grammar."""
    if line and len(line) <= SIZE_DIGITS and not line.strip(_HEX_DIGITS):
        return int(line, 16), 0  # the usual line: digits only, no extensions
    match = _CHUNK_LINE_RE.fullmatch(line)
    if match is None:
        raise BadRequest("illegal chunk line: %r" % (line[:64],))
    return int(match.group(1), 16), len(line) - match.end(1)


class ChunkedReader:
    """One chunked request body, bytes in, :mod:`refserver.wire.events` out.

    ``trailer_limit`` bounds the trailer section as the head limit bounds a head (431 past it).
    Body events carry whatever chunk data has arrived, so a large chunk streams to the
    application instead of waiting whole in a buffer.
    """

    __slots__ = ("_buf", "_state", "_remaining", "_extensions", "_trailer_limit", "_eof", "_scan")

    def __init__(self, data: bytes = b"", trailer_limit: int = 65536):
        self._buf = bytearray(data)
        self._state = _SIZE
        self._remaining = (
            0  # chunk data still to come, in _DATA; CRLF bytes still to come, in _DATA_END
        )
        self._extensions = 0  # extension bytes seen in this message
        self._trailer_limit = trailer_limit
        self._eof = False
        self._scan = 0  # bytes at the start of _buf already searched for the current terminator

    def feed(self, data: bytes) -> None:
        self._buf += data

    def feed_eof(self) -> None:
        self._eof = True

    def leftover(self) -> bytes:
        """Bytes received but not part of this body: after the end, the next request's."""
        return bytes(self._buf)

    def next_event(self):
        """The next Body or END_OF_MESSAGE, or NEED_DATA; BadRequest, ContentTooLarge (too many
        extension bytes) or HeadersTooLarge (a trailer section past its limit) on bad input."""
        while True:
            state = self._state
            buf = self._buf
            if state == _DATA:
                if not buf:
                    return self._need_data()
                n = min(len(buf), self._remaining)
                data = _take(buf, n)
                self._remaining -= n
                if not self._remaining:
                    self._state = _DATA_END
                    self._remaining = 2
                return Body(data)
            if state == _SIZE:
                if not self._read_size_line():
                    return self._need_data()
            elif state == _DATA_END:
                if not self._read_data_end():
                    return self._need_data()
            elif state == _TRAILER:
                if not self._read_trailer():
                    return self._need_data()
                return END_OF_MESSAGE
            else:
                return NEED_DATA

    def _need_data(self):
        if self._eof:
            raise BadRequest("peer closed connection without sending complete message body")
        return NEED_DATA

    def _read_size_line(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n", max(self._scan - 1, 0))
        if end < 0:
            # Refuse what can no longer become a valid line as soon as it is here, rather than
            # buffer up to the limit first: a LF (any LF before a CRLF is bare), a CR that is
            # not the last byte, or more extension bytes than the message may still carry.
            if _has_bare_cr_or_lf(buf, max(self._scan - 1, 0)):
                raise BadRequest("chunk line with a bare CR or LF")
            digits = _HEX_RE.match(buf).end()  # type: ignore[union-attr]  # "*": it always matches
            if digits > SIZE_DIGITS:
                raise BadRequest("chunk size of more than %d hex digits" % SIZE_DIGITS)
            if len(buf) - digits - (buf[-1:] == b"\r") > EXTENSIONS_LIMIT - self._extensions:
                self._too_many_extensions()
            self._scan = len(buf)
            return False
        line = _take(buf, end)
        del buf[:2]
        self._scan = 0
        size, extensions = chunk_size(line)
        self._extensions += extensions
        if self._extensions > EXTENSIONS_LIMIT:
            self._too_many_extensions()
        if size:
            self._state = _DATA
            self._remaining = size
        else:
            self._state = _TRAILER
        return True

    def _too_many_extensions(self):
        raise ContentTooLarge(
            "chunk extensions are larger than %d bytes in one message" % EXTENSIONS_LIMIT
        )

    def _read_data_end(self) -> bool:
        """The CRLF after chunk data, exactly (h11 CVE-2025-43859 accepted any two bytes)."""
        buf = self._buf
        expected = b"\r\n"[2 - self._remaining :]
        have = bytes(buf[: self._remaining])
        if not expected.startswith(have):
            raise BadRequest("chunk data is not followed by CRLF")
        del buf[: len(have)]
        self._remaining -= len(have)
        if self._remaining:
            return False
        self._state = _SIZE
        return True

    def _read_trailer(self) -> bool:
        """The trailer section: field lines in the head's grammar, ended by an empty line; parsed
        and discarded (no interface carries request trailers)."""
        buf = self._buf
        if buf[:2] == b"\r\n":
            del buf[:2]  # no trailer fields
        elif buf[:1] == b"\n" or (buf[:1] == b"\r" and len(buf) > 1):
            raise BadRequest("trailer section starts with a bare CR or LF")
        else:
            end = buf.find(b"\r\n\r\n", max(self._scan - 3, 0))
            if end < 0:
                if _has_bare_cr_or_lf(buf, max(self._scan - 1, 0)):
                    raise BadRequest("trailer section with a bare CR or LF")
                if len(buf) > self._trailer_limit:
                    raise HeadersTooLarge(
                        "trailer section is larger than %d bytes" % self._trailer_limit
                    )
                self._scan = len(buf)
                return False
            end += 4
            if end > self._trailer_limit:
                raise HeadersTooLarge(
                    "trailer section is larger than %d bytes" % self._trailer_limit
                )
            parse_field_lines(bytes(buf[:end]))
            del buf[:end]
        self._scan = 0
        self._state = _DONE
        return True
