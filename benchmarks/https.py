#!/usr/bin/env python3
"""HTTPS (HTTP/1.1 over TLS) under wrk: refserver against uvicorn with the same certificate.

The measurement is run.py's, imported whole (a fresh server per cell pinned to one core, wrk
pinned to another, a warm-up, the server's CPU from /proc, the same endpoints and checks); only the
URLs are https and both servers get ``--ssl-certfile/--ssl-keyfile`` of one certificate made for
this run with trustme (ECDSA P-256, for 127.0.0.1) in a temporary directory. wrk keeps its
connections alive, so the figures are those of encrypted traffic, with a handshake per connection
(64 of them) rather than per request. See benchmarks/README.md.

    python benchmarks/https.py                 # refserver vs uvicorn, GET /, 10 s per cell
    python benchmarks/https.py --quick
    python benchmarks/https.py --endpoints plaintext,echo,big
    python benchmarks/https.py --list
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages

from benchmarks import run  # noqa: E402

# (HTTP/1.1 target of run.py): the same servers, with TLS on.
BASES = {
    t.name: t
    for t in (
        run._refserver("fast", "asgi"),
        run._refserver("pure", "asgi"),
        run._uvicorn("httptools", "uvloop"),
        run._uvicorn("h11", "asyncio"),
    )
}
# (first, second, target on req per server CPU-s or None)
RATIOS = [
    ("refserver-fast-asgi", "uvicorn-httptools", 1.2),
    ("refserver-pure-asgi", "uvicorn-h11", None),
]


def tls_target(base: run.Target, certfile: str, keyfile: str) -> run.Target:
    extra = ["--ssl-certfile", certfile, "--ssl-keyfile", keyfile]
    return dataclasses.replace(
        base,
        argv=lambda python, port: base.argv(python, port) + extra,
        description=base.description + " --ssl-certfile/--ssl-keyfile",
        optional=False,
        scheme="https",
    )


def make_certificate(directory: str) -> tuple:
    """A leaf certificate for 127.0.0.1 from a fresh trustme CA: (certfile, keyfile). The
    certificate file holds the chain (leaf first), the key file the leaf's private key."""
    import trustme

    leaf = trustme.CA().issue_cert("127.0.0.1")
    certfile = os.path.join(directory, "server-cert.pem")
    keyfile = os.path.join(directory, "server-key.pem")
    for i, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(certfile, append=i > 0)
    leaf.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


def unavailable(name: str, python: str, checked: dict) -> str | None:
    """Why target ``name`` cannot be measured (its server is not installed, or has no TLS yet)."""
    def once(key, probe):
        if key not in checked:
            checked[key] = probe()
        return checked[key]

    server = BASES[name].server
    if server == "refserver":
        if not once("tls", lambda: run.cli_has_option(python, "refserver", "--ssl-certfile")):
            return "refserver has no --ssl-certfile option (it does not speak TLS yet)"
        if "-fast-" in name:
            reason = once("fast", lambda: run.fast_path_unavailable(python))
            if reason:
                return f"fast path not available ({reason})"
    modules = ["uvicorn", "httptools", "uvloop"] if name == "uvicorn-httptools" else [server]
    for module in modules:
        if not run.importable(python, module, checked):
            return f"{module} is not installed for {python}"
    return None


def target_lines(cells: list, max_noise: float) -> list:
    """The ratio lines of run.py, and whether each pair with a target meets it on GET /."""
    lines = run.ratio_lines(cells, sorted({c.endpoint for c in cells}), max_noise,
                            pairs=[(a, b) for a, b, _ in RATIOS])
    by_key = {(c.target, c.endpoint): c for c in cells if c.status == "ok"}
    for ours, theirs, goal in RATIOS:
        a, b = by_key.get((ours, "plaintext")), by_key.get((theirs, "plaintext"))
        if goal is None or not a or not b:
            continue
        ra, rb = a.metrics["requests_per_cpu_s"], b.metrics["requests_per_cpu_s"]
        if ra and rb:
            verdict = "met" if ra / rb >= goal else "not met"
            lines.append(f"- target {ours} ≥ {goal:.1f}x {theirs} in req per server CPU-s on "
                         f"GET /: {ra / rb:.2f}x, {verdict}")
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="HTTPS (HTTP/1.1 over TLS) under wrk: refserver vs uvicorn, one certificate, "
                    "one run, one table, ratios.",
    )
    p.add_argument("--targets", help="comma-separated names or globs (default: all): "
                   + ", ".join(BASES))
    p.add_argument("--endpoints", default="plaintext",
                   help="comma-separated: " + ", ".join(run.ENDPOINTS) + " (plaintext)")
    # Shorter waits and fewer re-runs than run.py: a whole run stays within a few minutes.
    run.add_run_options(p, "wrk", 64, quiet_wait=5, noise_retries=1)
    run.add_wrk_options(p)
    args = p.parse_args(argv)
    run.finish_run_options(p, args, argv)
    if args.threads < 1 or args.threads > args.connections:
        p.error("--threads must be between 1 and --connections")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for t in BASES.values():
            print(f"  {t.name:22} {t.description} --ssl-certfile/--ssl-keyfile")
        print("endpoints: " + ", ".join(run.ENDPOINTS))
        return 0
    run.check_prerequisites(args)
    names = run._select(args.targets, BASES, "target")
    endpoints = run._select(args.endpoints, run.ENDPOINTS, "endpoint")
    checked: dict = {}
    skipped = {n: why for n in names if (why := unavailable(n, args.python, checked))}
    for n, why in skipped.items():
        print(f"not available: {n}: {why}", flush=True)
    runnable = [n for n in names if n not in skipped]
    env = run.environment(args)
    env["versions"].update({d: run._version(d) for d in ("trustme", "cryptography")})
    env["openssl"] = __import__("ssl").OPENSSL_VERSION
    print(f"{len(runnable)} targets x {len(endpoints)} endpoints over TLS, {args.duration}s each "
          f"(+{args.warmup}s warm-up), wrk -c{args.connections}, server on CPU {args.server_cpus}, "
          f"wrk on CPU {args.client_cpus}", flush=True)

    matrix = {(n, e): run.Cell(n, e) for n in runnable for e in endpoints}
    interrupted = False

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)  # stop the server in hand, keep partial results
    with tempfile.TemporaryDirectory(prefix="refserver-https-") as tmp:
        certfile, keyfile = make_certificate(tmp)
        targets = {n: tls_target(BASES[n], certfile, keyfile) for n in runnable}
        scripts = {}
        for e in endpoints:
            scripts[e] = os.path.join(tmp, f"{e}.lua")
            with open(scripts[e], "w") as f:
                f.write(run.wrk_script(run.ENDPOINTS[e]))
        try:
            for round_no in range(1, args.repeat + 1):
                prefix = f"[{round_no}/{args.repeat}] " if args.repeat > 1 else ""
                for n in runnable:
                    for e in endpoints:
                        cell = matrix[n, e]
                        if cell.status != "ok":
                            continue
                        print(f"  {prefix}{n:22} {e:10}", end=" ", flush=True)
                        m = run.measure_run(args, cell, targets[n], run.ENDPOINTS[e], scripts[e],
                                            tmp)
                        if m is None:
                            print(f"{cell.status}: {cell.reason}", flush=True)
                            continue
                        print(f"{m['rps']:>10,.0f} req/s  p99 {m['p99_ms']:7.2f} ms  "
                              f"cpu {m['server_cpu_util'] * 100:3.0f}%  "
                              f"{run._fmt(m['requests_per_cpu_s'], ',.0f'):>8} req/CPU-s  "
                              f"noise {run._noise_text(m)}%  errors {m['error_count']}",
                              flush=True)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: reporting the cells measured so far", flush=True)
    cells = [c for c in matrix.values() if c.status != "ok" or c.metrics]
    for n, why in skipped.items():
        cells.extend(run.Cell(n, e, "skipped", f"not available: {why}") for e in endpoints)
    cells.sort(key=lambda c: (names.index(c.target), endpoints.index(c.endpoint)))
    table = run.markdown_table(cells)
    ratios = target_lines(cells, args.max_noise)
    print()
    print(table)
    print("\nRatios over TLS (first / second; above 1.00x means the first is faster or cheaper):")
    print("\n".join(ratios) if ratios else "- none: a pair needs both sides measured")
    for c in cells:
        if c.status == "ok" and c.metrics["error_count"]:
            print(f"warning: {c.target} {c.endpoint}: {c.metrics['errors']}")
        if c.status == "ok" and run._noise(c.metrics) > args.max_noise:
            print(f"warning: {c.target} {c.endpoint}: other work took "
                  f"{c.metrics['noise'] * 100:.0f}% of the server CPU and "
                  f"{c.metrics['client_noise'] * 100:.0f}% of wrk's")
        if c.status == "ok" and c.metrics["client_cpu_util"] > 0.9 * args.threads:
            print(f"warning: {c.target} {c.endpoint}: wrk used "
                  f"{c.metrics['client_cpu_util'] * 100:.0f}% of its CPU; the client may be the "
                  "limit")

    record = {
        "argv": sys.argv,
        "settings": {k: getattr(args, k) for k in (
            "duration", "warmup", "connections", "threads", "repeat", "server_cpus",
            "client_cpus", "wrk_timeout", "max_noise", "noise_retries", "quiet_wait",
            "quiet_threshold")},
        "environment": env,
        "certificate": "trustme CA, ECDSA P-256 leaf for 127.0.0.1",
        "targets": {n: BASES[n].description + " over TLS" for n in names},
        "cells": [c.__dict__ for c in cells],
        "table_markdown": table,
        "ratio_lines": ratios,
    }
    return run.write_results(args.output, "https", record, cells, interrupted)


if __name__ == "__main__":
    sys.exit(main())
