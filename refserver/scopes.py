"""What each interface is told about a request, built from a :class:`~refserver.gateways.stream.Stream`:
the RSGI scope, the keys the ASGI ``http`` and ``websocket`` scopes share, the WSGI environ.

One source, two builds. The reference path imports this module; the fast path compiles this same
file into :mod:`refserver._speedups` (``include "scopes.py"``), so every rule here holds on both
paths at once and tests/test_scope_equivalence.py only has to catch compiler differences. Hence the
plain Python: no ``from __future__`` (an include is pasted into the middle of a module) and no
annotations (Cython would read them as C type declarations). Every name here is private to this
module or one of the three builders, so the include cannot clash with the parser's names.
"""

from urllib.parse import unquote_to_bytes

from .rsgi import Headers, Scope
from .wire.fields import remember

ASGI_VERSION = {"version": "3.0", "spec_version": "2.5"}

#: Environ keys of request header names; ``""`` marks a header that is dropped.
_ENVIRON_KEYS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
_FIRST_WINS = frozenset(("CONTENT_TYPE", "CONTENT_LENGTH"))
_SERVER_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2"}
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def decode_path(raw_path):
    """Percent-decode a path as UTF-8; invalid bytes become U+FFFD (the RSGI rule, kept for ASGI).

    The common case (plain ASCII, nothing escaped) skips the unquoting machinery entirely. It is
    found with ``find``: ``b"%" in raw_path`` first tries the operand as an int and formats a
    TypeError that it then discards, three times the cost, on every request.
    """
    if raw_path.find(b"%") < 0:
        try:
            return raw_path.decode("ascii")
        except UnicodeDecodeError:
            pass
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


def _host_port(addr):
    """``host:port``, with IPv6 hosts in brackets so the port stays unambiguous."""
    host, port = addr
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def rsgi_scope(stream, proto="http"):
    """The RSGI scope of one request (``proto`` "http") or WebSocket connection ("ws").

    ``client`` is ``""`` on a UNIX socket (the peer has no address worth naming); ``server`` is the
    socket path there. HTTP/1.0 is reported as ``"1"``, as Granian does.
    """
    request = stream.request
    client = stream.client
    client = "" if client is None or client[1] is None else _host_port(client)
    server = stream.server
    if server is None:
        server = ""
    elif server[1] is None:
        server = server[0]
    else:
        server = _host_port(server)
    http_version = request.http_version
    if http_version == "1.0":
        http_version = "1"
    return tuple.__new__(
        Scope,
        (
            proto,
            http_version,
            server,
            client,
            stream.scheme,
            request.method,
            decode_path(request.raw_path),
            request.query_string.decode("latin-1"),
            Headers(request.headers),
            request.authority,
        ),
    )


def asgi_scope(kind, stream, root_path, state, scheme, method):
    """The keys the ``http`` and ``websocket`` scopes share, built by one rule for both; a
    websocket scope has no ``method`` (``None`` leaves it out). ``path`` and ``raw_path``
    include ``root_path`` (as uvicorn does since the asgiref clarification that root_path is a
    prefix of path)."""
    request = stream.request
    raw_path = request.raw_path
    path = decode_path(raw_path)
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    scope = {
        "type": kind,
        "asgi": ASGI_VERSION,
        "http_version": request.http_version,
        "server": stream.server,
        "client": stream.client,
        "scheme": scheme,
        "method": method,
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": request.query_string,
        "headers": request.headers,
        "state": state.copy(),
        "extensions": {},
    }
    if method is None:
        del scope["method"]
    if stream.tls is not None:
        scope["extensions"]["tls"] = stream.tls.copy()  # one per scope: an app may change it
    return scope


def _environ_key(name):
    if b"_" in name:
        key = ""
    else:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
    return remember(_ENVIRON_KEYS, name, key)


def wsgi_environ(stream, base, root, wsgi_input):
    """The PEP 3333 environ of one request, from ``base`` (the keys every request shares).

    Strings that come from bytes are "bytes as latin-1" (PEP 3333, "Unicode Issues"), so the
    application can recover the exact bytes. ``root`` is ``base["SCRIPT_NAME"]``: a path under it
    loses the prefix in PATH_INFO; any other path (a proxy that already stripped it) is kept whole.
    """
    environ = base.copy()
    request = stream.request
    raw_path = request.raw_path
    uri = raw_path.decode("latin-1")
    path = uri if raw_path.find(b"%") < 0 else unquote_to_bytes(raw_path).decode("latin-1")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    query = request.query_string.decode("latin-1")
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query
    environ["RAW_URI"] = environ["REQUEST_URI"] = uri + "?" + query if query else uri
    environ["SERVER_PROTOCOL"] = _SERVER_PROTOCOLS.get(request.http_version) or (
        "HTTP/" + request.http_version
    )
    scheme = stream.scheme
    environ["wsgi.url_scheme"] = scheme
    if scheme == "https":
        environ["HTTPS"] = "on"
    environ["wsgi.input"] = wsgi_input
    server = stream.server
    if server is not None and server[1] is not None:
        environ["SERVER_NAME"] = server[0]
        environ["SERVER_PORT"] = str(server[1])
    else:  # a UNIX socket has no host or port of its own
        environ["SERVER_NAME"] = "localhost"
        environ["SERVER_PORT"] = _DEFAULT_PORTS.get(scheme, "80")
    client = stream.client
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        if client[1] is not None:
            environ["REMOTE_PORT"] = str(client[1])

    keys = _ENVIRON_KEYS
    for name, value in request.headers:
        key = keys.get(name)
        if key is None:
            key = _environ_key(name)
        if not key:
            continue
        if key in environ:
            if key in _FIRST_WINS:
                continue
            sep = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] = environ[key] + sep + value.decode("latin-1")
        else:
            environ[key] = value.decode("latin-1")
    if request.authority:
        # An absolute-form target or HTTP/2 :authority overrides Host (RFC 9112 3.2.2).
        environ["HTTP_HOST"] = request.authority
    return environ
