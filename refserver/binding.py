"""The listening sockets: TCP on every ``--host``, a UNIX socket, an inherited ``--fd``, or the
sockets systemd passes (socket activation).

Kept apart from the server: which sockets to listen on is decided once, before any of them is
served, and every way of getting one ends the same way — listening, non-blocking, described in
the startup log.
"""

from __future__ import annotations

import os
import socket
import stat

from .config import Config, ConfigError

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): the first descriptor systemd passes


def bind_sockets(config: Config, listen: bool = True) -> list[socket.socket]:
    """The sockets to serve, listening with ``config.backlog``.

    An explicit ``--fd`` or ``--uds`` wins; then the sockets of a systemd socket activation;
    then one TCP socket per ``--host`` on ``--port``. ``listen=False`` (``--reuse-port``): the
    supervisor only holds the addresses (a bound socket that does not listen gets no
    connections) and each worker binds its own with :func:`bind_reuse_port`.
    """
    if config.fd is not None:
        sockets = [_inherited(config.fd, f"--fd {config.fd}")]
    elif config.uds:
        sockets = [_bind_unix(config.uds, config.uds_permissions)]
    else:
        fds = systemd_fds()
        if fds:
            sockets = [_inherited(fd, f"LISTEN_FDS: descriptor {fd}") for fd in fds]
        else:
            sockets = []
            try:
                for host in config.host:
                    sockets.append(_bind_tcp(host, config.port, config.reuse_port))
            except BaseException:
                for sock in sockets:
                    sock.close()
                raise
    for sock in sockets:
        if listen:
            sock.listen(config.backlog)
        sock.setblocking(False)
    return sockets


def bind_reuse_port(addresses: list[tuple], backlog: int) -> list[socket.socket]:
    """A worker's own listening sockets on the supervisor's ``addresses`` (``--reuse-port``)."""
    sockets = []
    try:
        for host, port in addresses:
            sock = _bind_tcp(host, port, reuse_port=True)
            sockets.append(sock)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bind_listening(host: str, port: int, backlog: int) -> socket.socket:
    """One listening TCP socket of the server's own (the ``--metrics`` socket), bound as the
    application's are: a port in use is the same one-line :class:`ConfigError`."""
    sock = _bind_tcp(host, port)
    try:
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def systemd_fds() -> list[int]:
    """The descriptors of a socket activation, if it is meant for this process (``LISTEN_PID``:
    a child that inherited the environment must not take its parent's sockets). The variables
    are then removed, as sd_listen_fds does, so that no child takes them either."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def _inherited(fd: int, what: str) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"{what}: not a usable socket: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()  # not ours to close
        raise ConfigError(f"{what}: not a stream socket")
    return sock


def _bind_unix(path: str, mode: int) -> socket.socket:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a socket left by an earlier run
        else:
            raise ConfigError(f"cannot bind unix:{path}: it exists and is not a socket")
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind unix:{path}: {exc.strerror}") from None
    return sock


def _bind_tcp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    host = host.strip("[]")  # "[::1]" as in a URL
    if ":" in host:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        # IPv6 only: "::" and "0.0.0.0" can then both be bound on the same port, each serving
        # its own family, instead of "::" taking IPv4 as well and the second bind failing.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        raise ConfigError(f"cannot bind {shown}:{port}: {exc.strerror or exc}") from None
    return sock


def describe_address(sock: socket.socket, tls: bool = False) -> str:
    addr = sock.getsockname()
    if isinstance(addr, (str, bytes)):
        if isinstance(addr, bytes):
            addr = addr.decode(errors="backslashreplace")
        return f"unix:{addr} (TLS)" if tls else f"unix:{addr}"
    host, port = addr[0], addr[1]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def write_pid_file(path: str) -> None:
    """``--pid-file``: this process's PID, written once every socket listens, so that whoever
    reads the file can connect."""
    try:
        with open(path, "w") as file:
            file.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise ConfigError(f"cannot write --pid-file {path}: {exc.strerror}") from None


def remove_pid_file(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_socket_file(path: str) -> None:
    """Remove the UNIX socket this process bound (a worker leaves its supervisor's alone)."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
