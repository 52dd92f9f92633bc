"""RSGI benchmark app: GET / (13 bytes), GET /json, POST /echo (echoes the body), GET /big (1 MiB).

Every response carries an explicit Content-Length so that all servers frame it the same way.
"""

from benchmarks.apps.payloads import BIG, HELLO, NOT_FOUND, json_body

_TEXT = [("content-type", "text/plain"), ("content-length", "13")]
_BIG = [("content-type", "application/octet-stream"), ("content-length", str(len(BIG)))]
_NOT_FOUND = [("content-type", "text/plain"), ("content-length", str(len(NOT_FOUND)))]


async def app(scope, protocol):
    if scope.proto != "http":
        return
    path = scope.path
    method = scope.method
    if path == "/" and method == "GET":
        protocol.response_bytes(200, _TEXT, HELLO)
    elif path == "/json" and method == "GET":
        body = json_body()
        protocol.response_bytes(
            200, [("content-type", "application/json"), ("content-length", str(len(body)))], body
        )
    elif path == "/echo" and method == "POST":
        body = await protocol()
        protocol.response_bytes(
            200,
            [("content-type", "application/octet-stream"), ("content-length", str(len(body)))],
            body,
        )
    elif path == "/big" and method == "GET":
        protocol.response_bytes(200, _BIG, BIG)
    else:
        protocol.response_bytes(404, _NOT_FOUND, NOT_FOUND)
