# Declarations of refserver.protocols._compiled_h1, the fast path's compiled copy of h1.py (built
# by setup.py). Behaviour lives only in h1.py; this file gives the stream and the protocol C-typed
# fields and C entry points for the calls they make to each other and to the connection core on
# every request.

cimport cython
from refserver.wire._compiled_h1 cimport H1Connection

cdef int PAUSED_FOR_BODY, PAUSED_FOR_PIPELINE

cdef class H1Stream:
    cdef H1Protocol _proto
    cdef public object request, scheme, client, server, tls
    cdef public bint body_complete, response_started, response_complete, disconnected
    cdef public int status
    cdef public Py_ssize_t body_sent
    cdef public double started
    cdef public object response_headers
    cdef list _chunks
    cdef Py_ssize_t _buffered
    cdef list _body_waiters
    cdef object _done_waiter
    cdef bint _end_received
    cdef object _sending

    cpdef _feed(self, data)
    cpdef _feed_end(self)
    cpdef _drop_body(self)
    cpdef _wake_body(self)
    cpdef bytes _take_chunks(self)
    cpdef _finish(self, bint disconnected)
    cpdef start_response(self, status, headers, body=*, end=*, close=*)
    cpdef end_response(self)
    cpdef _complete(self)

cdef class H1Protocol:
    cdef public object state, loop, transport, scheme, client, server, tls
    cdef object _forwarding
    cdef object _metrics
    cdef public H1Connection conn
    cdef public H1Stream stream
    cdef public bint write_paused
    cdef list _drain_waiters
    cdef int _read_paused
    cdef object _timer
    cdef double _timer_at
    cdef object _timer_kind
    cdef double _deadline
    cdef double _head_timeout, _body_timeout, _idle_timeout, _write_timeout
    cdef object _write_deadline
    cdef bint _closing
    cdef bint _gathers
    cdef bint _processing
    cdef H1Stream _waiting
    cdef bint _shutting_down
    cdef bint _requested
    cdef object _upgrade
    cdef bint _upgrades
    cdef public bint h2c
    cdef bint _fresh
    cdef bytes _early

    cpdef _process(self)
    cpdef _process_events(self)
    cpdef _start_request(self, head)
    cpdef _dispatch_waiting(self)
    cpdef response_done(self, H1Stream stream)
    cpdef _next_cycle(self)
    cpdef _pause_reading(self, int reason)
    cpdef _resume_reading(self, int reason)
    cpdef write(self, data)
    cpdef write_pair(self, head, body)
    @cython.locals(delay=double)
    cpdef _arm_timer(self, kind)
    cpdef _arm_head_timer(self)
    cpdef _time_body(self)
    cpdef _cancel_timer(self)
    cpdef _drop_timer(self)
