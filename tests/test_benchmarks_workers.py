"""benchmarks/workers.py keeps working (nothing here is timed): a one-second run against refserver
with two workers, on the pure path with shared sockets and on the fast path with SO_REUSEPORT,
gives every figure it promises and leaves no server behind; a Ctrl+C stops the server in hand;
``ss`` output is read as the kernel gives it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from support import ROOT

from benchmarks import run, workers

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="/proc and ss of Linux"),
    pytest.mark.skipif(shutil.which("wrk") is None,
                       reason="wrk is not installed (apt-get install wrk)"),
    pytest.mark.skipif(shutil.which("ss") is None,
                       reason="ss is not installed (apt-get install iproute2)"),
]

SCRIPT = os.path.join(ROOT, "benchmarks", "workers.py")
QUICK = ["--warmup", "0", "--connections", "8", "--quiet-wait", "0", "--noise-retries", "0"]

# ss -H -t -n -e -i: a socket's line, then its tcp_info line (cut short here).
SS_ESTABLISHED = """\
0      0      127.0.0.1:18125    127.0.0.1:53184 ino:6825242 sk:1 cgroup:/ <->
\t ts sack bbr wscale:10,10 rto:204 mss:32768 bytes_sent:641334 bytes_received:199219
0      119    127.0.0.1:18125    127.0.0.1:53194 timer:(on,204ms,0) ino:6825243 sk:4 <->
\t ts sack cubic wscale:10,10 rto:204 rtt:0.1/0.05 mss:32768 segs_out:1 segs_in:2
0      0      127.0.0.1:18125    127.0.0.1:53172 ino:6825241 sk:2 cgroup:/ <->
\t ts sack bbr wscale:10,10 rto:204 rtt:0.122/0.151 mss:32768 bytes_received:41
"""


def test_ss_output_is_read_per_socket():
    assert workers.parse_ss(SS_ESTABLISHED) == {6825242: 199219, 6825243: 0, 6825241: 41}
    listening = "0      2048       127.0.0.1:18125      0.0.0.0:* ino:6824000 sk:9 cgroup:/ <->\n"
    assert workers.parse_ss(listening) == {6824000: 0}


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped by its parent has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def test_one_second_run_reports_every_figure(tmp_path):
    output = tmp_path / "workers.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--targets", "refserver-pure-asgi,refserver-fast-asgi-reuseport",
         "--duration", "1", *QUICK, "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wrk runs on the same cores as the server" in proc.stdout
    record = json.loads(output.read_text())
    cells = {c["target"]: c for c in record["cells"]}
    assert set(cells) == {"refserver-pure-asgi", "refserver-fast-asgi-reuseport"}
    fast = cells["refserver-fast-asgi-reuseport"]
    if fast["status"] == "skipped":  # a source tree without the compiled fast path
        assert "fast path not available" in fast["reason"]
    measured = [c for c in cells.values() if c["status"] == "ok"]
    assert cells["refserver-pure-asgi"] in measured
    for cell in measured:
        m = cell["metrics"]
        assert ("--reuse-port" in m["command"]) == cell["target"].endswith("-reuseport")
        assert m["requests"] > 0 and m["error_count"] == 0
        assert 0 < m["machine_busy"] <= 1.05
        assert m["server_cpu_s"] > 0 and m["requests_per_cpu_s"] > 0
        assert m["server_share"] > 0 and m["client_share"] > 0
        pids = [w["pid"] for w in m["workers"]]
        assert len(set(pids)) == 2
        assert m["worker_sample_error"] is None
        # Every wrk connection was held by one of the two workers when sampled.
        assert sum(w["connections"] for w in m["workers"]) == 8
        assert sum(w["request_share"] for w in m["workers"]) == pytest.approx(1.0)
        assert sum(w["cpu_share"] for w in m["workers"]) == pytest.approx(1.0)
        assert m["server_exit_code"] == 0
        assert all(_gone(pid) for pid in pids)
    assert "| refserver-pure-asgi |" in record["table_markdown"]


def test_ctrl_c_stops_the_server_in_hand(tmp_path):
    output = tmp_path / "workers.json"
    script = subprocess.Popen(
        [sys.executable, SCRIPT, "--targets", "refserver-pure-asgi", "--duration", "60", *QUICK,
         "--output", str(output)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        servers: list = []
        commands: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and script.poll() is None:
            tree = run.process_tree(script.pid)
            commands = {p: _cmdline(p) for p in tree}
            servers = [p for p, c in commands.items()
                       if c and re.search(r"-m refserver|refserver\.worker", " ".join(c))]
            loaded = any(c and os.path.basename(c[0]) == "wrk" for c in commands.values())
            if loaded and len(servers) == 3:
                break
            time.sleep(0.1)  # poll interval
        assert len(servers) == 3, f"no supervisor and two workers under load: {commands}"
        script.send_signal(signal.SIGINT)
        out, _ = script.communicate(timeout=60)
    finally:
        if script.poll() is None:  # the test failed first: the script stops its server itself
            script.send_signal(signal.SIGINT)
            try:
                script.wait(30)
            except subprocess.TimeoutExpired:
                script.kill()
                script.wait()
    assert script.returncode == 130, out
    assert "interrupted" in out
    assert all(_gone(pid) for pid in servers), out
    assert output.exists()


def _cmdline(pid: int) -> list | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
