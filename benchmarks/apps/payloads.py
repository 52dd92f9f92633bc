"""Response bodies shared by the three benchmark apps, so every interface serves the same bytes."""

import json

HELLO = b"Hello, world!"  # GET /, 13 bytes, text/plain
BIG = b"x" * (1024 * 1024)  # GET /big, 1 MiB, application/octet-stream
NOT_FOUND = b"Not Found"

# GET /json is serialised per request (as in the TechEmpower "json" test), not cached.
JSON_OBJECT = {"message": "Hello, world!", "count": 3, "ok": True}


def json_body() -> bytes:
    return json.dumps(JSON_OBJECT, separators=(",", ":")).encode("utf-8")
