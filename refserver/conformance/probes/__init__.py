"""Probe applications, one per interface: they report what the server gave them as JSON and
misuse their protocol on request. They import only the standard library, so any server can run
them: ``refserver.conformance.probes.{asgi,rsgi,wsgi}_probe:app``."""
