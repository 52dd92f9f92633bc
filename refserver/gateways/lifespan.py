"""ASGI lifespan (2.0): run the application's startup before serving and its shutdown after."""

from __future__ import annotations

import asyncio

from ..server_errors import StartupFailed

LIFESPAN_SCOPE_ASGI = {"version": "3.0", "spec_version": "2.0"}

#: The result of the startup future when the application never answered lifespan.startup.
_UNANSWERED = object()


class Lifespan:
    """``mode`` is ``"auto"`` (an app that raises on the lifespan scope is served without it) or
    ``"on"`` (the same is a startup failure)."""

    def __init__(self, app, server_state, mode: str, shutdown_timeout: float = 30.0):
        self.app = app
        self.logger = server_state.logger
        self.state = server_state.lifespan_state
        self.mode = mode
        self.shutdown_timeout = shutdown_timeout
        self._inbox: asyncio.Queue = asyncio.Queue()
        # Made by startup() on the running loop; nothing reads them before.
        self._startup_done: asyncio.Future
        self._shutdown_done: asyncio.Future
        self._task: asyncio.Task | None = None
        self._supported = True
        self._phase = "startup"

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self._startup_done = loop.create_future()
        self._shutdown_done = loop.create_future()
        scope = {"type": "lifespan", "asgi": LIFESPAN_SCOPE_ASGI, "state": self.state}
        self._task = loop.create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        await asyncio.wait([self._startup_done, self._task], return_when=asyncio.FIRST_COMPLETED)
        failure = self._startup_done.result() if self._startup_done.done() else _UNANSWERED
        if failure is _UNANSWERED:
            # The application returned (or failed in auto mode) without answering startup.
            if self._supported and self.mode == "on":
                raise StartupFailed("the application returned before completing lifespan startup")
            self._supported = False
            return
        if failure is not None:
            raise StartupFailed(failure)

    async def _run(self, scope) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise  # only the server cancels this task, at shutdown: nothing to report
        except BaseException as exc:  # noqa: BLE001
            if self._phase == "startup" and not self._startup_done.done():
                self._supported = False
                if self.mode == "on":
                    self.logger.error("exception in ASGI lifespan startup", exc_info=exc)
                    self._startup_done.set_result(f"{type(exc).__name__}: {exc}")
                else:
                    self.logger.info(
                        "ASGI lifespan is not supported by the application (%s: %s); "
                        "serving without it",
                        type(exc).__name__,
                        exc,
                    )
            else:
                self.logger.error("exception in ASGI lifespan", exc_info=exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            # Wake whoever waits; startup learns that it was never answered.
            if not self._startup_done.done():
                self._startup_done.set_result(_UNANSWERED)
            if not self._shutdown_done.done():
                self._shutdown_done.set_result(None)

    async def _receive(self) -> dict:
        return await self._inbox.get()

    async def _send(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._phase = "running"
            self._startup_done.set_result(None)
        elif kind == "lifespan.startup.failed":
            self._phase = "running"
            self._startup_done.set_result(message.get("message", "") or "lifespan.startup.failed")
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            self.logger.error("application shutdown failed: %s", message.get("message", ""))
            self._shutdown_done.set_result(None)
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")

    async def shutdown(self) -> None:
        if self._task is None or self._task.done() or not self._supported:
            return
        self._phase = "shutdown"
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._shutdown_done), self.shutdown_timeout)
        except asyncio.TimeoutError:
            self.logger.error("ASGI lifespan shutdown did not complete in time")
            self._task.cancel()
        # Let the application's lifespan call return (its code after shutdown.complete runs, and
        # the loop does not close on a pending task); a bounded wait, since it owes us nothing.
        await asyncio.wait([self._task], timeout=0.1)
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
