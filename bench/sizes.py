"""The sizes of each benchmark, full and quick: one place for both
`bench/run_all.py` and each `bench/NAME.py` run alone, so the two agree."""

from __future__ import annotations

from typing import Any

QUICK: dict[str, dict[str, Any]] = {
    "throughput": {"jobs": 40, "rounds": 1},
    "submit_latency": {"runs": 2, "lines": 100, "line_runs": 1},
    "round_trip": {"runs": 3},
    "queue_scale": {"jobs": 3000, "take": 100, "rounds": 1, "ls_runs": 1},
    "many_workers": {"workers": 5, "jobs": 20, "rounds": 1, "idle_seconds": 2.0},
    "streaming": {"mb": 4, "rounds": 1},
}
FULL: dict[str, dict[str, Any]] = {
    # Nine rounds: the machine's speed drifts 10-20% between them, and single
    # rounds' kueue/pool ratios spread from 0.47 to 0.69 with the same code
    # (session 10); the median of nine moves less than the median of five.
    "throughput": {"jobs": 2000, "rounds": 9},
    "submit_latency": {"runs": 30, "lines": 10_000, "line_runs": 3},
    "round_trip": {"runs": 50},
    # Five dispatch rounds: one is under a second, and three gave medians from 0.84 to 1.21.
    "queue_scale": {"jobs": 100_000, "take": 1000, "rounds": 5, "ls_runs": 5},
    "many_workers": {"workers": 200, "jobs": 2000, "rounds": 2, "idle_seconds": 10.0},
    "streaming": {"mb": 500, "rounds": 2},
}


def sizes(name: str, quick: bool, **given: Any) -> dict[str, Any]:
    """The sizes of benchmark `name`, with those given on its command line (not None) instead."""
    chosen = dict((QUICK if quick else FULL)[name])
    chosen.update({key: value for key, value in given.items() if value is not None})
    return chosen
