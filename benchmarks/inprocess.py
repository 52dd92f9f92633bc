"""CPU per request of refserver's own HTTP/1.1 path, without sockets.

``run.py`` measures whole servers under wrk, kernel and loop included; this measures what is left
when they are taken out: keep-alive connections on an in-memory transport are fed ``GET /`` (or
``POST /echo`` with 4 KiB) in rounds, the loop runs the request tasks, and the best round's time
per request is reported. It is the figure the profile of the fast path is read against (perf and
py-spy can attach to it), and it is steady enough to compare two builds on a shared machine.

    python benchmarks/inprocess.py                       # RSGI and ASGI, fast and pure
    python benchmarks/inprocess.py --interface wsgi      # CPU of every thread of the process
    python benchmarks/inprocess.py --interface rsgi --impl fast --rounds 2000
    python benchmarks/inprocess.py --endpoint echo
    python benchmarks/inprocess.py --impl fast --interface rsgi --metrics   # with --metrics on
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from refserver.config import Config  # noqa: E402
from refserver.impl import select  # noqa: E402
from refserver.server import ServerState, make_gateway  # noqa: E402

_FIELDS = b"Host: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
REQUESTS = {
    "plaintext": b"GET / HTTP/1.1\r\n" + _FIELDS + b"\r\n",
    "echo": b"POST /echo HTTP/1.1\r\n" + _FIELDS + b"Content-Length: 4096\r\n"
    b"Content-Type: application/octet-stream\r\n\r\n" + b"a" * 4096,
}


class NullTransport:
    """Counts the writes, and calls ``answered`` (if given) on each; reading and closing are
    no-ops (the connections are kept alive)."""

    def __init__(self, answered=None):
        self.writes = 0
        self._answered = answered

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data) -> None:
        self.writes += 1
        if self._answered is not None:
            self._answered()

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def measure(interface: str, impl_name: str, request: bytes, connections: int,
                  rounds: int, repeat: int, metrics: bool = False) -> float:
    """Seconds of CPU per request, best of ``repeat`` runs of ``rounds`` rounds."""
    app = importlib.import_module(f"benchmarks.apps.{interface}_app").app
    impl, _ = select(impl_name)
    config = Config(app, interface=interface, impl=impl_name, access_log=False, metrics=metrics)
    state = ServerState(config, asyncio.get_running_loop(), impl)
    state.handler = make_gateway(interface, app, state)
    loop = asyncio.get_running_loop()
    # WSGI answers from pool threads, a loop pass or more later: each of its rounds waits for the
    # responses. ASGI and RSGI answer within two passes, which is all a round gives them (and
    # their writes then cost no callback here).
    waits = interface == "wsgi"
    left = 0
    round_done = None

    def answered() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            round_done.set_result(None)

    pairs = []
    for _ in range(connections):
        protocol = impl.h1_protocol(state, impl)
        transport = NullTransport(answered if waits else None)
        protocol.connection_made(transport)
        pairs.append((protocol, transport))

    async def run(count: int) -> None:
        nonlocal left, round_done
        for _ in range(count):
            if waits:
                left, round_done = len(pairs), loop.create_future()
            for protocol, _ in pairs:
                protocol.data_received(request)
            if waits:
                await round_done
            else:
                # One pass to run the request tasks, one for their completion callbacks.
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    await run(max(1, rounds // 5))  # warm-up
    best = float("inf")
    for _ in range(repeat):
        before = [t.writes for _, t in pairs]
        start = time.process_time()
        await run(rounds)
        elapsed = time.process_time() - start
        written = sum(t.writes for _, t in pairs) - sum(before)
        if written < rounds * connections:
            raise SystemExit(f"only {written} of {rounds * connections} requests were answered")
        best = min(best, elapsed / (rounds * connections))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interface", choices=["rsgi", "asgi", "wsgi"], action="append")
    parser.add_argument("--impl", choices=["fast", "pure"], action="append")
    parser.add_argument("--endpoint", choices=sorted(REQUESTS), default="plaintext")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--metrics", action="store_true", help="count requests for --metrics")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        run = uvloop.run
    else:
        run = asyncio.run
    for interface in args.interface or ["rsgi", "asgi"]:
        for impl_name in args.impl or ["fast", "pure"]:
            seconds = run(measure(interface, impl_name, REQUESTS[args.endpoint],
                                  args.connections, args.rounds, args.repeat, args.metrics))
            shown = " --metrics" if args.metrics else ""
            print(f"{interface} {impl_name} {args.endpoint}{shown} ({args.loop}): "
                  f"{seconds * 1e6:6.2f} µs of CPU per request ({1 / seconds:,.0f} requests per CPU second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
