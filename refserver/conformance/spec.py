"""Reading the written spec (``spec/*.md``) and keeping it in step with the cases.

A clause is a heading ``### AREA-TOPIC-N — title``, then its normative text, then one line
``Cases: `case-id`, ...``. The case list is derived from the case files (each case names the
clauses it checks), so it is generated, never typed: :func:`sync` rewrites those lines and the
clause index shipped with the package (``clauses.json``), and the test suite fails when either is
stale, when a clause has no case, or when a case names a clause that does not exist.

A behaviour no wire-level case can check against a server started with its defaults (a timeout
counted in seconds, a server out of file descriptors) names the tests that check it instead, on a
line ``Tests: `tests/test_x.py::test_name`, ...``; each named test must exist.
"""

from __future__ import annotations

import json
import os
import re

from .cases import CLAUSE_ID_RE, load_cases
from .report import CLAUSE_INDEX

HEADING_RE = re.compile(r"^(#{2,4}) (" + CLAUSE_ID_RE.pattern + r") — (.+?)\s*$")
CASES_LINE_RE = re.compile(r"^Cases: (.*)$")
CASE_REF_RE = re.compile(r"`([a-z0-9][a-z0-9-]*)`")
TESTS_LINE_RE = re.compile(r"^Tests: (.*)$")
TEST_REF_RE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
ANY_HEADING_RE = re.compile(r"^#{1,6} ")


class Clause:
    __slots__ = ("id", "title", "document", "line", "cases", "cases_line", "tests")

    def __init__(self, clause_id: str, title: str, document: str, line: int):
        self.id = clause_id
        self.title = title
        self.document = document
        self.line = line
        self.cases: list = []  # as listed in the document
        self.cases_line: int | None = None  # index of the "Cases:" line, if present
        self.tests: list = []  # (path, test name) from a "Tests:" line

    def __repr__(self) -> str:
        return f"Clause({self.id!r})"


def spec_files(spec_dir: str) -> list:
    return sorted(
        os.path.join(spec_dir, name)
        for name in os.listdir(spec_dir)
        if name.endswith(".md") and name.lower() != "readme.md"
    )


def parse_document(path: str) -> list:
    document = os.path.splitext(os.path.basename(path))[0]
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    clauses = []
    current = None
    for number, line in enumerate(lines):
        match = HEADING_RE.match(line)
        if match:
            current = Clause(match.group(2), match.group(3), document, number)
            clauses.append(current)
            continue
        if ANY_HEADING_RE.match(line):
            current = None
            continue
        match = CASES_LINE_RE.match(line)
        if match and current is not None and current.cases_line is None:
            current.cases = CASE_REF_RE.findall(match.group(1))
            current.cases_line = number
        match = TESTS_LINE_RE.match(line)
        if match and current is not None:
            current.tests.extend(TEST_REF_RE.findall(match.group(1)))
    return clauses


def parse_spec(spec_dir: str) -> list:
    clauses = []
    for path in spec_files(spec_dir):
        clauses.extend(parse_document(path))
    return clauses


def cases_by_clause(cases: list) -> dict:
    """{clause id: [case ids in case-file order]}"""
    out: dict = {}
    for case in cases:
        for clause in case.clauses:
            out.setdefault(clause, [])
            if case.id not in out[clause]:
                out[clause].append(case.id)
    return out


def format_cases_line(case_ids: list, tests: bool = False) -> str:
    if not case_ids:
        return "Cases: (none: checked by the tests named above)" if tests else "Cases: (none yet)"
    return "Cases: " + ", ".join(f"`{cid}`" for cid in case_ids)


def clause_index(clauses: list) -> dict:
    return {
        "generated_from": "spec/*.md by conformance/sync_spec.py; do not edit",
        "clauses": [{"id": c.id, "title": c.title, "document": c.document} for c in clauses],
    }


def problems(spec_dir: str, cases: list | None = None, index_path: str = CLAUSE_INDEX) -> list:
    """Everything that makes spec and cases disagree (empty when they agree)."""
    cases = load_cases() if cases is None else cases
    clauses = parse_spec(spec_dir)
    found = []
    seen: dict = {}
    for clause in clauses:
        if clause.id in seen:
            found.append(f"{clause.id} is defined twice ({seen[clause.id]} and {clause.document})")
        seen[clause.id] = clause.document
    derived = cases_by_clause(cases)
    root = os.path.dirname(os.path.abspath(spec_dir))
    for clause in clauses:
        if not derived.get(clause.id) and not clause.tests:
            found.append(f"{clause.document}: clause {clause.id} has no case")
        for path, name in clause.tests:
            if not _defines(os.path.join(root, path), name):
                found.append(
                    f"{clause.document}: clause {clause.id} names {path}::{name}, which is no test"
                )
        if clause.cases_line is None:
            found.append(f"{clause.document}: clause {clause.id} has no 'Cases:' line")
        elif clause.cases != derived.get(clause.id, []):
            found.append(
                f"{clause.document}: the Cases line of {clause.id} is stale "
                "(run python conformance/sync_spec.py)"
            )
    for case in cases:
        for clause_id in case.clauses:
            if clause_id not in seen:
                found.append(
                    f"case {case.id} ({case.source}) names {clause_id}, which is no clause"
                )
    try:
        with open(index_path, encoding="utf-8") as fh:
            shipped = json.load(fh)
    except (OSError, ValueError):
        shipped = None
    if shipped != clause_index(clauses):
        found.append(
            f"{os.path.basename(index_path)} is stale (run python conformance/sync_spec.py)"
        )
    return found


def sync(spec_dir: str, cases: list | None = None, index_path: str = CLAUSE_INDEX) -> list:
    """Rewrite every clause's Cases line from the case files, and the clause index.

    Returns the paths written. A clause without a Cases line gets one after its text.
    """
    cases = load_cases() if cases is None else cases
    derived = cases_by_clause(cases)
    written = []
    all_clauses = []
    for path in spec_files(spec_dir):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        lines = text.split("\n")
        clauses = parse_document(path)
        all_clauses.extend(clauses)
        inserts = []
        for clause in clauses:
            line = format_cases_line(derived.get(clause.id, []), bool(clause.tests))
            if clause.cases_line is not None:
                lines[clause.cases_line] = line
            else:
                # A clause ends at the next heading of any level, as parse_document reads it.
                after = range(clause.line + 1, len(lines))
                end = next((n for n in after if ANY_HEADING_RE.match(lines[n])), len(lines))
                position = end
                while position > clause.line + 1 and not lines[position - 1].strip():
                    position -= 1
                inserts.append((position, line))
        for position, line in sorted(inserts, reverse=True):
            lines[position:position] = ["", line]
        new_text = "\n".join(lines)
        if new_text != text:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(new_text)
            written.append(path)
    index = json.dumps(clause_index(all_clauses), indent=1, ensure_ascii=False) + "\n"
    try:
        with open(index_path, encoding="utf-8") as fh:
            current = fh.read()
    except OSError:
        current = None
    if current != index:
        with open(index_path, "w", encoding="utf-8") as fh:
            fh.write(index)
        written.append(index_path)
    return written


def _defines(path: str, name: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return re.search(r"^def " + re.escape(name) + r"\(", fh.read(), re.M) is not None
    except OSError:
        return False
