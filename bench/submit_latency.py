#!/usr/bin/env python3
"""Item 2: what a submission costs the person typing it.

  - `kueue cmd true` as a fresh process (prints the id once the job is
    committed), taking turns with `python -c "import grpc"`, the floor of any
    Python gRPC client: target within 1.3x;
  - `kueue cmd --each-line FILE true` of 10 000 lines, to accepted (the
    process exits after the server committed all of them): target under 2 s.

No worker is connected: the jobs stay queued, so nothing else runs meanwhile.

    python bench/submit_latency.py [--quick] [--runs N] [--lines N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, Row, interleaved, kueue_argv, local_cluster, log, report, summary, timed
from bench.sizes import sizes


def measure(work: Path, *, runs: int, lines: int, line_runs: int) -> dict[str, Any]:
    entries = work / "entries.txt"
    entries.write_text("".join(f"input-{i:05d}.dat\n" for i in range(lines)))
    with local_cluster(work / "c", start_workers=False) as cluster:
        kueue = kueue_argv(cluster)
        subjects = {
            "import grpc": lambda: timed([sys.executable, "-c", "import grpc"], cwd=work),
            "kueue cmd true": lambda: timed([*kueue, "cmd", "true"], cwd=work),
        }
        for run in subjects.values():
            run()  # warm
        log(f"submit latency: {runs} runs each")
        samples = interleaved(subjects, runs)
        log(f"submit latency: --each-line of {lines} lines, {line_runs} runs")
        each_line = [
            timed([*kueue, "cmd", "--each-line", str(entries), "true"], cwd=work) for _ in range(line_runs)
        ]
    return {
        "benchmark": "submit_latency",
        "runs": runs,
        "summary": {name: summary(values) for name, values in samples.items()},
        "samples_s": samples,
        "each_line": {"lines": lines, "samples_s": each_line, "median_s": statistics.median(each_line)},
    }


def rows(r: dict[str, Any]) -> list[Row]:
    item = "2 submit"
    s = r["summary"]
    k, g = s["kueue cmd true"]["median_s"], s["import grpc"]["median_s"]
    e = r["each_line"]
    return [
        Row(
            item,
            "kueue cmd true (fresh process), median",
            k * 1000,
            "ms",
            "import grpc",
            k / g,
            "<= 1.3",
            k / g <= 1.3,
        ),
        Row(item, 'python -c "import grpc", median', g * 1000, "ms"),
        Row(
            item,
            f"kueue cmd --each-line, {e['lines']:,} lines",
            e["median_s"],
            "s",
            "import grpc",
            e["median_s"] / g,
            "< 2 s",
            e["median_s"] < 2.0,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--runs", type=int, help="runs of each (default 30; quick: 2)")
    parser.add_argument("--lines", type=int, help="lines for --each-line (default 10000; quick: 100)")
    parser.add_argument("--output", type=Path, default=RESULTS / "submit_latency.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kueue-bench-", ignore_cleanup_errors=True) as tmp:
        results = measure(Path(tmp), **sizes("submit_latency", args.quick, runs=args.runs, lines=args.lines))
    report(results, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
