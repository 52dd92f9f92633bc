"""The README's option table is the option table (refserver/config.py), rendered."""

import os
import subprocess
import sys

from support import ROOT

from refserver.cli import options_markdown
from refserver.config import OPTIONS

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from sync_readme import BEGIN, END, synced  # noqa: E402


def readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as file:
        return file.read()


def test_the_readme_table_is_the_option_table():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "sync_readme.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_option_has_its_row_and_default():
    table = readme().split(BEGIN)[1].split(END)[0]
    for option in OPTIONS:
        assert f"| `{option.flag}`" in table, option.flag
    assert "| `--port` | `8000` |" in table
    assert "| `--ws` / `--no-ws` | on |" in table
    assert "| `--timeout-keep-alive` | `5` |" in table


def test_a_readme_that_disagrees_is_caught():
    text = readme()
    edited = text.replace("| `--port` | `8000` |", "| `--port` | `8080` |")
    assert edited != text
    assert synced(edited) == text  # the check would report it, and the sync restores it
    removed = "".join(line for line in text.splitlines(True) if "`--backlog`" not in line)
    assert synced(removed) == text
    assert options_markdown() in text
