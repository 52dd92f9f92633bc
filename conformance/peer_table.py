"""Print the clause-by-interface table of a peer report from the runner's JSON results.

    python -m refserver.conformance --interface asgi --server '...' --json asgi.json  # each one
    python conformance/peer_table.py asgi.json rsgi.json wsgi.json > table.md

The explanation of each failure (spec/peers/*.md) is written by a person, not generated: it says
*why* the peer behaves as it does, which no test output can.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from refserver.conformance.report import clause_order, load_clause_index  # noqa: E402

MARK = {"pass": "pass", "fail": "**FAIL**", "skip": "skip"}


def main(paths: list) -> int:
    rows: dict = {}
    interfaces = []
    totals = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        for row in data["clauses"]:
            interface = row["interface"]
            if interface not in interfaces:
                interfaces.append(interface)
            rows.setdefault(row["clause"], {})[interface] = row
        s = data["summary"]
        totals.append((", ".join(sorted({c["interface"] for c in data["cases"]})), s))
    index = load_clause_index()
    print("| interface | cases passed | failed | skipped |")
    print("| --- | --- | --- | --- |")
    for name, s in totals:
        print(f"| {name} | {s['pass']} | {s['fail']} | {s['skip']} |")
    print()
    print("| clause | " + " | ".join(interfaces) + " | title |")
    print("| --- | " + " | ".join("---" for _ in interfaces) + " | --- |")
    for clause in clause_order(index, rows):
        cells = []
        for interface in interfaces:
            row = rows[clause].get(interface)
            if row is None:
                cells.append("")
            else:
                ran = row["passed"] + row["failed"]
                cells.append(f"{MARK[row['outcome']]} {row['passed']}/{ran}")
        title = index.get(clause, {}).get("title", "")
        print(f"| {clause} | " + " | ".join(cells) + f" | {title} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
