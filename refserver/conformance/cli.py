"""The conformance runner's command line.

Examples::

    python -m refserver.conformance                                   # refserver, every interface
    python -m refserver.conformance --interface rsgi \\
        --server 'granian --interface rsgi --host 127.0.0.1 --port {port} --no-ws {app}'
    python -m refserver.conformance --server 'refserver --loop asyncio' \\
        --compare 'refserver --loop uvloop'                           # differential mode
    python -m refserver.conformance --interface asgi --tls \\
        --server 'uvicorn --port {port} --ssl-certfile {certfile} --ssl-keyfile {keyfile} {app}'
    python -m refserver.conformance --interface asgi --http2 -k 'h2-*' \\
        --server 'hypercorn --bind 127.0.0.1:{port} {app}'             # HTTP/2 frame cases

Exit status: 0 when every selected case passed (and, with ``--compare``, no difference was
found), 1 on a failure or a difference, 2 when the run itself could not be done.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import sys
import tempfile
import time

from .cases import INTERFACES, CaseError, load_cases
from .differential import compare, format_differences
from .report import (
    DOCS_URL,
    format_failures,
    format_table,
    load_clause_index,
    to_html,
    to_json,
    to_junit,
)
from .runner import HOST, Runner, TargetError, TargetSpec
from .transport import Certificate, TLSUnavailable, Transport

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m refserver.conformance",
        description=(
            "Run the refserver conformance cases against a server started with the bundled "
            "probe application. Only 127.0.0.1 is contacted."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "A server command is a template: {app} (module:attribute of the probe), {port}, "
            "{interface}, {host} and {python} are filled in, and with --tls {certfile}, {keyfile} "
            "(a throwaway certificate for 127.0.0.1) and {cafile}. 'refserver [OPTIONS]' is "
            "shorthand for refserver's own command with those options appended."
        ),
    )
    parser.add_argument(
        "--interface",
        default="all",
        help="asgi, rsgi, wsgi, a comma-separated list, or all (default: all)",
    )
    parser.add_argument(
        "--server",
        default="refserver",
        metavar="COMMAND",
        help="the target's command template (default: refserver)",
    )
    parser.add_argument(
        "--compare",
        metavar="COMMAND",
        help="differential mode: also run this target and report every difference",
    )
    parser.add_argument(
        "--connect",
        type=int,
        metavar="PORT",
        help="use a server already running the probe on 127.0.0.1:PORT, once it answers (one "
        "interface; cases that need to start or stop the server are skipped)",
    )
    parser.add_argument(
        "-k",
        "--case",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only cases whose id matches this glob (repeatable)",
    )
    parser.add_argument(
        "--clause",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only cases checking a clause matching this glob (repeatable)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="run every case over TLS: the command gets a throwaway certificate through "
        "{certfile} and {keyfile}; also runs the cases that need TLS",
    )
    parser.add_argument(
        "--http2",
        action="store_true",
        help="also run the HTTP/2 cases (frame level and requests; cleartext prior knowledge, "
        "or ALPN h2 with --tls)",
    )
    parser.add_argument("--jobs", type=int, default=8, help="cases run concurrently (default 8)")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for a target (or the --connect port) to answer (default 30)",
    )
    parser.add_argument("--json", metavar="PATH", help="write results (and differences) as JSON")
    parser.add_argument("--junit", metavar="PATH", help="write results as JUnit XML")
    parser.add_argument(
        "--html",
        metavar="PATH",
        help="write an HTML report: the clause table, and each failure with the bytes sent and "
        "received on its connections",
    )
    parser.add_argument(
        "--docs-url",
        metavar="URL",
        default=DOCS_URL,
        help="root of the documentation site that the HTML and JSON reports link clauses to "
        "(URL/spec/http1/#h1-error-1); default: relative links, for a report saved at the root "
        "of a built site",
    )
    parser.add_argument(
        "--failures-only", action="store_true", help="table rows for failing clauses only"
    )
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def select(
    cases: list,
    interfaces: list,
    ids: list,
    clauses: list,
    tls: bool = False,
    http2: bool = False,
) -> list:
    out = []
    for case in cases:
        if not any(i in case.interfaces for i in interfaces):
            continue
        if ("h2" in case.needs and not http2) or ("tls" in case.needs and not tls):
            continue
        if ids and not any(fnmatch.fnmatchcase(case.id, p) for p in ids):
            continue
        if clauses and not any(fnmatch.fnmatchcase(c, p) for c in case.clauses for p in clauses):
            continue
        out.append(case)
    return out


def run_target(spec, interfaces, cases, args, log, transport) -> tuple:
    results, notes = [], []
    for interface in interfaces:
        runner = Runner(
            spec,
            interface,
            cases,
            jobs=args.jobs,
            startup_timeout=args.startup_timeout,
            connect_port=args.connect,
            log=log,
            transport=transport,
        )
        results.extend(runner.run())
        notes.extend(runner.notes)
    return results, notes


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.interface == "all":
        interfaces = list(INTERFACES)
    else:
        interfaces = [name.strip() for name in args.interface.split(",") if name.strip()]
        bad = [name for name in interfaces if name not in INTERFACES]
        if bad:
            print(f"unknown interface(s): {', '.join(bad)}", file=sys.stderr)
            return EXIT_ERROR
    if args.connect is not None and (len(interfaces) != 1 or args.compare):
        print("--connect needs exactly one --interface and no --compare", file=sys.stderr)
        return EXIT_ERROR
    try:
        cases = load_cases()
    except CaseError as exc:
        print(f"invalid case data: {exc}", file=sys.stderr)
        return EXIT_ERROR
    cases = select(cases, interfaces, args.case, args.clause, args.tls, args.http2)
    if args.list:
        for case in cases:
            print(f"{case.id:<48} {','.join(case.interfaces):<15} {' '.join(case.clauses)}")
        print(f"{len(cases)} case(s), {sum(c.hostile for c in cases)} hostile")
        return EXIT_OK
    if not cases:
        print("no case selected", file=sys.stderr)
        return EXIT_ERROR
    try:
        # A server the user started is named by its port: its command is not known here.
        label = f"{HOST}:{args.connect} (--connect)" if args.connect is not None else None
        spec_a = TargetSpec(args.server, label=label, tls=args.tls and args.connect is None)
        spec_b = TargetSpec(args.compare, tls=args.tls) if args.compare else None
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    workdir = None
    certificate = None
    if args.tls and args.connect is None:
        workdir = tempfile.mkdtemp(prefix="refserver-conformance-tls-")
        try:
            certificate = Certificate(workdir)
        except TLSUnavailable as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            print(str(exc), file=sys.stderr)
            return EXIT_ERROR
    transport = Transport(tls=args.tls, http2=args.http2, certificate=certificate)
    try:
        return _run(args, interfaces, cases, spec_a, spec_b, transport)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args, interfaces, cases, spec_a, spec_b, transport) -> int:
    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    index = load_clause_index()
    started = time.monotonic()
    try:
        results_a, notes_a = run_target(spec_a, interfaces, cases, args, log, transport)
        if spec_b is not None:
            results_b, notes_b = run_target(spec_b, interfaces, cases, args, log, transport)
    except TargetError as exc:
        print(f"cannot run the target: {exc}", file=sys.stderr)
        return EXIT_ERROR
    elapsed = time.monotonic() - started

    failed = any(r.outcome == "fail" for r in results_a)
    output: dict = {"elapsed": round(elapsed, 2)}
    if spec_b is None:
        if not args.quiet:
            print(f"target: {spec_a.label}")
            print(format_table(results_a, index, show_passing=not args.failures_only))
            failures = format_failures(results_a)
            if failures:
                print()
                print(failures)
        else:
            print(format_table(results_a, index, show_passing=False).splitlines()[-1])
        output.update(to_json(results_a, index, [spec_a.label], notes_a, args.docs_url))
        exit_code = EXIT_FAILED if failed else EXIT_OK
    else:
        differences = compare(results_a, results_b)
        failed = failed or any(r.outcome == "fail" for r in results_b)
        print(format_differences(differences, spec_a.label, spec_b.label))
        for label, results in ((spec_a.label, results_a), (spec_b.label, results_b)):
            bad = format_failures(results)
            print(f"{label}: " + format_table(results, index).splitlines()[-1])
            if bad and not args.quiet:
                print(bad)
        output.update(
            to_json(
                results_a, index, [spec_a.label, spec_b.label], notes_a + notes_b, args.docs_url
            )
        )
        output["b"] = to_json(results_b, index, [spec_b.label], notes_b, args.docs_url)
        output["differences"] = differences
        exit_code = EXIT_FAILED if (differences or failed) else EXIT_OK
    print(f"({elapsed:.1f}s)", file=sys.stderr)
    if args.json:
        _write(args.json, json.dumps(output, indent=1, sort_keys=False, default=str).encode())
    if args.junit:
        _write(args.junit, to_junit(results_a, spec_a.label))
    if args.html:
        page = to_html(results_a, index, [spec_a.label], notes_a, args.docs_url)
        _write(args.html, page.encode())
    return exit_code


def _write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
