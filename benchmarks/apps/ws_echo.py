"""WebSocket echo applications for benchmarks/ws_bench.py: the ones the Autobahn cases run
against, so the benchmark measures exactly the behaviour the conformance runs check. Each echoes
every message back unchanged until the client closes, and answers plain HTTP with 200 so the
benchmark can tell that the server is up."""

from scripts.autobahn.echo_apps import asgi_echo as asgi_app
from scripts.autobahn.echo_apps import rsgi_echo as rsgi_app

__all__ = ["asgi_app", "rsgi_app"]
