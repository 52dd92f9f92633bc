#!/usr/bin/env python3
"""SIGTERM while every connection is busy: how many requests are lost, and how long the exit takes.

A real ``python -m refserver`` serves ``benchmarks/apps/slow.py`` on 127.0.0.1. ``--connections``
clients (threads with raw sockets, HTTP/1.1 keep-alive) each send requests that take a random
``--min-ms``..``--max-ms`` in the application, one after the other; a few more connections stay
idle after one request. Once the application has seen ``--signal-after`` requests the server gets
SIGTERM. The application writes the id of every request it receives on stdout, so afterwards each
request falls in one of these classes:

* ``complete``   the client got the whole response;
* ``lost``       the server read it (the application saw it) and the client got no complete
  response: what a graceful shutdown must never do (target 0), unless the request was still
  running at ``--timeout-graceful-shutdown`` (then it is ``cut``, and the server logged it);
* ``unread``     sent on a kept-alive connection that the server closed before reading it (the
  client sees the connection close with no byte of response: RFC 9112 §9.3.1, a client may retry);
* ``refused``    a new connection attempted after the signal, refused or reset at once.

Idle connections must be closed by the server at the signal (``idle closed after``), and the
process must exit 0 within the graceful timeout. Bounded: the load lasts until the signal, the
drain at most the graceful timeout, and every socket has a timeout.

    python benchmarks/shutdown_under_load.py                          # ASGI, fast path
    python benchmarks/shutdown_under_load.py --interface wsgi --impl pure
    python benchmarks/shutdown_under_load.py --all --runs 3           # 3 interfaces x 2 paths
    python benchmarks/shutdown_under_load.py --max-ms 3000 --timeout-graceful-shutdown 1  # cuts
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks.loopback import HOST, free_port  # noqa: E402

CUT_LINE = re.compile(
    r"cut at shutdown: GET /work\?ms=\d+&id=(\S+) from (\S+), started ([\d.]+) s ago"
)


class Tally:
    """What the clients observed, shared by their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent: list = []
        self.complete: set = set()
        self.truncated: set = set()  # part of a response, then the connection ended
        self.unanswered: set = set()  # not one byte of response
        self.refused = 0  # new connections after the signal
        # New connections after the signal was sent that were accepted: the server had not yet
        # handled the signal. Reported, not a failure.
        self.accepted_after_signal = 0
        self.idle_closed_after: list = []  # seconds from the signal to the close, per idle conn

    def add(self, name: str, value) -> None:
        with self.lock:
            getattr(self, name).add(value)


def read_response(sock) -> tuple:
    """(status, headers, body) of one response with a Content-Length, or raises EOFError with the
    number of bytes received so far (0: no answer at all)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(len(data))
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(len(head) + 4 + len(body))
        body += chunk
    return status, headers, body


def busy_client(index: int, port: int, args, tally: Tally, signalled: threading.Event,
                stop: threading.Event) -> None:
    rng = random.Random(args.seed * 1000 + index)
    number = 0
    sock = None
    while not stop.is_set():
        if sock is None:
            try:
                sock = socket.create_connection((HOST, port), timeout=args.io_timeout)
            except OSError:
                if signalled.is_set():
                    with tally.lock:
                        tally.refused += 1
                    return
                raise
            if signalled.is_set():
                with tally.lock:
                    tally.accepted_after_signal += 1
        number += 1
        request_id = f"c{index}-{number}"
        ms = rng.randint(args.min_ms, args.max_ms)
        request = (
            f"GET /work?ms={ms}&id={request_id} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
        )
        with tally.lock:
            tally.sent.append(request_id)
        try:
            sock.sendall(request)
            status, headers, body = read_response(sock)
        except EOFError as exc:
            tally.add("truncated" if exc.args[0] else "unanswered", request_id)
            sock.close()
            sock = None
            if signalled.is_set():
                continue  # the next connection attempt shows whether the server still accepts
            return
        except OSError:  # reset: by the server closing with our request unread, or a cut
            tally.add("unanswered", request_id)
            sock.close()
            sock = None
            if signalled.is_set():
                continue
            return
        if status == 200 and body == f"done {request_id}".encode():
            tally.add("complete", request_id)
        else:
            tally.add("truncated", request_id)
        if headers.get(b"connection", b"").lower() == b"close":
            sock.close()
            sock = None
            if not signalled.is_set():
                return
    if sock is not None:
        sock.close()


def idle_client(port: int, args, tally: Tally, signalled: threading.Event, signal_time: list,
                ready: threading.Barrier) -> None:
    """One quick request, then idle on the kept-alive connection until the server closes it."""
    sock = socket.create_connection((HOST, port), timeout=args.io_timeout)
    try:
        sock.sendall(f"GET /idle HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        read_response(sock)
        ready.wait(args.io_timeout)
        try:
            data = sock.recv(1)
        except OSError:
            data = b""
        if not data and signalled.is_set():
            with tally.lock:
                tally.idle_closed_after.append(time.monotonic() - signal_time[0])
    finally:
        sock.close()


def run_once(args, interface: str, impl: str) -> dict:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [
        args.python, "-m", "refserver", f"benchmarks.apps.slow:{interface}",
        "--interface", interface, "--impl", impl, "--host", HOST, "--port", str(port),
        "--no-access-log", "--timeout-keep-alive", "60",
        "--timeout-graceful-shutdown", str(args.timeout_graceful_shutdown),
        "--blocking-threads", str(max(32, args.connections + args.idle)),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seen: list = []
    seen_lock = threading.Lock()
    enough = threading.Event()
    err_lines: list = []

    def read_stdout():
        for line in proc.stdout:
            text = line.decode(errors="replace").strip()
            if text.startswith("seen "):
                with seen_lock:
                    seen.append(text[5:])
                    if len(seen) >= args.signal_after:
                        enough.set()

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line.decode(errors="replace").rstrip("\n"))

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the server exited at startup:\n" + "\n".join(err_lines))
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not listen within 20 s") from None
                time.sleep(0.02)

        tally = Tally()
        signalled = threading.Event()
        stop = threading.Event()
        signal_time = [0.0]
        idle_ready = threading.Barrier(args.idle + 1)
        clients = [
            threading.Thread(target=busy_client, args=(i, port, args, tally, signalled, stop),
                             daemon=True)
            for i in range(args.connections)
        ] + [
            threading.Thread(target=idle_client,
                             args=(port, args, tally, signalled, signal_time, idle_ready),
                             daemon=True)
            for _ in range(args.idle)
        ]
        for client in clients:
            client.start()
        if args.idle:
            idle_ready.wait(args.io_timeout)  # every idle connection has had its response
        if not enough.wait(args.io_timeout):
            raise RuntimeError(f"the application saw fewer than {args.signal_after} requests")
        signal_time[0] = time.monotonic()
        signalled.set()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(args.timeout_graceful_shutdown + 10)
        except subprocess.TimeoutExpired:
            code = None
        exit_time = time.monotonic() - signal_time[0]
        stop.set()
        for client in clients:
            client.join(args.io_timeout + 1)
        for reader in readers:
            reader.join(2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    with seen_lock:
        seen_ids = set(seen)
    cut = {m.group(1): float(m.group(3)) for m in map(CUT_LINE.search, err_lines) if m}
    not_complete = seen_ids - tally.complete
    lost = sorted(not_complete - set(cut))
    return {
        "interface": interface,
        "impl": impl,
        "connections": args.connections,
        "idle": args.idle,
        "sent": len(tally.sent),
        "seen_by_app": len(seen_ids),
        "complete": len(tally.complete),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "cut": len(cut),
        "cut_but_complete": sorted(set(cut) & tally.complete),
        "unread": len((tally.unanswered | tally.truncated) - seen_ids),
        "truncated_not_cut": sorted(tally.truncated - set(cut)),
        "refused_after_signal": tally.refused,
        "accepted_after_signal": tally.accepted_after_signal,
        "idle_closed": len(tally.idle_closed_after),
        "idle_closed_after_max": round(max(tally.idle_closed_after, default=0.0), 3),
        "exit_code": code,
        "exit_time": round(exit_time, 3),
        "stderr": err_lines,
    }


def check(result: dict, args) -> list:
    """The problems in one run (empty: it passed)."""
    problems = []
    if result["lost"]:
        problems.append(f"{result['lost']} request(s) lost: {result['lost_ids']}")
    if result["cut_but_complete"]:
        problems.append(f"logged as cut but complete: {result['cut_but_complete']}")
    if result["truncated_not_cut"]:
        problems.append(f"truncated without a cut: {result['truncated_not_cut']}")
    if result["idle_closed"] != args.idle:
        problems.append(f"{args.idle - result['idle_closed']} idle connection(s) not closed")
    if result["exit_code"] != 0:
        problems.append(f"exit code {result['exit_code']}")
    if result["exit_time"] > args.timeout_graceful_shutdown + 1.5:
        problems.append(
            f"exit after {result['exit_time']} s "
            f"(graceful timeout {args.timeout_graceful_shutdown} s)"
        )
    return problems


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Loopback only; bounded by the signal, the graceful timeout and socket timeouts.",
    )
    parser.add_argument("--interface", choices=("asgi", "rsgi", "wsgi"), default="asgi")
    parser.add_argument("--impl", choices=("pure", "fast"), default="fast")
    parser.add_argument("--all", action="store_true", help="every interface on both paths")
    parser.add_argument("--runs", type=int, default=1, help="runs of each interface and path (1)")
    parser.add_argument("--connections", type=int, default=64, help="busy connections (64)")
    parser.add_argument("--idle", type=int, default=8, help="idle keep-alive connections (8)")
    parser.add_argument("--min-ms", type=int, default=500, help="shortest request (500 ms)")
    parser.add_argument("--max-ms", type=int, default=1000, help="longest request (1000 ms)")
    parser.add_argument("--signal-after", type=int, default=None,
                        help="SIGTERM once the app has seen this many requests (3 x connections)")
    parser.add_argument("--timeout-graceful-shutdown", type=float, default=5.0)
    parser.add_argument("--io-timeout", type=float, default=15.0, help="socket timeout (15 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--python", default=sys.executable, help="the interpreter for the server")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.signal_after is None:
        args.signal_after = 3 * args.connections
    if not 1 <= args.connections <= 1000 or not 0 <= args.idle <= 1000:
        parser.error("--connections 1..1000, --idle 0..1000")
    if not 1 <= args.runs <= 100:
        parser.error("--runs 1..100")
    if not 0 <= args.min_ms <= args.max_ms <= 60000:
        parser.error("0 <= --min-ms <= --max-ms <= 60000")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = (
        [(i, p) for i in ("asgi", "rsgi", "wsgi") for p in ("pure", "fast")]
        if args.all
        else [(args.interface, args.impl)]
    )
    failed = False
    results = []
    first_seed = args.seed
    for run, (interface, impl) in enumerate(runs * args.runs):
        args.seed = first_seed + run  # other request durations in each run
        result = run_once(args, interface, impl)
        problems = check(result, args)
        failed = failed or bool(problems)
        result["problems"] = problems
        results.append(result)
        if not args.json:
            print(
                f"{interface:4} {impl:4}  sent {result['sent']:4}  seen {result['seen_by_app']:4}  "
                f"complete {result['complete']:4}  lost {result['lost']}  cut {result['cut']}  "
                f"unread {result['unread']}  refused {result['refused_after_signal']}  "
                f"idle closed {result['idle_closed']}/{args.idle} "
                f"(<= {result['idle_closed_after_max']} s)  "
                f"exit {result['exit_code']} after {result['exit_time']} s"
                + ("" if not problems else "  PROBLEMS: " + "; ".join(problems))
            )
    if args.json:
        for result in results:
            result.pop("stderr")
        print(json.dumps(results, indent=1))
    else:
        print(
            f"total: {len(results)} run(s), {sum(r['seen_by_app'] for r in results)} requests read "
            f"by the server, {sum(r['lost'] for r in results)} lost, "
            f"{sum(r['cut'] for r in results)} cut; longest exit "
            f"{max(r['exit_time'] for r in results)} s after SIGTERM"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
