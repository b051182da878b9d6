"""bench/live_view_cost.py runs end to end and writes valid JSON (no timing is judged)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cluster import run_bench


def test_live_view_cost_quick(tmp_path: Path) -> None:
    output = tmp_path / "live_view_cost.json"
    result = run_bench("live_view_cost.py", "--quick", "--output", str(output), cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(output.read_text())
    assert data["benchmark"] == "live_view_cost" and data["quick"] is True
    assert [p["phase"] for p in data["phases"]] == ["none", "3 live", "none", "3 stalled", "none"]
    assert all(p["jobs"] > 0 for p in data["phases"]), data["phases"]
    live = data["phases"][1]["watchers"]
    assert set(live) == {"ls --watch", "ls --watch --running", "top"}
    assert all(w["messages"] >= 1 for w in live.values()), live
    assert set(data["rate_ratio"]) == {"3 live", "3 stalled"}
    assert "dispatch rate with 3 live watchers / without" in result.stdout  # the table
