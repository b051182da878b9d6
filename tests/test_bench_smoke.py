"""The benchmarks run end to end (tiny sizes) and write valid JSON; no timing is judged."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cluster import run_bench


def test_run_overhead_quick(tmp_path: Path) -> None:
    output = tmp_path / "run_overhead.json"
    result = run_bench("run_overhead.py", "--quick", "--output", str(output), cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(output.read_text())
    assert data["benchmark"] == "run_overhead" and data["quick"] is True
    assert set(data["sequential"]) >= {"kueue run true", 'python -c "import grpc"', "local true (subprocess)"}
    for figures in data["sequential"].values():
        assert figures["n"] >= 1 and figures["median_s"] > 0
    assert data["xargs"]["calls"] >= 1 and data["xargs"]["kueue_total_s"] > 0
    assert data["output_latency"]["n"] >= 1
    assert "kueue run true" in result.stdout  # the table


def test_run_all_quick(tmp_path: Path) -> None:
    """Every benchmark runs at tiny sizes and reports its rows; peers that are
    not installed are skipped with a note, not failed."""
    out = tmp_path / "results"
    result = run_bench(
        "run_all.py", "--quick", "--markdown", "--output-dir", str(out), cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    every = json.loads((out / "all.json").read_text())
    assert every["quick"] is True
    assert set(every["benchmarks"]) == {
        "throughput", "submit_latency", "round_trip", "queue_scale", "many_workers", "streaming"
    }  # fmt: skip
    items = {row["item"].split()[0] for row in every["rows"]}
    assert items == {"1", "2", "3", "4", "5", "6", "7"}
    for row in every["rows"]:
        assert row["value"] is None or row["value"] >= 0, row
        if row["value"] is None:
            assert row["note"], row  # a skipped figure says why
    for name in every["benchmarks"]:
        assert json.loads((out / f"{name}.json").read_text())["rows"]
    kueue = [r for r in every["rows"] if r["measure"] == "kueue, 1 worker, 2 slots"]
    assert kueue and kueue[0]["value"] > 0 and kueue[0]["ratio"] > 0
    assert "| item | measure |" in result.stdout  # the Markdown table


def test_spawn_designs_tiny(tmp_path: Path) -> None:
    """bench/spawn_designs.py runs each design to the end (its rates are not judged)."""
    result = run_bench(
        "spawn_designs.py", "--jobs", "7", "--work-us", "10", "--rounds", "1", cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for design in ("pool", "single", "threads", "loop+threads", "handoff", "runners", "single_io", "feed"):
        assert f"  {design} " in result.stdout, result.stdout
    chosen = run_bench("spawn_designs.py", "--jobs", "5", "--designs", "feed", cwd=tmp_path, timeout=120)
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "  feed " in chosen.stdout and "  pool " in chosen.stdout and "single_io" not in chosen.stdout
    wrong = run_bench("spawn_designs.py", "--designs", "fed", cwd=tmp_path, timeout=60)
    assert wrong.returncode == 2 and "unknown design(s): fed" in wrong.stderr, wrong.stderr
