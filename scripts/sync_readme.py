"""Regenerate the option table of README.md from the option table (refserver/config.py).

    python scripts/sync_readme.py          # rewrite the table
    python scripts/sync_readme.py --check  # exit 1 if the README's table is stale

The option table is the one copy of every option's name, default and description; the README
shows it between the two markers below.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from refserver.cli import options_markdown  # noqa: E402

README = os.path.join(ROOT, "README.md")
BEGIN = "<!-- options: generated from refserver/config.py by scripts/sync_readme.py -->\n"
END = "<!-- /options -->\n"


def synced(text: str) -> str:
    """``text`` (the README) with the table between the markers regenerated."""
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END, start)
    return text[:start] + options_markdown() + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report a stale table, change nothing")
    args = parser.parse_args()
    with open(README, encoding="utf-8") as file:
        text = file.read()
    new = synced(text)
    if args.check:
        if new != text:
            print("README.md: the option table is stale; run python scripts/sync_readme.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        with open(README, "w", encoding="utf-8") as file:
            file.write(new)
        print("updated README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
