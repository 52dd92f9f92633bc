"""--workers: the supervisor and its worker processes, with real processes and signals.

The applications (tests/worker_apps.py) answer with their worker's PID and print
``start TAG PID`` when a tagged request begins, so a test knows which worker held what.
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from support import ROOT, free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc of Linux")


class Supervised:
    """``python -m refserver`` with workers; its stdout and stderr lines collected as they come."""

    def __init__(self, impl, *args, app="worker_apps:asgi", pass_fds=(), port=None):
        self.port = port or free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("WEB_CONCURRENCY", None)
        argv = [sys.executable, "-m", "refserver", "--app-dir", "tests", app, "--impl", impl]
        if "--fd" not in args:
            argv += ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*argv, *args],
            cwd=ROOT,
            env=env,
            pass_fds=pass_fds,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, as a terminal would give it
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream):
        for raw in stream:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 20.0) -> list:
        """The first ``count`` matches of ``pattern`` in the output, waiting for them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for m in map(regex.search, self.lines) if m]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive_readers()):
                    raise AssertionError(
                        f"no {count} x {pattern!r} in the output:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(min(left, 0.2))

    def _alive_readers(self):
        return any(reader.is_alive() for reader in self._readers)

    def ready_pids(self) -> list:
        match = self.wait_for(r"worker\(s\) ready \(pid ([\d, ]+)\)")[0]
        return [int(pid) for pid in match.group(1).split(", ")]

    def signal(self, signum):
        os.kill(self.proc.pid, signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            for reader in self._readers:
                reader.join(5)

    def kill_all(self):
        """Whatever is left of the process group (a failed test must not leave workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def supervised(impl):
    started = []

    def start(*args, **kwargs):
        server = Supervised(impl, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill_all()


def get(port, path="/", timeout=10.0):
    """One request on a new connection: ``(status, body)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


class Load:
    """Clients sending requests back to back, each on a new connection, until stopped."""

    def __init__(self, port, clients=4, path="/"):
        self.port = port
        self.path = path
        self.results: list = []  # (tag, pid or None, error or None)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, client):
        n = 0
        while not self._stop.is_set():
            tag = f"load{client}-{n}"
            n += 1
            try:
                status, body = get(self.port, f"{self.path}?tag={tag}")
                assert status == 200, (status, body)
                self.results.append((tag, int(body.split()[0]), None))
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                self.results.append((tag, None, exc))

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def failures(self):
        return [(tag, err) for tag, _, err in self.results if err is not None]

    def pids(self):
        return {pid for _, pid, _ in self.results if pid is not None}


def in_background(func, *args):
    result = {}

    def run():
        try:
            result["value"] = func(*args)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def started_on(server, tags) -> dict:
    """``{tag: pid}`` of the tagged requests the application has begun."""
    found = {}
    for line in server.lines:
        match = re.match(r"start (\S+) (\d+)$", line)
        if match and match.group(1) in tags:
            found[match.group(1)] = int(match.group(2))
    return found


# ------------------------------------------------------------------------- starting


@pytest.mark.parametrize(
    "app, marker",
    [("worker_apps:asgi", "lifespan startup"), ("worker_apps:rsgi", "rsgi init")],
)
def test_each_worker_runs_the_application_startup(supervised, app, marker):
    server = supervised("--workers", "2", app=app)
    pids = server.ready_pids()
    assert len(set(pids)) == 2
    started = {int(m.group(1)) for m in server.wait_for(marker + r" (\d+)", count=2)}
    assert started == set(pids)
    # The startup line of each worker names it, with its interface and protocols.
    lines = server.wait_for(r"refserver running on http://127\.0\.0\.1:\d+ \(.*; pid (\d+)\)", 2)
    assert {int(m.group(1)) for m in lines} == set(pids)
    assert get(server.port)[1] in {str(pid) for pid in pids}
    assert server.stop() == 0
    end = "lifespan shutdown" if marker.startswith("lifespan") else "rsgi del"
    assert {int(m.group(1)) for m in server.wait_for(end + r" (\d+)", count=2)} == set(pids)


def test_wsgi_multiprocess_is_true_under_the_supervisor(supervised):
    server = supervised("--workers", "1", app="worker_apps:wsgi")
    pid = server.ready_pids()[0]
    assert get(server.port) == (200, f"{pid} multiprocess=True")
    assert server.stop() == 0


def test_web_concurrency_sets_the_number_of_workers(monkeypatch):
    from refserver.config import Config

    monkeypatch.delenv("REFSERVER_WORKERS", raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert Config("a:b").workers == 3
    monkeypatch.setenv("REFSERVER_WORKERS", "2")  # refserver's own variable wins
    assert Config("a:b").workers == 2
    assert Config("a:b", workers=4).workers == 4


def test_a_worker_failing_its_startup_stops_the_server(supervised):
    server = supervised("--workers", "2", app="worker_apps:failing_startup")
    code = server.proc.wait(30)
    server.stop()
    assert code == 3, server.output()
    assert "failed its startup (exit code 3); stopping" in server.output()
    # No respawn loop: two workers were started, and no other.
    assert len(re.findall(r"lifespan startup failed|database unreachable", server.output())) <= 2
    assert "starting another" not in server.output()


def test_the_app_must_be_an_import_string(tmp_path):
    from refserver import run

    assert run(lambda environ, start_response: [], workers=2) == 1


def test_supervisor_options_without_workers_are_errors():
    from refserver.config import Config, ConfigError

    with pytest.raises(ConfigError, match="--workers-lifetime given without --workers"):
        Config("a:b", workers_lifetime=10)
    with pytest.raises(ConfigError, match="--reuse-port applies to --host/--port"):
        Config("a:b", workers=2, reuse_port=True, uds="/tmp/x.sock")


def test_workers_serve_a_socket_given_by_fd(supervised):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    with sock:
        port = sock.getsockname()[1]
        server = supervised("--workers", "2", "--fd", str(sock.fileno()),
                            pass_fds=(sock.fileno(),), port=port)
        pids = server.ready_pids()
        assert int(get(port)[1]) in pids
        assert server.stop() == 0


def test_reuse_port_workers_share_the_port(supervised):
    server = supervised("--workers", "2", "--reuse-port")
    pids = set(server.ready_pids())
    seen = set()
    for _ in range(200):  # the kernel spreads new connections by a hash of their addresses
        seen.add(int(get(server.port)[1]))
        if seen == pids:
            break
    assert seen == pids
    assert server.stop() == 0


# ------------------------------------------------------------------------- failures


def test_kill_9_of_a_worker_under_load_fails_only_its_requests(supervised):
    server = supervised("--workers", "2")
    pids = server.ready_pids()
    # Slow requests until each worker holds at least two.
    slow, n = {}, 0
    while n < 60:
        tag = f"slow{n}"
        slow[tag] = in_background(get, server.port, f"/?tag={tag}&delay=3")
        server.wait_for(rf"start {tag} \d+")
        n += 1
        held = started_on(server, slow)
        if all(sum(1 for p in held.values() if p == pid) >= 2 for pid in pids):
            break
    load = Load(server.port)
    time.sleep(0.3)  # the load is running on both workers
    victim, survivor = pids
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    new = server.wait_for(r"worker (\d+) ready$")[0]
    assert time.monotonic() - killed_at < 2.0, "no new worker within 2 s"
    new_pid = int(new.group(1))
    time.sleep(0.3)
    load.stop()
    for thread, _ in slow.values():
        thread.join(15)

    held = started_on(server, set(slow) | {tag for tag, _, _ in load.results})
    for tag, (thread, result) in slow.items():
        if held[tag] == survivor:
            assert result.get("value") == (200, str(survivor)), (tag, result)
        else:
            assert "error" in result, (tag, result)
    for tag, err in load.failures():
        # A failed request was held by the victim, or accepted by it and not yet read.
        assert held.get(tag, victim) == victim, (tag, err)
    assert load.pids() <= {victim, survivor, new_pid}
    assert "died (killed by SIGKILL)" in server.output()
    assert server.stop() == 0


def test_a_killed_only_worker_is_replaced_and_waiting_clients_are_served(supervised):
    server = supervised("--workers", "1")
    (old,) = server.ready_pids()
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    # Connections made while no worker runs wait in the supervisor's listen queue.
    status, body = get(server.port, timeout=10)
    assert status == 200 and int(body) != old
    assert time.monotonic() - killed_at < 2.0
    assert server.stop() == 0


def test_quick_deaths_back_off(supervised):
    server = supervised("--workers", "1")
    (first,) = server.ready_pids()
    os.kill(first, signal.SIGKILL)
    server.wait_for(r"died \(killed by SIGKILL\) after [\d.]+ s; starting another$")
    second = int(server.wait_for(r"worker (\d+) ready$")[0].group(1))
    os.kill(second, signal.SIGKILL)  # within seconds of being ready: a quick death
    server.wait_for(r"starting another in 0\.5 s \(2 quick deaths in a row\)")
    server.wait_for(r"worker (\d+) ready$", count=2)
    assert server.stop() == 0


# ------------------------------------------------------------------------- signals


def test_sigterm_lets_in_flight_requests_finish(supervised):
    server = supervised("--workers", "2")
    pids = server.ready_pids()
    requests = {f"t{n}": in_background(get, server.port, f"/?tag=t{n}&delay=1") for n in range(6)}
    for tag in requests:
        server.wait_for(rf"start {tag} \d+")
    assert server.stop() == 0  # SIGTERM
    for tag, (thread, result) in requests.items():
        thread.join(10)
        assert result.get("value", (None, None))[0] == 200, (tag, result)
        assert int(result["value"][1]) in pids
    assert {int(m.group(1)) for m in server.wait_for(r"lifespan shutdown (\d+)", 2)} == set(pids)


def test_ctrl_c_to_the_process_group_is_one_graceful_stop(supervised):
    server = supervised("--workers", "2")
    server.ready_pids()
    thread, result = in_background(get, server.port, "/?tag=c&delay=1")
    server.wait_for(r"start c \d+")
    os.killpg(server.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl+C
    assert server.proc.wait(30) == 0
    server.stop()
    thread.join(10)
    assert result.get("value", (None,))[0] == 200, result
    assert "cutting" not in server.output()


def test_sighup_replaces_every_worker_without_a_failed_request(supervised):
    server = supervised("--workers", "2")
    old = set(server.ready_pids())
    load = Load(server.port)
    time.sleep(0.5)
    server.signal(signal.SIGHUP)
    for pid in old:
        server.wait_for(rf"worker {pid} stopped \(exit code 0\)")
    time.sleep(0.5)
    load.stop()
    assert load.failures() == []
    new = {int(m.group(1)) for m in server.wait_for(r"worker (\d+) ready, replacing", 2)}
    assert not new & old
    assert len(load.results) > 20
    assert {pid for _, pid, _ in load.results[-8:]} <= new
    assert server.stop() == 0


def test_sigttin_adds_and_sigttou_removes_a_worker(supervised):
    server = supervised("--workers", "1")
    (first,) = server.ready_pids()
    server.signal(signal.SIGTTIN)
    added = int(server.wait_for(r"worker (\d+) ready$")[0].group(1))
    assert added != first
    server.signal(signal.SIGTTOU)
    server.wait_for(rf"SIGTTOU: stopping worker {added} \(1 left\)")
    server.wait_for(rf"worker {added} stopped")
    server.signal(signal.SIGTTOU)
    server.wait_for(r"SIGTTOU: keeping the last worker")
    assert int(get(server.port)[1]) == first
    assert server.stop() == 0


# ------------------------------------------------------------------------- replacement


def test_limit_max_requests_replaces_the_worker_without_a_failure(supervised):
    server = supervised("--workers", "1", "--limit-max-requests", "5")
    (first,) = server.ready_pids()
    results = [get(server.port) for _ in range(5)]
    assert all(status == 200 for status, _ in results)
    server.wait_for(rf"worker {first} stopped")
    status, body = get(server.port)
    assert status == 200 and int(body) != first
    assert server.stop() == 0


def test_limit_max_requests_without_workers_stops_the_server(impl):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "refserver", "--app-dir", "tests", "worker_apps:asgi", "--impl",
         impl, "--port", str(port), "--limit-max-requests", "3"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        from support import wait_for_port

        wait_for_port("127.0.0.1", port, proc=proc)
        for _ in range(3):
            assert get(port)[0] == 200
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "served 3 requests (--limit-max-requests); stopping" in err.decode()


def test_workers_lifetime_replaces_workers_without_a_failure(supervised):
    server = supervised("--workers", "1", "--workers-lifetime", "1")
    (first,) = server.ready_pids()
    load = Load(server.port, clients=2)
    server.wait_for(rf"replacing worker {first}: --workers-lifetime 1 s")
    server.wait_for(rf"worker {first} stopped \(exit code 0\)")
    time.sleep(0.3)
    load.stop()
    assert load.failures() == []
    assert len(load.pids()) >= 2
    assert server.stop() == 0


def test_workers_max_rss_replaces_a_worker_that_grew(supervised):
    server = supervised("--workers", "1", "--workers-max-rss", "150")
    (first,) = server.ready_pids()
    assert get(server.port, "/?grow=200") == (200, str(first))
    server.wait_for(rf"replacing worker {first}: \d+ MiB resident, over --workers-max-rss 150")
    server.wait_for(rf"worker {first} stopped")
    assert int(get(server.port)[1]) != first
    assert server.stop() == 0
