"""One small application per framework, each written the way that framework's own documentation
writes applications, all answering the same routes (tests/test_frameworks_grid.py):

==========================  ===================================================================
GET  /hello/<name>          ``<greeting>, <name>!`` (text), greeting from ``?greeting=``, "Hello"
POST /json                  ``{"received": <the JSON body>}``
POST /form                  the fields of an urlencoded form, as JSON
POST /upload                a multipart upload: ``{"filename", "size", "sha256", "note"}``
GET  /cookies/set           sets the cookie ``flavour=oat``
GET  /cookies/get           ``{"flavour": <the cookie, or null>}``
GET  /redirect              a redirect (301-308) to ``/hello/redirected``
GET  /stream                ``chunk 0\\n`` .. ``chunk 4\\n``, streamed (no Content-Length)
GET  /error                 the view raises: the framework's 500 page
ws   /ws                    a WebSocket echoing ``echo: <text>``; ``bye`` closes it with 1000
ws   /ws/bytes              a WebSocket echoing binary messages as ``echo: <bytes>``, until the
                            client closes it
==========================  ===================================================================

Each module has ``make_app()`` (``make_wsgi_app()``/``make_asgi_app()`` for the frameworks that
have both), and imports its framework at the top, so a framework that is not installed is one
ImportError, turned into a skip with its reason by the test module.
"""

import hashlib

STREAM_CHUNKS = [f"chunk {i}\n" for i in range(5)]


def upload_summary(filename: str, data: bytes, note: str) -> dict:
    return {
        "filename": filename,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": note,
    }
