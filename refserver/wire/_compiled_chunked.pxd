# Declarations of refserver.wire._compiled_chunked, the fast path's compiled copy of chunked.py (built
# by setup.py). Behaviour lives only in chunked.py; this file makes the reader an extension type
# with C fields and C entry points, so the fast parser calls it without Python calls (compiled as
# a plain Python class, a 1 KiB chunked body cost three times what the parser's own loop did).

cdef int _SIZE, _DATA, _DATA_END, _TRAILER, _DONE
cdef Py_ssize_t SIZE_DIGITS

cpdef bytes _take(bytearray buf, Py_ssize_t n)
cpdef bint _has_bare_cr_or_lf(bytearray buf, Py_ssize_t start) except -1
cpdef tuple chunk_size(bytes line)

cdef class ChunkedReader:
    cdef bytearray _buf
    cdef int _state
    cdef unsigned long long _remaining
    cdef Py_ssize_t _extensions
    cdef Py_ssize_t _trailer_limit
    cdef bint _eof
    cdef Py_ssize_t _scan

    cpdef feed(self, data)
    cpdef feed_eof(self)
    cpdef bytes leftover(self)
    cpdef next_event(self)
    cpdef _need_data(self)
    cpdef bint _read_size_line(self) except -1
    cpdef _too_many_extensions(self)
    cpdef bint _read_data_end(self) except -1
    cpdef bint _read_trailer(self) except -1
