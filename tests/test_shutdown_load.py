"""Graceful shutdown under load (spec/server.md, "Graceful shutdown"), on a real ``python -m
refserver`` for each interface and path: SIGTERM while 64 connections are busy loses no request,
refuses new connections, closes idle ones, and exits 0 within the graceful timeout; at the timeout
what still runs is cut and each cut request is logged.

The load and its accounting are ``benchmarks/shutdown_under_load.py`` (the long version, with
``--help``), run here with small numbers.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import shutdown_under_load as bench  # noqa: E402

INTERFACES = ["asgi", "rsgi", "wsgi"]


@pytest.mark.parametrize("interface", INTERFACES)
def test_sigterm_with_64_busy_connections_loses_nothing(interface, impl):
    args = bench.parse_args(
        ["--connections", "64", "--idle", "4", "--min-ms", "500", "--max-ms", "1000",
         "--signal-after", "96", "--timeout-graceful-shutdown", "5"]
    )
    result = bench.run_once(args, interface, impl)
    assert bench.check(result, args) == [], result
    # Every request the server read before the signal was answered in full...
    assert result["seen_by_app"] >= 96 and result["lost"] == 0 and result["cut"] == 0
    # ...in-flight ones were answered after it, since the load keeps all 64 connections busy...
    assert result["complete"] > 96 - 64
    # ...and every client's next connection was refused.
    assert result["refused_after_signal"] + result["accepted_after_signal"] == 64
    assert result["refused_after_signal"] > 0
    assert result["idle_closed"] == 4 and result["idle_closed_after_max"] < 1.0
    assert result["exit_code"] == 0 and result["exit_time"] < 5


@pytest.mark.parametrize("interface", INTERFACES)
def test_requests_running_at_the_graceful_timeout_are_cut_and_each_is_logged(interface, impl):
    args = bench.parse_args(
        ["--connections", "8", "--idle", "1", "--min-ms", "20000", "--max-ms", "20000",
         "--signal-after", "8", "--timeout-graceful-shutdown", "0.5", "--io-timeout", "10"]
    )
    result = bench.run_once(args, interface, impl)
    assert bench.check(result, args) == [], result
    # All 8 were running: each is cut (the client never sees a complete response) and named in
    # its own log line with its client and its age, which is at least the graceful timeout.
    assert result["seen_by_app"] == 8 and result["complete"] == 0 and result["cut"] == 8
    cut_lines = [line for line in result["stderr"] if "cut at shutdown:" in line]
    assert len(cut_lines) == 8
    for line in cut_lines:
        match = bench.CUT_LINE.search(line)
        assert match and match.group(2).startswith("127.0.0.1:"), line
        assert float(match.group(3)) >= 0.5, line
    summary = "8 request(s) still running after the graceful timeout"
    assert any(summary in line for line in result["stderr"])
    # Cut at 0.5 s, not after the 20 s the requests would have taken.
    assert result["exit_code"] == 0 and result["exit_time"] < 0.5 + 1.5
