"""``--warn-blocked-loop``: a warning when something holds the event loop for too long.

An application that calls blocking code from a coroutine (``time.sleep``, a synchronous database
driver, a long computation) stops every connection of the server, and nothing on the wire says
which request did it. Here the loop runs a heartbeat callback a few times a second, and a thread
checks that the heartbeat keeps beating. When it stops for ``threshold`` seconds the thread logs
which request the loop is running (read from the thread: ``asyncio.current_task(loop)``), and,
once the loop runs again, for how long it was held.

What it costs is one timer callback on the loop per period (a quarter of the threshold, at most
0.25 s) and about one wake-up of the thread per threshold, whatever the request rate: nothing is
done per request. Measured idle with the default threshold of 1 s (benchmarks/watchdog_cost.py), it
is about 0.05 % of a core: 0.4 to 0.5 ms of CPU a second, on a shared 2-core VM where a wake-up
costs some 80 µs.
"""

from __future__ import annotations

import asyncio
import threading
import time

#: The heartbeat's longest period; a duration reported is within half a period of the truth.
MAX_PERIOD = 0.25


class LoopWatchdog:
    def __init__(self, loop, threshold: float, describe, logger):
        """``describe(task)`` names what ``task`` (``None``: a plain callback) is doing."""
        self.loop = loop
        self.threshold = threshold
        self.period = min(threshold / 4, MAX_PERIOD)
        self.describe = describe
        self.logger = logger
        self._beat = 0.0
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(self.period, self._heartbeat)
        self._thread = thread = threading.Thread(
            target=self._watch, name="refserver-loop-watchdog", daemon=True
        )
        thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None

    def _heartbeat(self) -> None:
        """On the loop."""
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(self.period, self._heartbeat)

    def _watch(self) -> None:
        """In the watchdog thread. While the loop is healthy it sleeps until the soonest moment a
        block could reach the threshold; during a block it looks every period for its end."""
        blocked_at = None  # the last beat before the block being reported
        culprit = ""
        wait = self.threshold
        while not self._stop.wait(wait):
            beat = self._beat
            if blocked_at is not None:
                wait = self.period
                if beat != blocked_at:
                    # The loop ran again. The block began within the period after the last beat
                    # before it, and ended at the first beat after it.
                    self.logger.warning(
                        "the event loop was blocked for %.2f s by %s",
                        beat - blocked_at - self.period / 2,
                        culprit,
                    )
                    blocked_at = None
                    wait = self.threshold
                continue
            stalled = time.monotonic() - beat
            wait = max(self.threshold - stalled, self.period)
            if not self.loop.is_running():
                continue  # stopped (between runs, or ended without a shutdown): not blocked
            if stalled >= self.threshold and not self._stop.is_set():
                blocked_at = beat
                try:
                    culprit = self.describe(asyncio.current_task(self.loop))
                except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any request
                    culprit = f"a task that could not be described ({type(exc).__name__})"
                self.logger.warning(
                    "the event loop has been blocked for %.2f s (--warn-blocked-loop %g) by %s",
                    stalled,
                    self.threshold,
                    culprit,
                )
                wait = self.period
