# Declarations of refserver.wire._compiled_request, the fast path's compiled copy of request.py
# (built by setup.py). Behaviour lives only in request.py; this file makes the request view an
# extension type and its builder C code, since the HTTP/1.1 core builds one view per request (the
# builder is a component chosen in refserver/impl.py).

cdef dict _NAMES

cdef class Request:
    cdef public object method, raw_path, query_string, http_version, headers, authority

cpdef from_h1_head(head)
cpdef tuple split_target(bytes target)
