"""The smallest RSGI application: ``python -m refserver examples.hello_rsgi:app``."""


async def app(scope, protocol):
    if scope.proto != "http":
        return
    protocol.response_str(200, [("content-type", "text/plain")], "Hello, world!")
