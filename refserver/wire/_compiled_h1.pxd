# Declarations of refserver.wire._compiled_h1, the fast path's compiled copy of h1.py (built by
# setup.py). Behaviour lives only in h1.py; this file gives the connection core's fields C types and
# its per-request methods C entry points, which is where compiling the module pays (compiled as
# plain Python classes it was slower than the interpreter).

cimport cython

# Module constants read on every response: C variables rather than module dict lookups.
cdef int _LENGTH, _CHUNKED, _CLOSE_DELIMITED, _NONE
cdef Py_ssize_t JOIN_LIMIT

cdef class H1Connection:
    cdef object _parser
    cdef object _limits
    cdef object _rules
    cdef object _view
    cdef object _write_head
    cdef object _head_buffer
    cdef object _last_head
    cdef Py_ssize_t _within_limits
    cdef bint _unscanned
    cdef public object request
    cdef public bint keep_alive
    cdef public bint expect_continue
    cdef public bint te_trailers
    cdef public bint sent_continue
    cdef public bint request_complete
    cdef public bint response_started
    cdef public bint response_complete
    cdef bint _awaiting_head
    cdef bint _checking_head
    cdef bint _line_checked
    cdef public Py_ssize_t body_received
    cdef int _framing
    cdef object _remaining  # a Python int: an application may declare any Content-Length
    cdef bint _head_only

    cpdef _reset(self)
    cpdef receive_data(self, data)
    cpdef _check_head_limits(self, data)
    cpdef next_event(self)
    cpdef _on_head(self, head)
    cpdef bint start_next_cycle(self) except? -1
    @cython.locals(out=list)
    cpdef response_start(self, status, headers, body=*, end=*)
    cpdef response_body(self, data)
    cpdef response_end(self)
