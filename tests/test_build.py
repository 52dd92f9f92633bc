"""Installing without a C compiler: the fast path is optional, the server is not.

``pip install .`` on a machine with no compiler must still install a working refserver that runs the
pure-Python reference path, say at build time why the fast path is missing, and say it again when
``--impl auto`` falls back. This builds a wheel the way pip does (build isolation, so setuptools and
Cython come from the project's build requirements) from a copy of the sources with no generated C
and no compiled modules, with ``CC`` pointing at a compiler that always fails.
"""

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile

from support import ROOT, free_port, wait_for_port

#: What a source checkout holds that a build reads (``.gitignore`` keeps build products out of it).
SOURCES = ("setup.py", "pyproject.toml", "README.md", "refserver")
BUILD_PRODUCTS = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.pyc")

APP = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"pure"})
"""


def test_a_build_without_a_compiler_installs_the_pure_path(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        origin = os.path.join(ROOT, name)
        if os.path.isdir(origin):
            shutil.copytree(origin, source / name, ignore=BUILD_PRODUCTS)
        else:
            shutil.copy(origin, source / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFSERVER_")}
    env.update(CC="false", CXX="false", LDSHARED="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"),
         str(source)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-4000:]
    # The compiler was tried (the C sources were generated) and its failure reported.
    assert "could not build refserver._speedups (CompileError" in output, output[-4000:]
    assert "refserver is installed without its fast path" in output

    (wheel,) = (tmp_path / "dist").iterdir()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert "refserver/server.py" in names
    assert "refserver/conformance/clauses.json" in names
    assert "refserver/py.typed" in names  # PEP 561: type checkers read the package's annotations
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names

    # The installed copy, not the checkout: -S keeps this environment's editable install of the
    # checkout out of the way, and the environment's own libraries are added by hand.
    (tmp_path / "hello.py").write_text(APP)
    libraries = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
    run_env = dict(env, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), *libraries]))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-S", "-m", "refserver", "hello:app", "--port", str(port)],
        cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, proc=server)
        answer = subprocess.run(
            ["curl", "-sS", f"http://127.0.0.1:{port}/"], capture_output=True, timeout=10, check=True
        )
        assert answer.stdout == b"pure"
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=15)
    log = (out + err).decode()
    assert server.returncode == 0, log
    assert "fast path not available" in log and "using the pure-Python reference path" in log, log
    assert f"running on http://127.0.0.1:{port} (interface asgi, impl pure, loop asyncio, " in log
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import refserver; print(refserver.__file__)"],
        cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(tmp_path / "site")), where
