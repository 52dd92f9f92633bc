"""WSGI benchmark app: GET / (13 bytes), GET /json, POST /echo (echoes the body), GET /big (1 MiB).

Every response carries an explicit Content-Length so that all servers frame it the same way.
"""

from benchmarks.apps.payloads import BIG, HELLO, NOT_FOUND, json_body

_TEXT = [("Content-Type", "text/plain"), ("Content-Length", "13")]
_BIG = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))]
_NOT_FOUND = [("Content-Type", "text/plain"), ("Content-Length", str(len(NOT_FOUND)))]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ["REQUEST_METHOD"]
    if path == "/" and method == "GET":
        start_response("200 OK", _TEXT)
        return [HELLO]
    if path == "/json" and method == "GET":
        body = json_body()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/echo" and method == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if path == "/big" and method == "GET":
        start_response("200 OK", _BIG)
        return [BIG]
    start_response("404 Not Found", _NOT_FOUND)
    return [NOT_FOUND]
