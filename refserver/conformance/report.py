"""What a run prints and writes: a table by clause, JSON, JUnit XML.

The table is by clause because clauses are what a server conforms to; a clause passes when every
case that checks it passes, fails when one fails (the first failure's reason is shown), and is
skipped when all its cases were skipped. The JSON keeps every case and its transcript (what was
received), which is also what the differential mode compares.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

CLAUSE_INDEX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clauses.json")


def load_clause_index() -> dict:
    """{clause id: {"title", "document"}} as generated from spec/ (empty if not shipped)."""
    try:
        with open(CLAUSE_INDEX, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {item["id"]: item for item in data.get("clauses", ())}


def clause_order(index: dict, ids) -> list:
    order = {cid: n for n, cid in enumerate(index)}
    return sorted(set(ids), key=lambda cid: (order.get(cid, len(order)), cid))


def by_clause(results: list, index: dict) -> list:
    """[(interface, clause, outcome, detail, counts)] in spec order."""
    rows = []
    interfaces = []
    for result in results:
        if result.interface not in interfaces:
            interfaces.append(result.interface)
    for interface in interfaces:
        mine = [r for r in results if r.interface == interface]
        clauses: dict = {}
        for result in mine:
            for clause in result.case.clauses:
                clauses.setdefault(clause, []).append(result)
        for clause in clause_order(index, clauses):
            group = clauses[clause]
            failed = [r for r in group if r.outcome == "fail"]
            passed = [r for r in group if r.outcome == "pass"]
            skipped = [r for r in group if r.outcome == "skip"]
            if failed:
                outcome = "fail"
                detail = f"{failed[0].case.id}: {failed[0].reason}"
                if len(failed) > 1:
                    detail += f" (+{len(failed) - 1} more)"
            elif passed:
                outcome = "pass"
                detail = ""
            else:
                outcome = "skip"
                detail = f"{skipped[0].case.id}: {skipped[0].reason}"
            rows.append(
                (interface, clause, outcome, detail, (len(passed), len(failed), len(skipped)))
            )
    return rows


def summary(results: list) -> dict:
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for result in results:
        counts[result.outcome] += 1
    counts["total"] = len(results)
    return counts


def format_table(results: list, index: dict, *, show_passing: bool = True, width: int = 120) -> str:
    rows = by_clause(results, index)
    lines = []
    header = f"{'interface':<9}  {'clause':<26}  {'result':<6}  {'cases':>9}  detail"
    lines.append(header)
    lines.append("-" * min(width, 100))
    for interface, clause, outcome, detail, (npass, nfail, nskip) in rows:
        if outcome == "pass" and not show_passing:
            continue
        cases = f"{npass}/{npass + nfail}" + (f"+{nskip}s" if nskip else "")
        text = f"{interface:<9}  {clause:<26}  {outcome.upper():<6}  {cases:>9}  {detail}"
        if len(text) > width:
            text = text[: width - 3] + "..."
        lines.append(text)
    counts = summary(results)
    clause_counts = {"pass": 0, "fail": 0, "skip": 0}
    for row in rows:
        clause_counts[row[2]] += 1
    lines.append("-" * min(width, 100))
    lines.append(
        "cases: %(pass)d passed, %(fail)d failed, %(skip)d skipped (of %(total)d)" % counts
        + "; clauses: %d passed, %d failed, %d skipped"
        % (clause_counts["pass"], clause_counts["fail"], clause_counts["skip"])
    )
    return "\n".join(lines)


def format_failures(results: list) -> str:
    lines = []
    for result in results:
        if result.outcome == "fail":
            source = f" ({result.case.rfc})" if result.case.rfc else ""
            lines.append(f"FAIL [{result.interface}] {result.case.id}{source}: {result.reason}")
    return "\n".join(lines)


def to_json(results: list, index: dict, targets: list, notes: list) -> dict:
    return {
        "targets": targets,
        "summary": summary(results),
        "notes": notes,
        "clauses": [
            {
                "interface": interface,
                "clause": clause,
                "title": index.get(clause, {}).get("title", ""),
                "outcome": outcome,
                "detail": detail,
                "passed": counts[0],
                "failed": counts[1],
                "skipped": counts[2],
            }
            for interface, clause, outcome, detail, counts in by_clause(results, index)
        ],
        "cases": [result.to_dict() for result in results],
    }


def to_junit(results: list, label: str) -> bytes:
    """One ``testsuite`` per interface, one ``testcase`` per case (classname: interface.file)."""
    root = ET.Element("testsuites", name=f"refserver conformance: {label}")
    interfaces = []
    for result in results:
        if result.interface not in interfaces:
            interfaces.append(result.interface)
    for interface in interfaces:
        mine = [r for r in results if r.interface == interface]
        counts = summary(mine)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"conformance.{interface}",
            tests=str(counts["total"]),
            failures=str(counts["fail"]),
            skipped=str(counts["skip"]),
            errors="0",
            time="%.3f" % sum(r.duration for r in mine),
        )
        for result in mine:
            source = result.case.source.rsplit(".", 1)[0]
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{interface}.{source}",
                name=result.case.id,
                time="%.3f" % result.duration,
            )
            if result.outcome == "fail":
                failure = ET.SubElement(case, "failure", message=result.reason[:500])
                failure.text = (
                    f"clauses: {', '.join(result.case.clauses)}\n{result.case.title}\n"
                    f"{result.reason}"
                )
            elif result.outcome == "skip":
                ET.SubElement(case, "skipped", message=result.reason[:500])
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
