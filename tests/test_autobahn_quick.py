"""A quick subset of the Autobahn WebSocket cases, run by kosoku against refserver's echo apps.

The full suite (every group, 9.* limits and 12.*/13.* compression included) takes minutes and is
run by ``scripts/autobahn/run_kosoku.sh`` / ``run_wstest.sh``; this subset keeps every group
represented and stays well under a minute for both interfaces on both paths. Only 127.0.0.1.

A case passes when kosoku's verdict is OK; any other verdict must be one that spec/websocket.md
explains (:data:`EXPLAINED`), so a new NON-STRICT result fails here until someone explains it.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

kosoku = pytest.importorskip("kosoku")

from scripts.autobahn.echo_apps import asgi_echo, rsgi_echo

pytestmark = pytest.mark.timeout(120)

INCLUDE = [
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*",
    "9.1.1", "9.2.1", "9.3.1", "9.4.1", "9.5.1", "9.6.1", "9.7.1", "9.8.1",
    "12.1.3", "12.2.3", "12.4.5", "12.5.11",
    "13.1.3", "13.2.3", "13.3.3", "13.4.3", "13.5.3", "13.6.3", "13.7.3",
]

#: Verdicts other than OK that spec/websocket.md explains (its "Autobahn" section), by case.
EXPLAINED = {
    # Informational by design: the case records what the server did, there is no right answer.
    "7.1.6": ("INFORMATIONAL", "INFORMATIONAL"),
    "7.13.1": ("INFORMATIONAL", "INFORMATIONAL"),
    "7.13.2": ("INFORMATIONAL", "INFORMATIONAL"),
}


def run_cases(port: int) -> list:
    async def main():
        try:
            return await kosoku.run_fuzzingclient(f"127.0.0.1:{port}", INCLUDE, None, concurrency=2)
        except kosoku.FailureError as failure:
            return failure.results

    # kosoku puts a stand-in pkg_resources on sys.path (its case modules stay imported and
    # cached); later tests need the real one, so the shim is taken out again after each run.
    try:
        return asyncio.run(main())
    finally:
        shim = sys.modules.get("pkg_resources")
        if shim is not None and "kosoku" in (getattr(shim, "__file__", "") or ""):
            del sys.modules["pkg_resources"]
        sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("shim")]


@pytest.mark.parametrize("impl, loop", [("pure", "asyncio"), ("fast", "uvloop")])
@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_autobahn_subset(interface, impl, loop):
    """Each path on the loop it runs on by default (the full runs cover the other pairings)."""
    from conftest import IMPLS, require_fast_path
    from support import serve

    if impl not in IMPLS:
        pytest.skip("REFSERVER_TEST_PURE_ONLY=1: the fast path is not built on this machine")
    if impl == "fast":
        require_fast_path()
    app = asgi_echo if interface == "asgi" else rsgi_echo
    with serve(app, loop=loop, impl=impl, interface=interface) as srv:
        results = run_cases(srv.port)
    assert len(results) > 250
    unexpected = []
    for result in results:
        verdict = (result.behavior.value, result.behavior_close.value)
        if verdict == ("OK", "OK"):
            continue
        if EXPLAINED.get(result.case_id) != verdict:
            unexpected.append(f"{result.case_id}: {verdict} {result.result} / {result.result_close}")
    assert not unexpected, "\n".join(unexpected)
