#!/usr/bin/env python3
"""HTTP/2 in cleartext (h2c, prior knowledge): refserver, its peers and the h2 floor in one run.

Each target gets a fresh server process pinned to one core and ``h2load -c32 -m10`` (GET /, 32
connections with 10 concurrent streams each) pinned to another: a warm-up, then a measured run of
fixed duration, with the server's CPU time read from /proc around it (the measurement machinery
of ``run.py``, imported). The headline is requests per server CPU-second, and its ratio to the
floor (``benchmarks/h2_floor.py``: the h2 library with no server around it) and to hypercorn.
See benchmarks/README.md.

    python benchmarks/http2.py                   # every target, 10 s each
    python benchmarks/http2.py --quick           # 3 s each
    python benchmarks/http2.py --targets 'floor-h2,granian-*'
    python benchmarks/http2.py --list
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks import run  # noqa: E402
from benchmarks.apps.payloads import HELLO  # noqa: E402

HOST = run.HOST
CLIENT_GRACE = 30.0  # seconds an h2load run may overrun its -D before it is killed


# --------------------------------------------------------------------------- targets


def _floor() -> run.Target:
    def argv(python, port):
        return [python, "-m", "benchmarks.h2_floor", "--host", HOST, "--port", str(port)]

    return run.Target(
        "floor-h2", "floor", "none", "python -m benchmarks.h2_floor: h2 + uvloop, no server rules",
        argv,
    )


def _refserver(impl: str, interface: str) -> run.Target:
    base = run._refserver(impl, interface)
    return run.with_args(base, ["--http", "2"])


TARGETS = {
    t.name: t
    for t in (
        _floor(),
        _refserver("fast", "rsgi"),
        _refserver("fast", "asgi"),
        _refserver("pure", "asgi"),
        run.with_args(run._granian("rsgi"), ["--http", "2"],
                      description="granian --interface rsgi --http 2 --workers 1 --loop uvloop"),
        run.with_args(run._granian("asgi"), ["--http", "2"],
                      description="granian --interface asgi --http 2 --workers 1 --loop uvloop"),
        run.with_args(run._uvicorn("zttp", "uvloop"), ["--http2"], "uvicorn-zttp",
                      "uvicorn --http zttp --http2 --loop uvloop"),
        run._hypercorn(),  # speaks h2c with prior knowledge as it is
    )
}

# (first, second, target on req per server CPU-s or None): ratio lines, in this order.
RATIOS = [
    ("refserver-fast-rsgi", "floor-h2", 0.8),
    ("refserver-fast-asgi", "floor-h2", 0.8),
    ("refserver-pure-asgi", "hypercorn", 2.0),
    # Context:
    ("refserver-fast-rsgi", "granian-rsgi", None),
    ("refserver-fast-asgi", "granian-asgi", None),
    ("refserver-fast-asgi", "uvicorn-zttp", None),
    ("refserver-fast-asgi", "hypercorn", None),
    ("granian-rsgi", "floor-h2", None),
    ("granian-asgi", "floor-h2", None),
    ("uvicorn-zttp", "floor-h2", None),
    ("hypercorn", "floor-h2", None),
]


def unavailable(target: run.Target, python: str, checked: dict) -> str | None:
    """Why ``target`` cannot be measured here (its server is not installed, or cannot speak
    HTTP/2 yet), or None. ``checked`` caches the answers over the targets of one run."""
    modules = {"floor": ["h2", "uvloop"], "uvicorn": ["uvicorn", "zttp"]}.get(
        target.server, [target.server]
    )
    for module in modules:
        if not run.importable(python, module, checked):
            return f"{module} is not installed for {python}"
    if target.server == "refserver":
        speaks_h2 = run.probe_once(
            checked, "h2", lambda: run.cli_has_option(python, "refserver", "--http")
        )
        if not speaks_h2:
            return "refserver has no --http option (it does not speak HTTP/2 yet)"
        if target.name.startswith("refserver-fast-"):
            reason = run.probe_once(checked, "fast", lambda: run.fast_path_unavailable(python))
            if reason:
                return f"fast path not available ({reason})"
    return None


# --------------------------------------------------------------------------- an HTTP/2 request


def h2_get(port: int, path: str = "/", timeout: float = 10.0) -> tuple:
    """One GET over a new h2c connection with prior knowledge: (status, body). Raises an OSError
    (ConnectionError for a protocol failure) when the server does not answer in HTTP/2."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding=None))
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        deadline = time.monotonic() + timeout
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"http"),
                                   (b":authority", b"%s:%d" % (HOST.encode(), port)),
                                   (b":path", path.encode())], end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = None, []
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection before answering")
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                raise ConnectionError(f"not HTTP/2: {exc!r}") from None
            for event in events:
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    body.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    conn.close_connection()
                    sock.sendall(conn.data_to_send())
                    return status, b"".join(body)
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise ConnectionError(f"the server ended the exchange: {event!r}")
            sock.sendall(conn.data_to_send())


def check_answer(port: int, timeout: float = 10.0) -> None:
    """Fail unless GET / answers 200 with the benchmark's body, over HTTP/2."""
    try:
        status, body = h2_get(port, "/", timeout)
    except OSError as exc:
        raise run.ServerFailed(f"GET / over h2c: {type(exc).__name__}: {exc}") from None
    if status != 200 or body != HELLO:
        raise run.ServerFailed(f"wrong response over h2c: {status} {body[:60]!r}")


# --------------------------------------------------------------------------- h2load


@dataclasses.dataclass
class H2loadRun:
    summary: dict
    stdout: str
    client_cpu_s: float
    wall_s: float


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float | None:
    """h2load's ``912us``, ``78.12ms`` or ``1.05s`` in milliseconds (None for anything else)."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_h2load(stdout: str) -> dict:
    """The figures of h2load's report that the table uses; RuntimeError when one is missing."""
    def find(pattern):
        match = re.search(pattern, stdout, re.MULTILINE)
        if not match:
            raise RuntimeError(f"h2load printed no {pattern!r}: {stdout[-300:]}")
        return match.groups()

    (seconds,) = find(r"^finished in ([\d.]+)s,")
    total, done, ok, failed, errored, timeout = find(
        r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout"
    )
    s2, s3, s4, s5 = find(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
    lat = find(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")
    protocol = re.search(r"^Application protocol: (\S+)", stdout, re.MULTILINE)
    return {
        "duration_s": float(seconds),
        "requests_total": int(total),
        "done": int(done),
        "succeeded": int(ok),
        "status_2xx": int(s2),
        "errors": {"failed": int(failed), "errored": int(errored), "timeout": int(timeout),
                   "status_3xx": int(s3), "status_4xx": int(s4), "status_5xx": int(s5)},
        "latency_ms": dict(zip(("min", "max", "mean", "sd"), (_ms(v) for v in lat))),
        "protocol": protocol.group(1) if protocol else None,
    }


def run_h2load(args, port: int, duration: float) -> H2loadRun:
    cmd = ["taskset", "-c", args.client_cpus] if args.client_cpus is not None else []
    cmd += [
        args.h2load, "-t", "1", "-c", str(args.connections), "-m", str(args.streams),
        "-D", str(duration), f"http://{HOST}:{port}/",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + CLIENT_GRACE)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    summary = parse_h2load(proc.stdout)
    if summary["protocol"] != "h2c":
        raise run.ServerFailed(f"h2load spoke {summary['protocol']}, not h2c")
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return H2loadRun(summary, proc.stdout, client_cpu, wall)


def measure_once(args, target: run.Target, endpoint, script_path, log_dir: str) -> dict:
    """One run of ``target``: run.py's run, over h2c with h2load (``endpoint`` and
    ``script_path`` are unused: GET / is the only request here; the signature is the one
    run.measure_run calls)."""
    done = run.load_fresh_server(
        args, target, log_dir,
        lambda server, seconds: run_h2load(args, server.port, seconds),
        check=lambda server: check_answer(server.port),
        probe=lambda port, timeout: h2_get(port, "/", timeout),
    )
    load, usage = done.result, done.usage
    s = load.summary
    # Completed streams answered 2xx (h2load's status counts also have the streams still open at
    # the end, its "succeeded" only completed ones, which may include 3xx).
    requests = s["succeeded"] - s["errors"]["status_3xx"]
    cpu = usage["server_cpu_s"]
    return {
        "command": done.server.argv,
        "requests": requests,
        "duration_s": s["duration_s"],
        "rps": requests / s["duration_s"] if s["duration_s"] else 0.0,
        "latency_ms": s["latency_ms"],
        "errors": s["errors"],
        # h2load's errored and timeout are parts of its failed, which has the 4xx and 5xx too.
        "error_count": s["errors"]["failed"] + s["errors"]["status_3xx"],
        **usage,
        "requests_per_cpu_s": requests / cpu if cpu > 0 else None,
        "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
        "rss_idle_mib": done.rss_idle_mib,
        "server_exit_code": done.exit_code,
        "h2load_stdout": load.stdout,
    }


# --------------------------------------------------------------------------- report


def markdown_table(cells: list) -> str:
    floor = next((c for c in cells if c.target == "floor-h2" and c.status == "ok"), None)
    floor_cpu = floor.metrics["requests_per_cpu_s"] if floor else None
    head = ("| target | req/s | mean ms | srv CPU s | srv CPU % | req per CPU-s | × floor "
            "| CPU µs/req | RSS MiB | errors | h2load CPU % | noise % srv/cli |")
    rows = [head, "|" + "|".join(["---"] * 12) + "|"]
    for c in cells:
        if c.status != "ok":
            rows.append(run.unavailable_row(c, 12))
            continue
        m = c.metrics
        per_cpu = m["requests_per_cpu_s"]
        rows.append("| " + " | ".join([
            c.target,
            run._fmt(m["rps"], ",.0f"),
            run._fmt(m["latency_ms"]["mean"], ".2f"),
            run._fmt(m["server_cpu_s"], ".2f"),
            run._fmt(m["server_cpu_util"] * 100, ".0f"),
            run._fmt(per_cpu, ",.0f"),
            run._fmt(per_cpu / floor_cpu if per_cpu and floor_cpu else None, ".2f"),
            run._fmt(m["cpu_us_per_request"], ",.0f"),
            run._fmt(m["rss_mib"], ".1f"),
            str(m["error_count"]),
            run._fmt(m["client_cpu_util"] * 100, ".0f"),
            run._noise_text(m),
        ]) + " |")
    return "\n".join(rows)


def ratio_lines(cells: list, max_noise: float) -> list:
    return run.pair_lines(cells, max_noise, RATIOS)


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="HTTP/2 (h2c, prior knowledge) under h2load: refserver, Granian, uvicorn "
                    "(zttp), hypercorn and the h2 floor in one run, one table, ratios.",
    )
    p.add_argument("--targets", help="comma-separated target names or globs (default: all)")
    # Shorter waits and fewer re-runs than run.py: a whole run stays within a few minutes.
    run.add_run_options(p, "h2load", 32, quiet_wait=5, noise_retries=1)
    p.add_argument("--streams", type=int, default=10,
                   help="h2load -m: concurrent streams per connection (10)")
    p.add_argument("--h2load", default=shutil.which("h2load") or "h2load",
                   help="the h2load binary (apt-get install nghttp2-client)")
    args = p.parse_args(argv)
    run.finish_run_options(p, args, argv)
    if args.streams < 1:
        p.error("--streams must be positive")
    return args


def check_prerequisites(args) -> None:
    if not shutil.which(args.h2load):
        raise SystemExit(f"h2load not found ({args.h2load}); apt-get install nghttp2-client, "
                         "or pass --h2load")
    if args.server_cpus is not None:
        if not shutil.which("taskset"):
            raise SystemExit("taskset not found (util-linux); install it or pass --no-pin")
        allowed = os.sched_getaffinity(0)
        for cpu in run.parse_cpus(args.server_cpus) + run.parse_cpus(args.client_cpus):
            if cpu not in allowed:
                raise SystemExit(f"CPU {cpu} is not available (have {sorted(allowed)}); use "
                                 "--server-cpus/--client-cpus or --no-pin")


def progress_line(m: dict) -> str:
    return (f"{m['rps']:>10,.0f} req/s  cpu {m['server_cpu_util'] * 100:3.0f}%  "
            f"{run._fmt(m['requests_per_cpu_s'], ',.0f'):>8} req/CPU-s  "
            f"noise {run._noise_text(m)}%  errors {m['error_count']}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for t in TARGETS.values():
            print(f"  {t.name:22} {t.description}")
        return 0
    check_prerequisites(args)
    names, runnable, skipped = run.select_available(args, TARGETS, unavailable)
    env = run.environment(args)
    env["h2load"] = subprocess.run([args.h2load, "--version"], capture_output=True,
                                   text=True).stdout.strip()
    env["versions"].update({d: run._version(d) for d in ("h2", "hpack", "zttp")})
    minutes = len(runnable) * args.repeat * (args.duration + args.warmup + 2) / 60
    print(
        f"{len(runnable)} targets, {args.duration}s each (+{args.warmup}s warm-up), h2load "
        f"-c{args.connections} -m{args.streams}, server on CPU {args.server_cpus}, h2load on CPU "
        f"{args.client_cpus}; about {minutes:.1f} min",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="refserver-h2-") as tmp:

        def measure_one(cell: run.Cell, name: str) -> dict | None:
            return run.measure_run(args, cell, TARGETS[name], None, None, tmp, once=measure_once)

        ordered, interrupted = run.measure_rounds(args, names, skipped, "GET /", measure_one,
                                                  progress_line)
    table = markdown_table(ordered)
    ratios = ratio_lines(ordered, args.max_noise)
    print()
    print(table)
    run.print_ratios(ratios, args.max_noise)
    for c in ordered:
        if c.status == "ok" and c.metrics["error_count"]:
            print(f"warning: {c.target}: {c.metrics['errors']}")
        if c.status == "ok" and run._noise(c.metrics) > args.max_noise:
            print(f"warning: {c.target}: other work took {c.metrics['noise'] * 100:.0f}% of the "
                  f"server CPU and {c.metrics['client_noise'] * 100:.0f}% of h2load's")
        if c.status == "ok" and c.metrics["client_cpu_util"] > 0.9:
            print(f"warning: {c.target}: h2load used {c.metrics['client_cpu_util'] * 100:.0f}% "
                  "of its CPU; the client may be the limit")

    record = run.results_record(
        args,
        ("duration", "warmup", "connections", "streams", "repeat", "server_cpus", "client_cpus",
         "max_noise", "noise_retries", "quiet_wait", "quiet_threshold"),
        env, {n: TARGETS[n] for n in names}, ordered, table, ratios,
    )
    return run.write_results(args.output, "h2", record, ordered, interrupted)


if __name__ == "__main__":
    sys.exit(main())
