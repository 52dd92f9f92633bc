"""Summarise Autobahn reports (kosoku's or wstest's ``index.json``): verdict counts per agent.

    python scripts/autobahn/summarize.py REPORT_DIR [REPORT_DIR ...]

Prints one line per agent (server) with the counts of OK, NON-STRICT, INFORMATIONAL,
UNIMPLEMENTED and FAILED, then every case that is not OK with its verdicts; exits 1 if any case
FAILED (or could not be run), so a script can gate on it.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


def verdict(result: dict) -> str:
    """One word per case: the worse of the message verdict and the closing-handshake verdict."""
    behavior = result.get("behavior", "FAILED")
    close = result.get("behaviorClose", "FAILED")
    if behavior in ("FAILED", "ERROR") or close in ("FAILED", "WRONG CODE", "UNCLEAN",
                                                    "FAILED BY CLIENT", "ERROR"):
        return "FAILED"
    if behavior == "UNIMPLEMENTED":
        return "UNIMPLEMENTED"
    if behavior == "NON-STRICT" or close == "NON-STRICT":
        return "NON-STRICT"
    if behavior == "INFORMATIONAL" or close == "INFORMATIONAL":
        return "INFORMATIONAL"
    return "OK"


def main(argv: list) -> int:
    failed = False
    for directory in argv:
        with open(os.path.join(directory, "index.json"), encoding="utf-8") as fh:
            index = json.load(fh)
        for agent, cases in sorted(index.items()):
            counts = Counter(verdict(r) for r in cases.values())
            line = ", ".join(f"{name} {counts.get(name, 0)}" for name in ORDER)
            print(f"{agent}: {len(cases)} cases: {line}")
            for case_id, result in sorted(cases.items(), key=lambda kv: _key(kv[0])):
                word = verdict(result)
                if word != "OK":
                    print(f"  {case_id}: {word} ({result.get('behavior')}/"
                          f"{result.get('behaviorClose')}, {result.get('duration')} ms)")
            failed = failed or counts.get("FAILED", 0) > 0
    return 1 if failed else 0


def _key(case_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in case_id.split("."))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
