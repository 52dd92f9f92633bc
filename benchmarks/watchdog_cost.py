#!/usr/bin/env python3
"""What ``--warn-blocked-loop`` costs: the CPU of an idle server with and without the watchdog.

The watchdog does nothing per request (a heartbeat timer on the loop, a thread that wakes about
once per threshold), so its cost is a fixed amount of CPU per second, best seen on an idle server:
a real ``python -m refserver`` on 127.0.0.1 is started with ``--warn-blocked-loop 0`` and then with
the threshold given, alternately ``--rounds`` times, and the CPU time of all its threads over
``--seconds`` is read from /proc (Linux) after one request has warmed it up.

    python benchmarks/watchdog_cost.py                  # 1 s threshold, 2 rounds of 10 s
    python benchmarks/watchdog_cost.py --threshold 0.2 --seconds 5
"""

from __future__ import annotations

import argparse
import glob
import http.client
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks.loopback import HOST, stop_process  # noqa: E402


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns (/proc/PID/task/*/schedstat)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that has just ended
    return total


def idle_cpu(threshold: float, seconds: float) -> float:
    """Microseconds of CPU per second of an idle server."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "refserver", "benchmarks.apps.rsgi_app:app", "--interface", "rsgi",
         "--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning",
         "--warn-blocked-loop", str(threshold)],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=1)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        time.sleep(1)  # settle after start-up
        before = cpu_ns(proc.pid)
        time.sleep(seconds)
        return (cpu_ns(proc.pid) - before) / 1000 / seconds
    finally:
        stop_process(proc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=1.0, help="--warn-blocked-loop (1 s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per server (10)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (2)")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 1 <= args.rounds <= 20 or args.threshold <= 0:
        parser.error("0 < --seconds <= 120, 1 <= --rounds <= 20, --threshold > 0")
    if not os.path.exists("/proc/self/task"):
        parser.error("needs Linux /proc")
    for _ in range(args.rounds):
        for threshold in (0.0, args.threshold):
            used = idle_cpu(threshold, args.seconds)
            print(f"--warn-blocked-loop {threshold:g}: idle server uses {used:7.0f} µs of CPU "
                  f"per second ({used / 1e4:.3f} % of a core)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
