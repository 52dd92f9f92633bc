"""Errors that end a server run, each with its exit code."""


class StartupFailed(Exception):
    """The application refused to start (ASGI lifespan startup failure): exit code 3."""
