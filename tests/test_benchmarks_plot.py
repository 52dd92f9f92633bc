"""benchmarks/run.py --plot: the picture is drawn from a results file, measured or earlier."""

from __future__ import annotations

import json

import pytest

from benchmarks import plot, run


def _record() -> dict:
    def cell(target, endpoint, rate, status="ok"):
        metrics = {"requests_per_cpu_s": rate} if status == "ok" else {}
        return {"target": target, "endpoint": endpoint, "status": status, "reason": "",
                "metrics": metrics, "runs": [], "noisy_runs": []}

    return {
        "argv": ["benchmarks/run.py"],
        "settings": {"connections": 64, "duration": 8, "repeat": 3},
        "environment": {"date": "2026-12-07T03:18:15+00:00", "python": "3.11.7", "cpu_count": 2,
                        "versions": {"uvicorn": "0.55.0", "granian": "2.8.9"}},
        "targets": {"refserver-fast-asgi": "", "uvicorn-httptools": "", "granian-rsgi": ""},
        "endpoints": {"plaintext": "GET / -> 13 bytes", "echo": "POST /echo with a 4 KiB body"},
        "cells": [
            cell("refserver-fast-asgi", "plaintext", 62279.0),
            cell("refserver-fast-asgi", "echo", 45718.0),
            cell("uvicorn-httptools", "plaintext", 40599.0),
            cell("uvicorn-httptools", "echo", 0, status="failed"),
            cell("granian-rsgi", "plaintext", 0, status="skipped"),
        ],
    }


def test_series_keeps_the_measured_cells_in_the_runs_order():
    targets, endpoints, values = plot.series(_record())
    assert targets == ["refserver-fast-asgi", "uvicorn-httptools"]  # granian: nothing measured
    assert endpoints == ["plaintext", "echo"]
    assert values == {("refserver-fast-asgi", "plaintext"): 62279.0,
                      ("refserver-fast-asgi", "echo"): 45718.0,
                      ("uvicorn-httptools", "plaintext"): 40599.0}
    # Only the peers that were run are named.
    assert "uvicorn 0.55.0" in plot.subtitle(_record())
    assert "granian" not in plot.subtitle(_record())


def test_plot_from_a_results_file_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install '.[plot]')")
    results = tmp_path / "bench.json"
    results.write_text(json.dumps(_record()))
    picture = tmp_path / "bench.png"
    assert run.main(["--plot-from", str(results), "--plot", str(picture)]) == 0
    data = picture.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # bars, labels and a legend, not an empty canvas


def test_plot_from_a_file_that_is_not_a_results_file_says_so(tmp_path):
    other = tmp_path / "other.json"
    other.write_text("{}")
    with pytest.raises(SystemExit, match="not a results file"):
        run.main(["--plot-from", str(other), "--plot", str(tmp_path / "x.png")])


def test_plot_from_needs_plot(capsys):
    with pytest.raises(SystemExit):
        run.main(["--plot-from", "x.json"])
    assert "--plot-from needs --plot" in capsys.readouterr().err
