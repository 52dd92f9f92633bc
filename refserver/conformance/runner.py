"""Start a server command with a probe application, run cases against it over real sockets.

A target is any command line with ``{app}``, ``{port}`` (and optionally ``{interface}``,
``{python}``, ``{host}``; with ``--tls``, ``{certfile}`` and ``{keyfile}``) in it; ``refserver``
followed by extra options is shorthand for refserver's own command. Only 127.0.0.1 is ever
contacted. What the target offers (HTTP/1.1, WebSockets, HTTP/2, TLS) is found out once it
answers, and the cases that need something else are skipped with the reason.

Cases of one interface run concurrently, each on its own connection(s), with short deadlines, so a
server that hangs on hostile input costs a few seconds, not the run. Cases that need a different
application (lifespan variants) or that look at what happened at shutdown get their own server
start, and run after the main batch.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, NoReturn

from . import client as wire
from . import ws as ws_steps
from .cases import request_bytes, substitute
from .expect import check_head, check_observation, check_response, lookup, parse_observation
from .transport import CLEARTEXT, Transport

if TYPE_CHECKING:
    from .h2client import H2Client

HOST = "127.0.0.1"
PROBES = {
    "asgi": "refserver.conformance.probes.asgi_probe",
    "rsgi": "refserver.conformance.probes.rsgi_probe",
    "wsgi": "refserver.conformance.probes.wsgi_probe",
}
REFSERVER_COMMAND = (
    "{python} -m refserver {app} --interface {interface} --port {port} --host 127.0.0.1 "
    "--no-access-log"
)
REFSERVER_TLS = " --ssl-certfile {certfile} --ssl-keyfile {keyfile}"


class TargetError(Exception):
    """The target could not be started (its log tail is in the message)."""


class TargetSpec:
    """A server command template and a label for reports."""

    def __init__(self, command: str, label: str | None = None, tls: bool = False):
        command = command.strip()
        if command == "refserver" or command.startswith("refserver "):
            extra = command[len("refserver") :].strip()
            self.label = label or ("refserver " + extra).strip()
            command = REFSERVER_COMMAND + (REFSERVER_TLS if tls else "")
            command += " " + extra if extra else ""
        else:
            self.label = label or command
        if "{port}" not in command or "{app}" not in command:
            raise ValueError("a server command must contain {port} and {app}: %r" % command)
        if tls and ("{certfile}" not in command or "{keyfile}" not in command):
            raise ValueError(
                "with --tls a server command must contain {certfile} and {keyfile}: %r" % command
            )
        self.command = command

    def argv(self, interface: str, app: str, port: int, transport: Transport = CLEARTEXT) -> list:
        text = self.command.format(
            python=shlex.quote(sys.executable),
            app=app,
            port=port,
            interface=interface,
            host=HOST,
            **{k: shlex.quote(v) for k, v in transport.placeholders().items()},
        )
        return shlex.split(text)

    def __repr__(self) -> str:
        return f"TargetSpec({self.label!r})"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ping(port: int, timeout: float = 1.0, tls=None) -> bool:
    """Whether the probe answers an HTTP/1.1 request on ``port``."""
    try:
        conn = wire.Connection(HOST, port, timeout, tls)
    except OSError:
        return False
    try:
        conn.send(b"GET /__probe__/ping HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST.encode(), port))
        response = conn.read_response(timeout=timeout)
        return response.status == 200 and response.body == b"pong"
    except (wire.ClientError, OSError):
        return False
    finally:
        conn.close()


def ws_accepted(port: int, timeout: float, tls=None) -> str | None:
    """None when the probe accepts a WebSocket handshake, else what happened instead."""
    try:
        conn = wire.Connection(HOST, port, timeout, tls)
    except OSError as exc:
        return f"cannot connect: {exc}"
    try:
        conn.send(ws_steps.handshake_bytes({"target": "/ws/echo"}, {"HOST": f"{HOST}:{port}"}))
        head = conn.read_head_only()
        if head.status == 101:
            return None
        return f"it answered a WebSocket handshake with {head.status} {head.reason}".rstrip()
    except (wire.ClientError, OSError) as exc:
        return f"no answer to a WebSocket handshake: {exc}"
    finally:
        conn.close()


def _h2_refusal(port: int, timeout: float, tls) -> str | None:
    from . import h2client

    return h2client.refusal(HOST, port, timeout, tls)


def probe_answer(port: int, transport: Transport) -> str | None:
    """How the probe on ``port`` answers, if it does: ``"yes"``, or ``"cleartext"`` when a run
    under ``--tls`` finds it answering in cleartext instead (its cases are then skipped rather
    than waited on until the timeout)."""
    if ping(port, 0.5, transport.context("http/1.1")):
        return "yes"
    if transport.http2 and _h2_refusal(port, 0.5, transport.context("h2")) is None:
        return "yes"
    if transport.tls and ping(port, 0.5):
        return "cleartext"
    return None


class Capabilities:
    """What a target was found to offer; a case that needs anything else is skipped, with why."""

    def __init__(self, missing: dict | None = None):
        self.missing = dict(missing or {})  # need -> reason

    @classmethod
    def detect(cls, port: int, transport: Transport, cases: list, timeout: float = 3.0):
        needs = set().union(*(case.needs for case in cases)) if cases else set()
        missing = {}
        if transport.tls:
            missing["cleartext"] = (
                "runs in cleartext only (a TCP half-close, or an expectation TLS changes)"
            )
        else:
            missing["tls"] = "runs over TLS only (--tls)"
        h1 = ping(port, timeout, transport.context("http/1.1"))
        if not h1:
            missing["h1"] = "the target does not answer HTTP/1.1"
            missing["ws"] = "the target does not answer HTTP/1.1, so no WebSocket handshake"
        elif "ws" in needs:
            refused = ws_accepted(port, timeout, transport.context("http/1.1"))
            if refused:
                missing["ws"] = f"the target does not do WebSockets: {refused}"
        if "h2" in needs:
            from . import h2client  # hpack and hyperframe, only for HTTP/2 cases

            refused = h2client.refusal(HOST, port, timeout, transport.context("h2"))
            if refused:
                way = "with ALPN h2" if transport.tls else "with prior knowledge (h2c)"
                missing["h2"] = f"the target does not speak HTTP/2 {way}: {refused}"
        return cls(missing)

    def skip_reason(self, case) -> str | None:
        for need in sorted(case.needs):
            if need in self.missing:
                return self.missing[need]
        return None


def _protocol_hint(transport: Transport) -> str:
    hints = [] if transport.http2 else ["--http2 if it speaks only HTTP/2"]
    hints += [] if transport.tls else ["--tls if it serves only TLS"]
    return f" (add {', '.join(hints)})" if hints else ""


def wait_connected(port: int, transport: Transport, timeout: float) -> str:
    """The probe's answer on a port the user named with ``--connect``, once it gives one.

    A server started in the background just before the runner (as a CI step does) may not
    listen yet: without the wait every case would be skipped as "not answering HTTP/1.1" and
    the run would pass having checked nothing."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe_answer(port, transport)
        if answer:
            return answer
        if time.monotonic() >= deadline:
            raise TargetError(
                f"nothing answered as the probe on {HOST}:{port} within {timeout:.0f}s: start "
                f"the server with the probe application of the interface first"
                f"{_protocol_hint(transport)}"
            )
        time.sleep(0.1)


class RunningTarget:
    """One server process started from a :class:`TargetSpec`."""

    def __init__(
        self,
        spec: TargetSpec,
        interface: str,
        app_attr: str = "app",
        transport: Transport = CLEARTEXT,
    ):
        self.spec = spec
        self.interface = interface
        self.transport = transport
        self.cleartext_only = False  # under --tls: it answered, but in cleartext
        self.app = f"{PROBES[interface]}:{app_attr}"
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="refserver-conformance-")
        self.log_path = os.path.join(self.workdir, "server.log")
        self.report_path = os.path.join(self.workdir, "report.json")
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    @property
    def process(self) -> subprocess.Popen:
        """The server's process, which exists once :meth:`start` has run."""
        assert self.proc is not None, "the target is not started"
        return self.proc

    def start(self) -> None:
        env = dict(os.environ)
        env["REFSERVER_PROBE_REPORT"] = self.report_path
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = self.spec.argv(self.interface, self.app, self.port, self.transport)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed when the target stops
        try:
            self.proc = subprocess.Popen(
                argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise TargetError(f"cannot run {argv[0]!r}: {exc}") from None

    def wait_ready(self, timeout: float) -> bool:
        """True once the probe answers; False if the process exited first. Raises at timeout.

        The probe may answer over HTTP/1.1 or, with ``--http2``, over HTTP/2 only; under
        ``--tls`` an answer in cleartext also ends the wait (``cleartext_only``), so the cases
        are skipped as needing TLS instead of waiting for the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            answer = probe_answer(self.port, self.transport)
            if answer:
                self.cleartext_only = answer == "cleartext"
                return True
            time.sleep(0.05)
        raise TargetError(
            f"{self.spec.label}: not answering on {HOST}:{self.port} after {timeout:.0f}s"
            f"{_protocol_hint(self.transport)}\n" + self.log_tail()
        )

    def wait_exit(self, timeout: float):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0):
        """SIGTERM (a graceful stop on every server we know), then SIGKILL the process group."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(5)
        self._kill_group()  # workers a server left behind
        self.returncode = self.proc.returncode
        self._log.close()
        return self.returncode

    def _kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def report(self):
        try:
            with open(self.report_path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None


class Endpoint:
    """Where cases connect: a started target, or a server the user started (``--connect``)."""

    def __init__(self, port: int, transport: Transport = CLEARTEXT):
        self.port = port
        self.transport = transport


# ------------------------------------------------------------------------------------ results


class CaseResult:
    __slots__ = ("case", "interface", "outcome", "reason", "transcript", "duration", "wire")

    def __init__(
        self, case, interface, outcome, reason="", transcript=None, duration=0.0, wire=None
    ):
        self.case = case
        self.interface = interface
        self.outcome = outcome  # "pass" | "fail" | "skip"
        self.reason = reason
        self.transcript = transcript or []
        self.duration = duration
        # A failed case's bytes on the wire, one record per connection (client.wire_record).
        self.wire = wire or []

    def to_dict(self) -> dict:
        return {
            "case": self.case.id,
            "interface": self.interface,
            "clauses": self.case.clauses,
            "hostile": self.case.hostile,
            "source": self.case.source,
            "title": self.case.title,
            "rfc": self.case.rfc,
            "outcome": self.outcome,
            "reason": self.reason,
            "duration": round(self.duration, 4),
            "transcript": self.transcript,
            **({"wire": self.wire} if self.wire else {}),
        }


class StepFailed(Exception):
    pass


# ------------------------------------------------------------------------------------ normalising


def normalise(value, replacements: dict):
    """Replace run-specific numbers and tokens (ports, the nonce) so two runs compare equal."""
    if isinstance(value, str):
        for old, new in replacements.items():
            if old in value:
                value = value.replace(old, new)
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return replacements.get(str(value), value)
    if isinstance(value, list):
        return [normalise(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: normalise(item, replacements) for key, item in value.items()}
    return value


def drop_paths(data, paths) -> None:
    for path in paths:
        parent_path, _, last = path.rpartition(".")
        parent = lookup(data, parent_path) if parent_path else data
        if isinstance(parent, dict):
            parent.pop(last, None)


def response_record(response, replacements: dict, volatile) -> dict:
    record = {
        "status": response.status,
        "version": response.version,
        "interim": [r.status for r in response.interim],
        "chunked": response.chunked,
        "close_delimited": response.close_delimited,
    }
    observation = (
        parse_observation(response) if (response.header("x-probe") == "observation") else None
    )
    headers = []
    for name, value in response.headers:
        lname = name.lower()
        if lname == "date":
            value = "<date>"
        elif lname == "content-length" and observation is not None:
            value = "<observation length>"
        headers.append([lname, value])
    record["headers"] = headers
    if observation is not None:
        observation = normalise(observation, replacements)
        drop_paths(observation, volatile)
        record["observation"] = observation
    else:
        record["body"] = normalise(response.body.decode("latin-1"), replacements)
    return record


# ------------------------------------------------------------------------------------ execution


class CaseRun:
    """The execution of one case on one endpoint."""

    def __init__(self, case, interface: str, endpoint: Endpoint, run_token: str):
        self.case = case
        self.interface = interface
        self.endpoint = endpoint
        self.nonce = f"{case.id}-{run_token}"
        port = endpoint.port
        transport = endpoint.transport
        self.variables = {
            "NONCE": self.nonce,
            "HOST": f"{HOST}:{port}",
            "PORT": str(port),
            "SCHEME": transport.scheme,
            "WS_SCHEME": transport.ws_scheme,
        }
        self.replacements = {self.nonce: "<nonce>", str(port): "<port>"}
        self.timeout = case.timeout
        self.conn: wire.Connection | None = None
        self.h2: H2Client | None = None  # the HTTP/2 connection of an HTTP/2 case
        self.heads: list = []
        self.transcript: list = []
        self.connections: list = []  # every connection opened, for the wire record of a failure

    # --------------------------------------------------------------- helpers

    def connect(self) -> wire.Connection:
        tls = self.endpoint.transport.context("http/1.1")
        conn = wire.Connection(HOST, self.endpoint.port, self.timeout, tls)
        self.replacements[str(conn.local_port)] = "<client-port>"
        self.connections.append(conn)
        return conn

    def _ensure(self) -> wire.Connection:
        conn = self.conn
        if conn is None:
            conn = self.conn = self.connect()
        return conn

    def fail(self, message: str) -> NoReturn:
        raise StepFailed(message)

    def log(self, entry: dict) -> None:
        self.transcript.append(entry)

    # --------------------------------------------------------------- the run

    def run(self) -> CaseResult:
        started = time.monotonic()
        try:
            for index, step in enumerate(self.case.steps):
                try:
                    self.step(step)
                except (StepFailed, OSError) as exc:
                    detail = str(exc) if isinstance(exc, StepFailed) else f"socket error: {exc}"
                    reason = f"step {index + 1}: {detail}" + self._smuggling_after_failure(index)
                    return self._result("fail", reason, started)
            return self._result("pass", "", started)
        finally:
            if self.conn is not None:
                self.conn.close()
            if self.h2 is not None:
                self.h2.close()

    def _smuggling_after_failure(self, failed_at: int) -> str:
        """Whether a smuggled request got through matters more than the step that failed first,
        so the case's ``not_reached`` checks still run and their verdict joins the reason."""
        notes = []
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        for step in self.case.steps[failed_at + 1 :]:
            if "not_reached" in step:
                try:
                    self.do_not_reached(step["not_reached"])
                    notes.append("the smuggled request did not reach the application")
                except (StepFailed, OSError) as exc:
                    notes.append(str(exc))
        return "".join(f"; {note}" for note in notes)

    def _result(self, outcome: str, reason: str, started: float) -> CaseResult:
        record = [conn.wire_record() for conn in self.connections] if outcome == "fail" else []
        return CaseResult(
            self.case,
            self.interface,
            outcome,
            reason,
            self.transcript,
            time.monotonic() - started,
            record,
        )

    def step(self, step: dict) -> None:
        if "send" in step:
            self.do_send(step)
        elif "expect" in step:
            self.do_expect(step["expect"])
        elif "interim" in step:
            self.do_interim(int(step["interim"]))
        elif "closed" in step:
            self.do_closed(step.get("within", self.timeout))
        elif "open" in step:
            self.do_open()
        elif "silent" in step:
            self.do_silent(float(step["silent"]))
        elif "shutdown_write" in step:
            self._ensure().shutdown_write()
        elif "close" in step:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        elif "sleep" in step:
            time.sleep(float(step["sleep"]))
        elif "check" in step:
            self.do_check(step["check"])
        elif "not_reached" in step:
            self.do_not_reached(step["not_reached"])
        elif "ws_handshake" in step:
            ws_steps.do_handshake(self, step["ws_handshake"])
        elif "ws_send" in step:
            ws_steps.do_send(self, step["ws_send"])
        elif "ws_expect" in step:
            ws_steps.do_expect(self, step["ws_expect"])
        else:
            from . import h2client

            h2client.do_step(self, step)

    def do_send(self, step: dict) -> None:
        conn = self._ensure()
        requests = step["send"] if isinstance(step["send"], list) else [step["send"]]
        encoded = [request_bytes(r, self.variables) for r in requests]
        self.heads.extend(is_head for _, is_head in encoded)
        if step.get("separately"):
            delay = float(step.get("delay", 0.05))
            for index, (data, _) in enumerate(encoded):
                if index:
                    time.sleep(delay)
                if not conn.send(data):
                    self.log({"kind": "send", "delivered": False})
                    return
        else:
            if not conn.send(b"".join(data for data, _ in encoded)):
                self.log({"kind": "send", "delivered": False})
                return

    def do_expect(self, expect: dict) -> None:
        expect = substitute(expect, self.variables)
        conn = self._ensure()
        head = self.heads.pop(0) if self.heads else False
        head = expect.get("head", head)
        try:
            response = conn.read_response(head_request=head)
        except wire.Closed as exc:
            if expect.get("incomplete") and exc.head is not None:
                self.log({"kind": "incomplete", **response_record(exc.head, self.replacements, ())})
                failures = check_head(exc.head, expect)
                if failures:
                    self.fail("; ".join(failures))
                return
            self.log({"kind": "error", "error": "closed", "partial": _text(exc.partial)})
            detail = f" after {_text(exc.partial)}" if exc.partial else ""
            self.fail(f"{exc}{detail}")
        except wire.Timeout as exc:
            self.log({"kind": "error", "error": "timeout"})
            detail = f"; received {_text(exc.partial)}" if exc.partial else ""
            self.fail(f"no complete response within {self.timeout:g}s{detail}")
        except wire.Malformed as exc:
            self.log({"kind": "error", "error": "malformed", "detail": str(exc)})
            self.fail(f"malformed response: {exc}")
        self.log(
            {"kind": "response", **response_record(response, self.replacements, self.case.volatile)}
        )
        if expect.get("incomplete"):
            self.fail(
                f"expected the connection to be dropped inside the body, got a complete "
                f"{response.status} response"
            )
        if expect.get("ignore_body"):
            expect = {k: v for k, v in expect.items() if not k.startswith("body")}
        failures = check_response(response, expect)
        if failures:
            self.fail("; ".join(failures))

    def do_interim(self, status: int) -> None:
        conn = self._ensure()
        try:
            head = conn.read_head_only()
        except wire.ClientError as exc:
            self.log({"kind": "interim", "error": exc.kind})
            self.fail(f"no {status} interim response: {exc}")
        self.log({"kind": "interim", "status": head.status})
        if head.status != status:
            self.fail(f"received {head.status} where a {status} interim response was expected")

    def do_closed(self, within: float) -> None:
        conn = self._ensure()
        try:
            extra = conn.wait_closed(within)
        except wire.Timeout as exc:
            self.log({"kind": "closed", "closed": False})
            partial = f" (and sent {_text(exc.partial)})" if exc.partial else ""
            self.fail(f"connection still open {within:g}s after the last response{partial}")
        self.log({"kind": "closed", "closed": True, "extra": _text(extra) if extra else ""})
        if extra:
            self.fail(f"unexpected bytes before the close: {_text(extra)}")

    def do_open(self) -> None:
        conn = self._ensure()
        if conn.eof:
            self.log({"kind": "open", "open": False})
            self.fail("the connection was closed, expected it to stay open")
        request = (
            b"GET /__probe__/ping HTTP/1.1\r\nHost: %s\r\n\r\n" % self.variables["HOST"].encode()
        )
        if not conn.send(request):
            self.log({"kind": "open", "open": False})
            self.fail("the connection was closed, expected it to stay open")
        try:
            response = conn.read_response()
        except wire.Closed:
            self.log({"kind": "open", "open": False})
            self.fail("the connection was closed, expected it to stay open")
        except wire.ClientError as exc:
            self.log({"kind": "open", "open": False})
            self.fail(f"no answer on the kept-alive connection: {exc}")
        self.log({"kind": "open", "open": response.status == 200})
        if response.status != 200 or response.body != b"pong":
            self.fail(
                f"kept-alive connection answered {response.status} {_text(response.body)} "
                "to a ping (is it still reading an earlier body?)"
            )

    def do_silent(self, seconds: float) -> None:
        conn = self._ensure()
        data = conn.quiet_for(seconds)
        self.log({"kind": "silent", "data": _text(data), "eof": conn.eof})
        if data:
            self.fail(f"expected silence, received {_text(data)}")

    def do_check(self, check: dict) -> None:
        check = substitute(check, self.variables)
        time.sleep(float(check.get("after", 0.05)))
        conn = self.connect()
        try:
            data, head = request_bytes(check["request"], self.variables)
            conn.send(data)
            try:
                response = conn.read_response(head_request=head)
            except wire.ClientError as exc:
                self.log({"kind": "check", "error": str(exc)})
                self.fail(f"check request failed: {exc}")
            record = response_record(response, self.replacements, self.case.volatile)
            self.log({"kind": "check", **record})
            failures = check_response(response, check.get("expect", {}))
            if failures:
                self.fail("check: " + "; ".join(failures))
        finally:
            conn.close()

    def do_not_reached(self, prefix: str) -> None:
        prefix = substitute(prefix, self.variables)
        time.sleep(0.05)
        try:
            body = self._ask_probe(f"/__probe__/seen?prefix={_quote(prefix)}")
        except (wire.ClientError, OSError) as exc:
            self.fail(f"could not ask the probe what it saw: {exc}")
        try:
            count = json.loads(body)["count"]
        except (ValueError, KeyError, TypeError):
            self.fail(f"bad answer from /__probe__/seen: {_text(body)}")
        self.log({"kind": "not_reached", "count": count})
        if count:
            what = "refused" if "h2" in self.case.needs else "smuggled"
            self.fail(f"a {what} request for {prefix} reached the application {count} time(s)")

    def _ask_probe(self, target: str) -> bytes:
        """The body of the probe's answer to a GET, on a new connection of the case's protocol."""
        if "h2" in self.case.needs:
            from . import h2client

            tls = self.endpoint.transport.context("h2")
            return h2client.fetch(HOST, self.endpoint.port, target, self.timeout, tls).body
        conn = self.connect()
        try:
            conn.send(
                b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                % (target.encode(), self.variables["HOST"].encode())
            )
            return conn.read_response().body
        finally:
            conn.close()


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="/")


def _text(data: bytes, limit: int = 200) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


# ------------------------------------------------------------------------------------ batches


class Runner:
    """Runs the cases of one interface against one target."""

    def __init__(
        self,
        spec: TargetSpec | None,
        interface: str,
        cases: list,
        *,
        jobs: int = 8,
        startup_timeout: float = 30.0,
        connect_port: int | None = None,
        log=None,
        transport: Transport = CLEARTEXT,
    ):
        self.spec = spec
        self.transport = transport
        self.capabilities = Capabilities()
        self.interface = interface
        self.cases = [c for c in cases if interface in c.interfaces]
        self.jobs = jobs
        self.startup_timeout = startup_timeout
        self.connect_port = connect_port
        self.run_token = uuid.uuid4().hex[:8]
        self.log = log or (lambda message: None)
        self.notes: list = []  # lines about the run itself (exit codes, log tails)

    def run(self) -> list:
        main = [c for c in self.cases if c.phase == "run" and c.app == "app" and not c.isolated]
        shutdown = [c for c in self.cases if c.phase == "shutdown"]
        others = [c for c in self.cases if c not in main and c not in shutdown]
        results = {}
        if self.connect_port is not None:
            endpoint = Endpoint(self.connect_port, self.transport)
            answer = wait_connected(self.connect_port, self.transport, self.startup_timeout)
            if answer == "cleartext":
                self.capabilities = self._cleartext_only()
            else:
                self.capabilities = Capabilities.detect(self.connect_port, self.transport, main)
            self._note_missing()
            for result in self._run_batch(main, endpoint):
                results[result.case.id] = result
            for case in shutdown + others:
                results[case.id] = CaseResult(
                    case,
                    self.interface,
                    "skip",
                    "needs to start and stop the server (not possible with --connect)",
                )
        else:
            assert self.spec is not None, "a target started here has its command"
            target = RunningTarget(self.spec, self.interface, transport=self.transport)
            self.log(f"[{self.interface}] starting {target.spec.label} on port {target.port}")
            target.start()
            try:
                if not target.wait_ready(self.startup_timeout):
                    raise TargetError(
                        f"{self.spec.label}: exited with code {target.process.returncode} before "
                        f"answering\n" + target.log_tail()
                    )
                if target.cleartext_only:
                    self.capabilities = self._cleartext_only()
                else:
                    self.capabilities = Capabilities.detect(target.port, self.transport, self.cases)
                self._note_missing()
                for result in self._run_batch(main, Endpoint(target.port, self.transport)):
                    results[result.case.id] = result
            finally:
                code = target.stop()
            self.notes.append(f"[{self.interface}] main server exited with code {code}")
            report = target.report()
            for case in shutdown:
                results[case.id] = self._check_report(case, report, code)
            groups: dict = {}
            for case in others:
                key = (case.app, case.id) if case.isolated else (case.app, "")
                groups.setdefault(key, []).append(case)
            for (app_attr, _), group in groups.items():
                for result in self._run_variant(app_attr, group):
                    results[result.case.id] = result
        return [results[c.id] for c in self.cases]

    @staticmethod
    def _cleartext_only() -> Capabilities:
        reason = "the target answered in cleartext, not over TLS"
        return Capabilities({need: reason for need in ("h1", "ws", "h2", "cleartext", "tls")})

    def _note_missing(self) -> None:
        for need, reason in sorted(self.capabilities.missing.items()):
            if any(need in case.needs for case in self.cases):
                self.notes.append(f"[{self.interface}] cases needing {need} skipped: {reason}")
                self.log(self.notes[-1])

    def _skipped(self, cases: list) -> tuple:
        """(cases to run, results of the cases the target cannot run)."""
        run, skipped = [], []
        for case in cases:
            reason = self.capabilities.skip_reason(case)
            if reason is None:
                run.append(case)
            else:
                skipped.append(CaseResult(case, self.interface, "skip", reason))
        return run, skipped

    def _run_batch(self, cases: list, endpoint: Endpoint) -> list:
        cases, skipped = self._skipped(cases)
        if not cases:
            return skipped
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            futures = [
                pool.submit(CaseRun(case, self.interface, endpoint, self.run_token).run)
                for case in cases
            ]
            return skipped + [future.result() for future in futures]

    def _check_report(self, case, report, exit_code) -> CaseResult:
        if report is None:
            return CaseResult(
                case,
                self.interface,
                "fail",
                f"the probe wrote no shutdown report (server exit code {exit_code})",
            )
        # The exit code joins the report, so a case can require a clean (0) exit.
        report = dict(report, exit_code=exit_code)
        failures = check_observation(report, case.report)
        shown = json.loads(json.dumps(report))
        drop_paths(shown, case.volatile)
        transcript = [{"kind": "report", "report": shown}]
        if failures:
            return CaseResult(case, self.interface, "fail", "; ".join(failures), transcript)
        return CaseResult(case, self.interface, "pass", "", transcript)

    def _run_variant(self, app_attr: str, group: list) -> list:
        group, results = self._skipped(group)
        if not group:
            return results
        assert self.spec is not None, "variants are started here, never with --connect"
        target = RunningTarget(self.spec, self.interface, app_attr, self.transport)
        self.log(f"[{self.interface}] starting {app_attr} on port {target.port}")
        startup = [c for c in group if c.phase == "startup"]
        runs = [c for c in group if c.phase == "run"]
        target.start()
        try:
            try:
                ready = target.wait_ready(min(self.startup_timeout, 15.0))
            except TargetError:
                ready = None  # neither serving nor exited
            for case in startup:
                results.append(self._check_startup_failure(case, target, ready))
            if runs:
                if ready:
                    results.extend(self._run_batch(runs, Endpoint(target.port, self.transport)))
                else:
                    reason = (
                        f"the server did not start with {app_attr} (exit code "
                        f"{target.process.poll()}): {target.log_tail(3)}"
                    )
                    results.extend(CaseResult(c, self.interface, "fail", reason) for c in runs)
        finally:
            target.stop()
        return results

    def _check_startup_failure(self, case, target, ready) -> CaseResult:
        if ready:
            return CaseResult(
                case,
                self.interface,
                "fail",
                "the server started serving although the application failed its startup",
            )
        code = target.wait_exit(case.timeout)
        transcript = [{"kind": "startup", "exit_code": code}]
        if code is None:
            return CaseResult(
                case,
                self.interface,
                "fail",
                f"the server neither served nor exited within {case.timeout:g}s",
                transcript,
            )
        if code == 0:
            return CaseResult(
                case,
                self.interface,
                "fail",
                "the server exited with code 0 after a failed startup",
                transcript,
            )
        return CaseResult(case, self.interface, "pass", "", transcript)
