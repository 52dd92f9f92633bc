"""The written spec and the conformance cases must describe the same thing.

Every clause in spec/*.md needs a case that checks it, every clause a case names must exist, and
the generated parts (each clause's ``Cases:`` line, the shipped clause index) must be current.
These are cheap checks with no server, so a stale spec fails fast.
"""

from __future__ import annotations

import json
import os

import pytest

from refserver.conformance import cases as cases_mod
from refserver.conformance.cases import Case, CaseError, load_cases, request_bytes
from refserver.conformance.spec import cases_by_clause, parse_spec, problems, sync

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC_DIR = os.path.join(ROOT, "spec")


@pytest.fixture(scope="module")
def cases():
    return load_cases()


@pytest.fixture(scope="module")
def clauses():
    return parse_spec(SPEC_DIR)


def test_spec_and_cases_agree(cases):
    found = problems(SPEC_DIR, cases)
    assert not found, "\n".join(found)


def test_every_subject_has_its_document(clauses):
    documents = {clause.document for clause in clauses}
    assert {"http1", "asgi", "rsgi", "wsgi"} <= documents


def test_clause_ids_follow_the_area_topic_number_form(clauses):
    prefixes = {
        "http1": "H1-", "asgi": "ASGI-", "rsgi": "RSGI-", "wsgi": "WSGI-", "websocket": "WS-",
        "server": "SERVER-", "http2": "H2-", "tls": "TLS-",
    }
    for clause in clauses:
        assert clause.id.startswith(prefixes[clause.document]), clause
        assert clause.title and not clause.title.endswith("."), clause


def test_enough_cases_and_hostile_ones(cases):
    hostile = [c for c in cases if c.hostile]
    assert len(cases) >= 250, len(cases)
    assert len(hostile) >= 80, len(hostile)
    # "Hostile" means a malformed or hostile HTTP/1.1 request: each names an H1 clause.
    assert all(any(cl.startswith("H1-") for cl in c.clauses) for c in hostile)


def test_hostile_cases_state_a_status_or_a_close(cases):
    statuses = {400, 413, 414, 431, 501, 505}
    for case in cases:
        if not case.hostile:
            continue
        expected = [s["expect"].get("status") for s in case.steps if "expect" in s]
        closes = any("closed" in s for s in case.steps)
        error = any(status in statuses for status in expected)
        assert error or closes or expected, case.id
        if error:
            assert closes, f"{case.id}: an error response must be followed by a close"


def test_http1_cases_run_on_every_interface(cases):
    for case in cases:
        if case.source.startswith("http1"):
            assert sorted(case.interfaces) == ["asgi", "rsgi", "wsgi"], case.id


def test_every_case_file_is_valid_json_with_unique_ids():
    seen = set()
    for name in sorted(os.listdir(cases_mod.CASES_DIR)):
        with open(os.path.join(cases_mod.CASES_DIR, name), encoding="utf-8") as fh:
            data = json.load(fh)
        for item in data["cases"]:
            assert item["id"] not in seen, item["id"]
            seen.add(item["id"])


def test_every_request_encodes(cases):
    variables = {"NONCE": "n", "HOST": "127.0.0.1:1", "PORT": "1"}
    for case in cases:
        for step in case.steps:
            requests = step.get("send", [])
            for request in requests if isinstance(requests, list) else [requests]:
                data, _ = request_bytes(request, variables)
                assert data and b"@NONCE@" not in data and b"@HOST@" not in data, case.id


# ------------------------------------------------------------------ the checker itself


def _write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _case(case_id, clauses):
    return Case(
        {
            "id": case_id,
            "title": "t",
            "clauses": clauses,
            "request": {"raw": "GET / HTTP/1.1\r\n\r\n"},
            "responses": [{"status": 200}],
        },
        {},
        "test.json",
    )


def test_checker_reports_a_clause_without_case_and_a_case_without_clause(tmp_path):
    _write(str(tmp_path), "x.md", "# X\n\n### X-ONE-1 — one\n\nText.\n\nCases: `case-a`\n\n"
           "### X-ONE-2 — two\n\nText.\n\nCases: (none yet)\n")
    index = str(tmp_path / "index.json")
    cases = [_case("case-a", ["X-ONE-1"]), _case("case-b", ["X-NOPE-9"])]
    found = problems(str(tmp_path), cases, index)
    text = "\n".join(found)
    assert "X-ONE-2 has no case" in text
    assert "names X-NOPE-9, which is no clause" in text
    assert "index.json is stale" in text


def test_sync_writes_cases_lines_and_index(tmp_path):
    text = "### X-ONE-1 — one\n\nText.\n\n### X-ONE-2 — two\n\nText.\n\nCases: `old`\n"
    path = _write(str(tmp_path), "x.md", text)
    index = str(tmp_path / "index.json")
    cases = [_case("case-a", ["X-ONE-1", "X-ONE-2"]), _case("case-b", ["X-ONE-2"])]
    sync(str(tmp_path), cases, index)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert "Text.\n\nCases: `case-a`\n\n### X-ONE-2" in text
    assert text.endswith("Cases: `case-a`, `case-b`\n")
    assert problems(str(tmp_path), cases, index) == []
    assert cases_by_clause(cases) == {"X-ONE-1": ["case-a"], "X-ONE-2": ["case-a", "case-b"]}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"id": "Bad_Id", "title": "t", "clauses": ["X-A-1"]}, "id must be"),
        ({"id": "ok", "title": "t", "clauses": []}, "names no clause"),
        ({"id": "ok", "title": "t", "clauses": ["lower-1"]}, "is not a clause id"),
        ({"id": "ok", "title": "t", "clauses": ["X-A-1"], "request": {"raw": "x"},
          "responses": [{"statuss": 200}]}, "unknown expectation keys"),
        ({"id": "ok", "title": "t", "clauses": ["X-A-1"], "surprise": 1}, "unknown keys"),
    ],
)
def test_case_format_errors_are_reported(data, message):
    with pytest.raises(CaseError, match=message):
        Case(data, {}, "test.json")


def test_a_clause_may_name_tests_instead_of_cases_and_each_must_exist(tmp_path):
    spec = tmp_path / "spec"
    spec.mkdir()
    (tmp_path / "tests").mkdir()
    _write(str(tmp_path / "tests"), "test_t.py", "def test_there():\n    pass\n")
    _write(str(spec), "x.md", "### X-ONE-1 — one\n\nText.\n\nTests: `tests/test_t.py::test_there`\n\n"
           "### X-ONE-2 — two\n\nText.\n\nTests: `tests/test_t.py::test_gone`\n")
    index = str(tmp_path / "index.json")
    sync(str(spec), [], index)
    text = (spec / "x.md").read_text(encoding="utf-8")
    assert text.count("Cases: (none: checked by the tests named above)") == 2
    found = problems(str(spec), [], index)
    assert found == ["x: clause X-ONE-2 names tests/test_t.py::test_gone, which is no test"]
