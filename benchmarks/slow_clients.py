#!/usr/bin/env python3
"""Slow request heads against a prompt client, on loopback.

Starts refserver (``benchmarks.apps.asgi_app``) with a header-read timeout, opens N connections
that each send one byte of a request head every second (in a child process, so the trickle does
not share an interpreter with the measurement), and meanwhile sends ``GET /`` on one keep-alive
connection as fast as it is answered. Prints the prompt client's latency percentiles and errors,
and how many slow connections got a 408 and when (seconds after their connect). The run ends
by itself: at the header-read timeout plus a few seconds.

    python benchmarks/slow_clients.py                          # fast path, 1,000 connections, 10 s
    python benchmarks/slow_clients.py --impl pure --connections 1000 --header-timeout 10
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks.loopback import HOST, free_port, raise_fd_limit  # noqa: E402
from benchmarks.loopback import trickle as loopback_trickle  # noqa: E402
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
HELLO = b"Hello, world!"  # the body of GET / in benchmarks.apps
SLOW_HEAD = b"GET /slow HTTP/1.1\r\nHost: bench\r\nX-Pad: " + b"p" * 4096  # never completed


def wait_ready(port: int, proc, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as sock:
                sock.sendall(REQUEST)
                if sock.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not answer in time")


def trickle_in_child(port: int, count: int, interval: float, stop_at: float, out) -> None:
    """Child process: the slow connections (:func:`benchmarks.loopback.trickle`); sends to ``out``
    when they are connected, then (index, seconds to close, first bytes) of each one closed."""
    raise_fd_limit(count + 64)
    closed, sent = loopback_trickle(
        port, count, SLOW_HEAD, interval, stop_at, lambda: out.send(("connected", count))
    )
    done = {i: (seconds, data[:12]) for i, (seconds, data) in closed.items()}
    out.send(("done", done, sent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Slow request heads (one byte a second) against a prompt keep-alive client."
    )
    parser.add_argument("--impl", choices=("pure", "fast"), default="fast")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="auto: asyncio for pure, uvloop for fast")
    parser.add_argument("--connections", type=int, default=1000, help="slow connections (1000)")
    parser.add_argument("--header-timeout", type=float, default=10.0,
                        help="the server's --http1-header-read-timeout in seconds (10)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between two bytes of each slow head (1)")
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 20000 or not 0 < args.header_timeout <= 120:
        parser.error("--connections must be 1..20000 and --header-timeout 0..120 s")
    raise_fd_limit(args.connections + 64)
    loop = args.loop if args.loop != "auto" else ("asyncio" if args.impl == "pure" else "uvloop")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen(
        [
            sys.executable, "-m", "refserver", "benchmarks.apps.asgi_app:app",
            "--host", HOST, "--port", str(port), "--impl", args.impl, "--loop", loop,
            "--no-access-log", "--log-level", "warning",
            "--http1-header-read-timeout", str(args.header_timeout),
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        preexec_fn=lambda: raise_fd_limit(args.connections + 256),
    )
    try:
        wait_ready(port, server, time.monotonic() + 30)
        stop_at = time.monotonic() + args.header_timeout + 10
        parent, child = multiprocessing.Pipe()
        slow = multiprocessing.Process(
            target=trickle_in_child, args=(port, args.connections, args.interval, stop_at, child)
        )
        slow.start()
        if not parent.poll(60):
            raise SystemExit("the slow connections did not connect in time")
        parent.recv()
        started = time.monotonic()
        latencies, errors = [], 0
        sock = socket.create_connection((HOST, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5)
        while not parent.poll():
            begin = time.perf_counter()
            try:
                sock.sendall(REQUEST)
                data = b""
                while not data.endswith(HELLO):
                    piece = sock.recv(4096)
                    if not piece:
                        raise ConnectionError("closed")
                    data += piece
                latencies.append(time.perf_counter() - begin)
            except OSError:
                errors += 1
                sock.close()
                sock = socket.create_connection((HOST, port))
                sock.settimeout(5)
            time.sleep(0.001)
        sock.close()
        _, done, sent = parent.recv()
        slow.join(10)
    finally:
        server.terminate()
        server.wait(10)
    got_408 = [t for t, first in done.values() if first.startswith(b"HTTP/1.1 408")]
    other = len(done) - len(got_408)
    never = args.connections - len(done)
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    print(f"refserver --impl {args.impl} --loop {loop}: {args.connections} slow heads, "
          f"one byte every {args.interval:g} s, --http1-header-read-timeout {args.header_timeout:g}")
    print(f"prompt client: {len(latencies)} requests in {time.monotonic() - started:.1f} s, "
          f"{errors} errors; latency p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms, "
          f"max {max(latencies, default=float('nan')) * 1000:.2f} ms")
    if got_408:
        print(f"slow connections: {len(got_408)} got 408 and were closed "
              f"{min(got_408):.2f}-{max(got_408):.2f} s after connecting "
              f"(median {statistics.median(got_408):.2f} s; each had sent up to {max(sent)} bytes)")
    print(f"slow connections closed otherwise: {other}; never closed: {never}")
    ok = errors == 0 and not other and not never and q[98] < 0.050
    print("PASS" if ok else "FAIL", "(no error, p99 < 50 ms, every slow connection 408)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
