"""refserver behind a real nginx, with --proxy-headers (spec/server.md, SERVER-PROXY-*).

nginx (the Debian package; .ci/run installs it) is started by each test in the foreground with
its own configuration in a temporary directory: TLS on a free loopback port, proxying to
refserver in cleartext with the usual forwarding fields. The test client connects to nginx from
127.0.0.2 while nginx reaches refserver from 127.0.0.1, which is the only trusted peer, so each
fact the application reports can only have come from the forwarding fields:

* the client address is 127.0.0.2 (nginx's ``$proxy_add_x_forwarded_for`` appended it to the
  ``X-Forwarded-For`` the client forged, and the rightmost untrusted hop is taken);
* the scheme is https (``X-Forwarded-Proto $scheme``) although refserver serves cleartext;
* the host is the one the client asked nginx for (``X-Forwarded-Host $http_host``), while nginx
  sends refserver its own upstream address as ``Host``.

The same forged ``X-Forwarded-For`` sent straight to refserver from 127.0.0.2 moves nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pytest

pytest.register_assert_rewrite("h2_helpers")
from proxy_apps import APPS
from support import ROOT, free_port, serve, start_cli, wait_for_port

pytestmark = pytest.mark.timeout(60)
pytest_plugins = ("h2_helpers",)

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
CLIENT_ADDRESS = "127.0.0.2"  # the test client; nginx reaches refserver from 127.0.0.1
FORGED = "198.51.100.7"

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certfile};
        ssl_certificate_key {keyfile};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}
}}
"""


@pytest.fixture(params=["asgi", "rsgi", "wsgi"])
def interface(request):
    return request.param


class Nginx:
    """nginx in the foreground, stopped (SIGQUIT, then SIGKILL) when the ``with`` ends."""

    def __init__(self, tmp_path, upstream: int, certs):
        self.tmp = str(tmp_path)
        self.port = free_port()
        self.conf = os.path.join(self.tmp, "nginx.conf")
        with open(self.conf, "w") as file:
            file.write(CONFIG.format(tmp=self.tmp, port=self.port, upstream=upstream,
                                     certfile=certs.cert_file, keyfile=certs.key_file))
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.tmp, "-c", self.conf, "-e", os.path.join(self.tmp, "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited at start: {self.proc.stderr.read().decode()}"
                            f"{self._log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)  # polling for readiness
        pytest.fail("nginx did not listen within 10 s" + self._log())

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stderr.close()

    def _log(self) -> str:
        try:
            with open(os.path.join(self.tmp, "error.log")) as file:
                return "\n" + file.read()[-2000:]
        except OSError:
            return ""


def client(certs, **options):
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=certs.client_context())
    return httpx.Client(transport=transport, timeout=10, **options)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
def test_behind_nginx_the_app_sees_the_original_client_scheme_and_host(
    impl, interface, certs, tmp_path
):
    with serve(APPS[interface], impl=impl, interface=interface, proxy_headers=True,
               forwarded_allow_ips="127.0.0.1") as srv:
        with Nginx(tmp_path, srv.port, certs) as nginx, client(certs) as http:
            response = http.get(
                f"https://127.0.0.1:{nginx.port}/",
                headers={"Host": "public.example", "X-Forwarded-For": FORGED},
            )
            assert response.status_code == 200, response.text
            facts = response.json()
            assert facts["client"][0] == CLIENT_ADDRESS
            assert facts["client"][0] != FORGED
            assert facts["scheme"] == "https"
            assert facts["host"] == "public.example"
            if interface == "wsgi":
                assert facts["raw"]["HTTPS"] == "on"
            if interface == "rsgi":
                assert facts["raw"]["authority"] == facts["raw"]["host_header"] == "public.example"

        # Straight to refserver from an address it does not trust: the forgery moves nothing.
        with httpx.Client(transport=httpx.HTTPTransport(local_address=CLIENT_ADDRESS),
                          timeout=10) as direct:
            facts = direct.get(
                f"http://127.0.0.1:{srv.port}/",
                headers={"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "https",
                         "X-Forwarded-Host": "public.example"},
            ).json()
        assert facts["client"][0] == CLIENT_ADDRESS
        assert facts["scheme"] == "http"
        assert facts["host"] == f"127.0.0.1:{srv.port}"


# ------------------------------------------------------------------ the deployment guide's setup


def _guide_blocks() -> tuple:
    """The refserver command and the nginx configuration of docs/deployment.md's "Behind nginx"."""
    with open(os.path.join(ROOT, "docs", "deployment.md"), encoding="utf-8") as file:
        section = file.read().split("## Behind nginx", 1)[1]
    command = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    config = re.search(r"```nginx\n(.*?)```", section, re.S).group(1)
    return shlex.split(command.replace("\\\n", " ")), config


def _nginx_version() -> tuple:
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=10).stderr
    return tuple(int(n) for n in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out).groups())


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
def test_the_deployment_guides_nginx_setup_passes_the_client_and_scheme(impl, certs, tmp_path):
    """The guide's command and nginx block, as written but for paths, ports and the worker
    count: the application behind the UNIX socket sees the client's address and https. A guide
    that forgets --proxy-headers (or the unix peer's trust) fails here."""
    argv, block = _guide_blocks()
    assert argv[:4] == ["python", "-m", "refserver", "app:app"], argv
    sock = str(tmp_path / "app.sock")
    argv = [sock if arg == "/run/app/app.sock" else "2" if arg == "4" else arg for arg in argv[4:]]
    assert sock in argv and "--workers" in argv
    port = free_port()
    block = block.replace("unix:/run/app/app.sock", f"unix:{sock}")
    block = block.replace("/etc/app/fullchain.pem", str(certs.cert_file))
    block = block.replace("/etc/app/privkey.pem", str(certs.key_file))
    if _nginx_version() >= (1, 25, 1):
        block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    else:  # the form the guide gives for older nginx
        assert 'older: "listen 443 ssl http2;"' in block
        block = re.sub(r"http2 on;.*\n", "", block)
        block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl http2;")
    assert "443" not in block and "/run/" not in block and "/etc/" not in block, block
    tmp = str(tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        "events { worker_connections 64; }\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp}/cb;\nproxy_temp_path {tmp}/px;\n"
        f"fastcgi_temp_path {tmp}/fc;\nuwsgi_temp_path {tmp}/uw;\nscgi_temp_path {tmp}/sc;\n"
        f"{block}\n}}\n"
    )
    server = start_cli("proxy_apps:asgi_app", "--app-dir", os.path.join(ROOT, "tests"),
                       "--impl", impl, "--no-access-log", *argv)
    nginx = None
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):  # polling for readiness
            assert server.poll() is None, server.communicate()[1].decode()
            assert time.monotonic() < deadline, "refserver did not create its socket"
            time.sleep(0.02)
        nginx = subprocess.Popen([NGINX, "-p", tmp, "-c", str(conf), "-e", f"{tmp}/error.log"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        wait_for_port("127.0.0.1", port, proc=nginx)
        with client(certs) as http:
            response = http.get(f"https://127.0.0.1:{port}/", headers={"X-Forwarded-For": FORGED})
        assert response.status_code == 200, response.text
        facts = response.json()
        assert (facts["client"] or [None])[0] == CLIENT_ADDRESS, facts
        assert facts["scheme"] == "https", facts
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
            nginx.stderr.close()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0
