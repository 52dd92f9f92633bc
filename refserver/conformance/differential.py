"""Differential mode: the same cases on two targets, every difference reported.

Passing a case only says a server did what the clause requires; two servers can both pass and
still answer differently (one more header, another chunk size, a different observation of the same
request). Those differences are what breaks an application moved from one to the other, and for
refserver's two paths they are bugs by definition. So each case's transcript (statuses, headers with
Date normalised, body bytes or the probe's observation with ports and nonces normalised, whether
the connection closed) is compared field by field, less what depends on timing alone.
"""

from __future__ import annotations

#: Observation fields that depend on how TCP happened to segment the request, not on the server.
TIMING_FIELDS = ("chunks", "messages")


def _undelivered(entry: dict) -> bool:
    """A send the connection's end cut short: whether the client was still writing when a server
    closed depends on socket buffers and scheduling, not on the server (a flood that one run
    finishes writing before the GOAWAY arrives, the next does not). What the server did is in the
    entries that follow (the GOAWAY, the close)."""
    return entry.get("delivered") is False


def _diff(a, b, path: str, out: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append((sub, "<absent>", b[key]))
            elif key not in b:
                out.append((sub, a[key], "<absent>"))
            else:
                _diff(a[key], b[key], sub, out)
        return
    if isinstance(a, list) and isinstance(b, list) and path.endswith("headers"):
        if a != b:
            out.append((path, a, b))
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}.{index}", out)
        return
    if a != b:
        out.append((path, a, b))


def _strip_timing(entry: dict) -> dict:
    observation = entry.get("observation")
    if isinstance(observation, dict):
        observation = {k: v for k, v in observation.items() if k not in TIMING_FIELDS}
        entry = dict(entry, observation=observation)
    return entry


def compare(results_a: list, results_b: list) -> list:
    """Differences as dicts: interface, case, where (step entry), field, a, b."""
    differences = []
    index_b = {(r.interface, r.case.id): r for r in results_b}
    for ra in results_a:
        rb = index_b.get((ra.interface, ra.case.id))
        if rb is None:
            continue
        base = {"interface": ra.interface, "case": ra.case.id}
        if ra.outcome != rb.outcome:
            differences.append(
                dict(
                    base,
                    where="outcome",
                    field="outcome",
                    a=f"{ra.outcome} {ra.reason}".strip(),
                    b=f"{rb.outcome} {rb.reason}".strip(),
                )
            )
        ta = [_strip_timing(e) for e in ra.transcript if not _undelivered(e)]
        tb = [_strip_timing(e) for e in rb.transcript if not _undelivered(e)]
        for position in range(max(len(ta), len(tb))):
            ea = ta[position] if position < len(ta) else None
            eb = tb[position] if position < len(tb) else None
            where = f"exchange {position + 1}"
            if ea is None or eb is None:
                differences.append(
                    dict(
                        base,
                        where=where,
                        field="entry",
                        a=ea if ea is not None else "<nothing>",
                        b=eb if eb is not None else "<nothing>",
                    )
                )
                continue
            found: list = []
            _diff(ea, eb, "", found)
            for field, va, vb in found:
                differences.append(dict(base, where=where, field=field, a=va, b=vb))
    return differences


def _short(value, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_differences(differences: list, label_a: str, label_b: str) -> str:
    if not differences:
        return f"no differences between A ({label_a}) and B ({label_b})"
    lines = [f"A: {label_a}", f"B: {label_b}", f"{len(differences)} difference(s):"]
    for d in differences:
        lines.append(
            f"  [{d['interface']}] {d['case']} {d['where']} {d['field']}: "
            f"A={_short(d['a'])} B={_short(d['b'])}"
        )
    return "\n".join(lines)
