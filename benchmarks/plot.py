"""The picture of a benchmarks/run.py results file: requests per second of server CPU time, one
group of bars per endpoint, one bar per server.

Server CPU time, not wall time, is what the table's ratios are made of (a 2-core machine shared
with wrk makes requests per second noisy; CPU per request much less so), so it is what the picture
shows. It is drawn from the results JSON alone, so an old run can be redrawn without measuring:

    python benchmarks/run.py --plot-from benchmarks/results/bench-X.json --plot bench.png

Needs matplotlib (pip install 'refserver[plot]').
"""

from __future__ import annotations

import json


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        record = json.load(fh)
    if "cells" not in record or "targets" not in record:
        raise ValueError(f"{path}: not a results file of benchmarks/run.py (no cells or targets)")
    return record


def series(record: dict) -> tuple[list, list, dict]:
    """(targets, endpoints, {(target, endpoint): requests per server CPU-second}) of the cells
    measured, in the run's order; a failed or skipped cell has no bar."""
    values = {}
    for cell in record["cells"]:
        rate = (cell.get("metrics") or {}).get("requests_per_cpu_s")
        if cell.get("status") == "ok" and rate:
            values[cell["target"], cell["endpoint"]] = rate
    targets = [t for t in record["targets"] if any(t == k[0] for k in values)]
    endpoints = [e for e in record["endpoints"] if any(e == k[1] for k in values)]
    return targets, endpoints, values


def subtitle(record: dict) -> str:
    env = record.get("environment", {})
    versions = env.get("versions", {})
    measured = {target.split("-")[0] for target in series(record)[0]}
    peers = ", ".join(
        f"{name} {versions[name]}"
        for name in ("uvicorn", "granian", "hypercorn")
        if versions.get(name) and name in measured
    )
    settings = record.get("settings", {})
    parts = [
        f"{env.get('date', '?')[:10]}, Python {env.get('python', '?')}, "
        f"{env.get('cpu_count', '?')} cores",
        f"{settings.get('connections', '?')} connections, "
        f"{settings.get('duration', '?')} s per cell"
        + (f", median of {settings['repeat']}" if settings.get("repeat", 1) > 1 else ""),
    ]
    if peers:
        parts.append(peers)
    return "; ".join(parts)


def plot(record: dict, path: str) -> None:
    """Write the picture of ``record`` to ``path`` (PNG, or any format matplotlib knows by the
    file's extension)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    targets, endpoints, values = series(record)
    if not values:
        raise ValueError("no cell of this run was measured: nothing to draw")
    height = 0.8 / len(targets)
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.32 * len(targets) * len(endpoints)), dpi=110)
    colours = plt.get_cmap("tab10")
    for n, target in enumerate(targets):
        ys, xs = [], []
        for m, endpoint in enumerate(endpoints):
            if (target, endpoint) in values:
                ys.append(m + n * height)
                xs.append(values[target, endpoint])
        bars = ax.barh(ys, xs, height=height * 0.92, label=target, color=colours(n % 10))
        ax.bar_label(bars, labels=[f"{x:,.0f}" for x in xs], padding=3, fontsize=7)
    ax.set_yticks([m + (len(targets) - 1) * height / 2 for m in range(len(endpoints))])
    # "GET / -> 13 bytes" names an endpoint better than its short name.
    ax.set_yticklabels(
        [record["endpoints"][e].split(" -> ")[0].replace(" with a ", "\n") for e in endpoints]
    )
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.invert_yaxis()
    ax.set_xlabel("requests per second of server CPU time (higher is better)")
    ax.set_xlim(0, max(values.values()) * 1.15)
    ax.set_title("refserver and its peers, one worker each\n" + subtitle(record), fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
