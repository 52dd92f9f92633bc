"""Checking one response against one expectation.

An EXPECTATION (all keys optional):

``status``         int, or a list of acceptable ints
``reason``         the reason phrase
``version``        e.g. "HTTP/1.1"
``headers``        {name: value}: the field is present once-or-more and its first value equals
                   this (names are case-insensitive); a value of null means "absent"
``headers_all``    {name: [values]}: every value of the field, in order
``headers_absent`` [names]
``headers_match``  {name: regex}: the first value matches (``re.fullmatch``)
``body``           exact text (latin-1) of the de-chunked body
``body_length``    int;  ``body_contains``: text;  ``body_absent``: text that must not appear
``chunked``        the response used chunked framing (true) or not (false)
``close_delimited`` the body ran to the end of the connection
``interim``        statuses of the 1xx responses before this one, in order
``observe``        {path: PREDICATE}: checks on the JSON body (the probe's observation)
``head``           the request was HEAD (no body to read)
``incomplete``     the server must drop the connection inside the body (head checks still apply)
``ignore_body``    read the body but check nothing about it

A PREDICATE is a plain JSON value (equality) or an object with one operator: ``$eq``, ``$ne``,
``$in``, ``$contains`` (substring, or list member), ``$not_contains``, ``$startswith``,
``$regex``, ``$type`` ("str", "int", "list", "dict", "bool", "null"), ``$len``, ``$gte``,
``$lte``, ``$absent``, ``$present``, ``$all`` (every predicate of a list), ``$any``, ``$not``.
Paths are dotted; list items are addressed by index (``headers.0.1``).
"""

from __future__ import annotations

import json
import re

_MISSING = object()


def lookup(data, path: str):
    current = data
    if path in ("", "."):
        return current
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and (part.isdigit() or part.startswith("-")):
            try:
                current = current[int(part)]
            except (IndexError, ValueError):
                return _MISSING
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


_TYPES = {
    "str": str,
    "int": int,
    "list": list,
    "dict": dict,
    "bool": bool,
    "float": float,
}


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if value is not _MISSING else "<missing>"
    return text if len(text) <= 160 else text[:157] + "..."


def check_predicate(value, predicate) -> str | None:
    """None when ``value`` satisfies ``predicate``, else a reason."""
    operator = isinstance(predicate, dict) and len(predicate) == 1
    if operator and next(iter(predicate)).startswith("$"):
        op, arg = next(iter(predicate.items()))
        if op == "$absent":
            ok = (value is _MISSING) == bool(arg)
            return None if ok else f"expected {'absent' if arg else 'present'}, got {_short(value)}"
        if op == "$present":
            ok = (value is not _MISSING) == bool(arg)
            return None if ok else f"expected {'present' if arg else 'absent'}"
        if op == "$not":
            return None if check_predicate(value, arg) else f"{_short(value)} matches {arg}"
        if op == "$all":
            for item in arg:
                reason = check_predicate(value, item)
                if reason:
                    return reason
            return None
        if op == "$any":
            reasons = [check_predicate(value, item) for item in arg]
            failed = [r for r in reasons if r is not None]
            return None if len(failed) < len(reasons) else "; ".join(failed)
        if value is _MISSING:
            return f"missing (expected {op} {_short(arg)})"
        if op == "$eq":
            return None if value == arg else f"{_short(value)} != {_short(arg)}"
        if op == "$ne":
            return None if value != arg else f"{_short(value)} == {_short(arg)}"
        if op == "$in":
            return None if value in arg else f"{_short(value)} not in {_short(arg)}"
        if op == "$contains":
            try:
                ok = arg in value
            except TypeError:
                ok = False
            return None if ok else f"{_short(value)} does not contain {_short(arg)}"
        if op == "$not_contains":
            try:
                ok = arg not in value
            except TypeError:
                ok = True
            return None if ok else f"{_short(value)} contains {_short(arg)}"
        if op == "$startswith":
            ok = isinstance(value, str) and value.startswith(arg)
            return None if ok else f"{_short(value)} does not start with {_short(arg)}"
        if op == "$regex":
            ok = isinstance(value, str) and re.fullmatch(arg, value) is not None
            return None if ok else f"{_short(value)} does not match /{arg}/"
        if op == "$type":
            if arg == "null":
                ok = value is None
            elif arg == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, _TYPES[arg])
            return None if ok else f"{_short(value)} is not of type {arg}"
        if op == "$len":
            try:
                ok = len(value) == arg
            except TypeError:
                ok = False
            return None if ok else f"length of {_short(value)} is not {arg}"
        if op == "$gte":
            ok = isinstance(value, (int, float)) and value >= arg
            return None if ok else f"{_short(value)} < {arg}"
        if op == "$lte":
            ok = isinstance(value, (int, float)) and value <= arg
            return None if ok else f"{_short(value)} > {arg}"
        raise ValueError(f"unknown predicate operator {op}")
    if value is _MISSING:
        return f"missing (expected {_short(predicate)})"
    if value != predicate:
        return f"{_short(value)} != {_short(predicate)}"
    return None


def check_observation(data, predicates: dict) -> list:
    failures = []
    for path, predicate in predicates.items():
        reason = check_predicate(lookup(data, path), predicate)
        if reason:
            failures.append(f"observed {path}: {reason}")
    return failures


def check_head(response, expect: dict) -> list:
    """Checks that need only the status line and headers."""
    failures = []
    status = expect.get("status")
    if status is not None:
        allowed = status if isinstance(status, list) else [status]
        if response.status not in allowed:
            failures.append(f"status {response.status}, expected {status}" + _error_hint(response))
    if "reason" in expect and response.reason != expect["reason"]:
        failures.append(f"reason {response.reason!r}, expected {expect['reason']!r}")
    if "version" in expect and response.version != expect["version"]:
        failures.append(f"version {response.version}, expected {expect['version']}")
    for name, value in expect.get("headers", {}).items():
        actual = response.header(name)
        if value is None:
            if actual is not None:
                failures.append(f"header {name}: {actual!r}, expected absent")
        elif actual is None:
            failures.append(f"header {name} missing, expected {value!r}")
        elif actual != value:
            failures.append(f"header {name}: {actual!r}, expected {value!r}")
    for name, values in expect.get("headers_all", {}).items():
        actual = response.header_all(name)
        if actual != values:
            failures.append(f"header {name} values {actual!r}, expected {values!r}")
    for name in expect.get("headers_absent", ()):
        actual = response.header_all(name)
        if actual:
            failures.append(f"header {name}: {actual!r}, expected absent")
    for name, pattern in expect.get("headers_match", {}).items():
        actual = response.header(name)
        if actual is None or re.fullmatch(pattern, actual) is None:
            failures.append(f"header {name}: {actual!r} does not match /{pattern}/")
    if "interim" in expect:
        statuses = [r.status for r in response.interim]
        if statuses != expect["interim"]:
            failures.append(f"interim responses {statuses}, expected {expect['interim']}")
    return failures


def _error_hint(response) -> str:
    body = getattr(response, "body", b"")
    if response.status >= 400 and body:
        text = body[:120].decode("latin-1").replace("\n", " ")
        return f" (body: {text!r})"
    return ""


def check_response(response, expect: dict) -> list:
    failures = check_head(response, expect)
    if "chunked" in expect and response.chunked != expect["chunked"]:
        failures.append("response was %schunked" % ("" if response.chunked else "not "))
    if "close_delimited" in expect and response.close_delimited != expect["close_delimited"]:
        failures.append(
            "response body was %sdelimited by closing the connection"
            % ("" if response.close_delimited else "not ")
        )
    body = response.body
    if "body" in expect and body != expect["body"].encode("latin-1"):
        failures.append(f"body {_body(body)}, expected {_body(expect['body'].encode('latin-1'))}")
    if "body_length" in expect and len(body) != expect["body_length"]:
        failures.append(f"body is {len(body)} bytes, expected {expect['body_length']}")
    if "body_contains" in expect and expect["body_contains"].encode("latin-1") not in body:
        failures.append(f"body {_body(body)} does not contain {expect['body_contains']!r}")
    if "body_absent" in expect and expect["body_absent"].encode("latin-1") in body:
        failures.append(f"body contains {expect['body_absent']!r}")
    if "observe" in expect:
        data = parse_observation(response)
        if data is None:
            failures.append(f"no JSON observation in the body: {_body(body)}")
        else:
            failures.extend(check_observation(data, expect["observe"]))
    return failures


def parse_observation(response):
    try:
        return json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _body(body: bytes) -> str:
    text = repr(body[:200])
    return text + ("..." if len(body) > 200 else "")
