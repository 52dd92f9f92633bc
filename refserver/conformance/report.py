"""What a run prints and writes: a table by clause, JSON, JUnit XML, an HTML page.

The table is by clause because clauses are what a server conforms to; a clause passes when every
case that checks it passes, fails when one fails (the first failure's reason is shown), and is
skipped when all its cases were skipped. The JSON keeps every case and its transcript (what was
received), which is also what the differential mode compares.
"""

from __future__ import annotations

import html
import json
import os
import xml.etree.ElementTree as ET

from .client import WIRE_RECORD_LIMIT

CLAUSE_INDEX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clauses.json")

#: Where clause links point unless --docs-url says otherwise: relative to the root of the
#: documentation site (mkdocs build), so a report saved there links to its pages.
DOCS_URL = ""


def clause_anchor(clause_id: str) -> str:
    """A clause's anchor on its spec page of the documentation site: the id in lower case
    (``H1-ERROR-1`` -> ``h1-error-1``), which stays when the clause's title changes."""
    return clause_id.lower()


def clause_url(clause_id: str, index: dict, docs_url: str = DOCS_URL) -> str | None:
    """The address of a clause's text in the documentation site, or None for a clause the index
    does not know."""
    item = index.get(clause_id)
    if item is None:
        return None
    base = docs_url if not docs_url or docs_url.endswith("/") else docs_url + "/"
    return f"{base}spec/{item['document']}/#{clause_anchor(clause_id)}"


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


def to_json(
    results: list, index: dict, targets: list, notes: list, docs_url: str = DOCS_URL
) -> dict:
    return {
        "targets": targets,
        "summary": summary(results),
        "notes": notes,
        "clauses": [
            {
                "interface": interface,
                "clause": clause,
                "title": index.get(clause, {}).get("title", ""),
                "url": clause_url(clause, index, docs_url),
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


#: Characters of a failed case's parsed transcript shown on the HTML page.
HTML_TRANSCRIPT_LIMIT = 16384

HTML_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.clause { white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td.outcome { color: #b00020; font-weight: bold; }
tr.pass td.outcome { color: #1b7a1b; }
tr.skip td.outcome { color: #777; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; white-space: pre-wrap;
      word-break: break-all; font-size: 12px; }
section.failure { border-top: 2px solid #b00020; margin-top: 2em; }
"""


def to_html(
    results: list, index: dict, targets: list, notes: list, docs_url: str = DOCS_URL
) -> str:
    """A page a person reads after a run: the clause table (each clause linked to its text in the
    documentation site), then each failed case with the bytes sent and received on each of its
    connections. Everything that comes from the target (reasons, bytes, headers) is escaped."""
    e = html.escape
    counts = summary(results)
    rows = by_clause(results, index)

    def clause_link(clause: str) -> str:
        url = clause_url(clause, index, docs_url)
        return f'<a href="{e(url)}">{e(clause)}</a>' if url else e(clause)

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>refserver conformance: {e(', '.join(targets))}</title>",
        f"<style>{HTML_STYLE}</style></head><body>",
        "<h1>refserver conformance report</h1>",
        f"<p>Target: {'; '.join('<code>' + e(t) + '</code>' for t in targets)}</p>",
        "<p>Cases: %(pass)d passed, %(fail)d failed, %(skip)d skipped (of %(total)d).</p>" % counts,
    ]
    if notes:
        out.append("<ul>" + "".join(f"<li>{e(str(note))}</li>" for note in notes) + "</ul>")
    out += [
        "<h2>Clauses</h2>",
        "<table><thead><tr><th>interface</th><th>clause</th><th>title</th><th>result</th>"
        "<th>passed</th><th>failed</th><th>skipped</th><th>detail</th></tr></thead><tbody>",
    ]
    for interface, clause, outcome, detail, (npass, nfail, nskip) in rows:
        out.append(
            f'<tr class="{outcome}"><td>{e(interface)}</td>'
            f'<td class="clause">{clause_link(clause)}</td>'
            f"<td>{e(index.get(clause, {}).get('title', ''))}</td>"
            f'<td class="outcome">{outcome.upper()}</td><td class="n">{npass}</td>'
            f'<td class="n">{nfail}</td><td class="n">{nskip}</td><td>{e(detail)}</td></tr>'
        )
    out.append("</tbody></table>")
    failed = [r for r in results if r.outcome == "fail"]
    if failed:
        out.append(f"<h2>Failures ({len(failed)})</h2>")
    for result in failed:
        case = result.case
        anchor = f"fail-{result.interface}-{case.id}"
        out += [
            f'<section class="failure" id="{e(anchor)}">',
            f"<h3>{e(case.id)} <small>({e(result.interface)})</small></h3>",
            f"<p>{e(case.title)}</p>",
            "<p>Clauses: "
            + ", ".join(clause_link(c) for c in case.clauses)
            + (f"; {e(case.rfc)}" if case.rfc else "")
            + "</p>",
            f"<p><strong>Why it failed:</strong> {e(result.reason)}</p>",
        ]
        for number, record in enumerate(result.wire, 1):
            for direction, verb in (("sent", "Sent"), ("received", "Received")):
                total = record[f"{direction}_bytes"]
                shown = f"{verb} on connection {number} ({total} bytes"
                if total > WIRE_RECORD_LIMIT:
                    shown += f", the first {WIRE_RECORD_LIMIT} shown"
                out.append(f"<p>{shown}):</p><pre>{e(record[direction]) or '(nothing)'}</pre>")
        if not result.wire:
            out.append("<p>No bytes recorded on the wire for this case.</p>")
        if result.transcript:
            parsed = json.dumps(result.transcript, indent=1, default=str)
            more = len(parsed) - HTML_TRANSCRIPT_LIMIT
            if more > 0:  # a body of megabytes belongs in the JSON report, not on the page
                parsed = parsed[:HTML_TRANSCRIPT_LIMIT] + f"\n... ({more} more characters)"
            out += [
                "<details><summary>What the runner parsed</summary>",
                f"<pre>{e(parsed)}</pre>",
                "</details>",
            ]
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
