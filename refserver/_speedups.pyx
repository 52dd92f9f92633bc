# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The fast-path components: drop-ins for named pure-Python ones, selected in :mod:`refserver.impl`.

- :class:`FastParser` replaces :class:`refserver.wire.h11_parser.H11Parser`: same interface, same
  events, same typed errors (same status) for the same bytes, however they are split.
- :func:`write_head` replaces :func:`refserver.wire.h1.write_head`, byte for byte.
- :func:`rsgi_scope`, :func:`asgi_scope` and :func:`wsgi_environ` are :mod:`refserver.scopes`
  compiled from the same source.
- :func:`ws_unmask` replaces :func:`refserver.wire.ws.unmask`.

Everything that decides *what* is sent (limits, keep-alive, framing of responses) stays in
:class:`refserver.wire.h1.H1Connection`, shared by both paths.

Why the parser is not "just llhttp": the reference grammar is h11's, and llhttp (as built into
httptools) differs from it in both directions. It refuses things h11 and RFC 9112 accept (methods
it does not know, HTTP/d.d versions other than 0.9/1.0/1.1/2.0, bare-LF line ends, obs-fold,
control characters that RFC 9110 5.5 lets a recipient retain, ``Content-Length: 5, 5``, chunk
extensions that are not tokens, whitespace after a chunk size) and accepts things h11 refuses
(two spaces in the request line, a request without Host, ``Transfer-Encoding: gzip, chunked``).
And httptools' Python API cannot say where in a buffer a message ended, which pipelining needs.

So the work is split:

- framing is ours: where a head ends, Content-Length bodies (with h11's exact event granularity),
  pipelining (PAUSED), end of input, the incomplete-event size limit; a chunked body goes to the
  compiled copy of :class:`refserver.wire.chunked.ChunkedReader`, the framing both paths share;
- the request line is ours (one short line; llhttp would normalise away what h11 refuses);
- the header block is tokenised and validated by llhttp, in C, in the common case; our checks on
  its tokens are cheap (name alphabet, trailing whitespace). Whenever llhttp refuses a head, or
  does not finish it, our own tokenizer -- the exact h11 grammar -- decides instead, so the
  result never depends on llhttp's opinion, only its speed does;
- the field semantics h11 applies (Content-Length lists and duplicates, Transfer-Encoding, Host)
  are ours, shared by both tokenizers.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport (
    PyByteArray_AS_STRING,
    PyByteArray_FromStringAndSize,
    PyByteArray_GET_SIZE,
    PyByteArray_Resize,
)
from cpython.list cimport PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.string cimport memchr, memcmp, memcpy

from .wire._compiled_chunked cimport ChunkedReader

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from .wire.events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    BadRequest,
    Body,
    HeadersTooLarge,
    HTTPError,
    NotImplementedByServer,
    RequestHead,
)
from .wire.fields import BAD_VALUE_RE
from .wire.h1 import write_head as _reference_write_head

# ---------------------------------------------------------------------------------------- tables

cdef unsigned char TCHAR[256]    # RFC 9110 token characters
cdef unsigned char VCHAR[256]    # %x21-7E, h11's request-target alphabet
# Refused in a field value (refserver.wire.fields' rule): 1 for what h11 refuses while it reads a
# field line (NUL, LF, VT, FF, CR), 2 for the other controls, which the reference path refuses once
# the framing fields have been read -- so a head with both faults gets the same status on both paths.
cdef unsigned char BADVAL[256]
cdef unsigned char HEXVAL[256]   # hex digit value, 255 for anything else


cdef void _init_tables() noexcept:
    cdef int c
    cdef bytes extra = b"!#$%&'*+-.^_`|~"
    for c in range(256):
        TCHAR[c] = 0
        VCHAR[c] = 1 if 0x21 <= c <= 0x7E else 0
        BADVAL[c] = 0
        HEXVAL[c] = 255
    for c in range(ord("0"), ord("9") + 1):
        TCHAR[c] = 1
        HEXVAL[c] = c - ord("0")
    for c in range(ord("a"), ord("z") + 1):
        TCHAR[c] = 1
        TCHAR[c - 32] = 1
    for c in range(6):
        HEXVAL[ord("a") + c] = 10 + c
        HEXVAL[ord("A") + c] = 10 + c
    for c in extra:
        TCHAR[c] = 1
    for c in range(256):
        if BAD_VALUE_RE.match(bytes((c,))) is not None:
            BADVAL[c] = 1 if c in (0, 10, 11, 12, 13) else 2


_init_tables()

cdef object _NOTHING = object()  # a reader found no complete event in the buffer
cdef bytes _EMPTY = b""
# Stands in for a request body that llhttp was told of (see FastParser._end_llhttp_message).
cdef Py_ssize_t _FILLER_SIZE = 65536
cdef object _FILLER = memoryview(bytes(_FILLER_SIZE))
cdef bytes _V11 = b"1.1"
cdef bytes _V10 = b"1.0"
cdef bytes _CONTENT_LENGTH = b"content-length"
cdef bytes _TRANSFER_ENCODING = b"transfer-encoding"
cdef bytes _HOST = b"host"
cdef bytes _CHUNKED = b"chunked"
# Method names are interned, so the common requests allocate nothing for them.
cdef tuple _METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"PATCH", b"OPTIONS")

cdef enum:
    S_HEAD = 0
    S_LENGTH = 1
    S_CHUNKED = 2
    S_DONE = 3

cdef unsigned long long _SATURATED = 0xFFFFFFFFFFFFFFFFULL


# -------------------------------------------------------------------------------- small helpers

cdef inline bint _is_ows(unsigned char c) noexcept:
    return c == 32 or c == 9


cdef bytes _lower(const unsigned char* p, Py_ssize_t n):
    """ASCII lower case; the input object itself is not at hand here, so this always allocates."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        q[i] = c + 32 if 65 <= c <= 90 else c
    return out


cdef bytes _lower_bytes(bytes b):
    """``b.lower()`` without a new object when ``b`` has no upper case (the usual header name)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(b)
    for i in range(n):
        if 65 <= p[i] <= 90:
            return _lower(p, n)
    return b


cdef bytes _method(const unsigned char* p, Py_ssize_t n):
    cdef bytes m
    for m in _METHODS:
        if PyBytes_GET_SIZE(m) == n and memcmp(PyBytes_AS_STRING(m), p, n) == 0:
            return m
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef unsigned long long _parse_decimal(bytes digits) noexcept:
    """A validated Content-Length (1 to 20 digits); saturates instead of overflowing, as no peer can
    send 2**64 bytes anyway."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(digits)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(digits)
    cdef unsigned long long v = 0
    cdef unsigned int d
    for i in range(n):
        d = p[i] - 48
        if v > (_SATURATED - d) // 10:
            return _SATURATED
        v = v * 10 + d
    return v


cdef tuple _header_line(const unsigned char* p, Py_ssize_t n, bint* control):
    """One header line, h11's grammar: ``token ":" OWS field-value OWS``; sets ``control`` for a
    value with a control that is refused only after the framing fields (see BADVAL)."""
    cdef Py_ssize_t i = 0, vs, ve
    while i < n and TCHAR[p[i]]:
        i += 1
    if i == 0 or i == n or p[i] != 58:  # ':'
        raise BadRequest("illegal header line: %r" % (<bytes>p[:n],))
    vs = i + 1
    ve = n
    for j in range(vs, n):
        if BADVAL[p[j]]:
            if BADVAL[p[j]] == 1:
                raise BadRequest("illegal header line: %r" % (<bytes>p[:n],))
            control[0] = True
    while vs < ve and _is_ows(p[vs]):
        vs += 1
    while ve > vs and _is_ows(p[ve - 1]):
        ve -= 1
    return (_lower(p, i), PyBytes_FromStringAndSize(<const char*>p + vs, ve - vs))


cdef bint _has_bare_lf(const unsigned char* p, Py_ssize_t n) noexcept:
    """Whether a LF in ``p[:n]`` is not preceded by CR (refserver.wire.fields.BARE_LF_RE)."""
    cdef const unsigned char* q = p
    cdef const unsigned char* end = p + n
    while q < end:
        q = <const unsigned char*>memchr(q, 10, end - q)
        if q == NULL:
            return False
        if q == p or q[-1] != 13:
            return True
        q += 1
    return False


cdef list _decode_lines(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, bint* control):
    """The header lines in ``p[i:end]`` up to the first empty line, folded and validated as h11
    does: a line that starts with SP/HTAB continues the previous one, joined by one SP."""
    cdef list out = []
    cdef Py_ssize_t ls, le, nl, k
    cdef Py_ssize_t ps = -1, pe = -1  # the pending (not yet validated) line, when not folded
    cdef bytearray folded = None
    cdef const unsigned char* q
    while i < end:
        q = <const unsigned char*>memchr(p + i, 10, end - i)
        nl = end if q == NULL else q - p
        ls = i
        le = nl
        if le > ls and p[le - 1] == 13:
            le -= 1
        i = nl + 1
        if le == ls:
            break
        if _is_ows(p[ls]):
            if folded is None:
                if ps < 0:
                    raise BadRequest("continuation line at start of headers")
                folded = PyByteArray_FromStringAndSize(<const char*>p + ps, pe - ps)
            k = ls
            while k < le and _is_ows(p[k]):
                k += 1
            folded += b" "
            folded += (<const char*>p)[k:le]
            continue
        if folded is not None:
            out.append(_header_line(<const unsigned char*>PyByteArray_AS_STRING(folded),
                                    PyByteArray_GET_SIZE(folded), control))
            folded = None
        elif ps >= 0:
            out.append(_header_line(p + ps, pe - ps, control))
        ps = ls
        pe = le
    if folded is not None:
        out.append(_header_line(<const unsigned char*>PyByteArray_AS_STRING(folded),
                                PyByteArray_GET_SIZE(folded), control))
    elif ps >= 0:
        out.append(_header_line(p + ps, pe - ps, control))
    return out


cdef bytes _content_length(bytes value):
    """h11's reading of one Content-Length field: a comma list of one repeated value is that value
    (RFC 9110 8.6 allows either this or a rejection); 1 to 20 digits."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(value)
    cdef bytes v = value
    if memchr(p, 44, n) != NULL:  # ','
        parts = {part.strip() for part in value.split(b",")}
        if len(parts) != 1:
            raise BadRequest("conflicting Content-Length headers")
        v = parts.pop()
        p = <const unsigned char*>PyBytes_AS_STRING(v)
        n = PyBytes_GET_SIZE(v)
    if n == 0:
        raise BadRequest("bad Content-Length")
    for i in range(n):
        if not 48 <= p[i] <= 57:
            raise BadRequest("bad Content-Length")
    if n > 20:
        raise BadRequest("bad Content-Length")
    return v


# --------------------------------------------------------------------------- llhttp tokenizer


cdef class _HeaderSink:
    """The httptools callback object. Kept thin: it validates the alphabet of what llhttp hands
    over and normalises it (lower-case name, stripped value); any doubt sets ``refused`` and the
    exact tokenizer decides instead."""

    cdef list headers
    cdef bint head_done
    cdef bint message_done
    cdef bint refused

    def on_header(self, bytes name, bytes value):
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(name)
        cdef Py_ssize_t i, n = PyBytes_GET_SIZE(name), vs = 0, ve
        if n == 0 or self.refused:
            self.refused = True
            return
        for i in range(n):
            if not TCHAR[p[i]]:
                self.refused = True
                return
        p = <const unsigned char*>PyBytes_AS_STRING(value)
        ve = PyBytes_GET_SIZE(value)
        for i in range(ve):
            if BADVAL[p[i]]:
                self.refused = True
                return
        while vs < ve and _is_ows(p[vs]):
            vs += 1
        while ve > vs and _is_ows(p[ve - 1]):
            ve -= 1
        if vs != 0 or ve != PyBytes_GET_SIZE(value):
            value = PyBytes_FromStringAndSize(<const char*>p + vs, ve - vs)
        self.headers.append((_lower_bytes(name), value))

    def on_headers_complete(self):
        self.head_done = True

    def on_message_complete(self):
        self.message_done = True


# ------------------------------------------------------------------------------------ the parser


cdef class FastParser:
    """Bytes in, :mod:`refserver.wire.events` out, typed errors raised: the H11Parser interface.

    The unparsed input is ``_data[_pos:]``. ``_data`` is the caller's own bytes object while a feed
    is parsed whole (so a body that fills a read is handed on without a copy), and a private
    bytearray only while a partial event waits for more (so slow peers cost O(n), not O(n^2)).
    """

    cdef object _data
    cdef Py_ssize_t _pos
    cdef bint _owned
    cdef Py_ssize_t _scan  # bytes after _pos already searched for the current terminator
    cdef int _state
    cdef bint _at_start
    cdef bint _eof
    cdef bint _failed
    cdef unsigned long long _remaining
    cdef ChunkedReader _reader  # the reader of a chunked body
    cdef Py_ssize_t _max_head
    cdef bint _use_llhttp
    cdef object _ll
    cdef _HeaderSink _sink
    #: Heads whose fields llhttp tokenised (the others went to the exact tokenizer).
    cdef readonly unsigned long long llhttp_heads
    #: llhttp parsers made (one serves every head until a message it cannot end by itself).
    cdef readonly unsigned long long llhttp_parsers
    # framing found by the last _normalize of a request head
    cdef bint _chunked
    cdef bint _has_length
    cdef bytes _length

    def __cinit__(self, Py_ssize_t max_head_size, *, bint llhttp=True):
        """``max_head_size``: while an incomplete event (a head, a chunk-size line, trailers)
        grows past this, 431. ``llhttp=False`` uses only the exact tokenizer (for tests)."""
        self._data = _EMPTY
        self._pos = 0
        self._owned = False
        self._scan = 0
        self._state = S_HEAD
        self._at_start = True
        self._eof = False
        self._failed = False
        self._remaining = 0
        self._reader = None
        self._max_head = max_head_size
        self._use_llhttp = llhttp
        self._sink = _HeaderSink()
        self._ll = None

    # ------------------------------------------------------------------ buffer

    cdef inline Py_ssize_t _size(self):
        if self._owned:
            return PyByteArray_GET_SIZE(self._data)
        return PyBytes_GET_SIZE(self._data)

    cdef inline const unsigned char* _ptr(self):
        if self._owned:
            return <const unsigned char*>PyByteArray_AS_STRING(self._data)
        return <const unsigned char*>PyBytes_AS_STRING(self._data)

    cdef inline void _consume(self, Py_ssize_t n):
        self._pos += n
        self._scan = 0
        if self._pos >= self._size():
            self._data = _EMPTY
            self._pos = 0
            self._owned = False

    cdef bytes _take(self, Py_ssize_t n):
        cdef bytes out
        if not self._owned and self._pos == 0 and n == PyBytes_GET_SIZE(self._data):
            out = <bytes>self._data
        else:
            out = PyBytes_FromStringAndSize(<const char*>self._ptr() + self._pos, n)
        self._consume(n)
        return out

    cdef int _append(self, bytes data, Py_ssize_t skip) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data) - skip
        cdef Py_ssize_t have = self._size() - self._pos
        cdef Py_ssize_t old
        cdef bytearray ba
        if have == 0:
            self._data = data
            self._pos = skip
            self._owned = False
            self._scan = 0
            return 0
        if self._owned:
            ba = <bytearray>self._data
            if self._pos:
                del ba[:self._pos]  # O(1): CPython moves the start of a bytearray
                self._pos = 0
        else:
            ba = PyByteArray_FromStringAndSize(<const char*>self._ptr() + self._pos, have)
            self._data = ba
            self._pos = 0
            self._owned = True
        old = PyByteArray_GET_SIZE(ba)
        PyByteArray_Resize(ba, old + n)
        memcpy(PyByteArray_AS_STRING(ba) + old, PyBytes_AS_STRING(data) + skip, n)
        return 0

    cdef Py_ssize_t _find_blank_line(self):
        """End (relative to _pos) of the first ``\\n\\r?\\n``, or -1; resumes where it stopped."""
        cdef const unsigned char* p = self._ptr() + self._pos
        cdef Py_ssize_t n = self._size() - self._pos
        cdef Py_ssize_t i = self._scan - 2 if self._scan > 2 else 0
        cdef const unsigned char* q
        cdef Py_ssize_t j
        while i < n:
            q = <const unsigned char*>memchr(p + i, 10, n - i)
            if q == NULL:
                break
            j = q - p
            if j + 1 < n and p[j + 1] == 10:
                return j + 2
            if j + 2 < n and p[j + 1] == 13 and p[j + 2] == 10:
                return j + 3
            i = j + 1
        self._scan = n
        return -1

    # ------------------------------------------------------------------ interface

    def feed(self, data):
        cdef const unsigned char* p
        cdef Py_ssize_t n, skip = 0
        if type(data) is not bytes:
            data = bytes(data)
        n = PyBytes_GET_SIZE(data)
        if n == 0:
            return  # end of input is feed_eof()
        if self._reader is not None:
            self._reader.feed(data)
            return
        if self._at_start:
            # RFC 9112 2.2: empty lines before a request line are ignored (as the reference does).
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            while skip < n and (p[skip] == 13 or p[skip] == 10):
                skip += 1
            if skip == n:
                return
            self._at_start = False
        if self._eof:
            raise RuntimeError("received close, then received more data?")
        self._append(data, skip)

    def feed_eof(self):
        self._eof = True
        if self._reader is not None:
            self._reader.feed_eof()

    def buffered(self):
        """Bytes received but not parsed yet (the start of a pipelined request)."""
        if self._reader is not None:
            return self._reader.leftover()
        if not self._owned and self._pos == 0:
            return self._data
        return PyBytes_FromStringAndSize(<const char*>self._ptr() + self._pos,
                                         self._size() - self._pos)

    def next_event(self):
        cdef object event
        cdef Py_ssize_t have
        if self._failed:
            raise BadRequest("can't receive data when peer state is ERROR")
        if self._state == S_DONE:
            if self._size() - self._pos:
                return PAUSED
            return None if self._eof else NEED_DATA
        try:
            if self._state == S_HEAD:
                event = self._read_head()
            elif self._state == S_LENGTH:
                event = self._read_length()
            else:
                event = self._reader.next_event()
                if event is END_OF_MESSAGE:
                    self._end_chunked()
                return event
            if event is not _NOTHING:
                return event
            have = self._size() - self._pos
            if have == 0 and self._eof:
                if self._state == S_HEAD:
                    return None  # closed between requests
                raise BadRequest("peer closed connection without sending complete message body")
            if have > self._max_head:
                raise HeadersTooLarge("receive buffer too long")
            if self._eof:
                raise BadRequest("peer unexpectedly closed connection")
            return NEED_DATA
        except HTTPError:
            self._failed = True
            raise

    def start_next_cycle(self):
        cdef const unsigned char* p
        cdef Py_ssize_t have, skip = 0
        if self._reader is not None:
            self._end_chunked()
        self._state = S_HEAD
        self._failed = False
        self._remaining = 0
        self._scan = 0
        self._at_start = True
        have = self._size() - self._pos
        if have:
            p = self._ptr() + self._pos
            while skip < have and (p[skip] == 13 or p[skip] == 10):
                skip += 1
            self._consume(skip)
            if skip < have:
                self._at_start = False

    # ------------------------------------------------------------------ readers

    cdef object _read_length(self):
        cdef Py_ssize_t have, n
        if self._remaining == 0:
            self._state = S_DONE
            return END_OF_MESSAGE
        have = self._size() - self._pos
        if have == 0:
            return _NOTHING
        n = have if <unsigned long long>have < self._remaining else <Py_ssize_t>self._remaining
        self._remaining -= n
        return Body(self._take(n))

    cdef _end_chunked(self):
        """Take back from the chunked reader the bytes after its body (a pipelined request)."""
        rest = self._reader.leftover()
        self._reader = None
        self._data = rest
        self._pos = 0
        self._owned = False
        self._scan = 0
        self._state = S_DONE

    cdef object _read_head(self):
        cdef Py_ssize_t have = self._size() - self._pos
        cdef Py_ssize_t end
        if have == 0:
            return _NOTHING
        end = self._find_blank_line()
        if end < 0:
            # A request line never starts with a control or a space: fail early (as h11 does)
            # rather than wait for the deadline on, say, a TLS handshake.
            if self._ptr()[self._pos] < 0x21:
                raise BadRequest("illegal request line")
            return _NOTHING
        return self._parse_head(self._take(end))

    cdef object _parse_head(self, bytes head):
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(head)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(head)
        cdef Py_ssize_t le, line_end, i, t_start, t_end
        cdef bytes method, target, version
        cdef list headers = None
        cdef const unsigned char* v
        cdef bint control = False
        le = (<const unsigned char*>memchr(p, 10, n)) - p
        line_end = le - 1 if le > 0 and p[le - 1] == 13 else le
        # request-line = token SP 1*%x21-7E SP "HTTP/" DIGIT "." DIGIT  (h11's grammar)
        i = 0
        while i < line_end and TCHAR[p[i]]:
            i += 1
        if i == 0 or i >= line_end or p[i] != 32:
            raise BadRequest("illegal request line: %r" % (<bytes>(<const char*>p)[:line_end],))
        method = _method(p, i)
        i += 1
        t_start = i
        while i < line_end and VCHAR[p[i]]:
            i += 1
        t_end = i
        v = p + i + 1
        if (t_end == t_start or line_end - t_end != 9 or p[t_end] != 32
                or memcmp(v, b"HTTP/", 5) != 0 or not 48 <= v[5] <= 57 or v[6] != 46
                or not 48 <= v[7] <= 57):
            raise BadRequest("illegal request line: %r" % (<bytes>(<const char*>p)[:line_end],))
        target = PyBytes_FromStringAndSize(<const char*>p + t_start, t_end - t_start)
        if v[5] == 49 and v[7] == 49:
            version = _V11
        elif v[5] == 49 and v[7] == 48:
            version = _V10
        else:
            version = PyBytes_FromStringAndSize(<const char*>v + 5, 3)

        if self._use_llhttp:
            headers = self._llhttp_headers(head)  # refuses every control: then the exact rules
        if headers is None:
            headers = _decode_lines(p, le + 1, n, &control)
        headers = self._normalize(headers, version is _V11)
        # Refused after the framing fields, in the order the reference path finds them.
        if _has_bare_lf(p, n):
            raise BadRequest("bare LF in the request head: lines end with CRLF")
        if control:
            raise BadRequest("illegal header value: a control character")

        if self._chunked:
            self._state = S_CHUNKED
            self._reader = ChunkedReader(self._take(self._size() - self._pos), self._max_head)
            if self._eof:
                self._reader.feed_eof()
        else:
            self._state = S_LENGTH
            self._remaining = _parse_decimal(self._length) if self._has_length else 0
        if self._ll is not None and not self._sink.message_done:
            self._end_llhttp_message()
        return RequestHead(method, target, version, headers)

    cdef list _llhttp_headers(self, bytes head):
        """The header fields as llhttp tokenises them, or None where the exact tokenizer must
        decide. llhttp is fed exactly one head; it is reused while each message ends (see
        _end_llhttp_message), and replaced after an error."""
        cdef _HeaderSink sink = self._sink
        if self._ll is None:
            self._ll = HttpRequestParser(sink)
            self.llhttp_parsers += 1
        sink.headers = []
        sink.head_done = False
        sink.message_done = False
        sink.refused = False
        try:
            self._ll.feed_data(head)
        except HttpParserUpgrade:
            pass  # CONNECT / Upgrade: httptools has already resumed the parser
        except HttpParserError:
            self._ll = None
            return None
        if not sink.head_done or sink.refused:
            if not sink.message_done:
                self._ll = None
            return None
        self.llhttp_heads += 1
        return sink.headers

    cdef _end_llhttp_message(self):
        """llhttp was fed a head that announces a body, and waits for it. It never sees the
        body (this parser frames it, from ``_remaining``): a Content-Length body of up to
        ``_FILLER_SIZE`` bytes is stood in for by as many zero bytes, so that llhttp ends the
        message and is reused for the next head; any other is dropped (making a parser costs
        more than the filler)."""
        if (not self._chunked and self._has_length
                and self._remaining <= <unsigned long long>_FILLER_SIZE):
            try:
                self._ll.feed_data(_FILLER[:self._remaining])
            except HttpParserError:
                pass
        if not self._sink.message_done:
            self._ll = None

    cdef list _normalize(self, list headers, bint http11):
        """h11's field semantics, in h11's order: Content-Length (a list of one value, duplicates
        dropped, 400 on conflict), Transfer-Encoding (only one, only ``chunked``, else 501), then
        exactly one Host (none allowed before HTTP/1.1)."""
        cdef Py_ssize_t i, n = PyList_GET_SIZE(headers)
        cdef list out = headers
        cdef bint copied = False, keep
        cdef bytes seen_length = None, name, value, new
        cdef bint saw_te = False
        cdef int hosts = 0
        cdef tuple item
        for i in range(n):
            item = <tuple>headers[i]
            name = <bytes>item[0]
            keep = True
            new = None
            if name == _CONTENT_LENGTH:
                value = <bytes>item[1]
                new = _content_length(value)
                if seen_length is None:
                    seen_length = new
                elif seen_length != new:
                    raise BadRequest("conflicting Content-Length headers")
                else:
                    keep = False
            elif name == _TRANSFER_ENCODING:
                if saw_te:
                    raise NotImplementedByServer("multiple Transfer-Encoding headers")
                value = <bytes>item[1]
                new = _lower_bytes(value)
                if new != _CHUNKED:
                    raise NotImplementedByServer("Only Transfer-Encoding: chunked is supported")
                saw_te = True
            elif name == _HOST:
                hosts += 1
            if copied:
                if keep:
                    out.append(item if new is None or new is item[1] else (name, new))
            elif not keep or (new is not None and new is not item[1]):
                out = headers[:i]
                copied = True
                if keep:
                    out.append((name, new))
        if http11 and hosts == 0:
            raise BadRequest("Missing mandatory Host: header")
        if hosts > 1:
            raise BadRequest("Found multiple Host: headers")
        self._chunked = saw_te
        self._has_length = seen_length is not None
        self._length = seen_length
        return out


# ----------------------------------------------------------------------------- response heads


def write_head(status, reason, headers):
    """Serialise a status line and header block, byte for byte what
    :func:`refserver.wire.h1.write_head` returns: one allocation, sized first. Anything but an int
    status, a bytes reason and a list of (bytes, bytes) tuples goes to the reference function, so
    odd input behaves (and fails) exactly as it does there."""
    cdef Py_ssize_t total, i, n, k, nl, vl
    cdef long long st
    cdef char digits[24]
    cdef int nd = 0
    cdef bytes out, name, value
    cdef char* q
    cdef tuple item
    if type(status) is not int or type(reason) is not bytes or type(headers) is not list:
        return _reference_write_head(status, reason, headers)
    if not 0 <= status < 1000000000:
        return _reference_write_head(status, reason, headers)
    st = status
    while True:
        digits[nd] = <char>(48 + st % 10)
        nd += 1
        st //= 10
        if st == 0:
            break
    n = PyList_GET_SIZE(headers)
    total = 9 + nd + 1 + PyBytes_GET_SIZE(reason) + 2 + 2
    for i in range(n):
        obj = headers[i]
        if type(obj) is not tuple or PyTuple_GET_SIZE(obj) != 2:
            return _reference_write_head(status, reason, headers)
        item = <tuple>obj
        if type(item[0]) is not bytes or type(item[1]) is not bytes:
            return _reference_write_head(status, reason, headers)
        total += PyBytes_GET_SIZE(item[0]) + PyBytes_GET_SIZE(item[1]) + 4
    out = PyBytes_FromStringAndSize(NULL, total)
    q = PyBytes_AS_STRING(out)
    memcpy(q, b"HTTP/1.1 ", 9)
    q += 9
    for k in range(nd):
        q[k] = digits[nd - 1 - k]
    q += nd
    q[0] = 32
    q += 1
    k = PyBytes_GET_SIZE(reason)
    memcpy(q, PyBytes_AS_STRING(reason), k)
    q += k
    q[0] = 13
    q[1] = 10
    q += 2
    for i in range(n):
        item = <tuple>headers[i]
        name = <bytes>item[0]
        value = <bytes>item[1]
        nl = PyBytes_GET_SIZE(name)
        vl = PyBytes_GET_SIZE(value)
        memcpy(q, PyBytes_AS_STRING(name), nl)
        q += nl
        q[0] = 58
        q[1] = 32
        q += 2
        memcpy(q, PyBytes_AS_STRING(value), vl)
        q += vl
        q[0] = 13
        q[1] = 10
        q += 2
    q[0] = 13
    q[1] = 10
    return out


# --------------------------------------------------------------------------------- WebSocket


def ws_unmask(data, key):
    """Replaces :func:`refserver.wire.ws.unmask`: ``data`` XOR the 4-byte masking ``key``
    repeated (RFC 6455 5.3), eight bytes at a time. Same result, byte for byte; it matters for
    messages of a few KiB and more, where the pure version's passes dominate a frame's cost."""
    cdef const unsigned char[::1] src = data
    cdef const unsigned char[::1] k = key
    cdef Py_ssize_t n = src.shape[0]
    cdef Py_ssize_t i = 0
    cdef bytes out
    cdef unsigned char* dst
    cdef unsigned char kb[8]
    cdef unsigned long long k8, word
    if k.shape[0] != 4:
        raise ValueError("a WebSocket masking key is 4 bytes")
    out = PyBytes_FromStringAndSize(NULL, n)
    if n == 0:
        return out
    dst = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(8):
        kb[i] = k[i & 3]
    memcpy(&k8, kb, 8)
    i = 0
    while i + 8 <= n:
        memcpy(&word, &src[i], 8)
        word ^= k8
        memcpy(dst + i, &word, 8)
        i += 8
    while i < n:
        dst[i] = src[i] ^ kb[i & 3]
        i += 1
    return out


# ---------------------------------------------------------------------------- scopes and environ
#
# refserver/scopes.py, compiled: the same source as the reference path's builders (that module's
# docstring says why it is written the way it is).

include "scopes.py"
