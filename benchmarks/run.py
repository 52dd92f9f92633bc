#!/usr/bin/env python3
"""Compare refserver with Granian, uvicorn and hypercorn in one run, on one machine.

Every cell of the matrix (target x endpoint) gets a fresh server process pinned to one core, a short
warm-up and a measured ``wrk`` run pinned to another core. The server's CPU time (its whole process
tree, every thread) and memory are read from /proc around the measurement, so the table shows both
throughput and how much server CPU each request costs. See benchmarks/README.md.

    python benchmarks/run.py                       # the full matrix
    python benchmarks/run.py --quick               # short cells, for a smoke run
    python benchmarks/run.py --targets 'refserver-pure-asgi,uvicorn-*' --endpoints plaintext,json
    python benchmarks/run.py --list                # the targets and endpoints
    python benchmarks/run.py --quick --plot bench.png                     # and its picture
    python benchmarks/run.py --plot-from benchmarks/results/X.json --plot bench.png  # redrawn
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fnmatch
import functools
import http.client
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
HOST = "127.0.0.1"  # never anything else

CLK_TCK = os.sysconf("SC_CLK_TCK")

ECHO_SIZE = 4096
BIG_SIZE = 1024 * 1024

STARTUP_DEADLINE = 30.0  # seconds for a server to accept and answer its first request
STOP_DEADLINE = 10.0  # seconds after SIGINT before the process group is killed
WRK_GRACE = 30.0  # seconds a wrk run may overrun its -d before it is killed


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    description: str
    body: bytes = b""

    def check(self, status: int, body: bytes) -> str | None:
        """Why a response is wrong, or None: no cell is measured against a broken endpoint."""
        if status != 200:
            return f"{self.method} {self.path} answered {status}"
        expected = {
            "plaintext": b"Hello, world!",
            "echo": self.body,
            "big": b"x" * BIG_SIZE,
        }.get(self.name)
        if expected is not None and body != expected:
            return f"{self.method} {self.path}: unexpected body ({len(body)} bytes)"
        if self.name == "json":
            try:
                json.loads(body)
            except ValueError:
                return f"{self.method} {self.path}: body is not JSON"
        return None


ENDPOINTS = {
    e.name: e
    for e in (
        Endpoint("plaintext", "GET", "/", 'GET / -> 13 bytes "Hello, world!"'),
        Endpoint("json", "GET", "/json", "GET /json -> small JSON, serialised per request"),
        Endpoint(
            "echo",
            "POST",
            "/echo",
            "POST /echo with a 4 KiB body -> the same 4 KiB",
            body=b"a" * ECHO_SIZE,
        ),
        Endpoint("big", "GET", "/big", "GET /big -> 1 MiB body"),
    )
}


def wrk_script(endpoint: Endpoint) -> str:
    """The Lua script for one endpoint: the request, and a machine-readable summary at the end."""
    lines = []
    if endpoint.method != "GET":
        lines.append(f'wrk.method = "{endpoint.method}"')
    if endpoint.body:
        # The body is generated here rather than pasted: string.rep of one byte.
        assert endpoint.body == endpoint.body[:1] * len(endpoint.body)
        lines.append(f'wrk.body = string.rep("{endpoint.body[:1].decode()}", {len(endpoint.body)})')
        lines.append('wrk.headers["Content-Type"] = "application/octet-stream"')
    lines.append(
        """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.3f,"stdev":%.3f,"max":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    server: str  # refserver, uvicorn, granian, hypercorn
    interface: str  # asgi, rsgi, wsgi
    description: str
    argv: Callable[[str, int], list]  # (python, port) -> command
    optional: bool = False  # skipped with a reason when unavailable, rather than failing
    scheme: str = "http"  # https: the server speaks TLS (its certificate is not verified)


def _app(interface: str) -> str:
    return f"benchmarks.apps.{interface}_app:app"


def _refserver(impl: str, interface: str) -> Target:
    loop = "asyncio" if impl == "pure" else "uvloop"

    def argv(python, port):
        return [
            python, "-m", "refserver", _app(interface),
            "--host", HOST, "--port", str(port),
            "--interface", interface, "--impl", impl, "--loop", loop, "--no-ws",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    parser = "h11" if impl == "pure" else "httptools (Cython)"
    return Target(
        f"refserver-{impl}-{interface}",
        "refserver",
        interface,
        f"refserver --impl {impl} --interface {interface} --no-ws ({parser}, {loop})",
        argv,
        optional=impl == "fast",
    )


def _uvicorn(http: str, loop: str) -> Target:
    def argv(python, port):
        return [
            python, "-m", "uvicorn", _app("asgi"),
            "--host", HOST, "--port", str(port),
            "--http", http, "--loop", loop, "--ws", "none",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    return Target(f"uvicorn-{http}", "uvicorn", "asgi", f"uvicorn --http {http} --loop {loop}", argv)


def _granian(interface: str, workers: int = 1) -> Target:
    def argv(python, port):
        return [
            python, "-m", "granian", "--interface", interface,
            "--host", HOST, "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--no-ws",
            "--no-access-log", "--log-level", "warning",
            _app(interface),
        ]  # fmt: skip

    return Target(
        f"granian-{interface}",
        "granian",
        interface,
        f"granian --interface {interface} --workers {workers} --loop uvloop --no-ws",
        argv,
    )


def _hypercorn() -> Target:
    def argv(python, port):
        return [
            python, "-m", "hypercorn", "--bind", f"{HOST}:{port}",
            "--workers", "1", "--worker-class", "asyncio", "--log-level", "warning",
            _app("asgi"),
        ]  # fmt: skip

    return Target("hypercorn", "hypercorn", "asgi", "hypercorn --workers 1 -k asyncio", argv)


def _floor(interface: str) -> Target:
    def argv(python, port):
        return [
            python, "-m", "benchmarks.floor", "--interface", interface,
            "--host", HOST, "--port", str(port),
        ]  # fmt: skip

    return Target(
        f"floor-{interface}",
        "floor",
        interface.partition("-")[0],
        f"python -m benchmarks.floor --interface {interface}: no HTTP rules (context)",
        argv,
    )


def with_args(target: Target, extra: list, name: str | None = None,
              description: str | None = None) -> Target:
    """``target`` with ``extra`` arguments at the end of its command line (the other runners'
    variants of these targets)."""
    return dataclasses.replace(
        target,
        name=name or target.name,
        argv=lambda python, port: target.argv(python, port) + extra,
        description=description or f"{target.description} {' '.join(extra)}",
    )


TARGETS = {
    t.name: t
    for t in (
        _refserver("pure", "asgi"),
        _refserver("pure", "rsgi"),
        _refserver("pure", "wsgi"),
        _refserver("fast", "asgi"),
        _refserver("fast", "rsgi"),
        _refserver("fast", "wsgi"),
        _uvicorn("h11", "asyncio"),
        _uvicorn("httptools", "uvloop"),
        _granian("rsgi"),
        _granian("asgi"),
        _granian("wsgi"),
        _hypercorn(),
        _floor("rsgi"),
        _floor("wsgi"),
        _floor("wsgi-blocking"),
    )
}

# (ours, theirs): printed as ratio lines, in this order, when both sides were measured.
RATIOS = [
    ("refserver-pure-asgi", "uvicorn-h11"),
    ("refserver-pure-asgi", "uvicorn-httptools"),
    ("refserver-pure-rsgi", "granian-rsgi"),
    ("refserver-pure-wsgi", "granian-wsgi"),
    ("refserver-fast-asgi", "uvicorn-h11"),
    ("refserver-fast-asgi", "uvicorn-httptools"),
    ("refserver-fast-rsgi", "granian-rsgi"),
    ("refserver-fast-wsgi", "granian-wsgi"),
    # Context, not targets:
    ("refserver-pure-asgi", "hypercorn"),
    ("refserver-pure-asgi", "granian-asgi"),
    ("refserver-fast-asgi", "granian-asgi"),
    ("refserver-fast-rsgi", "floor-rsgi"),
    ("granian-rsgi", "floor-rsgi"),
    ("refserver-fast-wsgi", "floor-wsgi"),
    ("granian-wsgi", "floor-wsgi"),
    ("granian-wsgi", "floor-wsgi-blocking"),
]


def fast_path_unavailable(python: str) -> str | None:
    """Why the fast path cannot be benchmarked, or None when its extensions import."""
    proc = subprocess.run(
        [python, "-c", "import refserver.impl; refserver.impl.select('fast')"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"import exited with {proc.returncode}"


def importable(python: str, module: str, checked: dict) -> bool:
    """Whether ``python`` imports ``module`` (a peer may not be installed); ``checked`` keeps
    the answers over the targets of one run."""
    key = ("import", module)
    if key not in checked:
        checked[key] = subprocess.run([python, "-c", f"import {module}"], cwd=ROOT,
                                      capture_output=True, timeout=60).returncode == 0
    return checked[key]


def cli_has_option(python: str, module: str, option: str) -> bool:
    """Whether ``python -m module --help`` lists ``option`` as itself (``--http`` is not the start
    of ``--http1-header-read-timeout``): what a runner asks of a server it may not support yet."""
    proc = subprocess.run([python, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    return re.search(re.escape(option) + r"(?![\w-])", proc.stdout) is not None


# --------------------------------------------------------------------------- /proc


def _children(pid: int) -> list:
    """Direct children of ``pid`` (every thread's children, via /proc/<pid>/task/*/children)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def process_tree(pid: int) -> list:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in tree:
            continue
        tree.append(p)
        todo.extend(_children(p))
    return tree


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all of its threads) plus those of its reaped children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def parse_cpus(spec: str | None) -> list:
    """A taskset CPU list ("0", "0,2", "0-3") as a list of CPU numbers; all CPUs for None."""
    if spec is None:
        return sorted(os.sched_getaffinity(0))
    cpus = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def cpu_stat(cpus: list) -> tuple:
    """(busy, steal) seconds summed over ``cpus`` since boot, from /proc/stat."""
    busy = steal = 0
    wanted = {f"cpu{c}" for c in cpus}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in wanted:
                user, nice, system, idle, iowait, irq, softirq, st = (int(x) for x in parts[1:9])
                busy += user + nice + system + irq + softirq + st
                steal += st
    return busy / CLK_TCK, steal / CLK_TCK


def wait_for_quiet(cpus: list, threshold: float, timeout: float) -> float:
    """Poll /proc/stat in 0.5 s windows until ``cpus`` are busy less than ``threshold`` of the time
    (other sessions' work would be measured as noise); give up after ``timeout`` seconds.
    Returns the busy share of the last window."""
    end = time.monotonic() + timeout
    while True:
        busy0, _ = cpu_stat(cpus)
        t0 = time.monotonic()
        time.sleep(0.5)  # the sampling window
        busy1, _ = cpu_stat(cpus)
        share = (busy1 - busy0) / ((time.monotonic() - t0) * len(cpus))
        if share < threshold or time.monotonic() >= end:
            return share


def wait_before_run(args) -> None:
    """``--quiet-wait``: wait (bounded) for the pinned CPUs to be quiet before a run starts."""
    if args.quiet_wait > 0:
        busy = wait_for_quiet(
            sorted(set(parse_cpus(args.server_cpus) + parse_cpus(args.client_cpus))),
            args.quiet_threshold,
            args.quiet_wait,
        )
        if busy >= args.quiet_threshold:
            print(f"[busy {busy * 100:.0f}% before start]", end=" ", flush=True)


def tree_snapshot(pid: int) -> dict:
    """{pid: cpu seconds} for the server process and all its descendants."""
    snap = {}
    for p in process_tree(pid):
        cpu = cpu_seconds(p)
        if cpu is not None:
            snap[p] = cpu
    return snap


# --------------------------------------------------------------------------- server lifecycle


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerFailed(Exception):
    pass


class RunningServer:
    """One server process (group), started pinned, stopped with SIGINT then SIGKILL."""

    def __init__(self, target: Target, python: str, pin: str | None, log_dir: str,
                 probe: Callable[[int, float], object] | None = None):
        self.target = target
        # (port, timeout) -> anything, or OSError / HTTPException while the server does not answer.
        self.probe = probe or (
            lambda port, timeout: http_request(port, ENDPOINTS["plaintext"], timeout, target.scheme)
        )
        self.port = free_port()
        self.argv = target.argv(python, self.port)
        if pin is not None:
            self.argv = ["taskset", "-c", pin] + self.argv  # taskset execs: same pid
        self.log_path = os.path.join(log_dir, f"{target.name}-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        for name in list(env):  # the command line is the whole configuration
            if name.startswith(("REFSERVER_", "GRANIAN_", "UVICORN_")):
                del env[name]
        with contextlib.suppress(OSError):  # the port must be ours alone
            with socket.create_connection((HOST, self.port), timeout=0.2):
                raise ServerFailed(f"port {self.port} is already in use")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches every worker
        )

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace").strip().splitlines()
            return "\n".join(text[-lines:])
        return ""

    def _died(self) -> ServerFailed:
        tail = self.log_tail()
        last = tail.splitlines()[-1] if tail else ""
        return ServerFailed(f"exited with code {self.proc.returncode} before serving: {last}")

    def wait_ready(self, deadline: float = STARTUP_DEADLINE) -> None:
        """Poll the socket until it accepts, then until GET / answers (a supervisor may accept
        before its worker serves, so an accepted connection alone does not mean ready)."""
        end = time.monotonic() + deadline
        while True:
            if self.proc.poll() is not None:
                raise self._died()
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    break
            except OSError:
                pass
            if time.monotonic() > end:
                raise ServerFailed(f"did not accept connections within {deadline:.0f}s")
            time.sleep(0.02)  # poll interval, not a wait for readiness
        while True:
            if self.proc.poll() is not None:
                raise self._died()
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise ServerFailed(f"GET / got no answer within {deadline:.0f}s")
            try:
                self.probe(self.port, remaining)
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)

    def check(self, endpoint: Endpoint, timeout: float = 10.0) -> None:
        """Fail unless ``endpoint`` answers correctly: no cell measures a broken endpoint."""
        try:
            problem = endpoint.check(
                *http_request(self.port, endpoint, timeout=timeout, scheme=self.target.scheme)
            )
        except socket.timeout:
            problem = f"{endpoint.method} {endpoint.path}: no response within {timeout:.0f}s"
        except (OSError, http.client.HTTPException) as exc:
            problem = f"{endpoint.method} {endpoint.path}: {type(exc).__name__}: {exc}"
        if problem:
            raise ServerFailed(f"wrong response: {problem}")

    def stop(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    print(f"    ! {self.target.name} ignored SIGINT for {STOP_DEADLINE:.0f}s: killing",
                          flush=True)
            # Workers left behind by the process we started: its own group, by id.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            return proc.returncode
        finally:
            self.log.close()


def unverified_tls() -> ssl.SSLContext:
    """A client context that encrypts but does not check the server's (throwaway) certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_request(port: int, endpoint: Endpoint, timeout: float, scheme: str = "http") -> tuple:
    if scheme == "https":  # a throwaway certificate: encrypted, not verified
        conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=unverified_tls())
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if endpoint.body else {}
        conn.request(endpoint.method, endpoint.path, body=endpoint.body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkRun:
    summary: dict
    stdout: str
    client_cpu_s: float
    wall_s: float


def run_wrk(args, port: int, endpoint: Endpoint, duration: float, script_path: str,
            scheme: str = "http") -> WrkRun:
    cmd = []
    if args.client_cpus is not None:
        cmd += ["taskset", "-c", args.client_cpus]
    cmd += [
        args.wrk, "-t", str(args.threads), "-c", str(args.connections),
        "-d", f"{duration}s", "--timeout", f"{args.wrk_timeout:g}s", "--latency",
        "-s", script_path, f"{scheme}://{HOST}:{port}{endpoint.path}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + WRK_GRACE)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            summary = json.loads(line[len("WRKJSON ") :])
            break
    else:
        raise RuntimeError("wrk printed no summary: " + proc.stdout[-300:])
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRun(summary, proc.stdout, client_cpu, wall)


# --------------------------------------------------------------------------- one cell


@dataclass
class Cell:
    target: str
    endpoint: str
    status: str = "ok"  # ok, failed, skipped
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    noisy_runs: list = field(default_factory=list)  # discarded: the server CPU was shared


def measure_load(args, server: RunningServer, load: Callable[[], object]) -> tuple:
    """Run ``load()`` (a client run, returning an object with ``client_cpu_s`` and ``wall_s``)
    against the running ``server`` and return (its result, what the server used meanwhile):
    the CPU of its whole process tree, its memory after the load, and the share of the pinned
    CPUs that other work took (``noise`` on the server's, ``client_noise`` on the client's)."""
    pid = server.proc.pid
    server_cpus = parse_cpus(args.server_cpus)
    client_cpus = parse_cpus(args.client_cpus)
    core_before, client_core_before = cpu_stat(server_cpus), cpu_stat(client_cpus)
    before = tree_snapshot(pid)
    run = load()
    after = tree_snapshot(pid)
    core_after, client_core_after = cpu_stat(server_cpus), cpu_stat(client_cpus)
    if server.proc.poll() is not None:
        raise ServerFailed(f"died during the measurement: {server.log_tail(3)}")
    # Per-process CPU; a process that appeared during the run counts from zero.
    per_pid = {p: after[p] - before.get(p, 0.0) for p in after}
    cpu = sum(per_pid.values())
    # A process that ended during the run: its time is in its parent's cutime/cstime, once
    # reaped; count nothing more for it here.
    rss_by_pid = {p: rss_mib(p) for p in after}
    busiest = max(per_pid, key=per_pid.get) if per_pid else pid
    # Work on the server's CPUs that was not the server's: other processes, hypervisor steal.
    core_busy = core_after[0] - core_before[0]
    ours = cpu if args.server_cpus is not None else cpu + run.client_cpu_s  # unpinned: all CPUs
    foreign = max(0.0, core_busy - ours) / (run.wall_s * len(server_cpus))
    steal = (core_after[1] - core_before[1]) / (run.wall_s * len(server_cpus))
    # The same on the client's CPUs: a starved client understates req/s just as a shared server CPU.
    if args.client_cpus is not None:
        client_busy = client_core_after[0] - client_core_before[0]
        client_noise = max(0.0, client_busy - run.client_cpu_s) / (run.wall_s * len(client_cpus))
    else:
        client_noise = foreign
    return run, {
        "server_cpu_s": cpu,
        "server_cpu_by_pid": {str(p): c for p, c in per_pid.items()},
        "server_cpu_util": cpu / run.wall_s if run.wall_s else 0.0,
        "server_processes": len(after),
        "rss_mib": rss_by_pid.get(busiest),  # the process that served (most CPU)
        "rss_tree_mib": sum(v for v in rss_by_pid.values() if v is not None),
        "noise": foreign,  # share of the server CPUs used by something else during the run
        "steal": steal,
        "client_noise": client_noise,  # share of the client's CPUs used by something else
        "client_cpu_s": run.client_cpu_s,
        "client_cpu_util": run.client_cpu_s / run.wall_s if run.wall_s else 0.0,
    }


@dataclass
class LoadedRun:
    """One run of one target, as :func:`load_fresh_server` measured it."""

    server: RunningServer  # stopped by now
    load: Callable[[], object]  # the measured load, as called (its state is the runner's to read)
    result: object  # what ``load()`` returned (a WrkRun, an H2loadRun)
    usage: dict  # what the server used meanwhile (:func:`measure_load`)
    rss_idle_mib: float | None  # the server's memory once ready, before any load
    exit_code: int | None


def load_fresh_server(args, target: Target, log_dir: str,
                      client: Callable[[RunningServer, float], object], *,
                      check: Callable[[RunningServer], None],
                      probe: Callable[[int, float], object] | None = None,
                      measured: Callable[[RunningServer], Callable[[], object]] | None = None,
                      ) -> LoadedRun:
    """One run of ``target``, the sequence every runner here shares: wait (bounded) for quiet
    CPUs, start a fresh server (pinned to --server-cpus, if any), wait until ``probe`` gets an
    answer, ``check`` that answer, warm the server up with ``client(server, seconds)`` for
    --warmup seconds, run the load of --duration seconds with the server's CPU read around it
    (:func:`measure_load`), check the answer again, and stop the server whatever happened.

    ``measured(server)``, called once the server answers, makes the measured load (a callable
    taking nothing), for a runner that watches more than the client does during it or has more
    to wait for first (workers.py: every worker listening); by default it is ``client`` for
    --duration seconds."""
    wait_before_run(args)
    server = RunningServer(target, args.python, args.server_cpus, log_dir, probe=probe)
    server.start()
    try:
        server.wait_ready()
        load = (measured(server) if measured is not None
                else functools.partial(client, server, args.duration))
        check(server)
        rss_idle = rss_mib(server.proc.pid)
        if args.warmup > 0:
            client(server, args.warmup)
        result, usage = measure_load(args, server, load)
        check(server)  # still correct after the load
    finally:
        exit_code = server.stop()
    return LoadedRun(server, load, result, usage, rss_idle, exit_code)


def measure_once(args, target: Target, endpoint: Endpoint, script_path: str, log_dir: str) -> dict:
    def wrk(server: RunningServer, seconds: float) -> WrkRun:
        return run_wrk(args, server.port, endpoint, seconds, script_path, target.scheme)

    done = load_fresh_server(args, target, log_dir, wrk,
                             check=lambda server: server.check(endpoint))
    return {
        "command": done.server.argv,
        **wrk_metrics(done.result, done.usage),
        "rss_idle_mib": done.rss_idle_mib,
        "server_exit_code": done.exit_code,
    }


def wrk_metrics(wrk: WrkRun, usage: dict) -> dict:
    """The figures of one wrk run, with what the server used meanwhile (``usage``, from
    :func:`measure_load`) and the requests per server CPU-second they make."""
    cpu = usage["server_cpu_s"]
    s = wrk.summary
    seconds = s["duration_us"] / 1e6
    requests = s["requests"]
    errors = s["errors"]
    return {
        "requests": requests,
        "duration_s": seconds,
        "rps": requests / seconds if seconds else 0.0,
        "bytes_read": s["bytes"],
        "latency_ms": {k: v / 1000 for k, v in s["latency_us"].items()},
        "p99_ms": s["latency_us"]["p99"] / 1000,
        "errors": errors,
        "error_count": sum(errors.values()),
        **usage,
        "requests_per_cpu_s": requests / cpu if cpu > 0 else None,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
        "wrk_stdout": wrk.stdout,
    }


def _noise(metrics: dict) -> float:
    """The worse of the two: other work on the server's CPUs, or on wrk's while the server was
    not saturated (a server kept at ~100 % of its CPU was not held back by a starved wrk)."""
    client = metrics.get("client_noise", 0.0) if metrics["server_cpu_util"] < 0.97 else 0.0
    return max(metrics["noise"], client)


def _noise_text(metrics: dict) -> str:
    return f"{metrics['noise'] * 100:.0f}/{metrics.get('client_noise', 0.0) * 100:.0f}"


def settle(cell: Cell) -> None:
    """The run with the median throughput stands for the cell (all runs stay in the JSON); a
    failed cell stands for nothing. Kept up to date after every run, so that an interrupted
    benchmark reports every cell that has a run."""
    if cell.status != "ok" or not cell.runs:
        cell.metrics = {}
        return
    ordered = sorted(cell.runs, key=lambda r: r["rps"])
    cell.metrics = ordered[(len(ordered) - 1) // 2]
    if len(cell.runs) > 1:
        rps = [r["rps"] for r in cell.runs]
        cell.metrics = dict(cell.metrics, rps_runs=rps, rps_spread=(max(rps) - min(rps)) / max(rps))


def measure_run(args, cell: Cell, target: Target, endpoint: Endpoint, script_path: str,
                log_dir: str, once: Callable = None) -> dict | None:
    """Add one run to ``cell`` and return it, or mark the cell failed and return None.
    ``once`` takes the run (``measure_once`` by default, which loads the server with wrk).

    A run during which more than ``--max-noise`` of the server's CPU went to other processes is
    recorded in ``cell.noisy_runs`` and run again at once, at most ``--noise-retries`` times per
    cell over all its runs (the budget is ``noisy_runs``, so it holds across rounds)."""
    while True:
        try:
            run = (once or measure_once)(args, target, endpoint, script_path, log_dir)
        except (ServerFailed, RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            cell.status, cell.reason = "failed", str(exc)
            settle(cell)
            return None
        if _noise(run) > args.max_noise and len(cell.noisy_runs) < args.noise_retries:
            cell.noisy_runs.append(
                {k: run[k] for k in ("rps", "noise", "client_noise", "requests_per_cpu_s")}
            )
            print(f"[noise {_noise_text(run)}%, again]", end=" ", flush=True)
            continue
        cell.runs.append(run)
        settle(cell)
        return run


def select_available(args, known: dict, unavailable: Callable[[Target, str, dict], str | None],
                     ) -> tuple[list, list, dict]:
    """The targets --targets names among ``known``: (all of them in order, those to measure,
    {name: why it cannot be measured here}), the last said as each is found.
    ``unavailable(target, python, checked)`` gives the reason or None; ``checked`` is one dict
    for the whole run, for it to remember what it probed (:func:`probe_once`)."""
    names = _select(args.targets, known, "target")
    checked: dict = {}
    skipped = {n: why for n in names if (why := unavailable(known[n], args.python, checked))}
    for n, why in skipped.items():
        print(f"not available: {n}: {why}", flush=True)
    return names, [n for n in names if n not in skipped], skipped


def probe_once(checked: dict, key: str, probe: Callable[[], object]) -> object:
    """``probe()``, asked once per ``key`` over the targets of one run."""
    if key not in checked:
        checked[key] = probe()
    return checked[key]


def measure_rounds(args, names: list, skipped: dict, label: str,
                   measure_one: Callable[[Cell, str], dict | None],
                   progress: Callable[[dict], str]) -> tuple[list, bool]:
    """--repeat rounds over the targets ``names`` (one cell each, named ``label``) that are not
    ``skipped``, each round running each once: ``measure_one(cell, name)`` adds a run to the
    cell (:func:`measure_run`) and returns its figures, which ``progress`` makes a line of. A
    target that fails is not run again.

    SIGTERM, like Ctrl+C, ends the rounds: the server in hand is stopped (by the ``finally`` of
    :func:`load_fresh_server`) and the cells measured so far are kept. Returns (the cells in
    the order of ``names``, skipped ones with their reason and unmeasured ones left out,
    whether the rounds were interrupted)."""
    runnable = [n for n in names if n not in skipped]
    cells = {n: Cell(n, label) for n in runnable}
    width = max((len(n) for n in runnable), default=0)
    interrupted = False

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for round_no in range(1, args.repeat + 1):
            prefix = f"[{round_no}/{args.repeat}] " if args.repeat > 1 else ""
            for name in runnable:
                cell = cells[name]
                if cell.status != "ok":
                    continue
                print(f"  {prefix}{name:{width}}", end=" ", flush=True)
                m = measure_one(cell, name)
                print(progress(m) if m else f"{cell.status}: {cell.reason}", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: reporting the targets measured so far", flush=True)
    ordered = [cells[n] if n in cells else Cell(n, label, "skipped", skipped[n]) for n in names]
    return [c for c in ordered if c.status != "ok" or c.metrics], interrupted


def measure(args, target: Target, endpoint: Endpoint, script_path: str, log_dir: str) -> Cell:
    """``--repeat`` runs of one cell back to back: the second pass re-measures a noisy cell whole,
    in a short stretch of time, to compare it with the cell as measured in the rounds."""
    cell = Cell(target.name, endpoint.name)
    while cell.status == "ok" and len(cell.runs) < args.repeat:
        measure_run(args, cell, target, endpoint, script_path, log_dir)
    return cell


# --------------------------------------------------------------------------- report


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def unavailable_row(cell, columns: int) -> str:
    """The table row of a target that did not run: its name, why, and empty cells to the end."""
    reason = cell.reason.replace("|", "\\|").replace("\n", " ")[:110]
    label = "not available" if cell.status == "skipped" else cell.status
    return f"| {cell.target} | {label}: {reason} |" + " |" * (columns - 2)


def markdown_table(cells: list) -> str:
    head = (
        "| target | endpoint | req/s | p99 ms | srv CPU s | srv CPU % | req per CPU-s "
        "| CPU µs/req | RSS MiB | tree RSS MiB | errors | wrk CPU % | noise % srv/wrk |"
    )
    rows = [head, "|" + "|".join(["---"] * 13) + "|"]
    for c in cells:
        m = c.metrics
        if c.status != "ok":
            reason = c.reason.replace("|", "\\|").replace("\n", " ")[:110]
            rows.append(f"| {c.target} | {c.endpoint} | {c.status}: {reason} |" + " |" * 10)
            continue
        rows.append(
            "| "
            + " | ".join(
                [
                    c.target,
                    c.endpoint,
                    _fmt(m["rps"], ",.0f"),
                    _fmt(m["p99_ms"], ".2f"),
                    _fmt(m["server_cpu_s"], ".2f"),
                    _fmt(m["server_cpu_util"] * 100, ".0f"),
                    _fmt(m["requests_per_cpu_s"], ",.0f"),
                    _fmt(m["cpu_us_per_request"], ",.0f"),
                    _fmt(m["rss_mib"], ".1f"),
                    _fmt(m["rss_tree_mib"], ".1f"),
                    str(m["error_count"]),
                    _fmt(m["client_cpu_util"] * 100, ".0f"),
                    _noise_text(m),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def big_lines(cells: list) -> list:
    out = []
    for c in cells:
        if c.endpoint == "big" and c.status == "ok" and c.metrics.get("cpu_us_per_request"):
            ms = c.metrics["cpu_us_per_request"] / 1000
            out.append(f"- {c.target}: {ms:.2f} ms of server CPU per 1 MiB response "
                       f"({1000 / ms:,.0f} MiB per CPU-second)")
    return out


def _geomean(values: list) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def ratio_lines(cells: list, endpoints: list, max_noise: float, pairs: list = RATIOS) -> list:
    """One line per pair; a req/s ratio marked † involves a cell where other processes took more
    than ``max_noise`` of the server CPU (its per-CPU ratio is still sound)."""
    by_key = {(c.target, c.endpoint): c for c in cells if c.status == "ok"}
    lines = []
    for ours, theirs in pairs:
        parts_rps, parts_cpu, rps, cpu = [], [], [], []
        for e in endpoints:
            a, b = by_key.get((ours, e)), by_key.get((theirs, e))
            if not a or not b:
                continue
            r = a.metrics["rps"] / b.metrics["rps"] if b.metrics["rps"] else None
            ra, rb = a.metrics["requests_per_cpu_s"], b.metrics["requests_per_cpu_s"]
            q = ra / rb if ra and rb else None
            rps.append(r)
            cpu.append(q)
            noisy = max(_noise(a.metrics), _noise(b.metrics)) > max_noise
            parts_rps.append(f"{e} {_fmt(r, '.2f')}x{'†' if noisy else ''}")
            parts_cpu.append(f"{e} {_fmt(q, '.2f')}x")
        if not parts_rps:
            continue
        lines.append(
            f"- {ours} / {theirs}: req/s {', '.join(parts_rps)} "
            f"(geomean {_fmt(_geomean(rps), '.2f')}x); "
            f"req per server CPU-s {', '.join(parts_cpu)} (geomean {_fmt(_geomean(cpu), '.2f')}x)"
        )
    return lines


def print_ratios(ratios: list, max_noise: float) -> None:
    print("\nRatios (first / second; above 1.00x means the first is faster or cheaper):")
    print("\n".join(ratios) if ratios else "- none: a pair needs both sides measured")
    if any("†" in line for line in ratios):
        print(f"  († a side of this pair had more than {max_noise * 100:.0f}% noise: trust the "
              "per-CPU ratio)")


def pair_lines(cells: list, max_noise: float, pairs: list) -> list:
    """Ratio lines of runners with one cell per target: ``pairs`` are (first, second, target
    on req per server CPU-s or None); a req/s ratio marked † involves a noisy cell."""
    by_name = {c.target: c for c in cells if c.status == "ok"}
    lines = []
    for ours, theirs, goal in pairs:
        a, b = by_name.get(ours), by_name.get(theirs)
        if not a or not b:
            continue
        rps = a.metrics["rps"] / b.metrics["rps"] if b.metrics["rps"] else None
        ra, rb = a.metrics["requests_per_cpu_s"], b.metrics["requests_per_cpu_s"]
        per_cpu = ra / rb if ra and rb else None
        noisy = max(_noise(a.metrics), _noise(b.metrics)) > max_noise
        line = (f"- {ours} / {theirs}: req/s {_fmt(rps, '.2f')}x{'†' if noisy else ''}, "
                f"req per server CPU-s {_fmt(per_cpu, '.2f')}x")
        if goal is not None and per_cpu is not None:
            line += f" (target ≥ {goal:.1f}x: {'met' if per_cpu >= goal else 'not met'})"
        lines.append(line)
    return lines


# --------------------------------------------------------------------------- environment


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def source_digest(directory: str) -> str:
    """A digest of refserver's sources as they are on disk (the commit alone misses local edits)."""
    import hashlib

    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(directory)):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith((".py", ".pyx", ".pxd")):
                path = os.path.join(dirpath, name)
                digest.update(os.path.relpath(path, directory).encode() + b"\0")
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def environment(args) -> dict:
    cpu_model = None
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    git = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # read-only git queries
        git["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        git["dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "refserver"],
                cwd=ROOT, capture_output=True, text=True, timeout=10,
            ).stdout.strip()
        )
    git["tree_sha256"] = source_digest(os.path.join(ROOT, "refserver"))
    wrk = getattr(args, "wrk", None)  # None for a runner without wrk
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout if wrk else ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "server_python": args.python,
        "wrk": wrk_version.splitlines()[0] if wrk_version else None,
        "versions": {
            d: _version(d)
            for d in ("refserver", "granian", "uvicorn", "hypercorn", "h11", "httptools", "uvloop")
        },
        "refserver_git": git,
    }


# --------------------------------------------------------------------------- main


def _select(names: str | None, known: dict, what: str) -> list:
    if not names:
        return list(known)
    chosen = []
    for pattern in (n.strip() for n in names.split(",") if n.strip()):
        matches = [k for k in known if fnmatch.fnmatchcase(k, pattern)]
        if not matches:
            raise SystemExit(f"unknown {what} {pattern!r}; known: {', '.join(known)}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def add_run_options(p: argparse.ArgumentParser, client: str, connections: int,
                    quiet_wait: float = 20.0, noise_retries: int = 2, pin: bool = True) -> None:
    """The options every runner here shares (timing, rounds, noise, pinning, the servers'
    interpreter, the output); ``client`` names the load generator in their help. ``pin=False``
    is for a runner whose server and client share every CPU: no pinning options, none pinned."""
    p.add_argument("--duration", type=int, default=10, help="measured seconds per cell (10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds per cell, 0 for none (2)")
    p.add_argument("--connections", type=int, default=connections,
                   help=f"{client} connections ({connections})")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per cell, taken in this many rounds over the whole matrix (each "
                        "round measures every cell once): a shared machine's speed drifts over "
                        "minutes, and interleaving spreads that drift over every server alike; "
                        "the run with the median req/s is reported (1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: --duration 3 --warmup 1 --repeat 1 unless given")
    p.add_argument("--max-noise", type=float, default=0.05,
                   help="a run where other work took more than this share of the server CPU "
                        "is run again (0.05)")
    p.add_argument("--noise-retries", type=int, default=noise_retries,
                   help=f"at most this many re-runs per cell because of noise ({noise_retries})")
    p.add_argument("--quiet-wait", type=float, default=quiet_wait,
                   help="before each run, wait up to this many seconds for the CPUs it uses to be "
                        f"quiet (busy less than --quiet-threshold); 0 to start at once "
                        f"({quiet_wait:g})")
    p.add_argument("--quiet-threshold", type=float, default=0.10,
                   help="busy share of those CPUs that counts as quiet (0.10)")
    if pin:
        p.add_argument("--server-cpus", default="0", help="taskset CPU list for the server (0)")
        p.add_argument("--client-cpus", default="1", help=f"taskset CPU list for {client} (1)")
        p.add_argument("--no-pin", action="store_true",
                       help="do not pin (results are then noisier)")
    else:
        p.set_defaults(server_cpus=None, client_cpus=None, no_pin=True)
    p.add_argument("--python", default=sys.executable, help="interpreter that runs the servers")
    p.add_argument("--output", help="results JSON path (default: benchmarks/results/<time>.json)")
    p.add_argument("--list", action="store_true", help="list targets and endpoints, then exit")


def add_wrk_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1: wrk has one core)")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk binary")
    p.add_argument("--wrk-timeout", type=float, default=10.0,
                   help="wrk --timeout: slower responses count as errors (10)")


def finish_run_options(p: argparse.ArgumentParser, args, argv) -> None:
    """--quick and --no-pin, and the checks of :func:`add_run_options`' values."""
    explicit = {a.lstrip("-").split("=")[0].replace("-", "_") for a in (argv or sys.argv[1:])}
    if args.quick:
        if "duration" not in explicit:
            args.duration = 3
        if "warmup" not in explicit:
            args.warmup = 1
        if "repeat" not in explicit:
            args.repeat = 1
    if args.no_pin:
        args.server_cpus = args.client_cpus = None
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    if args.duration <= 0 or args.connections < 1 or args.repeat < 1:
        p.error("--duration, --connections and --repeat must be positive")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="refserver vs Granian, uvicorn and hypercorn: one run, one table, ratios.",
    )
    p.add_argument("--targets", help="comma-separated target names or globs (default: all but "
                   "floor-*; refserver-fast-* is skipped with a reason when the fast path is not built)")
    p.add_argument("--endpoints", help="comma-separated: " + ", ".join(ENDPOINTS) + " (default: all)")
    add_run_options(p, "wrk", 64)
    add_wrk_options(p)
    p.add_argument("--no-second-pass", dest="second_pass", action="store_false",
                   help="do not re-measure, after the matrix, the cells that stayed noisy")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the comparison (requests per server CPU-second) to this file; "
                   "needs matplotlib: pip install 'refserver[plot]'")
    p.add_argument("--plot-from", metavar="RESULTS.json",
                   help="measure nothing: draw --plot from this results file of an earlier run")
    args = p.parse_args(argv)
    if args.plot_from and not args.plot:
        p.error("--plot-from needs --plot FILE")
    if args.plot and not args.plot_from:
        try:
            import matplotlib  # noqa: F401  (checked before minutes of measuring, not after)
        except ImportError:
            p.error("--plot needs matplotlib: pip install 'refserver[plot]'")
    finish_run_options(p, args, argv)
    if args.threads < 1:
        p.error("--threads must be positive")
    if args.threads > args.connections:
        p.error("--threads must not exceed --connections")
    return args


def check_prerequisites(args) -> None:
    if not shutil.which(args.wrk):
        raise SystemExit(f"wrk not found ({args.wrk}); install it or pass --wrk")
    if args.server_cpus is not None:
        if not shutil.which("taskset"):
            raise SystemExit("taskset not found (util-linux); install it or pass --no-pin")
        allowed = os.sched_getaffinity(0)
        server, client = parse_cpus(args.server_cpus), parse_cpus(args.client_cpus)
        for cpu in server + client:
            if cpu not in allowed:
                raise SystemExit(
                    f"CPU {cpu} is not available (have {sorted(allowed)}); "
                    "use --server-cpus/--client-cpus or --no-pin"
                )
        if set(server) & set(client):
            print("warning: the server and wrk share a CPU", file=sys.stderr)


def results_record(args, settings: tuple, env: dict, targets: dict, cells: list, table: str,
                   ratios: list, **extra) -> dict:
    """What a run writes to its JSON: the command, the ``settings`` named (options), the
    environment, each target's description, every cell with its runs, the table and the ratio
    lines, and the runner's ``extra`` entries."""
    return {
        "argv": sys.argv,
        "settings": {k: getattr(args, k) for k in settings},
        "environment": env,
        "targets": {n: t.description for n, t in targets.items()},
        "cells": [c.__dict__ for c in cells],
        "table_markdown": table,
        "ratio_lines": ratios,
        **extra,
    }


def write_results(output, prefix: str, record: dict, cells: list, interrupted: bool) -> int:
    """Write ``record`` as JSON (to ``output``, or benchmarks/results/PREFIX-<time>.json), say
    where, and return the exit code of a run: 130 when interrupted, 1 when a cell failed."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    out = output or os.path.join(
        RESULTS_DIR, datetime.datetime.now().strftime(prefix + "-%Y%m%d-%H%M%S.json")
    )
    with open(out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"\nraw results: {os.path.relpath(out, os.getcwd())}")
    if interrupted:
        return 130
    return 0 if all(c.status != "failed" for c in cells) else 1


def draw(record: dict, path: str) -> None:
    sys.path.insert(0, HERE)
    import plot

    plot.plot(record, path)
    print(f"picture: {os.path.relpath(path, os.getcwd())}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot_from:
        sys.path.insert(0, HERE)
        import plot

        try:
            draw(plot.load(args.plot_from), args.plot)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--plot-from: {exc}")
        return 0
    if args.list:
        print("targets:")
        for t in TARGETS.values():
            print(f"  {t.name:22} {t.description}")
        print("endpoints:")
        for e in ENDPOINTS.values():
            print(f"  {e.name:22} {e.description}")
        return 0
    check_prerequisites(args)
    target_names = _select(args.targets, TARGETS, "target")
    if not args.targets:  # the floors are context, measured when named
        target_names = [n for n in target_names if TARGETS[n].server != "floor"]
    endpoint_names = _select(args.endpoints, ENDPOINTS, "endpoint")

    skipped = {}
    if any(TARGETS[n].optional for n in target_names):
        reason = fast_path_unavailable(args.python)
        if reason:
            for n in target_names:
                if TARGETS[n].optional:
                    skipped[n] = f"fast path not available ({reason})"
    for n, why in skipped.items():
        print(f"skip {n}: {why}", flush=True)
    runnable = [n for n in target_names if n not in skipped]

    env = environment(args)
    per_cell = args.repeat * (args.warmup + args.duration + 2)
    print(
        f"{len(runnable)} targets x {len(endpoint_names)} endpoints, {args.duration:g}s each "
        f"(+{args.warmup:g}s warm-up), {args.connections} connections, server on CPU "
        f"{args.server_cpus}, wrk on CPU {args.client_cpus}; about "
        f"{len(runnable) * len(endpoint_names) * per_cell / 60:.0f} min",
        flush=True,
    )

    # Every cell of the matrix, in the order measured; one not reached when interrupted is dropped.
    matrix = {(t, e): Cell(t, e) for t in runnable for e in endpoint_names}
    with tempfile.TemporaryDirectory(prefix="refserver-bench-") as tmp:
        scripts = {}
        for name in endpoint_names:
            scripts[name] = os.path.join(tmp, f"{name}.lua")
            with open(scripts[name], "w") as f:
                f.write(wrk_script(ENDPOINTS[name]))
        interrupted = False

        def on_sigterm(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_sigterm)  # stop the server in hand, keep partial results
        try:
            # --repeat N: N rounds over the whole matrix, one run per cell each, so that a shared
            # machine's drift over minutes falls on every server alike, not on whichever cells
            # happened to be measured in a slow stretch.
            unstartable = set()  # targets whose server exited before serving: skipped from then on
            for round_no in range(1, args.repeat + 1):
                prefix = f"[{round_no}/{args.repeat}] " if args.repeat > 1 else ""
                for tname in runnable:
                    if tname in unstartable:
                        continue
                    target = TARGETS[tname]
                    for ename in endpoint_names:
                        cell = matrix[tname, ename]
                        if cell.status != "ok":
                            continue  # failed in an earlier round: not measured again
                        print(f"  {prefix}{tname:22} {ename:10}", end=" ", flush=True)
                        m = measure_run(args, cell, target, ENDPOINTS[ename], scripts[ename], tmp)
                        if m is not None:
                            print(
                                f"{m['rps']:>10,.0f} req/s  p99 {m['p99_ms']:7.2f} ms  "
                                f"cpu {m['server_cpu_util'] * 100:3.0f}%  "
                                f"{_fmt(m['requests_per_cpu_s'], ',.0f'):>8} req/CPU-s  "
                                f"noise {_noise_text(m)}%  errors {m['error_count']}",
                                flush=True,
                            )
                            continue
                        print(f"{cell.status}: {cell.reason}", flush=True)
                        if "before serving" in cell.reason:
                            # It will not start for the other endpoints either.
                            unstartable.add(tname)
                            for rest in endpoint_names[endpoint_names.index(ename) + 1 :]:
                                other = matrix[tname, rest]
                                if other.status == "ok" and not other.runs:  # else keeps its runs
                                    other.status, other.reason = "failed", cell.reason
                            break
            noisy = [
                c for c in matrix.values()
                if c.status == "ok" and _noise(c.metrics) > args.max_noise
            ]
            if noisy and args.second_pass:
                print(f"second pass over {len(noisy)} cell(s) measured while the server CPU "
                      "was shared:", flush=True)
            for old in noisy if args.second_pass else []:
                print(f"  {old.target:22} {old.endpoint:10}", end=" ", flush=True)
                new = measure(args, TARGETS[old.target], ENDPOINTS[old.endpoint],
                              scripts[old.endpoint], tmp)
                if new.status != "ok":
                    print(f"kept the first run ({new.status}: {new.reason})", flush=True)
                    continue
                if _noise(new.metrics) >= _noise(old.metrics):
                    print(f"kept the first run (noise now {_noise_text(new.metrics)}%)",
                          flush=True)
                    continue
                new.noisy_runs = old.noisy_runs + [
                    {k: old.metrics.get(k) for k in
                     ("rps", "noise", "client_noise", "requests_per_cpu_s")}
                ] + new.noisy_runs
                matrix[old.target, old.endpoint] = new
                m = new.metrics
                print(f"{m['rps']:>10,.0f} req/s  {_fmt(m['requests_per_cpu_s'], ',.0f'):>8} "
                      f"req/CPU-s  noise {_noise_text(m)}%", flush=True)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: reporting the cells measured so far", flush=True)
    cells = list(matrix.values())
    for n, why in skipped.items():
        cells.extend(Cell(n, e, "skipped", why) for e in endpoint_names)

    order = {n: i for i, n in enumerate(target_names)}
    cells = [c for c in cells if c.status != "ok" or c.metrics]  # drop a cell with no run
    cells.sort(key=lambda c: (order[c.target], endpoint_names.index(c.endpoint)))

    table = markdown_table(cells)
    big = big_lines(cells)
    ratios = ratio_lines(cells, endpoint_names, args.max_noise)
    print()
    print(table)
    if big:
        print("\nGET /big, server CPU per 1 MiB response:")
        print("\n".join(big))
    print_ratios(ratios, args.max_noise)
    for c in cells:
        if c.status == "ok" and c.metrics["error_count"]:
            print(f"warning: {c.target} {c.endpoint}: {c.metrics['errors']}")
        if c.status == "ok" and _noise(c.metrics) > args.max_noise:
            print(f"warning: {c.target} {c.endpoint}: other work took "
                  f"{c.metrics['noise'] * 100:.0f}% of the server CPU and "
                  f"{c.metrics.get('client_noise', 0) * 100:.0f}% of wrk's; req/s is understated "
                  "(req per CPU-s much less so)")
        if c.status == "ok" and c.metrics["client_cpu_util"] > 0.9 * args.threads:
            print(f"warning: {c.target} {c.endpoint}: wrk used "
                  f"{c.metrics['client_cpu_util'] * 100:.0f}% of its CPU; the client may be the limit")

    record = results_record(
        args,
        ("duration", "warmup", "connections", "threads", "repeat", "server_cpus", "client_cpus",
         "wrk_timeout", "max_noise", "noise_retries", "quiet_wait", "quiet_threshold"),
        env, {n: TARGETS[n] for n in target_names}, cells, table, ratios,
        endpoints={n: ENDPOINTS[n].description for n in endpoint_names},
        big_lines=big,
    )
    code = write_results(args.output, "bench", record, cells, interrupted)
    if args.plot:
        try:
            draw(record, args.plot)
        except ValueError as exc:
            print(f"no picture: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
