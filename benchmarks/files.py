#!/usr/bin/env python3
"""A large file downloaded over plain HTTP/1.1: what each way of serving it costs the server.

A file (1 GiB by default, every MiB of it distinct) is made in a temporary directory, served by
each target on 127.0.0.1 and downloaded once (after a warm-up download that fills the page cache)
with curl into the same directory; the bytes received are then hashed and checked against the
file's sha256. For each target it reports the wall time of the download (curl's time_total) and
the server's CPU seconds (user + system of all its threads, from /proc/PID/stat before and
after): the kernel's sendfile(2) costs the server almost nothing, a read-and-write copy costs it
the whole file twice. Needs about twice the file's size in the temporary directory.

    python benchmarks/files.py                     # every target, 1 GiB
    python benchmarks/files.py --size 256          # MiB
    python benchmarks/files.py --targets refserver-rsgi,uvicorn-starlette
    python benchmarks/files.py --list

Targets whose server is not installed (uvicorn, starlette) are skipped with a line saying so.
The temporary directory is removed at the end, and every server is stopped, whatever happens.
Each download is bounded by --timeout seconds. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
MiB = 1024 * 1024


def _refserver(*args: str):
    def argv(python, port, directory):
        return [python, "-m", "refserver", *args, "--host", HOST, "--port", str(port),
                "--impl", "fast", "--no-access-log", "--log-level", "warning"]
    return argv


# name: (description, modules it needs, argv(python, port, directory), URL path)
TARGETS = {
    "refserver-rsgi": (
        "refserver --interface rsgi, RSGI response_file",
        ["refserver"],
        _refserver("benchmarks.apps.files_app:rsgi_app", "--interface", "rsgi"),
        "/",
    ),
    "refserver-asgi-pathsend": (
        "refserver --interface asgi, ASGI http.response.pathsend",
        ["refserver"],
        _refserver("benchmarks.apps.files_app:asgi_app", "--interface", "asgi"),
        "/",
    ),
    "refserver-starlette": (
        "refserver, Starlette FileResponse (which sends pathsend when the server lists it)",
        ["refserver", "starlette"],
        _refserver("benchmarks.apps.files_app:starlette_app", "--factory", "--interface", "asgi"),
        "/",
    ),
    "refserver-static": (
        "refserver --static-path-route /static --static-path-mount DIR",
        ["refserver"],
        lambda python, port, directory: _refserver(
            "benchmarks.apps.files_app:asgi_app", "--interface", "asgi",
            "--static-path-route", "/static", "--static-path-mount", directory,
        )(python, port, directory),
        "/static/big.bin",
    ),
    "uvicorn-starlette": (
        "uvicorn --http httptools --loop uvloop, Starlette FileResponse (read and write)",
        ["uvicorn", "starlette", "httptools", "uvloop"],
        lambda python, port, directory: [
            python, "-m", "uvicorn", "benchmarks.apps.files_app:starlette_app", "--factory",
            "--host", HOST, "--port", str(port), "--http", "httptools", "--loop", "uvloop",
            "--no-access-log", "--log-level", "warning",
        ],
        "/",
    ),
}


def make_file(path: str, size: int) -> str:
    """Write ``size`` bytes whose every MiB differs (a misplaced block changes the hash);
    returns their sha256."""
    digest = hashlib.sha256()
    block = bytearray(os.urandom(MiB))
    with open(path, "wb") as fh:
        for index in range((size + MiB - 1) // MiB):
            block[:8] = index.to_bytes(8, "big")
            piece = bytes(block[: min(MiB, size - index * MiB)])
            digest.update(piece)
            fh.write(piece)
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_ready(port: int, proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start listening")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` and its threads (fields 14 and 15 of stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def download(url: str, target: str, timeout: float) -> tuple:
    """``(sha256, bytes, seconds)`` of one curl download into the file ``target`` (removed
    after). The time is curl's own; the hash is taken after it, so that hashing does not slow
    the client that the server is measured against."""
    try:
        result = subprocess.run(
            ["curl", "-sS", "--fail", "--max-time", str(int(timeout)), "-o", target,
             "-w", "%{time_total}", url],
            capture_output=True, text=True, timeout=timeout + 10,
        )
        if result.returncode:
            raise RuntimeError(f"curl exited with code {result.returncode}: {result.stderr.strip()}")
        elapsed = float(result.stdout.strip())
        digest = hashlib.sha256()
        total = 0
        with open(target, "rb") as fh:
            while True:
                data = fh.read(MiB)
                if not data:
                    break
                digest.update(data)
                total += len(data)
        return digest.hexdigest(), total, elapsed
    finally:
        if os.path.exists(target):
            os.unlink(target)


def missing_modules(modules) -> list:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def measure(name: str, python: str, directory: str, path: str, expected: str, size: int,
            timeout: float) -> dict:
    description, _, argv, route = TARGETS[name]
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REFSERVER_", "UVICORN_", "GRANIAN_"))}
    env["BENCH_FILE"] = path
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(argv(python, port, directory), cwd=ROOT, env=env,
                            start_new_session=True)
    try:
        wait_ready(port, proc)
        url = f"http://{HOST}:{port}{route}"
        target = os.path.join(directory, "received.bin")
        download(url, target, timeout)  # warm-up: the page cache, the server's first request
        before = cpu_seconds(proc.pid)
        digest, received, elapsed = download(url, target, timeout)
        cpu = cpu_seconds(proc.pid) - before
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {
        "target": name,
        "description": description,
        "ok": digest == expected and received == size,
        "bytes": received,
        "wall_s": elapsed,
        "server_cpu_s": cpu,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Targets: " + ", ".join(TARGETS),
    )
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated target names (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds each download may take (default 300)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of every server")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (description, modules, _, _) in TARGETS.items():
            print(f"{name:26} {description} (needs {', '.join(modules)})")
        return 0
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)} (see --list)")
    if shutil.which("curl") is None:
        print("curl is not installed", file=sys.stderr)
        return 1
    size = args.size * MiB
    directory = tempfile.mkdtemp(prefix="refserver-files-bench-")
    results = []
    failed = False
    try:
        path = os.path.join(directory, "big.bin")
        expected = make_file(path, size)
        print(f"file: {size} bytes, sha256 {expected[:16]}...")
        for name in names:
            missing = missing_modules(TARGETS[name][1])
            if missing:
                print(f"{name}: skipped ({', '.join(missing)} not installed)")
                continue
            try:
                result = measure(name, args.python, directory, path, expected, size, args.timeout)
            except (RuntimeError, OSError) as exc:
                print(f"{name}: failed ({exc})")
                failed = True
                continue
            failed |= not result["ok"]
            results.append(result)
            print(
                f"{name:26} wall {result['wall_s']:7.2f} s  server CPU {result['server_cpu_s']:7.2f} s"
                f"  {size / MiB / result['wall_s']:8.0f} MiB/s  "
                f"{'sha256 ok' if result['ok'] else 'WRONG CONTENT'}"
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    baseline = next((r for r in results if r["target"] == "uvicorn-starlette"), None)
    if baseline is not None and baseline["server_cpu_s"] > 0:
        for result in results:
            if result is not baseline:
                print(
                    f"{result['target']}: {result['server_cpu_s'] / baseline['server_cpu_s']:.3f}"
                    f" x the server CPU of uvicorn-starlette"
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
