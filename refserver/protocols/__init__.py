"""asyncio glue: sockets and timers around the sans-IO cores of :mod:`refserver.wire`."""
