"""--env-file and --log-config, through a real ``python -m refserver``."""

import json
import os
import signal
import textwrap
import time

import pytest
from support import ROOT, free_port, http_get, start_cli, wait_for_port

APP = '''
import os

# Read at import: the env file must be loaded before the application module is imported.
AT_IMPORT = os.environ.get("REFSERVER_TEST_X", "<unset>")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ("%s %s" % (AT_IMPORT, os.environ.get("REFSERVER_TEST_KEPT"))).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "env_app.py").write_text(APP)
    return tmp_path


def finish(proc, timeout=10):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def serve_once(app_dir, impl, *args, env=None, path="/"):
    """Start the server, make one request, stop it; the response and the server's stderr."""
    port = free_port()
    proc = start_cli("--app-dir", str(app_dir), "env_app:app", "--impl", impl,
                     "--port", str(port), *args, env=env)
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        response = http_get(port, path)
    finally:
        proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 0, err
    return response, err


def test_env_file_is_loaded_before_the_app_is_imported(impl, app_dir):
    env_file = app_dir / "app.env"
    env_file.write_text("REFSERVER_TEST_X=from-file\nREFSERVER_TEST_KEPT=from-file\n")
    response, _ = serve_once(app_dir, impl, "--env-file", str(env_file),
                             env={"REFSERVER_TEST_KEPT": "from-environment"})
    # A variable already in the environment is not replaced by the file.
    assert response == (200, b"from-file from-environment")


def test_refserver_options_in_the_env_file_do_not_configure_the_server(impl, app_dir):
    env_file = app_dir / "app.env"
    env_file.write_text("REFSERVER_TEST_X=1\nREFSERVER_ACCESS_LOG=false\n")
    _, err = serve_once(app_dir, impl, "--env-file", str(env_file), path="/still-logged")
    assert '"GET /still-logged HTTP/1.1" 200' in err


def wait_for_text(path, text, timeout=5.0):
    """The file's content once it holds ``text`` (a handler may flush after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.02)


def dict_config(log_file):
    return {
        "version": 1,
        "formatters": {"custom": {"format": "CUSTOM-ACCESS %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file),
                     "formatter": "custom"},
        },
        "loggers": {
            "refserver.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
        },
    }


def check_access_log_in_file(app_dir, impl, config_path, log_file):
    _, err = serve_once(app_dir, impl, "--log-config", str(config_path), path="/logged")
    content = wait_for_text(log_file, "/logged")
    assert 'CUSTOM-ACCESS 127.0.0.1:' in content
    assert '"GET /logged HTTP/1.1" 200' in content
    # Sent to the file only; the server's own messages still reach stderr.
    assert "/logged" not in err
    assert "running on http://127.0.0.1:" in err


def test_json_log_config_sends_the_access_log_to_a_file(impl, app_dir):
    log_file = app_dir / "access.log"
    config_path = app_dir / "logging.json"
    config_path.write_text(json.dumps(dict_config(log_file)))
    check_access_log_in_file(app_dir, impl, config_path, log_file)


def test_yaml_log_config_sends_the_access_log_to_a_file(impl, app_dir):
    yaml = pytest.importorskip("yaml")
    log_file = app_dir / "access.log"
    config_path = app_dir / "logging.yaml"
    config_path.write_text(yaml.safe_dump(dict_config(log_file)))
    check_access_log_in_file(app_dir, impl, config_path, log_file)


def test_ini_log_config_sends_the_access_log_to_a_file(impl, app_dir):
    log_file = app_dir / "access.log"
    config_path = app_dir / "logging.ini"
    config_path.write_text(textwrap.dedent(f"""\
        [loggers]
        keys=root,access

        [handlers]
        keys=file

        [formatters]
        keys=custom

        [logger_root]
        level=WARNING
        handlers=

        [logger_access]
        level=INFO
        handlers=file
        propagate=0
        qualname=refserver.access

        [handler_file]
        class=FileHandler
        formatter=custom
        args=({str(log_file)!r},)

        [formatter_custom]
        format=CUSTOM-ACCESS %(message)s
        """))
    check_access_log_in_file(app_dir, impl, config_path, log_file)


@pytest.mark.parametrize(
    "option, name, content, message",
    [
        ("--env-file", "missing.env", None, "--env-file"),
        ("--log-config", "missing.json", None, "--log-config"),
        ("--log-config", "broken.json", "{not json", "--log-config"),
        ("--log-config", "broken.yaml", "version: [1", "--log-config"),
        ("--log-config", "list.json", "[1, 2]", "must hold a mapping"),
        ("--log-config", "bad.json", '{"version": 1, "handlers": {"h": {"class": "no.Such"}}}',
         "--log-config"),
        ("--log-config", "broken.ini", "[loggers]\nkeys=root\n", "--log-config"),
    ],
)
def test_missing_or_broken_files_are_one_line_and_exit_1(impl, app_dir, option, name, content,
                                                          message):
    path = app_dir / name
    if content is not None:
        path.write_text(content)
    proc = start_cli("--app-dir", str(app_dir), "env_app:app", "--impl", impl,
                     "--port", str(free_port()), option, str(path))
    code, _, err = finish(proc)
    assert code == 1
    assert message in err and str(path) in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "option, name, content, extra",
    [
        ("--env-file", "app.env", "X=1\n", "pip install 'refserver[dotenv]'"),
        ("--log-config", "logging.yaml", "version: 1\n", "pip install 'refserver[yaml]'"),
    ],
)
def test_a_missing_optional_package_is_one_line_naming_the_extra(impl, app_dir, tmp_path_factory,
                                                                  option, name, content, extra):
    # Modules that fail to import, found before the installed ones: as if not installed.
    blocker = tmp_path_factory.mktemp("blocked")
    for module in ("dotenv", "yaml"):
        (blocker / f"{module}.py").write_text("raise ImportError('not installed')\n")
    path = app_dir / name
    path.write_text(content)
    proc = start_cli("--app-dir", str(app_dir), "env_app:app", "--impl", impl,
                     "--port", str(free_port()), option, str(path),
                     env={"PYTHONPATH": os.pathsep.join([str(blocker), ROOT])})
    code, _, err = finish(proc)
    assert code == 1
    assert extra in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
