"""Sans-IO protocol cores: bytes in, events out; events in, bytes out. Nothing here imports asyncio."""
