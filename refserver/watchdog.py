"""``--warn-blocked-loop``: a warning when something holds the event loop for too long.

An application that calls blocking code from a coroutine (``time.sleep``, a synchronous database
driver, a long computation) stops every connection of the server, and nothing on the wire says
which request did it. Here the loop runs a heartbeat callback a few times a second, and a thread
checks that the heartbeat keeps beating. When it stops for ``threshold`` seconds the thread logs
which request the loop is running (read from the thread: ``asyncio.current_task(loop)``), and,
once the loop runs again, for how long it was held.

What it costs the loop is one timer callback per period, whatever the request rate: nothing is
done per request.
"""

from __future__ import annotations

import asyncio
import threading
import time

#: The heartbeat's longest period: the precision of the durations reported.
MAX_PERIOD = 0.25


class LoopWatchdog:
    def __init__(self, loop, threshold: float, describe, logger):
        """``describe(task)`` names what ``task`` (or ``None``: no task, a plain callback) is doing."""
        self.loop = loop
        self.threshold = threshold
        self.period = min(threshold / 4, MAX_PERIOD)
        self.describe = describe
        self.logger = logger
        self._beat = 0.0
        self._handle = None
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> None:
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(self.period, self._heartbeat)
        self._thread = threading.Thread(
            target=self._watch, name="refserver-loop-watchdog", daemon=True
        )
        self._thread.start()

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
        """In the watchdog thread."""
        blocked_at = None  # the last beat before the block being reported
        culprit = ""
        while not self._stop.wait(self.period):
            beat = self._beat
            if blocked_at is not None:
                if beat != blocked_at:
                    # The loop ran again: the gap between the two beats is how long it was held,
                    # give or take one period.
                    self.logger.warning(
                        "the event loop was blocked for %.2f s by %s", beat - blocked_at, culprit
                    )
                    blocked_at = None
                continue
            stalled = time.monotonic() - beat
            if stalled >= self.threshold and not self._stop.is_set():
                blocked_at = beat
                try:
                    task = asyncio.current_task(self.loop)
                except RuntimeError:
                    task = None
                culprit = self.describe(task)
                self.logger.warning(
                    "the event loop has been blocked for %.2f s (--warn-blocked-loop %g) by %s",
                    stalled,
                    self.threshold,
                    culprit,
                )
