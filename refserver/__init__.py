"""refserver: an HTTP server for WSGI, ASGI and RSGI applications, and the reference RSGI server."""

from .config import Config, ConfigError
from .server import Server, run

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Server", "__version__", "run"]
