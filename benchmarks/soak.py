"""Soak: a long, mixed load against a real refserver process, watching it for leaks.

For each configuration (interface x path) a ``python -m refserver`` child serves
benchmarks/apps/soak_apps.py on 127.0.0.1 and receives --requests requests:

- through wrk (benchmarks/soak.lua): kept-alive GETs, POSTs with a Content-Length body and with a
  chunked body, streamed (chunked) responses, and requests on new connections
  (``Connection: close``); every response's status and body are checked;
- through an asyncio client of raw sockets here (ASGI and RSGI only, --ws-share of the requests):
  WebSocket connections, each a handshake, --ws-messages echoes checked byte for byte, and a
  closing handshake.

wrk carries the bulk because on a 2-core machine the client competes with the server it
measures, and wrk spends a third of the CPU per request that a Python client does. Measured on
this machine against asgi:fast, 32 kept-alive connections of GETs: one wrk thread, 40,100
requests/s on 43 % of a core (11 us a request); an asyncio raw-socket client, 33,100 requests/s
on 98 % of a core (30 us a request). WebSocket echoes are few enough that a Python client keeps
up with them.

The first --warmup fraction of the requests is a warm-up: after it, with no connection open, the
server's RSS, open file descriptors (/proc/PID/fd) and threads are the baseline. They are sampled
through the run; when the load stops, RSS must not have grown more than --max-growth percent over
the baseline, and the fds and threads must come back to it (nothing leaked). Counting asyncio
tasks needs the server's own process: tests/test_soak.py does that, in-process, on a short run.

Each configuration is bounded by --max-seconds; the loopback address is the only target.

    python -m benchmarks.soak --requests 1000000 --configs asgi:fast,rsgi:fast,wsgi:fast,asgi:pure
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "benchmarks", "soak.lua")
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks.loopback import HOST, free_port, stop_process  # noqa: E402

#: The WSGI pool's size: its threads start as concurrency first needs them and then stay, so a
#: WSGI server may end with more threads than at the baseline, never more than this many more
#: than the threads every server has (the main one and the --warn-blocked-loop watchdog).
BLOCKING_THREADS = 32
SERVER_THREADS = 2


# ==================================================================================== the server


def start_server(interface: str, impl: str, port: int, log) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "refserver", f"benchmarks.apps.soak_apps:{interface}_app",
         "--interface", interface, "--impl", impl, "--host", HOST, "--port", str(port),
         "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "5",
         "--blocking-threads", str(BLOCKING_THREADS)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError("the server did not start listening")


def sample(pid: int) -> tuple:
    """(RSS in KiB, open fds, threads) of a process, from /proc."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


class Sampler(threading.Thread):
    """Samples the server every ``interval`` seconds while the load runs."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                self.samples.append((time.monotonic(), *sample(self.pid)))
            except OSError:
                return


def settle(pid: int, target_fds: int | None = None, timeout: float = 15.0) -> tuple:
    """The server's sample once its fds stop changing (connections closed by the clients are
    closed on its side too) -- or reach ``target_fds`` -- within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = sample(pid)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = sample(pid)
        if target_fds is not None and now[1] <= target_fds:
            return now
        if now[1:] != last[1:]:
            stable_since = time.monotonic()
        elif target_fds is None and time.monotonic() - stable_since >= 1.0:
            return now
        last = now
    return sample(pid)


# ==================================================================================== the load


def mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    return head + key + mask(payload, key)


async def read_frame(reader) -> tuple:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


class WSLoad:
    """WebSocket echo sessions over raw sockets until ``quota`` echoes are done."""

    TEXT = "soak ✓ " * 5
    BINARY = bytes(range(256)) * 2

    def __init__(self, port: int, quota: int, connections: int, messages: int, deadline: float):
        self.port = port
        self.quota = quota
        self.connections = connections
        self.messages = messages
        self.deadline = deadline
        self.started = 0  # echoes claimed by a worker
        self.done = 0
        self.sessions = 0
        self.errors: list = []

    async def run(self) -> None:
        if self.quota > 0:
            await asyncio.gather(*(self._worker() for _ in range(self.connections)))

    async def _worker(self) -> None:
        while self.started < self.quota and time.monotonic() < self.deadline:
            count = min(self.messages, self.quota - self.started)
            self.started += count
            try:
                await asyncio.wait_for(self._session(count), 30)
            except Exception as exc:  # noqa: BLE001 -- every failure is counted and reported
                self.errors.append(f"{type(exc).__name__}: {exc}")

    async def _session(self, count: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            key = base64.b64encode(os.urandom(16))
            writer.write(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                         b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101 "):
                raise AssertionError(f"handshake answered {head[:40]!r}")
            for i in range(count):
                if i % 2:
                    opcode, payload = 2, self.BINARY
                else:
                    opcode, payload = 1, self.TEXT.encode()
                writer.write(client_frame(opcode, payload))
                echoed = await read_frame(reader)
                if echoed != (opcode, payload):
                    raise AssertionError(f"echo {echoed[0]} {echoed[1][:20]!r} differs")
                self.done += 1
            writer.write(client_frame(8, struct.pack("!H", 1000)))
            opcode, payload = await read_frame(reader)
            if opcode != 8:
                raise AssertionError(f"expected the close reply, got opcode {opcode}")
            self.sessions += 1
        finally:
            writer.close()


async def wrk_load(port: int, quota: int, threads: int, connections: int, seconds: float) -> dict:
    """wrk with benchmarks/soak.lua until ``quota`` responses (or ``seconds``)."""
    if quota <= 0:
        return {"responses": 0, "bad": 0}
    per_thread = -(-quota // threads)
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t", str(threads), "-c", str(max(connections, threads)),
        "-d", f"{max(1, int(seconds))}s", "--timeout", "10s", "-s", LUA,
        f"http://{HOST}:{port}/", "--", str(per_thread),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    finished = 0
    complaints = []
    while True:
        line = await proc.stderr.readline()
        if not line:
            break
        if line.strip() == b"soak-wrk-thread-done":
            finished += 1
            if finished == threads:
                proc.send_signal(signal.SIGINT)  # wrk prints its summary and done() on SIGINT
        elif len(complaints) < 5:
            complaints.append(line.decode(errors="replace").strip())
    out = (await proc.stdout.read()).decode()
    await proc.wait()
    result = {"complaints": complaints}
    for line in out.splitlines():
        if line.startswith("soak-wrk "):
            for item in line.split()[1:]:
                name, _, value = item.partition("=")
                result[name] = int(value)
    if "responses" not in result:
        raise RuntimeError(f"wrk gave no summary: {out[-500:]!r} {complaints!r}")
    return result


async def phase(port: int, requests: int, args, deadline: float, websocket: bool) -> dict:
    ws_quota = int(requests * args.ws_share) if websocket else 0
    ws = WSLoad(port, ws_quota, args.ws_connections, args.ws_messages, deadline)
    started = time.monotonic()
    wrk, _ = await asyncio.gather(
        wrk_load(port, requests - ws_quota, args.threads, args.connections,
                 deadline - time.monotonic()),
        ws.run(),
    )
    elapsed = time.monotonic() - started
    socket_errors = sum(wrk.get(k, 0) for k in ("connect", "read", "write", "timeout"))
    return {
        "http": wrk["responses"], "ws_echoes": ws.done, "ws_sessions": ws.sessions,
        "requests": wrk["responses"] + ws.done, "seconds": elapsed,
        # "bad" counts every response that was not a 200 with an expected body (wrk's "status"
        # errors among them), and the socket errors are the requests that got no response.
        "errors": wrk["bad"] + socket_errors + len(ws.errors),
        "error_detail": (wrk.get("complaints") or [])[:3] + ws.errors[:3],
        "p99_ms": wrk.get("p99_us", 0) / 1000,
    }


# ================================================================================ one configuration


def soak(interface: str, impl: str, args) -> dict:
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = start_server(interface, impl, port, log)
        try:
            result = _soak(proc.pid, port, interface, impl, args)
        finally:
            stop_process(proc, 15)
        log.seek(0)
        lines = log.read().splitlines()
    problems = [line for line in lines if "Traceback" in line or "ERROR" in line]
    result["server_log_errors"] = len(problems)
    result["server_log_sample"] = problems[:3]
    return result


def _soak(pid: int, port: int, interface: str, impl: str, args) -> dict:
    started = time.monotonic()
    deadline = started + args.max_seconds
    websocket = interface != "wsgi"
    before = sample(pid)
    warm = asyncio.run(phase(port, int(args.requests * args.warmup), args, deadline, websocket))
    base = settle(pid)
    sampler = Sampler(pid, args.sample_interval)
    sampler.start()
    main = asyncio.run(phase(port, args.requests - warm["requests"], args, deadline, websocket))
    sampler.halt.set()
    sampler.join()
    after = settle(pid, target_fds=base[1])
    peak = tuple(max(s[i] for s in sampler.samples) if sampler.samples else 0 for i in (1, 2, 3))
    growth = 100.0 * (after[0] - base[0]) / base[0]
    total = warm["requests"] + main["requests"]
    result = {
        "config": f"{interface}:{impl}",
        "requests": total,
        "http": warm["http"] + main["http"],
        "ws_echoes": warm["ws_echoes"] + main["ws_echoes"],
        "ws_sessions": warm["ws_sessions"] + main["ws_sessions"],
        "warmup_requests": warm["requests"],
        "seconds": round(time.monotonic() - started, 1),
        "requests_per_s": round(main["requests"] / main["seconds"]),
        "p99_ms_http": main["p99_ms"],
        "errors": warm["errors"] + main["errors"],
        "error_detail": warm["error_detail"] + main["error_detail"],
        "rss_kib": {"start": before[0], "after_warmup": base[0], "peak": peak[0],
                    "end": after[0]},
        "rss_growth_pct": round(growth, 2),
        "fds": {"start": before[1], "baseline": base[1], "peak": peak[1], "end": after[1]},
        "threads": {"start": before[2], "baseline": base[2], "peak": peak[2], "end": after[2]},
        "stopped_by_time": total < args.requests,
    }
    thread_bound = base[2] if websocket else max(base[2], SERVER_THREADS + BLOCKING_THREADS)
    result["ok"] = (
        growth < args.max_growth and after[1] <= base[1] and after[2] <= thread_bound
        and result["errors"] == 0
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak refserver with a mixed HTTP/1.1 and WebSocket load on 127.0.0.1 and "
        "check that RSS, file descriptors and threads do not leak. Needs wrk.",
    )
    parser.add_argument("--requests", type=int, default=1_000_000,
                        help="requests per configuration, warm-up included (default 1,000,000)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="bound on each configuration's run, warm-up included (default 900)")
    parser.add_argument("--configs", default="asgi:fast,rsgi:fast,wsgi:fast,asgi:pure,"
                        "rsgi:pure,wsgi:pure",
                        help="interface:path pairs to soak, comma-separated (default: all six)")
    parser.add_argument("--warmup", type=float, default=0.1,
                        help="fraction of the requests run before the baseline (default 0.1)")
    parser.add_argument("--max-growth", type=float, default=5.0,
                        help="RSS growth after warm-up that fails the run, in %% (default 5)")
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--ws-share", type=float, default=0.1,
                        help="share of the requests that are WebSocket echoes, ASGI and RSGI "
                        "(default 0.1)")
    parser.add_argument("--ws-connections", type=int, default=8,
                        help="concurrent WebSocket sessions (default 8)")
    parser.add_argument("--ws-messages", type=int, default=50,
                        help="echoes per WebSocket session (default 50)")
    parser.add_argument("--sample-interval", type=float, default=0.5,
                        help="seconds between samples of the server (default 0.5)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    results = []
    for config in args.configs.split(","):
        interface, _, impl = config.partition(":")
        print(f"soaking {interface} on the {impl} path: {args.requests} requests, at most "
              f"{args.max_seconds:.0f} s ...", flush=True)
        result = soak(interface, impl, args)
        results.append(result)
        print(json.dumps(result, indent=1), flush=True)
    print("\nconfig      requests  seconds   req/s  errors  RSS warm->end KiB   growth  "
          "fds base/peak/end  threads base/peak/end  ok")
    for r in results:
        print(f"{r['config']:<11}{r['requests']:>9}{r['seconds']:>9}{r['requests_per_s']:>8}"
              f"{r['errors']:>8}  {r['rss_kib']['after_warmup']:>7}->{r['rss_kib']['end']:<8}"
              f"{r['rss_growth_pct']:>7}%  {r['fds']['baseline']:>4}/{r['fds']['peak']}/"
              f"{r['fds']['end']:<8} {r['threads']['baseline']:>4}/{r['threads']['peak']}/"
              f"{r['threads']['end']:<12} {'yes' if r['ok'] else 'NO'}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
