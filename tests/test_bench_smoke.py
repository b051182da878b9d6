"""bench/run_overhead.py runs end to end and writes valid JSON (no timing is judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cluster import REPO, _env


def test_run_overhead_quick(tmp_path: Path) -> None:
    output = tmp_path / "run_overhead.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_overhead.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(output.read_text())
    assert data["benchmark"] == "run_overhead" and data["quick"] is True
    assert set(data["sequential"]) >= {"kueue run true", 'python -c "import grpc"', "local true (subprocess)"}
    for figures in data["sequential"].values():
        assert figures["n"] >= 1 and figures["median_s"] > 0
    assert data["xargs"]["calls"] >= 1 and data["xargs"]["kueue_total_s"] > 0
    assert data["output_latency"]["n"] >= 1
    assert "kueue run true" in result.stdout  # the table
