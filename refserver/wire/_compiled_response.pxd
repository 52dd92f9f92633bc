# Declarations of refserver.wire._compiled_response, the fast path's compiled copy of response.py
# (built by setup.py). Behaviour lives only in response.py; this file makes the rules an extension
# type with C fields, since every response head of both protocols goes through ResponseRules.head.

cimport cython

cdef dict _CHECKED_FIELDS

cdef class ResponseRules:
    cdef public object server_header
    cdef public bint date_header
    cdef public object connection_fields

    @cython.locals(out=list, checked=dict, content_length=object, close=bint, has_date=bint,
                   has_server=bint, cacheable=bint)
    cpdef tuple head(self, status, headers, body, bint end, bint head_only)
    cpdef list stamp(self, fields)
