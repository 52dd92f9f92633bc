#!/usr/bin/env python3
"""Worker processes on the whole machine: refserver, uvicorn and Granian, each with ``--workers
N`` (2 by default: one per core of a 2-core machine), one after the other under wrk, GET / of
the same apps as run.py.

Nothing is pinned: the workers are meant to spread over every core, and wrk runs on the same
cores, so it takes CPU the servers would otherwise have. The figures compare servers measured
in one run on one machine; they are not any server's capacity. Besides req/s, each run reports
the whole machine's busy CPU (/proc/stat), the server's process tree's CPU (supervisor and
workers, /proc/PID/stat) and requests per server CPU-second, and how the work was split between
the workers: each worker's CPU seconds, and its share of the requests (the request bytes
received on its connections, from the kernel's tcp_info through ``ss``, sampled shortly before
wrk stops). The measurement machinery (a fresh server per run, readiness, the answer's check,
warm-up, wrk, /proc, noisy runs measured again) is run.py's. See benchmarks/README.md.

    python benchmarks/workers.py                  # every target, 10 s each after a 2 s warm-up
    python benchmarks/workers.py --quick          # 3 s each after 1 s
    python benchmarks/workers.py --targets 'refserver-fast-*' --repeat 3
    python benchmarks/workers.py --list
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks import run  # noqa: E402

ENDPOINT = run.ENDPOINTS["plaintext"]
#: The workers' connections are sampled this many seconds before wrk's end, while all are open.
SAMPLE_BEFORE_END = 0.5
#: Seconds for every worker to hold a listening socket once the server answers.
WORKERS_DEADLINE = 30.0
SHARED_CORES = (
    "wrk runs on the same cores as the server (nothing is pinned): the figures compare the "
    "servers of one run on one machine, they are not any server's capacity"
)


# --------------------------------------------------------------------------- targets


def targets(workers: int) -> dict:
    """Every target, each server with ``workers`` worker processes, in the order measured."""
    n = str(workers)

    def refserver(impl: str, interface: str, reuse_port: bool = False) -> run.Target:
        base = run._refserver(impl, interface)
        extra = ["--workers", n] + (["--reuse-port"] if reuse_port else [])
        return run.with_args(base, extra, base.name + ("-reuseport" if reuse_port else ""))

    def uvicorn(http: str, loop: str) -> run.Target:
        base = run._uvicorn(http, loop)
        return run.with_args(base, ["--workers", n])

    return {
        t.name: t
        for t in (
            refserver("fast", "asgi"),
            refserver("fast", "rsgi"),
            refserver("fast", "asgi", reuse_port=True),
            refserver("fast", "rsgi", reuse_port=True),
            refserver("pure", "asgi"),
            uvicorn("httptools", "uvloop"),
            uvicorn("h11", "asyncio"),
            run._granian("rsgi", workers),
            run._granian("asgi", workers),
        )
    }


#: The peers every refserver target is compared with (the table's ratio columns).
UVICORN = "uvicorn-httptools"


def granian_for(target: run.Target) -> str:
    return f"granian-{target.interface}"


#: Ratio lines below the table: the two ways of sharing the port, and the pure path's peers.
PAIRS = [
    ("refserver-fast-asgi-reuseport", "refserver-fast-asgi", None),
    ("refserver-fast-rsgi-reuseport", "refserver-fast-rsgi", None),
    ("refserver-pure-asgi", "uvicorn-h11", None),
    ("refserver-pure-asgi", "uvicorn-httptools", None),
]


def unavailable(target: run.Target, python: str, checked: dict) -> str | None:
    """Why ``target`` cannot be measured here (its server is not installed, or refserver lacks
    the options), or None. ``checked`` caches the answers over the targets of one run."""
    modules = {
        "uvicorn-httptools": ["uvicorn", "httptools", "uvloop"],
        "uvicorn-h11": ["uvicorn", "h11"],
    }.get(target.name, ["granian", "uvloop"] if target.server == "granian" else [target.server])
    for module in modules:
        if not run.importable(python, module, checked):
            return f"{module} is not installed for {python}"
    if target.server == "refserver":
        for option in ("--workers", "--reuse-port"):
            if option in target.argv(python, 0) and not run.probe_once(
                checked, option, lambda: run.cli_has_option(python, "refserver", option)
            ):
                return f"refserver has no {option} option"
        if target.name.startswith("refserver-fast-"):
            reason = run.probe_once(checked, "fast", lambda: run.fast_path_unavailable(python))
            if reason:
                return f"fast path not available ({reason})"
    return None


# --------------------------------------------------------------------------- sockets


def parse_ss(text: str) -> dict:
    """``ss -H -t -n -e [-i]`` output as {socket inode: request bytes received (0 without
    ``-i``)}: each socket's line has ``ino:N``; with ``-i`` its tcp_info line (indented, after
    it) has ``bytes_received:N``, absent while nothing was received."""
    sockets: dict = {}
    inode = None
    for line in text.splitlines():
        found = re.search(r"\bino:(\d+)", line)
        if found:
            inode = int(found.group(1))
            sockets[inode] = 0
        received = re.search(r"\bbytes_received:(\d+)", line)
        if received and inode is not None:
            sockets[inode] = int(received.group(1))
    return sockets


def ss_sockets(port: int, listening: bool) -> dict:
    """The sockets of 127.0.0.1:``port``: listening ones, or established ones with the bytes
    each has received (:func:`parse_ss`)."""
    state = ["-l"] if listening else ["-i", "state", "established"]
    proc = subprocess.run(
        ["ss", "-H", "-t", "-n", "-e", *state, f"( sport = :{port} )"],
        capture_output=True, text=True, timeout=10,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ss exited with {proc.returncode}: {proc.stderr.strip()[-200:]}")
    return parse_ss(proc.stdout)


def socket_inodes(pid: int) -> set:
    """The inodes of the sockets process ``pid`` holds (its /proc/PID/fd links)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def wait_for_workers(server: run.RunningServer, count: int) -> list:
    """The PIDs of the server's workers: the processes below the one started that hold a
    listening socket of its port (the supervisor above them does too, with shared sockets; a
    helper process such as multiprocessing's resource tracker holds none). Answering GET /
    means one worker serves; this waits, bounded, for all ``count`` of them."""
    end = time.monotonic() + WORKERS_DEADLINE
    root = server.proc.pid
    while True:
        listening = set(ss_sockets(server.port, listening=True))
        workers = sorted(p for p in run.process_tree(root)
                         if p != root and socket_inodes(p) & listening)
        if len(workers) >= count:
            return workers
        if server.proc.poll() is not None:
            raise run.ServerFailed(f"exited with code {server.proc.returncode}: "
                                   f"{server.log_tail(3)}")
        if time.monotonic() > end:
            raise run.ServerFailed(f"{len(workers)} of {count} workers listening after "
                                   f"{WORKERS_DEADLINE:.0f}s")
        time.sleep(0.05)  # poll interval, not a wait for readiness


def connections_by_worker(port: int, workers: list) -> dict:
    """{worker PID: (established connections it holds, request bytes received on them)}."""
    received = ss_sockets(port, listening=False)
    out = {}
    for pid in workers:
        held = socket_inodes(pid) & set(received)
        out[pid] = (len(held), sum(received[i] for i in held))
    return out


class WatchedLoad:
    """A measured wrk run (``run.measure_load`` calls it), and over the same window the whole
    machine's busy CPU time (/proc/stat, every core) and, once shortly before the end, each
    worker's connections and the request bytes they had received."""

    def __init__(self, args, port: int, workers: list, script_path: str):
        self.args = args
        self.port = port
        self.script_path = script_path
        self.workers = workers
        self.machine: dict = {}
        self.sample: dict = {}
        self.sample_error: str | None = None

    def _take_sample(self) -> None:
        try:
            self.sample = connections_by_worker(self.port, self.workers)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            self.sample_error = str(exc)

    def __call__(self) -> run.WrkRun:
        cpus = run.parse_cpus(None)
        timer = threading.Timer(max(0.0, self.args.duration - SAMPLE_BEFORE_END),
                                self._take_sample)
        busy0, steal0 = run.cpu_stat(cpus)
        started = time.monotonic()
        timer.start()
        try:
            wrk = run.run_wrk(self.args, self.port, ENDPOINT, self.args.duration,
                              self.script_path)
        finally:
            timer.cancel()
            timer.join()
        busy1, steal1 = run.cpu_stat(cpus)
        capacity = (time.monotonic() - started) * len(cpus)
        self.machine = {"cpus": len(cpus), "busy": (busy1 - busy0) / capacity,
                        "steal": (steal1 - steal0) / capacity}
        return wrk


def worker_figures(workers: list, watch: WatchedLoad, usage: dict, requests: int) -> list:
    """Per worker: its CPU seconds and share of the workers' CPU, its connections, and its
    share of the requests (of the request bytes received, every request being the same bytes)
    with the count that share makes of wrk's; busiest first."""
    cpu = {p: usage["server_cpu_by_pid"].get(str(p), 0.0) for p in workers}
    total_cpu = sum(cpu.values())
    received = {p: watch.sample.get(p, (0, 0))[1] for p in workers}
    total_received = sum(received.values())
    out = []
    for pid in workers:
        share = received[pid] / total_received if total_received else None
        out.append({
            "pid": pid,
            "cpu_s": cpu[pid],
            "cpu_share": cpu[pid] / total_cpu if total_cpu else None,
            "connections": watch.sample[pid][0] if pid in watch.sample else None,
            "request_share": share,
            "requests_estimate": round(share * requests) if share is not None else None,
        })
    out.sort(key=lambda w: (w["request_share"] is not None and w["request_share"],
                            w["cpu_share"] or 0.0), reverse=True)
    return out


def measure_once(args, target: run.Target, endpoint, script_path, log_dir: str) -> dict:
    """One run of ``target`` (the signature is the one run.measure_run calls): run.py's run,
    with every worker listening before the checked answer and the warm-up, and the measured
    load watched (:class:`WatchedLoad`)."""
    def wrk(server: run.RunningServer, seconds: float) -> run.WrkRun:
        return run.run_wrk(args, server.port, ENDPOINT, seconds, script_path)

    def watched(server: run.RunningServer) -> WatchedLoad:
        return WatchedLoad(args, server.port, wait_for_workers(server, args.workers), script_path)

    done = run.load_fresh_server(args, target, log_dir, wrk,
                                 check=lambda server: server.check(ENDPOINT), measured=watched)
    watch, wrk_run, usage = done.load, done.result, done.usage
    metrics = {"command": done.server.argv, **run.wrk_metrics(wrk_run, usage)}
    capacity = wrk_run.wall_s * watch.machine["cpus"]
    root = done.server.proc.pid
    worker_list = worker_figures(watch.workers, watch, usage, metrics["requests"])
    return {
        **metrics,
        "machine_busy": watch.machine["busy"],  # share of every core, all processes
        "machine_steal": watch.machine["steal"],
        "server_share": usage["server_cpu_s"] / capacity,  # shares of every core
        "client_share": usage["client_cpu_s"] / capacity,
        "supervisor_cpu_s": usage["server_cpu_by_pid"].get(str(root)),
        "workers": worker_list,
        "worker_sample_at_s": max(0.0, args.duration - SAMPLE_BEFORE_END),
        "worker_sample_error": watch.sample_error,
        "server_exit_code": done.exit_code,
    }


# --------------------------------------------------------------------------- report


def split(values: list, spec: str = ".0f") -> str:
    """Per-worker values as one cell, busiest first: ``58/42``."""
    if not values or any(v is None for v in values):
        return "-"
    return "/".join(format(v, spec) for v in values)


def worker_split(workers: list, key: str) -> str:
    """The workers' ``key`` (a share, in %, or a count) as :func:`split` shows it."""
    if key == "connections":
        return split([w[key] for w in workers], "d")
    return split([None if w[key] is None else w[key] * 100 for w in workers])


def _ratio(a: run.Cell, b: run.Cell | None) -> str:
    if b is None or b.status != "ok" or a.target == b.target:
        return "-"
    rps = a.metrics["rps"] / b.metrics["rps"] if b.metrics["rps"] else None
    ra, rb = a.metrics["requests_per_cpu_s"], b.metrics["requests_per_cpu_s"]
    return f"{run._fmt(rps, '.2f')} / {run._fmt(ra / rb if ra and rb else None, '.2f')}"


def markdown_table(cells: list, all_targets: dict) -> str:
    by_name = {c.target: c for c in cells}
    head = ("| target | req/s | p99 ms | server CPU s | req per server CPU-s | machine busy % "
            "| server / wrk / other % | worker CPU % | worker requests % | worker connections "
            f"| errors | × {UVICORN} req/s / per CPU-s | × Granian req/s / per CPU-s |")
    rows = [head, "|" + "|".join(["---"] * 13) + "|"]
    for c in cells:
        if c.status != "ok":
            rows.append(run.unavailable_row(c, 13))
            continue
        m = c.metrics
        workers = m["workers"]
        granian = by_name.get(granian_for(all_targets[c.target]))
        rows.append("| " + " | ".join([
            c.target,
            run._fmt(m["rps"], ",.0f"),
            run._fmt(m["p99_ms"], ".2f"),
            run._fmt(m["server_cpu_s"], ".2f"),
            run._fmt(m["requests_per_cpu_s"], ",.0f"),
            run._fmt(m["machine_busy"] * 100, ".0f"),
            split([m["server_share"] * 100, m["client_share"] * 100, m["noise"] * 100]),
            worker_split(workers, "cpu_share"),
            worker_split(workers, "request_share"),
            worker_split(workers, "connections"),
            str(m["error_count"]),
            _ratio(c, by_name.get(UVICORN)),
            _ratio(c, granian),
        ]) + " |")
    return "\n".join(rows)


def progress_line(m: dict) -> str:
    workers = m["workers"]
    return (f"{m['rps']:>9,.0f} req/s  server {m['server_cpu_util']:.2f} cores  "
            f"{run._fmt(m['requests_per_cpu_s'], ',.0f'):>7} req/CPU-s  machine "
            f"{m['machine_busy'] * 100:3.0f}% (server {m['server_share'] * 100:.0f}, wrk "
            f"{m['client_share'] * 100:.0f}, other {m['noise'] * 100:.0f})  workers: CPU "
            f"{worker_split(workers, 'cpu_share')} requests "
            f"{worker_split(workers, 'request_share')} connections "
            f"{worker_split(workers, 'connections')}  errors {m['error_count']}")


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="--workers N on the whole machine: refserver (shared sockets and "
                    "SO_REUSEPORT), uvicorn and Granian under wrk, GET /, one run, one table: "
                    "req/s, the machine's and the server's CPU, the workers' balance, ratios.",
        epilog=SHARED_CORES + ".",
    )
    p.add_argument("--targets", help="comma-separated target names or globs (default: all)")
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes of every server (2: one per core of a 2-core machine)")
    # Shorter waits and fewer re-runs than run.py: a whole run stays within a few minutes.
    run.add_run_options(p, "wrk", 64, quiet_wait=5, noise_retries=1, pin=False)
    run.add_wrk_options(p)
    args = p.parse_args(argv)
    run.finish_run_options(p, args, argv)
    if args.workers < 1:
        p.error("--workers must be positive")
    if args.threads < 1 or args.threads > args.connections:
        p.error("--threads must be between 1 and --connections")
    return args


def check_prerequisites(args) -> None:
    if not shutil.which(args.wrk):
        raise SystemExit(f"wrk not found ({args.wrk}); apt-get install wrk, or pass --wrk")
    if not shutil.which("ss"):
        raise SystemExit("ss not found; apt-get install iproute2")
    if not os.path.exists("/proc/stat"):
        raise SystemExit("Linux only: the figures come from /proc")


def main(argv=None) -> int:
    args = parse_args(argv)
    all_targets = targets(args.workers)
    if args.list:
        for t in all_targets.values():
            print(f"  {t.name:30} {t.description}")
        return 0
    check_prerequisites(args)
    names, runnable, skipped = run.select_available(args, all_targets, unavailable)
    env = run.environment(args)
    env["ss"] = subprocess.run(["ss", "-V"], capture_output=True, text=True).stdout.strip()
    minutes = len(runnable) * args.repeat * (args.duration + args.warmup + 4) / 60
    print(f"{len(runnable)} targets with {args.workers} workers each, {args.duration}s each "
          f"(+{args.warmup}s warm-up), wrk -t{args.threads} -c{args.connections} on "
          f"{os.cpu_count()} CPUs; about {minutes:.1f} min\nnote: {SHARED_CORES}", flush=True)
    with tempfile.TemporaryDirectory(prefix="refserver-workers-") as tmp:
        script = os.path.join(tmp, "plaintext.lua")
        with open(script, "w") as f:
            f.write(run.wrk_script(ENDPOINT))

        def measure_one(cell: run.Cell, name: str) -> dict | None:
            return run.measure_run(args, cell, all_targets[name], ENDPOINT, script, tmp,
                                   once=measure_once)

        ordered, interrupted = run.measure_rounds(args, names, skipped, ENDPOINT.name,
                                                  measure_one, progress_line)
    table = markdown_table(ordered, all_targets)
    ratios = run.pair_lines(ordered, args.max_noise, PAIRS)
    print()
    print(table)
    print(f"\nnote: {SHARED_CORES}.")
    print("Worker columns, busiest first: CPU = each worker's share of the workers' CPU seconds; "
          "requests = its share of the request bytes received on its connections (tcp_info, "
          f"{SAMPLE_BEFORE_END:g} s before wrk's end); connections = those it held then.")
    run.print_ratios(ratios, args.max_noise)
    for c in ordered:
        if c.status != "ok":
            continue
        m = c.metrics
        if m["error_count"]:
            print(f"warning: {c.target}: {m['errors']}")
        if run._noise(m) > args.max_noise:
            print(f"warning: {c.target}: other work took {m['noise'] * 100:.0f}% of the "
                  "machine's CPU during the run")
        if m["client_cpu_util"] > 0.9 * args.threads:
            print(f"warning: {c.target}: wrk used {m['client_cpu_util'] * 100:.0f}% of "
                  f"{args.threads} core(s); the client may be the limit")
        if m["worker_sample_error"]:
            print(f"warning: {c.target}: no connection sample ({m['worker_sample_error']})")

    record = run.results_record(
        args,
        ("workers", "duration", "warmup", "connections", "threads", "repeat", "wrk_timeout",
         "max_noise", "noise_retries", "quiet_wait", "quiet_threshold"),
        env, {n: all_targets[n] for n in names}, ordered, table, ratios, note=SHARED_CORES,
    )
    return run.write_results(args.output, "workers", record, ordered, interrupted)


if __name__ == "__main__":
    sys.exit(main())
