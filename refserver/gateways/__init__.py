"""Dispatch semantics: one state machine per request and interface, shared by HTTP/1.1 and HTTP/2."""
