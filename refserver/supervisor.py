"""The supervisor of ``--workers`` and ``--reload``: N worker processes (:mod:`refserver.worker`)
serving the same listening sockets, kept at N.

The sockets are bound here, once, and handed to every worker: connections wait in one kernel
queue that whichever worker is free takes from, so a worker that stops (replaced, crashed)
leaves no connection behind in a queue of its own. ``--reuse-port`` gives each worker its own
socket instead (SO_REUSEPORT), for the measurements in benchmarks/workers.py.

Signals: SIGINT/SIGTERM stop every worker gracefully (a second one cuts them short); SIGHUP
replaces the workers one by one, each successor serving before its predecessor is told to
stop; SIGTTIN and SIGTTOU add and remove a worker. A worker that dies is replaced, after a
growing delay when deaths follow each other quickly; a worker that fails its startup stops
the whole server, since its successors would fail the same way.

``--reload`` is the same supervisor with one worker, restarted (stopped, then started: two
copies of a development app may not share its resources) when a watched file changes. A worker
that fails its startup there is the developer's syntax error: the supervisor says so and waits
for the next change instead of stopping. Connections made meanwhile wait in the listen queue.

``--metrics``: the supervisor serves the metrics socket, asking each worker for its counters
over its line on every scrape and summing them (:mod:`refserver.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import time
from typing import cast

from . import logs
from .binding import (
    bind_sockets,
    describe_address,
    remove_pid_file,
    remove_socket_file,
    write_pid_file,
)
from .config import Config, ConfigError
from .metrics import REPORT_TIMEOUT, Aggregate, MetricsServer, exposition
from .worker import METRICS, READY, RETIRE, Handoff, command, send_handoff

logger = logs.error_logger

#: A worker that dies within this many seconds of being ready counts as a quick death.
QUICK_DEATH = 5.0
#: The delay before replacing the second quick death in a row; doubled for each next one.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: How often lifetimes and resident memory are checked.
MONITOR_INTERVAL = 1.0


class WorkerFailed(Exception):
    """A worker exited before it was ready: its startup failed."""

    def __init__(self, pid: int, returncode: int):
        super().__init__(f"worker {pid} failed its startup ({describe_exit(returncode)})")
        self.returncode = returncode


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Worker:
    def __init__(self, proc, loop):
        self.proc = proc
        self.pid = proc.pid
        self.ready = loop.create_future()  # done when ready; WorkerFailed if it exits first
        self.exited = loop.create_future()  # its return code
        self.ready_at: float | None = None
        self.stopping = False  # told to stop: its exit is expected
        self.replacing = False  # its successor is starting
        self.line = None  # the stream writer of its line
        self.report_waiter = None  # a future for the metrics report asked for

    @property
    def serving(self) -> bool:
        return self.ready_at is not None and not self.stopping and not self.exited.done()

    def age(self) -> float:
        """Seconds since the worker was ready (0 before)."""
        return 0.0 if self.ready_at is None else time.monotonic() - self.ready_at


class Supervisor:
    def __init__(self, config: Config):
        self.config = config
        self.reload = config.reload
        self.target = 1 if config.reload else config.workers
        self.workers: list[Worker] = []
        self.exit_code = 0
        self.sockets: list[socket.socket] = []
        # Since Python 3.10 these bind to the loop that first waits on them, not at creation.
        self._stop = asyncio.Event()
        self._stop_signals = 0
        self._replace_lock = asyncio.Lock()
        self._quick_deaths = 0
        self._tasks: set = set()
        self.metrics = Aggregate() if config.metrics else None
        self.metrics_server: MetricsServer | None = None

    # ------------------------------------------------------------------ process

    def run(self) -> int:
        from .server import EXIT_CONFIG

        config = self.config
        if not isinstance(config.app, str):
            logger.error(
                '%s needs the application as an import string ("module:attribute"): '
                "each worker imports it",
                "--reload" if self.reload else "--workers",
            )
            return EXIT_CONFIG
        if self.reload and config.workers not in (None, 1):
            logger.warning("--reload runs one worker; --workers %d is ignored", config.workers)
        try:
            self.sockets = bind_sockets(config, listen=not config.reuse_port)
            if config.metrics:
                self.metrics_server = MetricsServer.bind(config, self.collect_metrics)
            if config.pid_file is not None:
                write_pid_file(config.pid_file)
        except ConfigError as exc:
            logger.error("%s", exc)
            self._close_sockets()
            return EXIT_CONFIG
        try:
            return asyncio.run(self._main())
        finally:
            self._close_sockets()
            if config.pid_file is not None:
                remove_pid_file(config.pid_file)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.config.uds and self.config.fd is None:
            remove_socket_file(self.config.uds)

    # ------------------------------------------------------------------ serving

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        handlers = {
            signal.SIGINT: self._stop_signal,
            signal.SIGTERM: self._stop_signal,
            signal.SIGHUP: lambda: self._spawn(self.rolling_restart()),
            signal.SIGTTIN: lambda: self._spawn(self.add_worker()),
            signal.SIGTTOU: lambda: self._spawn(self.remove_worker()),
        }
        for signum, handler in handlers.items():
            loop.add_signal_handler(signum, handler)
        try:
            tls = self.config.ssl_certfile is not None
            logger.info(
                "supervisor %d on %s: starting %d worker(s)",
                os.getpid(),
                ", ".join(describe_address(s, tls=tls) for s in self.sockets),
                self.target,
            )
            if self.metrics_server is not None:
                await self.metrics_server.start()
                logger.info("metrics on %s/metrics", describe_address(self.metrics_server.sock))
            if self.reload:
                from .reload import ReloadFilter, changes

                # Iterated before the first worker starts: an edit made while it starts counts.
                batches = changes(ReloadFilter.from_config(self.config), stop_event=self._stop)
                self._spawn(self._reload_on_changes(batches))
            if await self._start_all():
                self._spawn(self._monitor())
            await self._stop.wait()
            await self._stop_all()
        finally:
            for signum in handlers:
                loop.remove_signal_handler(signum)
            for task in list(self._tasks):
                task.cancel()
            if self.metrics_server is not None:
                self.metrics_server.close()  # here, on its loop; served until every worker stopped
        logger.info("supervisor %d stopped", os.getpid())
        return self.exit_code

    async def _start_all(self) -> bool:
        """Start the workers up to the target; a failed startup stops the server (waits for a
        change under ``--reload``) and returns False."""
        results = await asyncio.gather(
            *(self.start_worker() for _ in range(self.target - self._serving_count())),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        for exc in failed:
            if not isinstance(exc, WorkerFailed):
                raise exc
        if failed:
            self._startup_failed(cast(WorkerFailed, failed[0]))
            if self.reload:
                await self._stop_all()  # the others started: the next change restarts them all
            return False
        logger.info(
            "%d worker(s) ready (pid %s)",
            len(results),
            ", ".join(str(cast(Worker, w).pid) for w in results),
        )
        return True

    def _startup_failed(self, exc: WorkerFailed) -> None:
        if self._stop.is_set():
            return  # stopped while starting: not a failure of the application
        if self.reload:
            logger.error("%s; waiting for a change to restart", exc)
            return
        logger.error("%s; stopping", exc)
        self.exit_code = exc.returncode or 1
        self._stop.set()

    async def _reload_on_changes(self, batches) -> None:
        async with contextlib.aclosing(batches):
            async for paths in batches:
                shown = sorted(os.path.relpath(p) for p in paths)
                more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
                logger.info("changed: %s%s; restarting", ", ".join(shown[:3]), more)
                await self._stop_all()
                if not self._stop.is_set():
                    await self._start_all()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stop_signal(self) -> None:
        self._stop_signals += 1
        if self._stop_signals == 1:
            self._stop.set()
        else:
            # A second signal: the workers are told again, which cuts their requests short.
            logger.info("second stop signal: cutting the workers' requests short")
            for worker in self.workers:
                _signal(worker, signal.SIGTERM)

    # ------------------------------------------------------------------ workers

    async def start_worker(self) -> Worker:
        """Start a worker and return it once it serves; raises :class:`WorkerFailed`."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        fds = [s.fileno() for s in self.sockets]
        config = _worker_config(self.config)
        addresses = None
        if self.config.reuse_port:
            addresses = [s.getsockname()[:2] for s in self.sockets]
            fds = []
        try:
            proc = await asyncio.create_subprocess_exec(
                *command(theirs.fileno()), pass_fds=[theirs.fileno(), *fds]
            )
        finally:
            theirs.close()
        worker = Worker(proc, loop)
        self.workers.append(worker)
        try:
            send_handoff(ours, Handoff(config, fds, addresses))
        except OSError:
            pass  # it died at once: its exit is reported below
        ours.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker.line = writer
        self._spawn(self._listen(worker, reader, writer))
        self._spawn(self._wait_exit(worker))
        await worker.ready
        worker.ready_at = time.monotonic()
        return worker

    async def _listen(self, worker: Worker, reader, writer) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line == READY and not worker.ready.done():
                    worker.ready.set_result(worker)
                elif line == RETIRE:
                    self._spawn(self.replace(worker, "it served --limit-max-requests"))
                elif line.startswith(METRICS[:-1] + b" ") and self.metrics is not None:
                    self.metrics.update(worker, json.loads(line[len(METRICS) :]))
                    waiter = worker.report_waiter
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
        finally:
            writer.close()
            if self.metrics is not None:
                # Every line it sent has been read: its last report is its final count.
                self.metrics.retire(worker)

    async def _wait_exit(self, worker: Worker) -> None:
        returncode = await worker.proc.wait()
        worker.exited.set_result(returncode)
        self.workers.remove(worker)
        if not worker.ready.done():
            worker.ready.set_exception(WorkerFailed(worker.pid, returncode))
            worker.ready.exception()  # retrieved: whoever awaits it reports it
        elif worker.stopping:
            logger.info("worker %d stopped (%s)", worker.pid, describe_exit(returncode))
        elif worker.replacing:
            logger.warning(
                "worker %d died (%s) while its successor was starting",
                worker.pid,
                describe_exit(returncode),
            )
        elif not self._stop.is_set():
            self._spawn(self._replace_dead(worker, returncode))

    async def _replace_dead(self, worker: Worker, returncode: int) -> None:
        lived = worker.age()
        self._quick_deaths = self._quick_deaths + 1 if lived < QUICK_DEATH else 1
        delay = 0.0
        if self._quick_deaths > 1:
            delay = min(FIRST_BACKOFF * 2 ** (self._quick_deaths - 2), MAX_BACKOFF)
        logger.warning(
            "worker %d died (%s) after %.1f s; starting another%s",
            worker.pid,
            describe_exit(returncode),
            lived,
            f" in {delay:g} s ({self._quick_deaths} quick deaths in a row)" if delay else "",
        )
        if delay:
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                return  # stopping meanwhile
            except asyncio.TimeoutError:
                pass
        if self._stop.is_set() or self._serving_count() >= self.target:
            return
        try:
            new = await self.start_worker()
        except WorkerFailed as exc:
            self._startup_failed(exc)
            return
        logger.info("worker %d ready", new.pid)

    async def collect_metrics(self) -> bytes:
        """A scrape: every serving worker is asked for its report, and the sum is served."""
        asked = [
            w
            for w in self.workers
            if w.ready_at is not None and w.line is not None and not w.line.is_closing()
        ]
        await asyncio.gather(*(self._ask_report(w) for w in asked))
        serving = sum(1 for w in self.workers if w.serving)
        assert self.metrics is not None  # only --metrics serves this
        return exposition(self.metrics.total(), workers=serving)

    async def _ask_report(self, worker: Worker) -> None:
        """Ask ``worker`` for its report; one that does not answer within
        :data:`REPORT_TIMEOUT` (a blocked loop) counts with its previous one."""
        waiter = worker.report_waiter
        if waiter is None or waiter.done():
            # Concurrent scrapes share one request.
            waiter = worker.report_waiter = asyncio.get_running_loop().create_future()
            try:
                worker.line.write(METRICS)
            except (ConnectionError, RuntimeError):
                return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), REPORT_TIMEOUT)
        except asyncio.TimeoutError:
            pass

    def _serving_count(self) -> int:
        return sum(1 for w in self.workers if not w.stopping and w.ready_at is not None)

    async def stop_worker(self, worker: Worker) -> None:
        """SIGTERM, then SIGKILL once the graceful shutdown and ``--workers-kill-timeout`` are
        over."""
        from .server import CANCEL_GRACE

        worker.stopping = True
        _signal(worker, signal.SIGTERM)
        config = self.config
        timeout = config.timeout_graceful_shutdown + CANCEL_GRACE + config.workers_kill_timeout
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), timeout)
        except asyncio.TimeoutError:
            logger.warning("worker %d still running after %g s; killing it", worker.pid, timeout)
            _signal(worker, signal.SIGKILL)
            await worker.exited

    async def _stop_all(self) -> None:
        if self.workers:
            logger.info("stopping %d worker(s)", len(self.workers))
        await asyncio.gather(*(self.stop_worker(w) for w in list(self.workers)))

    async def replace(self, old: Worker, reason: str) -> bool:
        """Start ``old``'s successor, then stop ``old``: no moment with one worker fewer.

        Replacements run one at a time. A successor that fails its startup leaves ``old``
        serving (the code on disk is broken; the running code is not) and returns False.
        """
        async with self._replace_lock:
            if not old.serving or old.replacing or self._stop.is_set():
                return True
            old.replacing = True
            logger.info("replacing worker %d: %s", old.pid, reason)
            try:
                new = await self.start_worker()
            except WorkerFailed as exc:
                logger.error("%s; worker %d keeps serving", exc, old.pid)
                old.replacing = False
                old.ready_at = time.monotonic()  # its lifetime starts over
                return False
            logger.info("worker %d ready, replacing %d", new.pid, old.pid)
            self._spawn(self.stop_worker(old))
            return True

    async def rolling_restart(self) -> None:
        """SIGHUP: every worker serving now is replaced, one after the other."""
        old = [w for w in self.workers if w.serving]
        logger.info("SIGHUP: replacing %d worker(s) one by one", len(old))
        for worker in old:
            if not await self.replace(worker, "SIGHUP"):
                logger.error("SIGHUP: replacement abandoned; the remaining workers keep serving")
                return

    async def add_worker(self) -> None:
        """SIGTTIN."""
        if self._stop.is_set():
            return
        self.target += 1
        logger.info("SIGTTIN: adding a worker (%d)", self.target)
        try:
            worker = await self.start_worker()
        except WorkerFailed as exc:
            self.target -= 1
            logger.error("%s", exc)
            return
        logger.info("worker %d ready", worker.pid)

    async def remove_worker(self) -> None:
        """SIGTTOU: the newest worker stops; the last one stays."""
        serving = [w for w in self.workers if w.serving]
        if self._stop.is_set() or self.target <= 1 or not serving:
            logger.info("SIGTTOU: keeping the last worker")
            return
        self.target -= 1
        logger.info("SIGTTOU: stopping worker %d (%d left)", serving[-1].pid, self.target)
        await self.stop_worker(serving[-1])

    async def _monitor(self) -> None:
        """Replace workers past ``--workers-lifetime`` or ``--workers-max-rss``."""
        config = self.config
        if config.workers_lifetime is None and config.workers_max_rss is None:
            return
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            for worker in list(self.workers):
                if not worker.serving or worker.replacing:
                    continue
                lifetime = config.workers_lifetime
                if lifetime is not None and worker.age() >= lifetime:
                    self._spawn(self.replace(worker, f"--workers-lifetime {lifetime:g} s"))
                    continue
                limit = config.workers_max_rss
                rss = resident_mib(worker.pid) if limit is not None else None
                if rss is not None and rss > limit:
                    self._spawn(
                        self.replace(
                            worker, f"{rss:.0f} MiB resident, over --workers-max-rss {limit}"
                        )
                    )


def _worker_config(config: Config) -> Config:
    """The supervisor's configuration as a worker uses it: the PID file and the UNIX socket
    file belong to the supervisor."""
    worker = copy.copy(config)
    worker.pid_file = None
    return worker


def resident_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB, from /proc (Linux); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as file:
            pages = int(file.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def _signal(worker: Worker, signum: int) -> None:
    try:
        worker.proc.send_signal(signum)
    except ProcessLookupError:
        pass
