"""ASGI lifespan: the modes (auto, on, off), state handed to requests, startup failures and the
shutdown sequence, on a real server."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from refserver import Config, Server
from refserver.server_errors import StartupFailed


class LifespanApp:
    """An ASGI app that records its lifespan events and serves its scope's state on http."""

    def __init__(self, *, fail_startup=None, raise_on_startup=None, return_early=False,
                 shutdown_delay=0.0, fail_shutdown=None):
        self.events: list = []
        self.scopes: list = []
        self.fail_startup = fail_startup
        self.raise_on_startup = raise_on_startup
        self.return_early = return_early
        self.shutdown_delay = shutdown_delay
        self.fail_shutdown = fail_shutdown

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        self.scopes.append(scope)
        state = scope["state"]
        body = ",".join(f"{k}={v}" for k, v in sorted(state.items()) if k != "items")
        state.setdefault("items", []).append(scope["path"])
        state["per_request"] = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    async def lifespan(self, scope, receive, send):
        self.events.append(("scope", scope["asgi"], type(scope["state"])))
        if self.return_early:
            return
        message = await receive()
        self.events.append(message["type"])
        if self.raise_on_startup is not None:
            raise self.raise_on_startup
        if self.fail_startup is not None:
            await send({"type": "lifespan.startup.failed", "message": self.fail_startup})
            return
        scope["state"]["db"] = "connected"
        scope["state"]["items"] = []
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        self.events.append(message["type"])
        if self.shutdown_delay:
            await asyncio.sleep(self.shutdown_delay)
            self.events.append("cleaned up")
        if self.fail_shutdown is not None:
            await send({"type": "lifespan.shutdown.failed", "message": self.fail_shutdown})
        else:
            await send({"type": "lifespan.shutdown.complete"})
        self.events.append("returned")


LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_and_shutdown(server_factory, mode):
    app = LifespanApp(shutdown_delay=0.05)
    with server_factory(app, lifespan=mode) as srv:
        assert app.events == [("scope", LIFESPAN_ASGI, dict), "lifespan.startup"]
        assert httpx.get(srv.url).text == "db=connected"
    # serve() returned only after the app's shutdown had completed, and its call had returned.
    assert app.events[2:] == ["lifespan.shutdown", "cleaned up", "returned"]


def test_off_never_calls_the_app_with_lifespan(server_factory):
    app = LifespanApp()
    with server_factory(app, lifespan="off") as srv:
        assert httpx.get(srv.url).text == ""
    assert app.events == []
    assert app.scopes[0]["state"] == {"items": ["/"], "per_request": True}


def test_state_is_copied_shallowly_into_each_request(server_factory):
    app = LifespanApp()
    with server_factory(app, lifespan="on") as srv:
        assert httpx.get(srv.url + "/1").text == "db=connected"
        # "per_request", set by the first request, is not in the second one's state...
        assert httpx.get(srv.url + "/2").text == "db=connected"
    first, second = (scope["state"] for scope in app.scopes)
    assert first is not second
    # ...but the values are shared: the list created at startup saw both requests.
    assert first["items"] is second["items"] == ["/1", "/2"]


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_message(server_factory, mode):
    app = LifespanApp(fail_startup="database unreachable")
    with pytest.raises(StartupFailed, match="database unreachable"):
        with server_factory(app, lifespan=mode):
            pass  # pragma: no cover - never reached


def test_exception_in_on_mode_is_a_startup_failure(server_factory, server_logs):
    app = LifespanApp(raise_on_startup=ValueError("no config"))
    with pytest.raises(StartupFailed, match="no config"):
        with server_factory(app, lifespan="on"):
            pass  # pragma: no cover
    assert any(r.levelno == logging.ERROR for r in server_logs)


def test_returning_without_an_answer_in_on_mode_is_a_startup_failure(server_factory):
    app = LifespanApp(return_early=True)
    with pytest.raises(StartupFailed):
        with server_factory(app, lifespan="on"):
            pass  # pragma: no cover


def test_returning_without_an_answer_in_auto_mode_serves(server_factory):
    app = LifespanApp(return_early=True)
    with server_factory(app, lifespan="auto") as srv:
        assert httpx.get(srv.url).status_code == 200
    assert app.events == [("scope", LIFESPAN_ASGI, dict)]


def test_app_without_lifespan_support_is_served_in_auto_mode(server_factory, server_logs):
    calls: list = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        assert scope["type"] == "http", "only http here"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    with server_factory(app, lifespan="auto") as srv:
        assert httpx.get(srv.url).text == "plain"
    assert calls == ["lifespan", "http"]
    assert not [r for r in server_logs if r.levelno >= logging.ERROR]
    assert any("lifespan" in r.getMessage() for r in server_logs)


def test_shutdown_failed_is_logged(server_factory, server_logs):
    app = LifespanApp(fail_shutdown="could not flush")
    with server_factory(app, lifespan="on") as srv:
        assert httpx.get(srv.url).status_code == 200
    assert any("could not flush" in r.getMessage() for r in server_logs)
    assert app.events[-1] == "returned"


def test_a_lifespan_that_never_returns_after_shutdown_is_cancelled_quietly(server_factory,
                                                                          server_logs):
    cancelled = []

    async def app(scope, receive, send):
        if scope["type"] != "lifespan":
            return
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        try:
            await asyncio.Event().wait()  # lingers after saying it is done
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with server_factory(app, lifespan="on"):
        pass
    assert cancelled == [True]
    assert not [r for r in server_logs if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_server_serve_raises_startup_failed(mode):
    app = LifespanApp(fail_startup="nope")
    server = Server(Config(app, port=0, lifespan=mode, log_level="warning"))

    async def main():
        await asyncio.wait_for(server.serve(), 10)

    with pytest.raises(StartupFailed, match="nope"):
        asyncio.run(main())
    assert server.sockets == []  # nothing was bound for an app that did not start
