#!/usr/bin/env python3
"""The floor of HTTP/2 over the h2 library: the least a Python server built on h2 and uvloop
does per request, for `benchmarks/http2.py` to measure servers against.

One ``asyncio.Protocol`` per connection feeds the bytes it reads to an
``h2.connection.H2Connection`` and answers every request stream at once with the same response
(200, ``Hello, world!``, with content-type and content-length), then writes whatever h2 has to
send, once per read. Cleartext with prior knowledge only (no TLS, no HTTP/1.1 upgrade).

There is no application, no scope, no task per stream and none of a server's own rules (limits,
timeouts, the response's checks, Date header, graceful shutdown): it is not a server to use. What
is left is what every server on h2 pays in some form: the loop's reads and writes, h2's frame
parsing, HPACK both ways, its stream state machine and its flow-control windows. h2's own checks of
incoming headers stay on (a server must keep them); those of the outgoing headers are off, since
these fixed headers are known to be valid.

    python benchmarks/h2_floor.py --port 8000
    h2load -c32 -m10 -D 10 http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import asyncio

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import uvloop

BODY = b"Hello, world!"
HEADERS = [
    (b":status", b"200"),
    (b"content-type", b"text/plain"),
    (b"content-length", b"%d" % len(BODY)),
]
CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,  # names and values stay bytes: no decoding per header
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


class H2FloorProtocol(asyncio.Protocol):
    """One connection: h2's events in, the fixed response out, one write per read."""

    def connection_made(self, transport):
        self.transport = transport
        self.conn = h2.connection.H2Connection(config=CONFIG)
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data):
        conn = self.conn
        try:
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    conn.send_headers(event.stream_id, HEADERS)
                    conn.send_data(event.stream_id, BODY, end_stream=True)
                elif isinstance(event, h2.events.DataReceived):
                    # A request body is not read, but its bytes go back to the windows.
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    break
        except h2.exceptions.ProtocolError:
            # A bad frame (h2 has queued its GOAWAY), or requests that came in the same read as
            # the client's GOAWAY, after which h2 sends nothing more on the connection.
            pass
        out = conn.data_to_send()
        if out:
            self.transport.write(out)
        if conn.state_machine.state is h2.connection.ConnectionState.CLOSED:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(H2FloorProtocol, host, port, backlog=2048)
    async with server:
        await server.serve_forever()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        uvloop.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
