"""The floor of a Python HTTP/1.1 server on this stack, as a benchmark target.

httptools collects each request; then, for ``rsgi``, one eager task per request (Python 3.12+,
on uvloop) runs ``benchmarks.apps.rsgi_app`` with a scope and protocol just rich enough for it;
for ``wsgi``, a thread pool runs ``benchmarks.apps.wsgi_app`` and hands the response back to the
loop (the shape of refserver's WSGI path); for ``wsgi-blocking``, a thread that owns its connection
reads, calls the application and writes with blocking sockets, with no event loop. None of HTTP's
rules: no validation of the request, no limits, no timeouts, no keep-alive decisions, no Date
header, no error responses, no flow control. It is not a server to use. It answers what the ratios
against Granian cannot: how much of a request's CPU goes to the event loop, the parser's callbacks,
the task or the thread hop and the application's call, which every design on this stack pays in
some form, and how much is what refserver's rules add on top of them. Hence it imports nothing
of refserver's: its scope, response head and environ are its own, the least that serves the apps.

    python -m benchmarks.floor --interface rsgi --host 127.0.0.1 --port 8000
"""

import argparse
import asyncio
import io
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httptools
import uvloop

from benchmarks.apps import rsgi_app, wsgi_app

_EAGER = sys.version_info >= (3, 12)


class Scope:
    __slots__ = ("headers", "method", "path", "proto", "query_string")

    def __init__(self, method, path, query_string, headers):
        self.proto = "http"
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers


class Protocol:
    """The two RSGI calls the benchmark app makes: the body, and ``response_bytes``."""

    __slots__ = ("body", "transport")

    def __init__(self, transport, body):
        self.transport = transport
        self.body = body

    async def __call__(self):
        return self.body

    def response_bytes(self, status, headers, body):
        head = [b"HTTP/1.1 %d \r\n" % status]
        for name, value in headers:
            head.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        head.append(b"\r\n")
        if len(body) > 65536:  # not copied behind the head
            self.transport.write(b"".join(head))
            self.transport.write(body)
        else:
            head.append(body)
            self.transport.write(b"".join(head))


class RSGIDispatcher:
    """Starts the requests of one loop pass together, after the reads (as refserver does): an
    eager task started inside a read callback would send each response in its own write event."""

    def __init__(self, loop):
        self.loop = loop
        self.pending = []

    def add(self, method, url, headers, body, transport):
        if not self.pending:
            self.loop.call_soon(self.start)
        scope = Scope(
            method.decode("ascii"),
            url.path.decode("ascii"),
            (url.query or b"").decode("latin-1"),
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
        )
        self.pending.append(rsgi_app.app(scope, Protocol(transport, body)))

    def start(self):
        pending, self.pending = self.pending, []
        loop = self.loop
        for coro in pending:
            if _EAGER:
                asyncio.Task(coro, loop=loop, eager_start=True)
            else:
                loop.create_task(coro)


def wsgi_response(method, url, headers, body) -> list:
    """The response to one request from ``benchmarks.apps.wsgi_app``, as a list of bytes."""
    environ = {
        "REQUEST_METHOD": method.decode("ascii"),
        "PATH_INFO": url.path.decode("latin-1"),
        "QUERY_STRING": (url.query or b"").decode("latin-1"),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in headers:
        environ["HTTP_" + name.decode("latin-1").upper().replace("-", "_")] = value.decode("latin-1")
    out = []

    def start_response(status, headers, exc_info=None):
        out.append(b"HTTP/1.1 %s\r\n" % status.encode("latin-1"))
        for name, value in headers:
            out.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        out.append(b"\r\n")

    out.extend(wsgi_app.app(environ, start_response))
    return out


class WSGIDispatcher:
    """Calls the application in a pool thread; the thread hands the response bytes back to the
    loop, which writes them (asyncio transports belong to their loop's thread)."""

    def __init__(self, loop):
        self.loop = loop
        self.pool = ThreadPoolExecutor(32)

    def add(self, method, url, headers, body, transport):
        self.pool.submit(self.call, method, url, headers, body, transport)

    def call(self, method, url, headers, body, transport):
        response = wsgi_response(method, url, headers, body)
        self.loop.call_soon_threadsafe(transport.writelines, response)


class BlockingDispatcher:
    """For a thread that owns its connection: the response is collected, then sent by it."""

    def add(self, method, url, headers, body, out):
        out.extend(wsgi_response(method, url, headers, body))


class Connection(asyncio.Protocol):
    """Collects each request through httptools' callbacks and hands it to the dispatcher, with
    its ``transport``: the loop's transport, or for a blocking thread the list it sends from."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers = []
        self.body = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        url = httptools.parse_url(self.url)
        self.dispatcher.add(
            self.parser.get_method(), url, self.headers, b"".join(self.body), self.transport
        )
        self.url, self.headers, self.body = b"", [], []


async def serve(interface, host, port):
    loop = asyncio.get_running_loop()
    dispatcher = (RSGIDispatcher if interface == "rsgi" else WSGIDispatcher)(loop)
    server = await loop.create_server(lambda: Connection(dispatcher), host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def serve_blocking(host, port):
    """WSGI with a thread per connection and blocking sockets, and no event loop: the kernel wakes
    the thread whose request arrived, and the GIL changes hands only when threads block."""
    dispatcher = BlockingDispatcher()
    listener = socket.create_server((host, port), backlog=2048)

    def run(sock):
        connection = Connection(dispatcher)
        out = []
        connection.connection_made(out)
        with sock:
            while data := sock.recv(65536):
                connection.data_received(data)
                if out:
                    sock.sendall(b"".join(out))
                    out.clear()

    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=run, args=(sock,), daemon=True).start()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", choices=("rsgi", "wsgi", "wsgi-blocking"), default="rsgi")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        if args.interface == "wsgi-blocking":
            serve_blocking(args.host, args.port)
        else:
            uvloop.run(serve(args.interface, args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
