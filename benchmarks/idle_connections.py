#!/usr/bin/env python3
"""What an idle keep-alive connection costs a server, refserver against uvicorn, in one run.

For each target a fresh server process (its file-descriptor limit raised) serves N connections
that each sent one ``GET /`` and now sit idle with the connection kept alive. The server's RSS
before the connections and after them, divided by N, is the memory each one costs; then every
connection sends a second request, to show they are all still served. Loopback only; each target
takes a few seconds, and every process is stopped at the end.

    python benchmarks/idle_connections.py                       # 10,000 connections, every target
    python benchmarks/idle_connections.py -n 2000 --targets refserver-fast,uvicorn-httptools

Peers are found as ``python -m uvicorn`` in this interpreter (``pip install uvicorn httptools``;
``pip install zttp`` adds the ``uvicorn --http zttp`` target); a missing one is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks.loopback import (  # noqa: E402
    HOST,
    free_port,
    raise_fd_limit,
    request_all,
    rss_kib,
    stop_process,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
BODY = b"Hello, world!"  # GET / of benchmarks.apps.asgi_app
KEEP = "600"  # seconds of keep-alive, longer than any run
BATCH = 500  # connections opened at once (under every server's listen backlog)


def _refserver(impl, loop):
    return lambda port: [
        sys.executable, "-m", "refserver", "benchmarks.apps.asgi_app:app",
        "--host", HOST, "--port", str(port), "--impl", impl, "--loop", loop, "--no-ws",
        "--lifespan", "off", "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", KEEP,
    ]  # fmt: skip


def _uvicorn(http, loop):
    return lambda port: [
        sys.executable, "-m", "uvicorn", "benchmarks.apps.asgi_app:app",
        "--host", HOST, "--port", str(port), "--http", http, "--loop", loop, "--ws", "none",
        "--lifespan", "off", "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", KEEP,
    ]  # fmt: skip


# name: (modules it needs, argv, description)
TARGETS = {
    "refserver-pure": (("refserver",), _refserver("pure", "asyncio"), "h11, asyncio"),
    "refserver-fast": (("refserver._speedups", "uvloop"), _refserver("fast", "uvloop"),
                       "httptools (Cython), uvloop"),
    "uvicorn-h11": (("uvicorn", "h11"), _uvicorn("h11", "asyncio"), "h11, asyncio"),
    "uvicorn-httptools": (("uvicorn", "httptools", "uvloop"), _uvicorn("httptools", "uvloop"),
                          "httptools, uvloop"),
    "uvicorn-zttp": (("uvicorn", "zttp", "uvloop"), _uvicorn("zttp", "uvloop"), "zttp, uvloop"),
}


def available(modules) -> str | None:
    for name in modules:
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    return None


def open_idle(port: int, count: int, deadline: float) -> tuple:
    """``count`` connections that have each been served one request; (sockets, failures)."""
    socks, failed = [], 0
    while len(socks) < count and time.monotonic() < deadline:
        batch = []
        for _ in range(min(BATCH, count - len(socks))):
            sock = socket.create_connection((HOST, port), timeout=10)
            sock.setblocking(False)
            batch.append(sock)
        failed += len(batch) - request_all(batch, REQUEST, BODY, deadline)
        socks.extend(batch)
    return socks, failed


def settle(pid: int, seconds: float = 0.5) -> int:
    """RSS once it has stopped moving (or after a few seconds)."""
    last, stable_since = rss_kib(pid), time.monotonic()
    end = time.monotonic() + 5
    while time.monotonic() < end:
        time.sleep(0.1)
        now = rss_kib(pid)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= seconds:
            break
    return last


def measure(name: str, count: int) -> dict:
    modules, argv, description = TARGETS[name]
    missing = available(modules)
    if missing:
        return {"name": name, "skipped": missing}
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        argv(port), cwd=ROOT, env=env, preexec_fn=lambda: raise_fd_limit(count + 256),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    socks = []
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                return {"name": name, "skipped": "exited: " + proc.stderr.read().decode()[-300:]}
            try:
                probe, failed = open_idle(port, 1, deadline)
                break
            except OSError:
                if time.monotonic() > deadline:
                    return {"name": name, "skipped": "did not start"}
                time.sleep(0.1)
        probe[0].close()
        for _ in range(3):  # warm the request path, so the first requests are not counted
            more, _ = open_idle(port, 50, deadline)
            for sock in more:
                sock.close()
        time.sleep(0.3)
        before = settle(proc.pid)
        start = time.monotonic()
        socks, failed = open_idle(port, count, start + 120)
        after = settle(proc.pid)
        again = len(socks) - request_all(socks, REQUEST, BODY, time.monotonic() + 60)
        return {
            "name": name,
            "description": description,
            "count": len(socks),
            "failed": failed,
            "failed_again": again,
            "before": before,
            "after": after,
            "per_connection": (after - before) * 1024 / max(1, len(socks)),
            "seconds": time.monotonic() - start,
        }
    finally:
        for sock in socks:
            sock.close()
        stop_process(proc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Memory per idle keep-alive connection: refserver and uvicorn, one run."
    )
    parser.add_argument("-n", "--connections", type=int, default=10000,
                        help="idle connections per target (10000)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated, from: " + ", ".join(TARGETS))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error("unknown target(s): " + ", ".join(unknown))
    if not 1 <= args.connections <= 50000:
        parser.error("--connections must be 1..50000")
    limit = raise_fd_limit(args.connections + 256)
    if limit < args.connections + 64:
        parser.error(f"the file-descriptor limit is {limit}: too low for {args.connections}")
    results = [measure(name, args.connections) for name in names]
    print(f"{args.connections} idle keep-alive connections, each served one GET / first "
          f"(RSS after - before, over N)\n")
    print(f"{'target':<20} {'stack':<28} {'RSS before':>11} {'RSS after':>11} "
          f"{'per conn':>10} {'failed':>7} {'served again':>13}")
    for r in results:
        if "skipped" in r:
            print(f"{r['name']:<20} skipped: {r['skipped']}")
            continue
        print(f"{r['name']:<20} {r['description']:<28} {r['before'] / 1024:>8.1f} MiB "
              f"{r['after'] / 1024:>8.1f} MiB {r['per_connection'] / 1024:>7.2f} KiB "
              f"{r['failed']:>7} {r['count'] - r['failed_again']:>13}")
    return 0 if all(r.get("failed", 0) == 0 and r.get("failed_again", 0) == 0
                    for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
