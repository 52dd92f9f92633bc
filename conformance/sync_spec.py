"""Regenerate the ``Cases:`` lines of spec/*.md and refserver/conformance/clauses.json.

Run from a checkout after changing cases or clauses::

    python conformance/sync_spec.py          # rewrite
    python conformance/sync_spec.py --check  # exit 1 if anything is stale or inconsistent

The case files are the source of truth for which case checks which clause; the spec only shows it.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from refserver.conformance.spec import problems, sync  # noqa: E402

SPEC_DIR = os.path.join(ROOT, "spec")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report problems, change nothing")
    args = parser.parse_args()
    if not args.check:
        for path in sync(SPEC_DIR):
            print("updated", os.path.relpath(path, ROOT))
    found = problems(SPEC_DIR)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
