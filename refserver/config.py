"""Every option, declared once.

The command line (:mod:`refserver.cli`), the ``REFSERVER_<NAME>`` environment variables,
``refserver.run(app, **options)`` and :class:`Config` are all derived from :data:`OPTIONS`, so an
option cannot exist in one place and be missing from another.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast


class ConfigError(Exception):
    """Invalid configuration: reported as one line, exit code 1."""


@dataclass(frozen=True)
class Option:
    name: str
    type: type  # str, int, float or bool
    default: object
    help: str
    choices: tuple = ()
    optional: bool = False  # None is an accepted value ("not set")
    minimum: float = 0  # the smallest accepted number (int and float options)
    maximum: float | None = None  # the largest accepted number, if bounded
    secret: bool = False  # never shown (a password): ``repr(config)`` gives ``'***'``
    multiple: bool = False  # repeatable flag; a tuple, a comma list in the environment
    base: int = 10  # the base of an int given as text (8: file modes, "660" or "0o660")
    env_fallback: str = ""  # a variable other servers read too (WEB_CONCURRENCY), below env
    details: str = ""  # more for the README's table, after ``help`` (too long for --help)
    duration: bool = False  # an int of seconds also given as text with units: 720d, 1h30m

    @property
    def env(self) -> str:
        return "REFSERVER_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def convert(self, value: object, source: str) -> object:
        """Check and coerce a value from any source, naming the source in the error."""
        if value is None and self.optional:
            return None
        if self.multiple:
            # "--host a --host b", "--host a,b", REFSERVER_HOST="a,b" and host=["a", "b"] alike.
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ConfigError(
                    f"{source}: {self.flag} expects {self.type.__name__}, got {value!r}"
                )
            parts = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
            if not parts:
                raise ConfigError(f"{source}: {self.flag} needs at least one value")
            return tuple(self._convert_one(part, source) for part in parts)
        return self._convert_one(value, source)

    def _convert_one(self, value: object, source: str) -> object:
        try:
            if self.type is bool:
                value = _to_bool(value)
            elif isinstance(value, str) or self.type is not str:
                if self.type in (int, float) and isinstance(value, bool):
                    raise ValueError
                if self.type is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                if self.duration and isinstance(value, str):
                    value = parse_duration(value)
                elif self.type is int and isinstance(value, str):
                    value = int(value, self.base)
                else:
                    value = self.type(value)
        except (TypeError, ValueError):
            expected = DURATION_FORMS if self.duration else self.type.__name__
            raise ConfigError(f"{source}: {self.flag} expects {expected}, got {value!r}") from None
        if self.choices and value not in self.choices:
            raise ConfigError(
                f"{source}: {self.flag} must be one of {', '.join(self.choices)}, got {value!r}"
            )
        number = cast("float", value)  # compared only when the option is an int or a float
        if self.type in (int, float) and number < self.minimum:
            if self.minimum == 0:
                raise ConfigError(f"{source}: {self.flag} must not be negative, got {value!r}")
            raise ConfigError(
                f"{source}: {self.flag} must be at least {self.minimum}, got {value!r}"
            )
        if self.maximum is not None and self.type in (int, float) and number > self.maximum:
            raise ConfigError(
                f"{source}: {self.flag} must be at most {self.maximum}, got {value!r}"
            )
        return value


DURATION_FORMS = (
    "seconds or a duration such as 720d, 12h or 1h30m (units d, h, m, s, largest first)"
)
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+d)?(\d+h)?(\d+m)?(\d+s)?", re.ASCII)


def parse_duration(text: str) -> int:
    """Seconds from ``"90"`` or Granian's duration form (``"720d"``, ``"1d12h"``, ``"10m30s"``), so
    that a command line written for Granian means the same here. Anything else is ValueError:
    a unit out of order, repeated or unknown, a sign, a fraction, an empty string."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(text)
    return sum(int(part[:-1]) * _DURATION_UNITS[part[-1]] for part in match.groups() if part)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise ValueError(value)


OPTIONS: tuple[Option, ...] = (
    Option(
        "host",
        str,
        ("127.0.0.1",),
        "Bind a socket to this address on --port; repeat it (or give a comma list) to listen "
        "on several, e.g. --host 0.0.0.0 --host :: for IPv4 and IPv6.",
        multiple=True,
        details=(
            "IPv6 sockets are IPv6-only, so 0.0.0.0 and :: bind side by side on one port. "
            "REFSERVER_HOST=0.0.0.0,:: gives both."
        ),
    ),
    Option("port", int, 8000, "Bind socket to this port (0 picks a free one)."),
    Option("uds", str, None, "Bind to a UNIX domain socket instead of host/port.", optional=True),
    Option(
        "uds_permissions",
        int,
        0o666,
        "File mode of the --uds socket, in octal (660 or 0o660).",
        maximum=0o777,
        base=8,
    ),
    Option(
        "fd",
        int,
        None,
        "Serve this already listening socket descriptor instead of host/port (a socket handed "
        "over by a process manager). Without it, the sockets of a systemd socket activation "
        "(LISTEN_FDS, LISTEN_PID) are served when present.",
        optional=True,
        details="See the deployment guide (docs/deployment.md) for a systemd unit.",
    ),
    Option(
        "backlog",
        int,
        2048,
        "Listen queue length: where connections wait while accepting is paused.",
        minimum=1,
    ),
    Option(
        "pid_file",
        str,
        None,
        "Write the server's PID to this file once it listens; removed at shutdown.",
        optional=True,
    ),
    Option(
        "reload",
        bool,
        False,
        "Restart the server when a watched file changes (development). Uses watchfiles when "
        "installed (pip install 'refserver[reload]'), polling otherwise.",
        details=(
            "Changes within 0.2 s of each other make one restart. On a filesystem that sends no "
            "notifications (some network and container mounts), set WATCHFILES_FORCE_POLLING=1."
        ),
    ),
    Option(
        "reload_dir",
        str,
        (),
        "Watch this directory and what it contains; repeat it for several (none: the current "
        "directory).",
        multiple=True,
    ),
    Option(
        "reload_include",
        str,
        ("*.py",),
        "Watch the files matching this glob, in addition to the default ones; repeatable. A "
        "glob is matched against a name and against a path relative to the watched directory; "
        "one without wildcards (.env) names a file watched even if an exclude glob matches it.",
        multiple=True,
    ),
    Option(
        "reload_exclude",
        str,
        (
            ".*",
            "*~",
            "~*",
            "*.py[cod]",
            "*.sw?",
            "flycheck_*",
            "__pycache__",
            "*.egg-info",
            "node_modules",
            "site-packages",
        ),
        "Ignore the files and directories (with everything in them) matching this glob, in "
        "addition to the default ones; repeatable. Giving a default glob to --reload-include "
        "removes it from these, and the other way round.",
        multiple=True,
    ),
    Option(
        "interface",
        str,
        "auto",
        "Application interface; auto detects it from the application object.",
        choices=("auto", "asgi", "rsgi", "wsgi"),
    ),
    Option(
        "impl",
        str,
        "auto",
        "Implementation: pure (h11, asyncio) or fast (Cython, httptools); auto picks fast when built.",
        choices=("auto", "pure", "fast"),
    ),
    Option(
        "loop",
        str,
        "auto",
        "Event loop; auto uses uvloop with the fast path when installed.",
        choices=("auto", "asyncio", "uvloop"),
    ),
    Option("factory", bool, False, "Treat APP as a callable that returns the application."),
    Option("app_dir", str, ".", "Look for APP in this directory (put first on sys.path)."),
    Option("root_path", str, "", "ASGI root_path / WSGI SCRIPT_NAME of the application mount."),
    Option(
        "lifespan",
        str,
        "auto",
        "ASGI lifespan: auto runs it if the app supports it, on requires it, off skips it.",
        choices=("auto", "on", "off"),
    ),
    Option(
        "log_level",
        str,
        "info",
        "Log level.",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    ),
    Option("access_log", bool, True, "Log one line per request."),
    Option(
        "log_config",
        str,
        None,
        "Logging configuration applied after refserver's own: dictConfig from a .json or "
        ".yaml/.yml file (YAML: pip install 'refserver[yaml]'), fileConfig from any other "
        "(INI); it can reconfigure the refserver.error and refserver.access loggers.",
        optional=True,
    ),
    Option(
        "env_file",
        str,
        None,
        "Load environment variables from this dotenv file before the application is imported "
        "(pip install 'refserver[dotenv]'); variables already set win. Like uvicorn, it is for "
        "the application: REFSERVER_* variables in it do not set refserver's options.",
        optional=True,
    ),
    Option("server_header", bool, True, "Send a Server header on responses."),
    Option("date_header", bool, True, "Send a Date header on responses."),
    Option("timeout_keep_alive", float, 5.0, "Close idle keep-alive connections after N seconds."),
    Option(
        "timeout_graceful_shutdown",
        float,
        30.0,
        "On shutdown, wait at most N seconds for in-flight requests before closing them.",
    ),
    Option(
        "workers",
        int,
        None,
        "Serve from N worker processes under a supervisor that replaces a worker that dies, "
        "restarts them one by one on SIGHUP and adds or removes one on SIGTTIN/SIGTTOU. "
        "Without it the server runs in its own process. WEB_CONCURRENCY is read too.",
        optional=True,
        minimum=1,
        env_fallback="WEB_CONCURRENCY",
        details=(
            "The application must then be given as module:attribute. See the deployment guide "
            "(docs/deployment.md)."
        ),
    ),
    Option(
        "workers_lifetime",
        float,
        None,
        "Replace each worker after it has run N seconds (a new one is serving first).",
        optional=True,
        minimum=1,
    ),
    Option(
        "workers_max_rss",
        int,
        None,
        "Replace a worker whose resident memory exceeds N MiB (checked every second).",
        optional=True,
        minimum=1,
    ),
    Option(
        "workers_kill_timeout",
        float,
        5.0,
        "Seconds a stopping worker has beyond --timeout-graceful-shutdown (for its "
        "application's shutdown) before the supervisor kills it.",
    ),
    Option(
        "limit_max_requests",
        int,
        None,
        "Stop after serving N requests: a worker is replaced (its successor serving first); "
        "without --workers the server exits.",
        optional=True,
        minimum=1,
    ),
    Option(
        "limit_max_requests_jitter",
        int,
        0,
        "Add a random 0..N to each process's --limit-max-requests, so that workers started "
        "together are not all replaced at once.",
    ),
    Option(
        "reuse_port",
        bool,
        False,
        "With --workers, each worker binds its own --host/--port socket with SO_REUSEPORT and "
        "the kernel spreads connections across them; by default the workers share the "
        "supervisor's sockets.",
    ),
    Option(
        "http1_header_read_timeout",
        float,
        30.0,
        "Seconds a client has to send a complete request head (408 after that).",
    ),
    Option(
        "http1_body_read_timeout",
        float,
        30.0,
        "Seconds a request body may go without a byte arriving while the server reads it "
        "(408, or a close once the response has begun); 0 for no limit.",
    ),
    Option(
        "timeout_write",
        float,
        30.0,
        "Close a connection whose client takes no byte of a full write buffer for N seconds "
        "(HTTP/1.1 responses, WebSocket sends); 0 for no limit.",
    ),
    Option(
        "limit_concurrency",
        int,
        None,
        "Answer 503 once this many requests are in flight.",
        optional=True,
        minimum=1,
    ),
    Option(
        "backpressure",
        int,
        None,
        "Hold new requests (stop reading) once this many are in flight.",
        optional=True,
        minimum=1,
    ),
    Option(
        "blocking_threads",
        int,
        32,
        "Threads that run WSGI applications (the WSGI pool size).",
        minimum=1,
    ),
    Option(
        "strict",
        bool,
        False,
        "Treat every protocol misuse by the application as an error naming the spec clause.",
    ),
    Option("limit_request_line", int, 8190, "Longest request line, in bytes (414 beyond)."),
    Option("limit_request_head", int, 65536, "Largest request head, in bytes (431 beyond)."),
    Option("limit_request_fields", int, 100, "Most request header fields (431 beyond)."),
    Option("limit_request_body", int, 0, "Largest request body in bytes, 0 for no limit (413)."),
    Option(
        "ws",
        bool,
        True,
        "Serve WebSockets (ASGI, RSGI); off: Upgrade requests reach the app as plain HTTP.",
    ),
    Option(
        "ws_max_size",
        int,
        16 * 1024 * 1024,
        "Largest WebSocket message in bytes, 0 for no limit (close 1009 beyond).",
    ),
    Option(
        "ws_per_message_deflate",
        bool,
        True,
        "Accept the permessage-deflate WebSocket extension (RFC 7692) when a client offers it.",
    ),
    Option(
        "ws_ping_interval",
        float,
        20.0,
        "Send a WebSocket ping after N seconds without one, 0 for never.",
    ),
    Option(
        "ws_ping_timeout",
        float,
        20.0,
        "Close a WebSocket (1011) whose ping is not answered within N seconds, 0 to wait forever.",
    ),
    Option(
        "ssl_certfile",
        str,
        None,
        "Serve HTTPS with this PEM certificate (chain, server certificate first).",
        optional=True,
    ),
    Option(
        "ssl_keyfile",
        str,
        None,
        "PEM private key of --ssl-certfile (if not in the certificate file).",
        optional=True,
    ),
    Option(
        "ssl_keyfile_password",
        str,
        None,
        "Password of an encrypted --ssl-keyfile.",
        optional=True,
        secret=True,
    ),
    Option(
        "ssl_ca_certs",
        str,
        None,
        "PEM file of the CA certificates that client certificates are verified against.",
        optional=True,
    ),
    Option(
        "ssl_cert_reqs",
        str,
        "none",
        "Client certificates: none (not asked for), optional (verified if sent), required.",
        choices=("none", "optional", "required"),
    ),
    Option(
        "ssl_ciphers",
        str,
        None,
        "OpenSSL cipher string for TLS 1.2; unset: the ssl module's default (forward-secret "
        "AES-GCM, ChaCha20 and AES suites, no SHA-1). TLS 1.3 suites are OpenSSL's.",
        optional=True,
        details=(
            "The default is @SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!a"
            "DSS:!SHA1:!AESCCM."
        ),
    ),
    Option(
        "ssl_protocol_min",
        str,
        "1.2",
        "Oldest TLS version accepted.",
        choices=("1.2", "1.3"),
    ),
    Option(
        "ssl_crl",
        str,
        None,
        "PEM certificate revocation list: a revoked client certificate is refused.",
        optional=True,
    ),
    Option(
        "ssl_handshake_timeout",
        float,
        10.0,
        "Close a connection whose TLS handshake is not done after N seconds; closing, wait at "
        "most N seconds for the client's close_notify.",
        minimum=0.001,
    ),
    Option(
        "http",
        str,
        "auto",
        "HTTP version: auto = ALPN on TLS; in cleartext the HTTP/2 prior-knowledge preface and "
        "Upgrade: h2c are accepted. 1 = HTTP/1.1 only, 2 = HTTP/2 only.",
        choices=("auto", "1", "2"),
    ),
    Option(
        "http2_max_concurrent_streams",
        int,
        100,
        "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once.",
        minimum=1,
    ),
    Option(
        "http2_initial_stream_window",
        int,
        65535,
        "HTTP/2 initial flow-control window of each stream, in bytes: what a request body may "
        "send ahead of the application reading it (65535 at least: a smaller window would "
        "only hold once the client acknowledged it).",
        minimum=65535,
        maximum=2**31 - 1,
    ),
    Option(
        "http2_initial_connection_window",
        int,
        1024 * 1024,
        "HTTP/2 flow-control window of the whole connection, in bytes (shared by its streams).",
        minimum=65535,
        maximum=2**31 - 1,
        details=(
            "The default is 16 streams' worth, so one stream whose application never reads cannot "
            "stall the others."
        ),
    ),
    Option(
        "http2_max_frame_size",
        int,
        16384,
        "HTTP/2 SETTINGS_MAX_FRAME_SIZE: the largest frame payload accepted, in bytes.",
        minimum=16384,
        maximum=16777215,
    ),
    Option(
        "http2_max_header_list_size",
        int,
        65536,
        "HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE: the largest decoded header list, in bytes "
        "(431 beyond).",
        minimum=1024,
    ),
    Option(
        "http2_keep_alive_interval",
        float,
        0.0,
        "Send an HTTP/2 PING after N seconds without one, 0 for never.",
    ),
    Option(
        "http2_keep_alive_timeout",
        float,
        20.0,
        "Close an HTTP/2 connection whose PING is not answered within N seconds.",
    ),
    Option(
        "warn_blocked_loop",
        float,
        1.0,
        "Warn, naming the request, when the event loop is blocked for N seconds; 0 for never.",
    ),
    Option(
        "proxy_headers",
        bool,
        False,
        "Take the client address, scheme and host from X-Forwarded-For/-Proto/-Host/-Port or "
        "Forwarded when the peer is in --forwarded-allow-ips (off: a server reached directly "
        "must not let clients name themselves).",
        details=(
            "The client is the rightmost address of the chain that is not a trusted proxy, so a "
            "client cannot choose it; Forwarded is read only when no X-Forwarded-* field is "
            "present. Every interface and protocol sees the result (spec/server.md, "
            "SERVER-PROXY-*)."
        ),
    ),
    Option(
        "forwarded_allow_ips",
        str,
        ("127.0.0.1", "::1"),
        "Peers trusted with --proxy-headers: IP addresses, networks (CIDR), * for any, unix for "
        "UNIX-socket peers. Unset: $FORWARDED_ALLOW_IPS when set (as uvicorn reads it).",
        multiple=True,
        env_fallback="FORWARDED_ALLOW_IPS",
    ),
    Option(
        "access_log_format",
        str,
        '{client} - "{method} {target} {protocol}" {status}',
        "The access log line, from {atoms}: client, client_host, method, path, query, target, "
        "protocol, scheme, host, status, size (response body bytes), duration (seconds), "
        "duration_ms, request_header:NAME, response_header:NAME, pid, time; {{ and }} for "
        "braces. Every value is escaped.",
        details=(
            "{client} is host:port (- on a UNIX socket); {path} is as received, percent-encoded; "
            "{target} is path?query; {protocol} is HTTP/1.1 or HTTP/2; {size} is 0 for HEAD, "
            "204 and 304; {duration} runs from the application's start to the response's end; "
            "a header atom is - when absent, several values joined with a comma; {pid} is the "
            "worker's; {time} is ISO 8601, local, in ms. Controls are escaped as \\x1b, a quote "
            "as \\x22, a backslash as \\x5c. An unknown atom is a one-line error."
        ),
    ),
    Option(
        "access_log_file",
        str,
        None,
        "Append the access log to this file instead of stderr; reopened when it is moved or "
        "removed (logrotate needs no signal).",
        optional=True,
    ),
    Option(
        "metrics",
        bool,
        False,
        "Serve Prometheus metrics (GET /metrics, text format) on a socket of their own, "
        "--metrics-address:--metrics-port; with --workers, the supervisor serves the sum of "
        "every worker's.",
    ),
    Option("metrics_address", str, "127.0.0.1", "Address of the --metrics socket."),
    Option("metrics_port", int, 9090, "Port of the --metrics socket (0 picks a free one)."),
    Option(
        "static_path_route",
        str,
        (),
        "URL path prefix served from the directory of the --static-path-mount at the same "
        "position, before the application (repeatable: pairs are matched by position).",
        multiple=True,
    ),
    Option(
        "static_path_mount",
        str,
        (),
        "Directory of files served under the --static-path-route at the same position "
        "(a single mount without a route is served under /static).",
        multiple=True,
    ),
    Option(
        "static_path_expires",
        int,
        86400,
        "Cache-Control max-age of static files, in seconds or as a duration (720d, 12h, "
        "1h30m); 0 sends none.",
        duration=True,
        details=(
            "A duration is whole numbers with the units d, h, m and s, each at most once and "
            "largest first (Granian's form): 1d12h is 129600 seconds."
        ),
    ),
    Option(
        "static_path_dir_to_file",
        str,
        None,
        "File served for a static directory (e.g. index.html); without it a directory is 404.",
        optional=True,
    ),
)

_BY_NAME = {option.name: option for option in OPTIONS}


def _check_port(flag: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{flag} must be between 0 and 65535, got {port}")


def load_env_file(path: str) -> None:
    """Fill ``os.environ`` from a dotenv file, without replacing a variable already set: the
    environment given to the process is the more deliberate of the two."""
    try:
        from dotenv import load_dotenv
    except ImportError:
        raise ConfigError(
            "--env-file needs python-dotenv: pip install 'refserver[dotenv]'"
        ) from None
    if not os.path.isfile(path):
        raise ConfigError(f"--env-file {path}: no such file")
    try:
        load_dotenv(path, override=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--env-file {path}: {exc}") from None


class Config:
    """Validated settings for one server, plus the application (object or ``"module:attr"``)."""

    if TYPE_CHECKING:
        # Each option of OPTIONS is an attribute, set from the table by __init__.
        def __getattr__(self, name: str) -> Any: ...

        static_path_route: tuple[str, ...]  # also completed by _check_static
        pid_file: str | None  # cleared in a worker's copy (the supervisor's file)

    def __init__(self, app: object = None, **options: object):
        unknown = sorted(set(options) - set(_BY_NAME))
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        self.app = app
        for option in OPTIONS:
            if option.name in options:
                value = option.convert(options[option.name], "argument")
            elif option.env in os.environ:
                value = option.convert(os.environ[option.env], option.env)
            elif option.env_fallback and os.environ.get(option.env_fallback):
                value = option.convert(os.environ[option.env_fallback], option.env_fallback)
            else:
                value = option.default
            setattr(self, option.name, value)
        if self.uds is None:
            _check_port("--port", self.port)
        self._check_edge()
        if self.fd is not None and self.uds is not None:
            raise ConfigError(
                "--fd and --uds cannot both be given: each names the one socket to serve"
            )
        self._check_metrics()
        self._check_workers()
        self._check_tls()
        self._check_reload()
        self._check_static()

    def _check_reload(self) -> None:
        """Watch options that would be silently ignored are errors, as a directory that does not
        exist is: either would leave a developer waiting for a restart that never comes."""
        if not self.reload:
            self._refuse_without(
                "--reload", [o.name for o in OPTIONS if o.name.startswith("reload_")]
            )
            return
        for directory in self.reload_dir:
            if not os.path.isdir(directory):
                raise ConfigError(f"--reload-dir {directory}: not a directory")

    def _refuse_without(self, switch: str, names: list) -> None:
        """Options that mean nothing without ``switch`` are an error when set, not ignored."""
        given = [_BY_NAME[n].flag for n in names if getattr(self, n) != _BY_NAME[n].default]
        if given:
            raise ConfigError(f"{', '.join(given)} given without {switch}")

    def _check_workers(self) -> None:
        """Options of the supervisor mean nothing without one: an error, not a silent no-op."""
        if self.workers is None:
            self._refuse_without("--workers", ["workers_lifetime", "workers_max_rss", "reuse_port"])
        if self.reuse_port and (self.uds is not None or self.fd is not None):
            raise ConfigError("--reuse-port applies to --host/--port sockets, not --uds or --fd")

    def _check_metrics(self) -> None:
        """Where to serve metrics means nothing without --metrics: an error, as for --workers."""
        if not self.metrics:
            self._refuse_without("--metrics", ["metrics_address", "metrics_port"])
        _check_port("--metrics-port", self.metrics_port)

    def _check_tls(self) -> None:
        """TLS options that would be silently ignored are errors: a server meant to check client
        certificates must not start without checking them."""
        if self.ssl_certfile is None:
            self._refuse_without(
                "--ssl-certfile",
                [
                    o.name
                    for o in OPTIONS
                    if o.name.startswith("ssl_")
                    and o.name not in ("ssl_certfile", "ssl_handshake_timeout")
                ],
            )
        if self.ssl_cert_reqs != "none" and self.ssl_ca_certs is None:
            raise ConfigError(
                f"--ssl-cert-reqs {self.ssl_cert_reqs} needs --ssl-ca-certs "
                "(the CA certificates that client certificates are verified against)"
            )
        if self.ssl_crl is not None and self.ssl_cert_reqs == "none":
            raise ConfigError(
                "--ssl-crl needs --ssl-cert-reqs optional or required (it applies to client "
                "certificates)"
            )

    def _check_edge(self) -> None:
        """The trusted peers and the access log format are parsed here, so that a typo is a
        start-up error of one line (even while --proxy-headers or the access log is off)."""
        from .logs import AccessFormat
        from .proxy import Forwarding

        Forwarding(self.forwarded_allow_ips)
        AccessFormat(self.access_log_format)

    def _check_static(self) -> None:
        """Routes and mounts pair up by position; a route is a path, a mount a directory. One
        mount without a route is served under /static, as Granian does."""
        routes, mounts = self.static_path_route, self.static_path_mount
        if not routes and len(mounts) == 1:
            self.static_path_route = routes = ("/static",)
        if len(routes) != len(mounts):
            raise ConfigError(
                f"--static-path-route given {len(routes)} time(s) and --static-path-mount "
                f"{len(mounts)}: they pair up by position"
            )
        for route in routes:
            if not route.startswith("/") or not route.isascii():
                raise ConfigError(
                    f"--static-path-route {route!r} must be an ASCII path starting with /"
                )
        for mount in mounts:
            if not os.path.isdir(mount):
                raise ConfigError(f"--static-path-mount {mount}: not a directory")

    def __repr__(self) -> str:
        fields = ", ".join(f"{o.name}={self._shown(o)}" for o in OPTIONS)
        return f"Config(app={self.app!r}, {fields})"

    def _shown(self, option: Option) -> str:
        value = getattr(self, option.name)
        return "'***'" if option.secret and value is not None else repr(value)
